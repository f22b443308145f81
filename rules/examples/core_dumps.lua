-- core_dumps.lua: alert when a process dumps core.
--
-- Catches
--   * exit events with core_dumped = true: the process died of a signal
--     whose default action dumps core (SIGSEGV, SIGABRT, SIGQUIT, SIGBUS,
--     SIGILL, SIGFPE, SIGSYS, SIGTRAP ...) and the kernel wrote the dump, or
--     piped it to a handler (systemd-coredump, apport). A core file holds
--     the process's memory: keys, passwords, tokens. Forcing a privileged
--     process to dump (kill -SEGV / -QUIT) is a way to read them, and a
--     crashing service may be under exploitation (memory corruption).
--   * two rules: processes running as root (uid or euid 0) at priority
--     error, the others at notice.
--   Thread exits are skipped: every thread of a crashing process reports
--   the core bit, and one alert per process is enough. Alert-only.
--
-- Known false positives
--   * ordinary crashes: buggy programs, tests that abort() on purpose,
--     dumps taken on purpose while debugging (kill -QUIT).
-- Known false negatives
--   * no dump written (ulimit -c 0, core_pattern empty, a non-dumpable
--     process: setuid and PR_SET_DUMPABLE 0) means core_dumped is false. The
--     kernel's `coredump` event fires earlier, for every core-dumping signal
--     whether a dump is written or not: use on = "coredump" to see those.
--   * memory read without a dump (ptrace: see ptrace.lua; /proc/PID/mem).
--
-- Tuning
--   * throttle: at most 3 alerts per executable per 5 minutes (a service
--     crash-looping under systemd's Restart=); the rest are counted.
--   * raise the priority of the services you care about with a rule of
--     your own matching their exe.

local function is_root(e) return e.uid == 0 or e.euid == 0 end

rule {
  name = "core-dump-root",
  on = "exit",
  match = { core_dumped = true, thread = false },
  when = is_root,
  action = alert "root process {exe} (pid {pid}) dumped core on signal {term_signal}",
  priority = "error",
  tags = { "mitre:T1003", "mitre:T1068" },
  throttle = { key = "exe", count = 3, per = 300 },
}

rule {
  name = "core-dump",
  on = "exit",
  match = { core_dumped = true, thread = false },
  when = function(e) return not is_root(e) end,
  action = alert "{exe} (pid {pid}, user {user}) dumped core on signal {term_signal}",
  priority = "notice",
  tags = { "mitre:T1003", "mitre:T1499.004" },
  throttle = { key = "exe", count = 3, per = 300 },
}
