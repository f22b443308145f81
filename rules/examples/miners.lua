-- miners.lua: kill cryptocurrency miners.
--
-- Catches
--   * an exec of a known miner binary, by name, case-insensitively
--     (xmrig, XMRig-6.21, xmr-stak, cpuminer-opt, minerd, ethminer ...);
--   * an exec of anything, renamed or not, whose arguments name a mining
--     pool (stratum+tcp://, stratum+ssl://, stratum2+tcp:// ..., also as
--     --url=stratum+tcp://...) or carry xmrig's --donate-level option.
--   * processes already running when procwarden starts (startup = true):
--     a miner started before the daemon does not outlive it.
--   * a command line longer than procwarden keeps of it (argv_truncated:
--     the first few KB are captured): the arguments past the cut are not
--     seen, so a pool URL placed after some padding (`kworker <4 KB of
--     junk> -o stratum+tcp://...`) would not match miner-arguments. A cut
--     command line is suspicious in itself: miner-arguments-truncated
--     alerts on it (it does not kill: long command lines are also what
--     compilers and linkers run).
--   The process is killed (but for a cut command line) and an alert says
--   so. The rules use only exe and argv, so they act on the exec hot path,
--   before the rest of the process context is read.
--
-- Known false positives
--   * a command that merely mentions a pool URL is killed too: an admin's
--     `grep stratum+tcp://pool /var/log/...` (search for "stratum" alone).
--   * a legitimate miner on a mining rig: do not load this file there.
--   * miner-arguments-truncated: any program started with a command line of
--     more than a few KB (builds: cc1, ld, javac with long class paths).
--     One alert per program every 5 minutes; list the ones you trust in
--     LONG_ARGV_OK.
-- Known false negatives
--   * a renamed miner that reads its pool from a config file
--     (`kworker -c /tmp/.c.json`): no name, no pool in argv. Add the hashes
--     of the builds you find to forbidden_binaries.lua (sha256 rule).
--   * miners inside an interpreter with the pool in the environment or a
--     file; browser (wasm) miners; GPU miners under other names.
--   * kill-after-exec is a race (see forbidden_binaries.lua). miner-binary
--     matches on exe only, so it can use deny() instead of kill() to stop
--     the binary before it runs; miner-arguments cannot (argv is not known
--     before the program runs).
--
-- Tuning
--   * MINER_EXE: case-insensitive globs on the full exe path.
--   * MINER_ARGS: globs on each argument (`argv = g` holds when some argument
--     matches g). Keep them specific: every exec is tested.
--   * No throttle on purpose: a throttled firing would skip its kill too.
--   * LONG_ARGV_OK: paths of programs whose long command lines are
--     expected, in root-owned directories only (a user must not be able to
--     put a miner there). To kill on a cut command line rather than alert,
--     give miner-arguments-truncated the action { kill(), alert "..." } and
--     remove its throttle.
--   * miner-arguments leaves known miner binaries to miner-binary, so a
--     miner matching both is killed (and reported) once.

local MINER_EXE = {
  iglob "*/xmrig*", iglob "*/xmr-stak*", iglob "*/minerd", iglob "*/cpuminer*",
  iglob "*/ccminer*", iglob "*/bfgminer", iglob "*/cgminer", iglob "*/sgminer",
  iglob "*/ethminer", iglob "*/nbminer", iglob "*/t-rex", iglob "*/lolminer",
  iglob "*/phoenixminer", iglob "*/gminer", iglob "*/nanominer", iglob "*/srbminer*",
  iglob "*/teamredminer", iglob "*/kawpowminer",
}

local MINER_ARGS = {
  iglob "*stratum*+*://?*", -- stratum+tcp://pool:3333, --url=stratum+ssl://...
  iglob "*stratum://?*",
  "--donate-level*",        -- xmrig and its forks
}

rule {
  name = "miner-binary",
  on = "exec",
  match = { exe = MINER_EXE },
  action = { kill(), alert "crypto miner {exe} (pid {pid}, user {user})" },
  priority = "critical",
  tags = { "mitre:T1496" },
}

-- Programs whose command lines are often longer than what is captured
-- (in root-owned directories: a user cannot put a miner there).
local LONG_ARGV_OK = {
  "/usr/bin/ld", "/usr/bin/ld.bfd", "/usr/bin/ld.gold", "/usr/bin/ar",
  "/usr/lib/gcc/*/cc1", "/usr/lib/gcc/*/cc1plus", "/usr/lib/gcc/*/collect2",
}

-- Not judged on a cut command line: known miners (miner-binary kills
-- them) and LONG_ARGV_OK.
local NOT_ON_CUT = {}
for _, m in ipairs(MINER_EXE) do NOT_ON_CUT[#NOT_ON_CUT + 1] = m end
for _, g in ipairs(LONG_ARGV_OK) do NOT_ON_CUT[#NOT_ON_CUT + 1] = g end

rule {
  name = "miner-arguments",
  on = "exec",
  match = { argv = MINER_ARGS, exe = not_(MINER_EXE) }, -- one kill per miner
  action = { kill(), alert "crypto miner by its arguments: {exe} {args} (pid {pid}, user {user})" },
  priority = "critical",
  tags = { "mitre:T1496" },
}

-- The arguments past the cut are unknown: a pool URL may be among them.
rule {
  name = "miner-arguments-truncated",
  on = "exec",
  match = { argv_truncated = true, exe = not_(NOT_ON_CUT) },
  action = alert("command line of {exe} cut at capture, a pool may hide past the cut: {cmdline} "
    .. "(pid {pid}, user {user})"),
  priority = "warning",
  tags = { "mitre:T1496", "mitre:T1027" },
  throttle = { key = "exe", count = 1, per = 300 },
}
