-- The attacks of a local unprivileged user (or a process in a container or
-- a user namespace) on the live daemon: hang it, crash it, blind it, switch
-- its rules off, bypass deny(). Each test is one attack and asserts the
-- secure outcome. Root only: as any other user every test here is pending.
--
-- Helper programs are C sources in spec/integration/adversary/ (and the raw
-- victim and the exec driver of spec/integration/deny/), compiled once into
-- a temp dir with cc (fuseserv needs libfuse3: `make deps`):
--   fuseserv   the attacker's FUSE server (run as nobody) that stops
--              answering GETATTR, OPEN or READ for everyone but the attacker
--   fusedrv    drives the hung-FUSE attack from one process: nothing it needs
--              is an exec made while execs may be held
--   argvmap    maps a FUSE file over the page of its own argv strings
--   countargs  reports the argv and environment an exec() child got
--   sleeper    stays until killed, whatever its arguments
--   deep       builds a path longer than PATH_MAX and execs a victim there
--   nsexec     unshare + tmpfs mount + write + exec in one program
--   flip       flips a symlink between two targets as fast as it can
--
-- Safety of the suite: every blocking step is bounded. The FUSE server
-- waits at most FUSE_MAX_HANG seconds per request and exits by itself after
-- FUSE_LIFETIME seconds (the kernel then aborts its connection and releases
-- whatever waits on it); fusedrv releases the server before it returns (an
-- alarm does it if it is stuck). after_each kills the server, unmounts with
-- umount -l and kills what the test started, by pid.
--
-- fanotify marks are machine-wide: a deny daemon judges every exec of the
-- host, and a hung responder holds every exec of the host (which is what
-- these tests measure, for at most a few seconds). Tests with deny rules
-- hold the machine-wide lock deny_spec uses, and their rules name only
-- this spec's paths (except the --dry-run one, which acts on nothing).
--
-- PW_SPEC_VERBOSE=1 prints every measured figure as a comment on stderr;
-- the figures the threat model quotes (the argv-page read, the
-- single-program namespace count) are always printed.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")
local json = require "dkjson"

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

local VERBOSE = os.getenv("PW_SPEC_VERBOSE")
local NOBODY = 65534
local AS_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups "
local FUSE_MAX_HANG = 6 -- seconds one FUSE request is held at most
local FUSE_LIFETIME = 40 -- seconds the FUSE server lives at most

local function say(fmt, ...)
  io.stderr:write("# adversary_spec: ", fmt:format(...), "\n")
end
local function note(fmt, ...)
  if VERBOSE then say(fmt, ...) end
end

local EXEC_LOGGER = H.EXEC_LOGGER

-- Escape a literal for a grep -E regex.
local function ere(s) return (s:gsub("[%^%$%(%)%.%[%]%*%+%?{}|\\]", "\\%0")) end

local function sh_ok(cmd)
  local ok = os.execute(cmd)
  assert(ok, "failed: " .. cmd)
end

local function copy(from, to, mode)
  sh_ok(("cp %s %s && chmod %s %s"):format(H.q(from), H.q(to), mode or "755", H.q(to)))
end

local function mkdir(path, mode, owner)
  sh_ok(("mkdir -p %s && chmod %s %s"):format(H.q(path), mode or "755", H.q(path)))
  if owner then sh_ok(("chown %d:%d %s"):format(owner, owner, H.q(path))) end
  return path
end

