-- ptrace.lua: alert when a process is ptrace-attached by something that is
-- not a debugger.
--
-- Catches
--   * ptrace events (PTRACE_ATTACH / PTRACE_SEIZE: tracer_pid ~= 0) whose
--     tracer's executable is not one of DEBUGGERS: code injection into a
--     running process, credential theft from sshd / ssh-agent / a browser,
--     anti-analysis tricks. The event's own fields (pid, exe, user) are the
--     tracee's; `tracer` is the tracing process.
--   * attaches whose tracer is already gone when the event is read (a
--     short-lived injector) fire a separate, lower-priority rule.
--   Detach events (tracer_pid 0) are ignored. Alert-only.
--
-- Known false positives
--   * tools that ptrace for a living and are not listed: sandboxes (proot,
--     gVisor's ptrace platform), profilers, checkpointing, crash reporters,
--     language debuggers installed under a home directory (~/go/bin/dlv).
-- Known false negatives
--   * a debugger used as the injector (gdb -p PID -batch -ex 'call ...'):
--     the path is gdb. Restrict DEBUGGERS on servers that have no debugging
--     business, or alert on root targets separately.
--   * process_vm_readv / /proc/PID/mem access without ptrace attach.
--   * a program that traces its own child from the start (PTRACE_TRACEME).
--
-- Tuning
--   * DEBUGGERS: globs on the tracer's full exe path. Keep them to
--     root-owned directories: a glob on the name alone ("*/gdb") would let
--     anyone attach with a binary called gdb.
--   * throttle: at most 3 alerts per tracer a minute (an injector walking
--     the process list); the rest are counted in a summary line.

local DEBUGGERS = {
  "/usr/bin/gdb", "/usr/bin/gdbserver", "/usr/libexec/gdb",
  "/usr/bin/strace", "/usr/bin/ltrace",
  "/usr/bin/lldb*", "/usr/lib/llvm-*/bin/lldb*",
  "/usr/bin/rr", "/usr/bin/vgdb", "/usr/lib/*/valgrind/*",
  "/usr/bin/eu-stack", "/usr/bin/py-spy",
  "/usr/sbin/criu", "/usr/bin/criu",
}

rule {
  name = "ptrace-attach-non-debugger",
  on = "ptrace",
  match = { tracer_pid = not_(0), ["tracer.exe"] = not_(DEBUGGERS) },
  action = alert("ptrace attach to {exe} (pid {pid}, user {user}) by {tracer.exe} "
    .. "(pid {tracer_pid}, user {tracer.user})"),
  priority = "error",
  tags = { "mitre:T1055.008" },
  throttle = { key = "tracer_tgid", count = 3, per = 60 },
}

rule {
  name = "ptrace-attach-unknown-tracer",
  on = "ptrace",
  match = { tracer_pid = not_(0) },
  when = function(e) return e.tracer == nil end,
  action = alert "ptrace attach to {exe} (pid {pid}, user {user}) by pid {tracer_pid}, gone before it was seen",
  priority = "warning",
  tags = { "mitre:T1055.008" },
  throttle = { key = "tracer_tgid", count = 3, per = 60 },
}
