-- forbidden_binaries.lua: kill binaries that must never run on this host,
-- named by path (exe glob) or by content (sha256 of the executable).
--
-- Catches
--   * an exec whose executable path matches FORBIDDEN_EXE (scanners,
--     brute-forcers, crackers, tunnels, post-exploitation kits);
--   * an exec whose executable's sha256 is in FORBIDDEN_SHA256, whatever it
--     is called or wherever it lies (a renamed or copied tool);
--   * both also judge the processes already running when procwarden starts
--     (exec events with startup = true).
--   The process is killed (SIGKILL through a pidfd, after a start-time check)
--   and an alert says what was killed: "[killed]", or why it failed.
--
-- Known false positives
--   * a legitimate copy of a listed tool (a pentester's nmap, an admin's
--     hashcat): the exe rule goes by name, not by who runs it.
--   * FORBIDDEN_SHA256 holds one harmless placeholder, the hash of the
--     EICAR anti-virus test string (a DOS program: Linux cannot exec it, so
--     it matches nothing real). Replace it with the hashes you mean.
-- Known false negatives
--   * a renamed tool escapes the exe rule (add its hash), and a rebuilt or
--     padded one escapes the sha256 rule (add its name). Scripts are judged
--     by their interpreter: the exe of `python3 tool.py` is python3.
--   * kill-after-exec is a race: the binary may run a few instructions, or
--     more on a busy machine. Run with --realtime for the tightest
--     exec-to-kill time, or see Tuning for deny().
--   * the sha256 rule reads the whole executable before it can act; a
--     binary that is deleted or replaced first cannot be hashed.
--
-- Tuning
--   * edit FORBIDDEN_EXE (fnmatch globs on the full resolved path:
--     "*/nmap" = any nmap, "/usr/bin/nmap" = that one) and FORBIDDEN_SHA256
--     (lowercase hex, as `sha256sum` prints it).
--   * to stop the binary before it runs, replace kill() with deny() in both
--     rules (they match only exe and sha256, known before the program runs):
--     execve fails with EPERM. Where fanotify cannot see (memfd, no kernel
--     support) deny() falls back to kill-after-exec and says so. For a
--     script, exe at decision time is the script itself, then the
--     interpreter.
--   * to alert without killing while you try a list, remove kill() from the
--     action lists. Do not add a throttle to a kill rule: a throttled firing
--     skips its kill as well as its alert.
--   * protect { "/usr/sbin/sshd", ... } in any loaded file makes sure no
--     action ever signals the processes you cannot afford to lose.

local FORBIDDEN_EXE = {
  "*/nmap", "*/masscan", "*/zmap",              -- network scanners
  "*/hydra", "*/medusa", "*/ncrack",            -- password brute-forcers
  "*/john", "*/hashcat",                        -- password crackers
  "*/chisel", "*/ngrok", "*/frpc", "*/ligolo*", -- tunnels out of the network
  "*/linpeas*", "*/pspy*", "*/mimipenguin*",    -- post-exploitation kits
}

local FORBIDDEN_SHA256 = {
  -- The EICAR test string (a harmless, well-known placeholder).
  "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
}

rule {
  name = "forbidden-binary-exe",
  on = "exec",
  match = { exe = FORBIDDEN_EXE },
  action = { kill(), alert "forbidden binary {exe} (pid {pid}, user {user}, parent {ppid})" },
  priority = "critical",
  tags = { "mitre:T1588.002", "mitre:T1046" },
}

rule {
  name = "forbidden-binary-sha256",
  on = "exec",
  match = { sha256 = oneof(FORBIDDEN_SHA256) },
  action = { kill(), alert "forbidden binary by hash: {exe} sha256 {sha256} (pid {pid}, user {user})" },
  priority = "critical",
  tags = { "mitre:T1588.001", "mitre:T1204.002" },
}