local function count_files(dir, prefix)
  local out = H.run(("ls -1 %s 2>/dev/null"):format(H.q(dir)))
  local n = 0
  for name in out:gmatch("[^\n]+") do
    if name:sub(1, #prefix) == prefix then n = n + 1 end
  end
  return n
end

-- key=value words of a tool's report, numbers where they are numbers.
local function report(line)
  local r = {}
  for k, v in line:gmatch("([%w_]+)=(%S+)") do r[k] = tonumber(v) or v end
  return r
end

local function alive(pid)
  return H.read("/proc/" .. pid .. "/stat"):match("^%d+ %(.-%) ([^ZX])") ~= nil
end

-- ---- the helper programs, built once ---------------------------------------

local tools

local function words(s)
  local t = {}
  for w in s:gmatch("%S+") do t[#t + 1] = w end
  return t
end

local function build_tools()
  if tools then return tools end
  local fuse = {}
  for _, w in ipairs(words(H.run("pkg-config --cflags fuse3"))) do fuse[#fuse + 1] = w end
  fuse[#fuse + 1] = here .. "adversary/fuseserv.c"
  for _, w in ipairs(words(H.run("pkg-config --libs fuse3"))) do fuse[#fuse + 1] = w end
  table.insert(fuse, 1, "-O1")
  local a = here .. "adversary/"
  tools = H.build_tools {
    raw = { "-nostdlib", "-static", "-no-pie", here .. "deny/raw.S" },
    driver = { "-O1", "-Wall", here .. "deny/driver.c" },
    fuseserv = fuse,
    fusedrv = { "-O1", "-Wall", a .. "fusedrv.c" },
    argvmap = { "-O1", "-Wall", a .. "argvmap.c" },
    countargs = { "-O1", "-Wall", a .. "countargs.c" },
    sleeper = { "-O1", "-Wall", a .. "sleeper.c" },
    deep = { "-O1", "-Wall", a .. "deep.c" },
    nsexec = { "-O1", "-Wall", "-static", a .. "nsexec.c" },
    flip = { "-O1", "-Wall", a .. "flip.c" },
  }
  -- nobody runs some of them (and reads the raw victim)
  sh_ok("chmod 755 " .. H.q(tools.session.dir))
  return tools
end

-- ---- per-test state: the session, and what to undo -------------------------

local s          -- the test's session (its dir is readable by nobody)
local undo = {}  -- functions run by after_each, last first
local started = {} -- { pid, start } of processes the test started (killed after it)

local function at_end(fn) undo[#undo + 1] = fn end

local function new_session(lock)
  build_tools()
  s = H.session()
  sh_ok("chmod 755 " .. H.q(s.dir))
  if lock then
    -- one deny daemon of these specs at a time on the machine
    assert.is_true(s:lock("procwarden-deny-spec", 100, 150), "could not take the deny spec lock")
  end
  return s
end

-- A process's start time (field 22 of /proc/PID/stat), nil when gone: with
-- its pid, what identifies it (pids are reused, fast on a busy machine).
local function start_time(pid)
  local rest = H.read("/proc/" .. pid .. "/stat"):match("^%d+ %(.*%) (.*)$")
  if not rest then return nil end
  local i = 2
  for w in rest:gmatch("%S+") do
    i = i + 1
    if i == 22 then return w end
  end
  return nil
end

-- SIGKILL a process this test started, unless it is gone (its pid may be
-- another process's by now).
local function kill_started(p)
  if p.start and start_time(p.pid) == p.start then os.execute("kill -KILL " .. p.pid .. " 2>/dev/null") end
end

-- Start a shell command in the background; returns its pid (the command
-- itself when it is `exec ...`), and kills it after the test.
local function spawn(cmd, name)
  local pidfile = s:path((name or "bg") .. ".pid")
  os.execute(("( %s ) </dev/null >>%s 2>&1 & echo $! >%s"):format(cmd, H.q(s:path((name or "bg") .. ".log")),
    H.q(pidfile)))
  local pid = tonumber(H.read(pidfile):match("%d+"))
  started[#started + 1] = { pid = pid, start = start_time(pid) }
  return pid, started[#started]
end

-- Wait until the daemon is up: fanotify (within 10 s) when deny rules are
-- loaded, and the loop (a probe exec was logged).
local function ready(d, deny) d:assert_ready(deny and 10 or nil) end

-- The daemon's stdout without the exec logger's lines.
local function out_of(d) return d:out_without("exec pid=") end

local function tail(text, n)
  n = n or 3000
  return #text > n and ("..." .. text:sub(-n)) or text
end

-- In the session: a deny daemon up (fanotify and the loop) whose rule
-- `name` denies every exe "*/name" and alerts "`what` {exe}". Returns it.
local function start_deny(name, what)
  local rules = s:rules(name .. ".lua", EXEC_LOGGER .. ([[
rule { name = %q, on = "exec", match = { exe = %q },
  action = { deny(), alert %q } }
]]):format(name, "*/" .. name, what .. " {exe}"))
  local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
  ready(d, true)
  return d
end

-- A new (locked) session for a victim mounted by nobody: a markers dir
-- anyone may write, the empty directory `dir` to mount on, and with
-- `victim`, a copy of the raw victim. Returns their paths.
local function mount_session(dir, victim)
  new_session(true)
  local mk = mkdir(s:path("markers"), "1777")
  local mnt = mkdir(s:path(dir))
  if not victim then return mk, mnt end
  local raw = s:path("raw")
  copy(tools.raw, raw)
  return mk, mnt, raw
end

-- Run a shell as nobody in a new user and mount namespace (unshare -Urm),
-- fed one command at a time (as a user types them): each command of
-- o.setup (the shell exits 9 when one fails), each followed by o.pause
-- seconds when given; then o.n tries of o.try ($i: 0 .. n-1), each
-- printing "try $i rc=$?" and then running o.after if given; then exit 0.
-- o.vars: its environment. Returns what the shell printed.
local function unshare_shell(o)
  local feed = {}
  for _, cmd in ipairs(o.setup) do
    feed[#feed + 1] = "echo " .. H.q(cmd .. " || exit 9")
    if o.pause then feed[#feed + 1] = "sleep " .. o.pause end
  end
  for i = 0, o.n - 1 do
    local try = o.try .. '; echo "try $i rc=$?"' .. (o.after and "; " .. o.after or "")
    feed[#feed + 1] = "echo " .. H.q((try:gsub("%$i", tostring(i))))
  end
  feed[#feed + 1] = "echo 'exit 0'"
  local names = {}
  for k in pairs(o.vars) do names[#names + 1] = k end
  table.sort(names)
  local set = {}
  for i, k in ipairs(names) do set[i] = k .. "=" .. H.q(o.vars[k]) end
  return H.run(("%s; export %s; sh -c %s | timeout -k 2 30 %s unshare -Urm sh 2>&1"):format(table.concat(set, " "),
    table.concat(names, " "), H.q(table.concat(feed, "\n")), AS_NOBODY))
end

-- ---- the FUSE server ---------------------------------------------------------

-- Mount the attacker's FUSE filesystem (served by nobody, allow_other) in
-- the session: { ctl, mnt, pid, victim, page }. The server starts as root
-- only to mount (as fusermount3 does for a user; so /etc/fuse.conf and
-- /dev/fuse stay as they are) and serves as nobody.
local function fuse_mount()
  local f = { ctl = mkdir(s:path("fusectl"), "755", NOBODY), mnt = mkdir(s:path("fusemnt")) }
  H.write(f.ctl .. "/mode", "none\n")
  sh_ok("chmod 644 " .. H.q(f.ctl .. "/mode"))
  local proc
  f.pid, proc = spawn(("exec %s %s %s %d %d %d %s %d"):format(H.q(tools.fuseserv), H.q(f.ctl), H.q(tools.raw), NOBODY,
    FUSE_MAX_HANG, FUSE_LIFETIME, H.q(f.mnt), NOBODY), "fuseserv")
  at_end(function()
    H.write(f.ctl .. "/mode", "none\n")
    kill_started(proc)
    os.execute("umount -l " .. H.q(f.mnt) .. " 2>/dev/null")
  end)
  assert.is_true(H.wait_file(f.ctl .. "/ready", 5), "the FUSE server did not start: "
    .. H.read(s:path("fuseserv.log")))
  f.victim, f.page = f.mnt .. "/victim", f.mnt .. "/page"
  f.mode = function(m) H.write(f.ctl .. "/mode", m .. "\n") end
  f.held = function() return H.read(f.ctl .. "/hung") end
  return f
end

-- The hung-FUSE attack: a daemon whose deny rule names the FUSE file (plus
-- a sha256 rule when sha, so the file is read), the server stops answering
-- `mode` for everyone but the attacker, the attacker execs the file, then
-- fusedrv measures (see fusedrv.c) and stops the daemon with sig. Returns
-- the report, the daemon and the mount.
local function fuse_hang(mode, sig, sha)
  new_session(true)
  local f = fuse_mount()
  -- the FUSE file is denied: covering it (not leaving it unmarked) is what
  -- must not cost the rest of the machine its execs. (Whether the attacker's
  -- own exec was denied is not asserted here: it is held by its own server
  -- until the end, when the daemon has been stopped; see the next tests.)
  local rules = EXEC_LOGGER .. ([[
rule { name = "pwadv-fuse-victim", on = "exec", match = { exe = %q }, action = { deny() } }
]]):format(f.mnt .. "/victim")
  if sha then
    rules = rules .. ([[
rule { name = "pwadv-hash", on = "exec", match = { sha256 = oneof { %q } }, action = { deny() } }
]]):format(("0"):rep(64))
  end
  local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", s:rules("fuse.lua", rules) }, timeout = 45 }
  ready(d, true)
  local covered = H.wait_grep(d.err_file, "deny: covering " .. ere(f.mnt), 3)
  local mk = mkdir(s:path("markers"), "1777")
  local out = H.run(("timeout -k 2 40 %s %s %s %s %s %d %d %s %d %d 2>&1"):format(H.q(tools.fusedrv), H.q(f.ctl),
    mode, H.q(f.victim), H.q(mk .. "/marker"), NOBODY, d:pid(), H.q(d.out_file), sig, f.pid))
  local r = report(out)
  r.line = out:gsub("\n$", "")
  r.covered = covered
  note("FUSE %s hang%s, signal %d: %s; covered=%s; held requests: %s", mode, sha and " (sha256 rule)" or "", sig,
    r.line, tostring(covered), (f.held():gsub("\n", "; ")))
  return r, d, f
end

-- The secure outcome of fuse_hang.
local function assert_not_held(r, d, f)
  local ctx = ("\nfusedrv: %s\nheld by the server: %s\ndaemon stderr:\n%s"):format(r.line, f.held(), tail(d:err()))
  assert.is_number(r.execs_ok, "fusedrv gave no report" .. ctx)
  assert.are.equal(10, r.execs_ok, "execs elsewhere did not all finish in < 1 s while the FUSE server hung" .. ctx)
  assert.is_true(r.max_ms < 1000, "an exec elsewhere took >= 1 s" .. ctx)
  assert.are.equal(1, r.logged, "the daemon's loop did not log an exec made after the hang within 1 s" .. ctx)
  assert.are.equal(1, r.after_stop_ok, "an exec elsewhere was still held after the daemon was stopped" .. ctx)
  assert.is_true(r.after_stop_ms < 1000, "an exec after the stop took >= 1 s" .. ctx)
end

describe("adversary: attacks of a local unprivileged user on the live daemon (root)", function()
  after_each(function()
    for i = #undo, 1, -1 do pcall(undo[i]) end
    undo = {}
    for _, p in ipairs(started) do kill_started(p) end
    started = {}
    H.end_test()
    s = nil
  end)

  lazy_teardown(H.end_file)

  -- ---- a. a FUSE server that stops answering ----------------------------

  it_root("a FUSE server that stops answering GETATTR holds no exec elsewhere; SIGTERM releases every exec",
    function()
    assert_not_held(fuse_hang("getattr", 15, false))
  end)

  it_root("a FUSE server that stops answering GETATTR holds no exec elsewhere; SIGKILL releases every exec",
    function()
    assert_not_held(fuse_hang("getattr", 9, false))
  end)

  it_root("a FUSE server that stops answering OPEN holds no exec elsewhere; SIGTERM releases every exec", function()
    assert_not_held(fuse_hang("open", 15, false))
  end)

  it_root("a FUSE server that stops answering READ, with a sha256 rule, holds no exec elsewhere; SIGKILL releases"
    .. " every exec", function()
    assert_not_held(fuse_hang("read", 9, true))
  end)

  it_root("a deny rule on the exe of a file on a FUSE mount denies it (the mount is covered)", function()
    new_session(true)
    local f = fuse_mount()
    local rules = s:rules("fuseexe.lua", EXEC_LOGGER .. ([[
rule { name = "pwadv-fuse-exe", on = "exec", match = { exe = %q }, action = { deny(), alert "fuse exec {exe}" } }
]]):format(f.victim))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d, true)
    local mk = mkdir(s:path("markers"), "1777")
    -- a mount the daemon found at start: its first exec is decided already
    H.wait_grep(d.err_file, "deny: covering " .. ere(f.mnt), 3)
    local out = s:sh(AS_NOBODY .. H.q(f.victim) .. " " .. H.q(mk .. "/marker") .. '; echo "rc=$?"')
    assert.are.equal(0, count_files(mk, "marker"), "the FUSE victim ran: " .. out .. out_of(d) .. tail(d:err()))
    assert.is_truthy(out:find("rc=126", 1, true), "not denied (EPERM): " .. out .. out_of(d))
  end)

  it_root("exe_fs: a deny rule on exe_fs = \"fuse*\" denies the exec of a file on a FUSE mount", function()
    new_session(true)
    local f = fuse_mount()
    local rules = s:rules("fusefs.lua", EXEC_LOGGER .. ([[
rule { name = "pwadv-no-fuse", on = "exec", match = { exe_fs = "fuse*", exe = %q },
  action = { deny(), alert "fuse exec {exe} on {exe_fs}" } }
]]):format(f.mnt .. "/*"))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    assert.is_nil(d:wait(1), "the daemon refused the rules:\n" .. d:err())
    ready(d, true)
    local mk = mkdir(s:path("markers"), "1777")
    local out = s:sh(AS_NOBODY .. H.q(f.victim) .. " " .. H.q(mk .. "/marker") .. '; echo "rc=$?"')
    assert.are.equal(0, count_files(mk, "marker"), "the FUSE victim ran: " .. out .. out_of(d))
    assert.is_truthy(out:find("rc=126", 1, true), "not denied (EPERM): " .. out .. out_of(d))
    assert.is_true(d:wait_out("fuse exec " .. ere(f.victim) .. " on fuse", 3), out_of(d))
  end)

  -- ---- b. argv strings on a hung FUSE file ------------------------------

  it_root("a process whose argv page is a FUSE file the server stops reading does not hold the daemon", function()
    new_session(false)
    local f = fuse_mount()
    local ready_file = mkdir(s:path("run"), "1777") .. "/argvmap.ready"
    local function argvmap(tag)
      local rf = ready_file .. tag
      spawn(("exec %s %s %s %s 30 %s"):format(AS_NOBODY, H.q(tools.argvmap), H.q(f.page), H.q(rf),
        ("P"):rep(3 * 4096)), "argvmap" .. tag)
      assert.is_true(H.wait_file(rf, 5), "argvmap did not map its argv: " .. H.read(s:path("argvmap" .. tag .. ".log")))
      return tonumber(H.read(rf):match("%d+"))
    end
    local pid = argvmap("1")
    f.mode("read")
    -- How this kernel reads a command line that runs into a file mapping.
    local t0 = H.now()
    local out = H.run(("timeout -k 1 2 cat /proc/%d/cmdline | wc -c; echo \"status=${?}\""):format(pid))
    local took = H.now() - t0
    local bytes = tonumber(out:match("^%s*(%d+)"))
    say("argv page on a hung FUSE file: `timeout 2 cat /proc/PID/cmdline` returned %s bytes of %d in %.3f s; "
      .. "requests held by the server: %d", tostring(bytes), 3 * 4096, took,
      select(2, f.held():gsub("\n", "")))
    -- The daemon starts (its start-up scan reads every command line) and
    -- handles events; one more such process starts under it.
    local rules = s:rules("argv.lua", EXEC_LOGGER .. [[
rule { name = "pwadv-argv", on = "exec", match = { exe = "*/argvmap" },
  action = { alert "argvmap {pid}: {cmdline}" } }
]])
    t0 = H.now()
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    local up = d:ready(3)
    local startup = H.now() - t0
    note("daemon up (first probe logged) %.3f s after start", startup)
    assert.is_true(up, "the daemon handled no event within 3 s of its start:\n" .. d:err())
    local pid2 = argvmap("2")
    t0 = H.now()
    -- (1.5 s: a probe every 0.1 s, and ASan builds are slower)
    assert.is_true(d:ready(1.5), "the daemon handled no event within 1.5 s of a second argv-mapped process:\n"
      .. d:err())
    note("probe logged %.3f s after the second argv-mapped process (pid %d)", H.now() - t0, pid2)
    assert.is_true(took < 1, ("reading the command line took %.2f s"):format(took))
  end)

  -- ---- c. exec() with 4096 arguments and 4096 environment entries -------

  it_root("exec() with 4096 arguments and 4096 environment entries: the daemon survives, the child gets them all",
    function()
    new_session(false)
    local trigger = s:path("pwadv-trigger") -- lives 0.5 s: its exe is read for sure
    copy(tools.sleeper, trigger)
    local result = s:path("countargs.out")
    local rules = s:rules("exec.lua", EXEC_LOGGER .. ([[
local args = { %q, %q }
for i = 3, 4096 do args[i] = "arg" .. i end
local env = {}
for i = 1, 4096 do env["PWADV_" .. i] = "v" .. i end
rule { name = "pwadv-many", on = "exec", match = { exe = %q },
  action = { exec(args, { env = env, timeout = 10 }) } }
]]):format(tools.countargs, result, trigger))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    s:sh(H.q(trigger) .. " 500")
    local got = H.wait_file(result, 5)
    local status = d:wait(0.5)
    assert.is_nil(status, "the daemon died: status " .. tostring(status) .. "\n" .. tail(d:err()))
    assert.is_true(got, "the exec() child never reported:\n" .. tail(out_of(d)) .. tail(d:err()))
    local r = report(H.read(result))
    assert.are.same({ argc = 4096, pwenv = 4096, bad = 0 }, r)
    assert.is_true(d:ready(3), "the daemon stopped handling events:\n" .. tail(d:err()))
    assert.are.equal(0, d:stop(), tail(d:err()))
  end)

  -- ---- d. long command lines do not switch a rule off -------------------

  it_root("five execs with a 300-byte command line, then `nc -e /bin/sh`: it is killed", function()
    new_session(false)
    local long, nc = s:path("pwadv-long"), s:path("nc")
    copy(tools.sleeper, long)
    copy(tools.sleeper, nc)
    local rules = s:rules("revshell.lua", EXEC_LOGGER .. ([[
rule { name = "pwadv-revshell", on = "exec", match = { exe = prefix %q },
  when = function(e) return e.cmdline:find("nc.*%%-e.*sh") ~= nil end,
  action = { kill(), alert "reverse shell {cmdline}" } }
]]):format(s.dir .. "/"))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    -- five processes that live 0.5 s with a 300-byte command line
    local arg = ("x"):rep(300 - #long - 5)
    s:sh(("for i in 1 2 3 4 5; do %s 500 %s & done; wait"):format(H.q(long), arg))
    assert.is_true(d:ready(3), d:err())
    local t0 = H.now()
    local out = s:sh(H.q(nc) .. ' -e /bin/sh; echo "status=$?"')
    note("nc -e /bin/sh after five long command lines: %s in %.2f s", out:gsub("%s+$", ""), H.now() - t0)
    assert.is_truthy(out:find("status=137", 1, true), "nc -e /bin/sh was not killed: " .. out .. "\n" .. out_of(d)
      .. tail(d:err()))
  end)

  -- ---- e. one file's memory does not starve another's kill rule ---------

  it_root("a rules file that grows a cache on every event does not stop another file's kill rule", function()
    new_session(false)
    local victim = s:path("pwadv-victim")
    copy(tools.sleeper, victim)
    -- A cache that grows on every event until no more fits: at the cap,
    -- to within 64 bytes (memory errors are caught, so this file itself
    -- never fails and is never suspended).
    local hungry = s:rules("hungry.lua", [[
local cache, full = nil, false
local function grow(n) cache = { cache, ("x"):rep(n) } end
on("exec", function()
  local size = 1 << 20
  while size >= 64 do
    if not pcall(grow, size) then size = size // 2 end
  end
  if not full then full = pcall(log, "notice", "hungry.lua: cache full") end
end)
]])
    local killer = s:rules("killer.lua", EXEC_LOGGER .. ([[
rule { name = "pwadv-kill-victim", on = "exec", match = { exe = %q },
  when = function(e) return e.argv[2] == "3000" end,
  action = { kill(), alert "killed victim {pid}" } }
]]):format(victim))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", hungry, killer }, timeout = 45 }
    -- No probe before: the exec logger beside the kill rule may be starved.
    s:sh("sleep 0.5; i=0; while [ $i -lt 10 ]; do /bin/sleep 0.001; i=$((i+1)); done")
    local full = d:wait_out("hungry.lua: cache full", 10)
    note("hungry.lua said its cache is full: %s", tostring(full))
    for i = 1, 3 do
      local out = s:sh(H.q(victim) .. ' 3000; echo "status=$?"')
      assert.is_truthy(out:find("status=137", 1, true),
        ("victim %d was not killed after hungry.lua hit its cap: %s\n%s"):format(i, out, tail(d:err())))
    end
  end)

  -- ---- f. exe_uid in a deny rule's kill fallback ------------------------

  it_root("deny on exe_uid = not_(0) over the start-up scan kills no process whose exe root owns (live)", function()
    new_session(true)
    local rootexe, userexe = s:path("pwadv-rootowned"), s:path("pwadv-userowned")
    copy(tools.sleeper, rootexe)
    copy(tools.sleeper, userexe)
    sh_ok(("chown %d:%d %s"):format(NOBODY, NOBODY, H.q(userexe)))
    local rootpid = spawn("exec " .. H.q(rootexe) .. " 30000", "rootowned")
    local userpid = spawn("exec " .. H.q(userexe) .. " 30000", "userowned")
    -- the rule judges only this session's binaries: the fallback is live
    local rules = s:rules("uid.lua", EXEC_LOGGER .. ([[
rule { name = "pwadv-nonroot", on = "exec", match = { exe_uid = not_(0), exe = %q },
  action = { deny(), alert "non-root binary {exe}" } }
]]):format(s.dir .. "/pwadv-*"))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d, true)
    H.run("sleep 0.5")
    local root_alive, user_alive = alive(rootpid), alive(userpid)
    note("after the start-up scan: root-owned exe alive=%s, nobody-owned exe alive=%s", tostring(root_alive),
      tostring(user_alive))
    assert.is_true(root_alive, "the fallback killed a process whose exe root owns:\n" .. out_of(d))
    assert.is_false(user_alive, "the process whose exe nobody owns outlived the start-up scan:\n" .. out_of(d))
  end)

  it_root("deny on exe_uid = not_(0) in --dry-run: no \"would deny\" for a binary root owns", function()
    new_session(true)
    local rules = s:rules("uid.lua", EXEC_LOGGER .. [[
rule { name = "pwadv-nonroot", on = "exec", match = { exe_uid = not_(0) },
  action = { deny(), alert "non-root binary {exe}" } }
]])
    local d = s:start { args = { "-o", "json", "--stats", "--dry-run", "--duration", "40", rules }, timeout = 45 }
    ready(d, true)
    assert.are.equal(0, d:stop(), d:err())
    local wrong, seen = {}, 0
    for exe in d:out():gmatch('"msg":"would deny exec of (.-) by pid %d+"') do
      seen = seen + 1
      local owner = H.run("stat -c %u -- " .. H.q(exe) .. " 2>/dev/null"):match("%d+")
      if owner == "0" then wrong[#wrong + 1] = exe end
    end
    note("--dry-run: %d \"would deny\" lines, %d for a root-owned exe", seen, #wrong)
    table.sort(wrong)
    assert.are.same({}, wrong)
  end)

  -- ---- g. a path longer than PATH_MAX ----------------------------------

  it_root("a victim under a 4600-byte path is denied by an exe glob (relative exec and fexecve)", function()
    new_session(true)
    local mk = mkdir(s:path("markers"))
    local d = start_deny("pwadv-deep", "deep victim")
    local function deep(depth, how, marker)
      local out = H.run(("cd %s && timeout 20 %s %d 200 %s pwadv-deep %s %s 2>&1"):format(H.q(s.dir),
        H.q(tools.deep), depth, H.q(tools.raw), how, H.q(mk .. "/" .. marker)))
      local r = report(out)
      r.line = out:gsub("\n$", "")
      return r
    end
    -- control: the same rule, a short path
    local short = deep(0, "rel", "marker.short")
    assert.are.equal(101, short.exit, "the short-path victim was not denied: " .. short.line)
    local results = {}
    for _, how in ipairs { "rel", "fexec" } do
      local r = deep(23, how, "marker." .. how)
      note("deep victim (%s): %s", how, r.line)
      assert.is_true(r.path_len > 4500, r.line)
      results[how] = r
    end
    for _, how in ipairs { "rel", "fexec" } do
      assert.are.equal(0, count_files(mk, "marker." .. how), how .. ": the deep victim ran: " .. results[how].line
        .. "\n" .. out_of(d))
      assert.are.equal(101, results[how].exit, how .. ": not denied: " .. results[how].line)
    end
  end)

  -- ---- h. a tmpfs mounted in a new user+mount namespace -----------------

  it_root("unshare -Urm, then in a shell a tmpfs mount, a copy of the raw victim and its exec: denied 50 times of 50",
    function()
    local mk, mnt, victim = mount_session("nsmnt", true)
    local d = start_deny("pwadv-nsraw", "ns victim")
    local out = unshare_shell {
      vars = { MNT = mnt, RAW = victim, MK = mk },
      setup = { 'mount -t tmpfs pwadv "$MNT"', 'cp "$RAW" "$MNT/pwadv-nsraw"' }, pause = 0.1,
      try = '"$MNT/pwadv-nsraw" "$MK/marker.$i"', n = 50,
    }
    local tries = select(2, out:gsub("try %d+ rc=", ""))
    local denied = select(2, out:gsub("try %d+ rc=126", ""))
    local markers = count_files(mk, "marker.")
    note("unshare -Urm shell: %d tries, %d denied, %d markers", tries, denied, markers)
    assert.are.equal(50, tries, "the shell did not run its tries: " .. tail(out))
    assert.are.equal(0, markers, ("the victim reached its marker %d times of 50 (%d denied)\n%s"):format(markers,
      denied, tail(out_of(d))))
    assert.are.equal(50, denied, tail(out))
  end)

  it_root("unshare + mount + write + exec in one static program, 200 times: how many ran (measured, a known limit)",
    function()
    local mk, mnt = mount_session("nsmnt", false)
    start_deny("pwadv-nsone", "ns victim")
    local out = H.run(("timeout -k 2 60 %s%s %s %s 200 %s 2>&1"):format(AS_NOBODY, H.q(tools.nsexec), H.q(tools.raw),
      H.q(mk), H.q(mnt)))
    local r = report(out)
    say("single program (unshare, mount a tmpfs, write, exec) 200 times: %d reached their marker, %d ran to exit 0, "
      .. "%d denied, %d killed, %d other", r.markers or -1, r.ran or -1, r.eperm or -1, r.killed or -1, r.other or -1)
    assert.are.equal(200, r.runs, out)
    assert.are.equal(0, r.other, "steps before the exec failed: " .. out)
  end)

  -- ---- i. a stacked mount ------------------------------------------------

  it_root("a victim on a tmpfs covered by another mount, run through its cwd: later execs denied, never left unmarked",
    function()
    local mk, x, victim = mount_session("stack", true)
    local d = start_deny("pwadv-stacked", "stacked victim")
    local out = unshare_shell {
      vars = { X = x, RAW = victim, MK = mk },
      setup = { 'mount -t tmpfs pwadv-a "$X" && cp "$RAW" "$X/pwadv-stacked" && cd "$X" && '
        .. 'mount -t tmpfs pwadv-b "$X"' },
      try = './pwadv-stacked "$MK/marker.$i"', after = "sleep 0.3", n = 10,
    }
    local rcs = {}
    for rc in out:gmatch("try %d+ rc=(%d+)") do rcs[#rcs + 1] = tonumber(rc) end
    assert.are.equal(10, #rcs, "the shell did not run its tries: " .. out)
    local undecided = 0
    for _, rc in ipairs(rcs) do
      if rc ~= 126 then undecided = undecided + 1 end
    end
    local uncovered = #H.lines_matching(out_of(d), "pwadv%-stacked.*uncovered")
    note("stacked mount: exit statuses %s; %d uncovered alert lines", table.concat(rcs, " "), uncovered)
    assert.are.equal(126, rcs[#rcs], "the stacked tmpfs was never covered: statuses " .. table.concat(rcs, " ")
      .. "\n" .. tail(out_of(d)))
    assert.is_true(uncovered >= undecided, ("%d execs ran undecided, %d alerts say uncovered:\n%s"):format(undecided,
      uncovered, tail(out_of(d))))
  end)

  -- ---- j. rules files and protect{} ------------------------------------

  it_root("a rules file given through another user's symlink in /tmp is refused, also while the link flips", function()
    new_session(false)
    local good = s:rules("good.lua", EXEC_LOGGER)
    local evildir = mkdir(s:path("eve"), "755", NOBODY)
    local evil = evildir .. "/evil.lua"
    H.write(evil, [[on("exec", function(e) log("warning", "EVIL-LOADED pid={pid}", e) end)]] .. "\n")
    sh_ok(("chown %d:%d %s && chmod 644 %s"):format(NOBODY, NOBODY, H.q(evil), H.q(evil)))
    local link = H.run("mktemp -u /tmp/pwadv-rules.XXXXXX"):gsub("%s+$", "")
    at_end(function() os.execute("rm -f " .. H.q(link) .. " " .. H.q(link .. ".flip")) end)
    sh_ok(("ln -s %s %s && chown -h %d:%d %s"):format(H.q(good), H.q(link), NOBODY, NOBODY, H.q(link)))
    local d = s:start { args = { "-o", "json", "--duration", "20", link }, timeout = 25 }
    local rc = d:wait(2)
    local flips = ""
    if rc == nil then
      -- it runs: the attacker flips the link while the rules are reloaded
      flips = H.run(("%s %s %s %s %s 3 & p=$!; i=0; while [ $i -lt 25 ]; do kill -HUP %d; sleep 0.1; i=$((i+1)); "
        .. "done; wait $p"):format(AS_NOBODY, H.q(tools.flip), H.q(link), H.q(good), H.q(evil), d:pid()))
      d:ready(3)
    end
    local evil_lines = #H.lines_with(d:out(), "EVIL-LOADED")
    note("symlink rules file: start status %s; %s; reloads %d; evil lines %d", tostring(rc), flips:gsub("%s+$", ""),
      select(2, d:err():gsub("rules reloaded", "")), evil_lines)
    assert.are.equal(0, evil_lines, "the attacker's rules ran as root")
    assert.are.equal(2, rc, "a rules path through another user's symlink was not refused:\n" .. tail(d:err()))
  end)

  it_root("a rules file writable by others, under a path whose realpath fails (too long), is refused", function()
    new_session(false)
    -- relative path < PATH_MAX from the session dir, absolute path > PATH_MAX
    local dirs = { "t" }
    for i = 1, 20 do dirs[#dirs + 1] = ("%02d"):format(i) .. ("y"):rep(198) end
    local rel = table.concat(dirs, "/") .. "/" .. ("r"):rep(56) .. ".lua"
    assert.is_true(#rel < 4096 and #s.dir + 1 + #rel > 4095, "path lengths")
    sh_ok(("cd %s && mkdir -p %s && chmod -R 777 t && chown -R %d:%d t"):format(H.q(s.dir),
      H.q(table.concat(dirs, "/")), NOBODY, NOBODY))
    sh_ok(("cd %s && printf '%%s\\n' %s > %s && chown %d:%d %s && chmod 666 %s"):format(H.q(s.dir),
      H.q([[on("exec", function(e) log("warning", "EVIL-LOADED pid={pid}", e) end)]]), H.q(rel), NOBODY, NOBODY,
      H.q(rel), H.q(rel)))
    local d = s:start { args = { "-o", "json", "--duration", "20", rel }, timeout = 25, cwd = s.dir,
      bin = H.abspath(H.bin) }
    local rc = d:wait(2)
    if rc == nil then d:ready(3) end
    local evil_lines = #H.lines_with(d:out(), "EVIL-LOADED")
    note("long-path rules file: start status %s, evil lines %d", tostring(rc), evil_lines)
    assert.are.equal(0, evil_lines, "a world-writable rules file ran as root")
    assert.are.equal(2, rc, "not refused:\n" .. tail(d:err()))
  end)

  it_root("protect { \"*/systemd\" } does not protect a miner named ~/.cache/systemd", function()
    new_session(false)
    local home = s:path("home/eve")
    local miner = home .. "/.cache/systemd"
    mkdir(home .. "/.cache")
    copy(tools.sleeper, miner)
    sh_ok(("chown -R %d:%d %s"):format(NOBODY, NOBODY, H.q(s:path("home"))))
    local rules = s:rules("protect.lua", EXEC_LOGGER .. ([[
protect { "/usr/sbin/sshd", "*/systemd" }
rule { name = "pwadv-miner", on = "exec", match = { exe = %q },
  action = { kill(), alert "miner {exe}" } }
]]):format(miner))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    local out = s:sh(AS_NOBODY .. H.q(miner) .. ' 8000; echo "status=$?"')
    assert.is_truthy(out:find("status=137", 1, true), "the fake systemd was not killed: " .. out .. "\n" .. out_of(d))
  end)

  -- ---- k. a long exe and argv in an alert ------------------------------

  it_root("an alert for a 4000-byte exe with a 100 KB argv keeps rule, priority, pid, user and the kill result",
    function()
    new_session(false)
    local rules = s:rules("long.lua", EXEC_LOGGER .. [[
rule { name = "pwadv-longexe", on = "exec", priority = "critical", match = { exe = "*/pwadv-longexe" },
  when = function(e) return #e.argv > 2 end, -- (a Lua rule: argv is read before the kill)
  action = { kill(), alert "long exe {exe} argv {cmdline} (pid {pid}, user {user})" } }
]])
    local function run_victim()
      local out = H.run(("cd %s && timeout 25 %s 20 200 %s pwadv-longexe abs 8000 100 1000 2>&1"):format(H.q(s.dir),
        H.q(tools.deep), H.q(tools.sleeper)))
      local r = report(out)
      r.line = out:gsub("\n$", "")
      assert.is_true((r.path_len or 0) > 4000 and r.path_len < 4096, r.line)
      assert.are.equal(9, r.signal, "the long-exe victim was not killed: " .. r.line)
      return r
    end
    local function run_daemon(format)
      local d = s:start { args = { "-o", format, "--duration", "40", rules }, timeout = 45 }
      assert.is_true(H.wait_grep(d.out_file, "exec pid=", 5), "no output:\n" .. d:err())
      local r = run_victim()
      assert.is_true(d:wait_out("pwadv-longexe", 3), d:err())
      H.run("sleep 0.3")
      assert.are.equal(0, d:stop(), d:err())
      return d:out(), r.pid
    end
    local text, tpid = run_daemon("text")
    local json_out, jpid = run_daemon("json")
    -- the victim's alert (the message starts with its exe)
    local mark = "long exe " .. s.dir .. "/d00"
    -- JSON: every line parses; the alert has the rule, priority, pid, kill result
    local alerts, broken = {}, {}
    for l in json_out:gmatch("[^\n]+") do
      local obj = json.decode(l)
      if type(obj) ~= "table" then
        broken[#broken + 1] = tail(l, 200)
      elseif obj.rule == "pwadv-longexe" and obj.kind == "alert" and l:find(mark, 1, true) then
        alerts[#alerts + 1] = l
        assert.are.equal("critical", obj.priority)
      end
    end
    note("JSON: %d alert lines, %d lines that do not parse", #alerts, #broken)
    -- text: one line, with the pid, the user and the kill result in it
    local lines = H.lines_matching(text, "critical.*pwadv%-longexe")
    for i = #lines, 1, -1 do
      if not lines[i]:find(mark, 1, true) then table.remove(lines, i) end
    end
    assert.are.equal(1, #lines, "no text alert line:\n"
      .. tail(table.concat(H.lines_with(text, "pwadv-longexe"), "\n"), 8000))
    local line = lines[1]
    note("text alert: %d bytes", #line)
    assert.is_truthy(line:find("%f[%d]" .. tpid .. "%f[%D]"), "text: the pid is missing: " .. tail(line, 400))
    assert.is_truthy(line:find("root", 1, true), "text: the user is missing: " .. tail(line, 400))
    assert.is_truthy(line:find("killed", 1, true), "text: the kill result is missing: " .. tail(line, 400))
    assert.are.same({}, broken)
    assert.are.equal(1, #alerts, tail(json_out))
    assert.is_truthy(alerts[1]:find("%f[%d]" .. jpid .. "%f[%D]"), "JSON: the pid is missing: " .. tail(alerts[1], 400))
    assert.is_truthy(alerts[1]:find("killed", 1, true), "JSON: the kill result is missing: " .. tail(alerts[1], 400))
  end)

  -- ---- l. a gmatch pattern whose ^ is no anchor --------------------------

  it_root("a `^`-prefixed gmatch over an attacker's command line does not hold the loop", function()
    new_session(false)
    local probe = s:path("pwadv-probe") -- lives 5 s: its command line is read for sure
    copy(tools.sleeper, probe)
    local rules = s:rules("bomb.lua", EXEC_LOGGER .. ([[
rule { name = "pwadv-bomb", on = "exec", match = { exe = %q },
  when = function(e)
    local n = 0
    for _ in e.cmdline:gmatch("^.-.-z") do n = n + 1 end
    return n > 0
  end,
  action = { alert "bomb {pid}" } }
]]):format(probe))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    -- a command line of 3161 bytes: the largest an anchored "^.-.-z" is allowed
    local arg = ("^"):rep(3161 - #probe - 1)
    spawn("exec " .. H.q(probe) .. " " .. arg, "bomb")
    H.run("sleep 0.2")
    local t0 = H.now()
    local ok = d:ready(2) -- the budget is 250 ms; 2 s leaves room for ASan builds
    note("probe after the gmatch bomb logged: %s (%.2f s)", tostring(ok), H.now() - t0)
    assert.is_true(ok, "the loop handled no event within 2 s of the bomb:\n" .. tail(d:err()))
  end)
end)
