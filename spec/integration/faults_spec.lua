-- Faults, each with a spec (issue 9): what the daemon does when the kernel
-- drops events, when an output fails, when processes vanish (or their pid
-- is taken by another process) before /proc is read, and when a rule hits
-- the Lua memory cap: procwarden(8) (--rcvbuf, --log, --stats, "every drop
-- has a counter") and procwarden-rules(5) (the event table, budgets).
-- Root only: as any other user every test here is pending.
--
-- Helper programs are C sources in spec/integration/faults/, compiled once
-- into a temp dir with cc (nothing prebuilt):
--   storm.c   two pthread workers creating and joining threads for N s
--   reuse.c   runs a program as pid P, reaps it, then another one as the
--             same pid P (through /proc/sys/kernel/ns_last_pid)
--
-- Known bugs are reported pending ("known bug: ...") so `make check` stays
-- green until they are fixed; PW_STRICT=1 makes them fail.
-- PW_SPEC_SCALE (default 1) scales the storms; an ASan build (PW_BUILD
-- naming "asan") gets longer deadlines.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

local SCALE = tonumber(os.getenv("PW_SPEC_SCALE") or "") or 1
local SLOW = H.build:find("asan", 1, true) and 3 or 1
local function scaled(n, min) return math.max(min or 1, math.floor(n * SCALE + 0.5)) end
local STORM_SECONDS = math.max(0.5, 1.5 * SCALE) -- thread storm length
local STORM_EXECS = scaled(300, 50)               -- /bin/true runs per shell

-- A test that documents a known bug: a failure is reported as pending
-- ("known bug: note (first line)"), unless PW_STRICT is set.
local lines_matching, EXEC_LOGGER = H.lines_matching, H.EXEC_LOGGER
local function known_bug(note, fn) return H.known_bug(pending, note, fn) end

local function copy(from, to)
  assert(os.execute(("cp %s %s && chmod 755 %s"):format(H.q(from), H.q(to), H.q(to))), "cp " .. to)
end

-- Is pid alive, and running exe? (readlink of /proc/PID/exe)
local function runs(pid, exe)
  local out = H.run("readlink /proc/" .. pid .. "/exe 2>/dev/null")
  return out:gsub("\n$", "") == exe
end

-- ---- the helper programs, built once ---------------------------------------

local tools -- { session, storm, reuse }

local function build_tools()
  tools = tools or H.build_tools {
    storm = { "-O1", "-Wall", "-pthread", here .. "faults/storm.c" },
    reuse = { "-O1", "-Wall", here .. "faults/reuse.c" },
  }
  return tools
end

local free_pid = H.free_pid

describe("faults (root)", function()
  local s

  before_each(function()
    if not is_root then return end
    build_tools()
    s = H.session()
  end)

  after_each(H.end_test)
  lazy_teardown(H.end_file)

  -- ---- 1. the kernel drops events --------------------------------------------

  -- One daemon with a 4 KiB receive buffer through a thread storm, shared
  -- by the tests below (run by the first that needs it).
  local overflow_run
  local function run_overflow()
    if overflow_run then return overflow_run end
    local rules = s:rules("overflow.lua", EXEC_LOGGER .. [[
on("overflow", function(e) log("warning", "overflow lost=" .. tostring(e.lost), e) end)
]])
    local d = s:start { args = { "--rcvbuf", "4096", "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    local t0 = H.now()
    -- (not under make sanitize's preloaded libasan: the storm must run at full speed)
    local out, code = H.run(("timeout 30 env -u LD_PRELOAD %s %s"):format(H.q(tools.storm), STORM_SECONDS))
    assert.are.equal(0, code, "storm: " .. out)
    local threads = tonumber(out:match("threads=(%d+)")) or 0
    -- The resync runs 0.2 s after the burst was read.
    local rebuilt = H.wait_grep(d.err_file, "process table rebuilt from /proc after an overflow", 10 * SLOW)
    local rc = d:stop(10 * SLOW)
    overflow_run = { rc = rc, out = d:out(), err = d:err(), stats = d:stats() or {}, threads = threads,
      rebuilt = rebuilt, seconds = H.now() - t0 }
    return overflow_run
  end

  it_root("a thread storm through a 4 KiB receive buffer: overflow logged, counted, handed to rules, "
    .. "and the process table rebuilt", function()
    local r = run_overflow()
    assert.is_true(r.threads > 1000, "the storm made only " .. r.threads .. " threads")
    assert.are.equal(0, r.rc, r.err)
    local st = r.stats
    assert.is_true((st.enobufs or 0) >= 1, "enobufs: " .. tostring(st.enobufs))
    assert.is_true((st.events_overflow or 0) >= 1, "events_overflow: " .. tostring(st.events_overflow))
    assert.is_true(#lines_matching(r.err, "procwarden: warning: the kernel dropped events") >= 1, r.err:sub(1, 2000))
    -- The rule's handler got the overflow events, each with lost >= 1.
    local lost = {}
    for n in r.out:gmatch('"msg":"overflow lost=([^"]*)"') do lost[#lost + 1] = n end
    assert.is_true(#lost >= 1, "no overflow event reached on(\"overflow\")")
    for _, n in ipairs(lost) do
      assert.is_truthy(tonumber(n) and tonumber(n) >= 1, "an overflow event with lost=" .. n)
    end
    -- Every overflow event went through the rules (one handler line each).
    assert.are.equal(st.events_overflow, #lost)
    -- Resync: the table was rebuilt from /proc (the start-up scan was the first).
    assert.is_true(r.rebuilt, "no resync line on stderr:\n" .. r.err:sub(-2000))
    assert.is_true((st.proc_scans or 0) >= 2, "proc_scans: " .. tostring(st.proc_scans))
  end)

  it_root("a sustained overflow does not flood stderr with one warning per dropped burst", function()
    local r = run_overflow()
    local warnings = #lines_matching(r.err, "the kernel dropped events")
    local enobufs = r.stats.enobufs or 0
    assert.is_true(enobufs >= 10, "too few overflows to judge (" .. enobufs .. ")")
    assert.is_true(warnings <= 2 + r.seconds / 5,
      ("%d 'kernel dropped events' warnings in %.1f s for %d overflows"):format(warnings, r.seconds, enobufs))
  end)

  -- ---- 2. outputs that fail --------------------------------------------------

  it_root("--log /dev/full: failures counted, reported on stderr at most every 10 s, and a kill rule "
    .. "still kills", function()
    local victim = s:path("victim")
    copy("/bin/sleep", victim)
    local rules = s:rules("full.lua", EXEC_LOGGER .. ([[
rule { name = "kill-victim", on = "exec", match = { exe = %q }, action = { kill(), alert "killed {pid}" } }
]]):format(victim))
    -- Readiness from stderr: the outputs go nowhere. -v says when the
    -- start-up scan is done (after the subscription).
    local d = s:start { args = { "-v", "--log", "/dev/full", "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(H.wait_grep(d.err_file, "processes running at start", 5 * SLOW), d:err())
    local t0 = H.now()
    -- Lines to write (each exec is logged) and the victim.
    local out = s:sh(([[
for i in $(seq 100); do /bin/true; done
%s 5; echo "victim=$?"]]):format(H.q(victim)))
    assert.is_truthy(out:find("victim=137", 1, true), "the victim was not killed by SIGKILL: " .. out)
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local elapsed = H.now() - t0 + 1
    local st = assert(d:stats(), "no --stats:\n" .. d:err())
    assert.is_true(st.output_failures >= 100, "output_failures: " .. tostring(st.output_failures))
    assert.is_true(st.signals_sent >= 1)
    -- Reported, naming the target and the error, but not once per line.
    local reports = lines_matching(d:err(), "output /dev/full: No space left on device")
    assert.is_true(#reports >= 1, "no report of the failing output:\n" .. d:err():sub(1, 3000))
    assert.is_true(#reports <= 1 + math.ceil(elapsed / 10),
      ("%d report lines in %.1f s (%d failures)"):format(#reports, elapsed, st.output_failures))
    assert.matches("%(%d+ lines? lost since the last report%)", reports[1])
  end)

  it_root("stdout is a pipe whose reader is gone: no death by SIGPIPE, exit 0 at --duration", function()
    local rules = s:rules("pipe.lua", EXEC_LOGGER)
    local rc_file, err_file = s:path("pipe.rc"), s:path("pipe.err")
    -- Execs (so lines to write) once `true` has long exited.
    os.execute(("( sleep 1; for i in $(seq 20); do /bin/true; done ) >/dev/null 2>&1 </dev/null &"))
    local inner = ("timeout -k 2 %d %s --stats -o json --duration %s %s 2>%s; echo $? > %s"):format(
      20 * SLOW, H.q(H.abspath(H.bin)), 2.5 * SLOW, H.q(rules), H.q(err_file), H.q(rc_file))
    H.run("sh -c " .. H.q(inner) .. " </dev/null | true")
    local err = H.read(err_file)
    -- The daemon's own status: 141 would be SIGPIPE, 124 the timeout.
    assert.are.equal("0", H.read(rc_file):match("%d+"), err)
    local st = assert(H.stats(err), "no --stats:\n" .. err)
    assert.is_true(st.output_failures >= 1, "nothing was written after the reader left")
    assert.is_true(#lines_matching(err, "output stdout: Broken pipe") >= 1, err:sub(1, 2000))
  end)

  -- One daemon with --log syslog (and stdout) while no syslog daemon listens.
  local syslog_run
  local function run_syslog()
    if syslog_run then return syslog_run end
    local victim = s:path("victim")
    copy("/bin/sleep", victim)
    local rules = s:rules("syslog.lua", EXEC_LOGGER .. ([[
rule { name = "kill-victim", on = "exec", match = { exe = %q }, action = { kill(), alert "killed {pid}" } }
]]):format(victim))
    local d = s:start { args = { "--log", "syslog", "--log", "stdout", "--stats", "--duration", "60", rules },
      timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    local out = s:sh(H.q(victim) .. ' 5; echo "victim=$?"')
    local alive = not d:done()
    local rc = d:stop(10 * SLOW)
    syslog_run = { out = out, alive = alive, rc = rc, dout = d:out(), err = d:err(), stats = d:stats() or {},
      devlog = os.execute("test -S /dev/log") == true }
    return syslog_run
  end

  it_root("--log syslog with no syslog daemon: the daemon keeps running and handling events", function()
    local r = run_syslog()
    assert.is_truthy(r.out:find("victim=137", 1, true), "the victim was not killed by SIGKILL: " .. r.out)
    assert.is_true(r.alive, "the daemon died:\n" .. r.err)
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(1, #lines_matching(r.dout, '"rule":"kill%-victim".*"msg":"killed %d+'), r.dout:sub(1, 2000))
    assert.is_true(r.stats.signals_sent >= 1)
  end)

  it_root("--log syslog with no syslog daemon: the lost lines are counted", function()
    local r = run_syslog()
    if r.devlog then
      pending("a syslog daemon listens on /dev/log here: nothing is lost")
      return
    end
    assert.is_true((r.stats.output_failures or 0) >= 1,
      "output_failures = " .. tostring(r.stats.output_failures) .. " with no /dev/log")
  end)

  it_root("an exe path that is not UTF-8 still gets its JSON alert (not dropped silently)", function()
    local victim = s.dir .. "/bad\255name"
    copy("/bin/sleep", victim)
    local rules = s:rules("utf8.lua", EXEC_LOGGER .. ([[
rule { name = "odd-name", on = "exec", match = { exe = %q }, action = alert "ran {exe} pid {pid}" }
]]):format(s.dir .. "/bad*"))
    local d = s:start { args = { "--stats", "-o", "json", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    s:sh(H.q(victim) .. " 0.3")
    d:wait_out('"rule":"odd-name"', 3 * SLOW)
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local fired = tonumber(d:err():match("odd%-name%s+exec%s+fired (%d+)") or "0")
    assert.are.equal(1, fired, "the rule did not fire:\n" .. d:err())
    local found = lines_matching(d:out(), '"rule":"odd%-name"')
    local st = d:stats() or {}
    assert.is_true(#found == 1 or (st.output_failures or 0) >= 1,
      ("no odd-name line in stdout, output_failures %s"):format(tostring(st.output_failures)))
    assert.are.equal(1, #found, "the alert was counted as a failure, but not written")
  end)

  -- ---- 3. processes that vanish before /proc is read -------------------------

  it_root("lazy fields in a storm of short-lived processes: no errors, and a gone process "
    .. "never shows another's values", function()
    local storm_true = s:path("storm-true")
    copy("/bin/true", storm_true)
    -- Reads many lazy fields of every exec and exit. Logs (V lines) the
    -- events whose process was gone at the first look, this storm's, and
    -- any exit whose exe differs from what its exec showed (MISMATCH).
    local rules = s:rules("vanish.lua", EXEC_LOGGER .. ([[
local MINE = %q
local seen = {} -- pid -> exe at its exec (until its exit)
local function look(e)
  local r = { v1 = e.valid }
  local argv = e.argv
  r.exe, r.argv1, r.cwd, r.user = e.exe, argv and argv[1], e.cwd, e.user
  local p = e.parent
  r.pexe = p and p.exe
  r.stdin, r.env = e.stdin, e.env
  r.v2 = e.valid
  return r
end
local function show(kind, e, r, extra)
  log("info", ("V kind=%%s pid=%%d v1=%%s v2=%%s exe=%%s argv1=%%s cwd=%%s stdin=%%s env=%%s%%s"):format(kind, e.pid,
    tostring(r.v1), tostring(r.v2), tostring(r.exe), tostring(r.argv1), tostring(r.cwd), tostring(r.stdin),
    r.env and "set" or "nil", extra or ""))
end
on("exec", function(e)
  local r = look(e)
  seen[e.pid] = r.exe
  if r.v1 == false or r.exe == MINE then show("exec", e, r) end
end)
on("exit", function(e)
  if e.thread then return end
  local r = look(e)
  local before = seen[e.pid]
  seen[e.pid] = nil
  local bad = before ~= nil and r.exe ~= nil and before ~= r.exe
  if bad or r.v1 == false or r.exe == MINE then
    show("exit", e, r, bad and (" MISMATCH exec_exe=" .. before) or "")
  end
end)
on("overflow", function() seen = {} end) -- exits may be lost: start over
]]):format(storm_true))
    local duration = 4 + 2 * SLOW
    local d = s:start { args = { "--stats", "-o", "json", "--duration", tostring(duration), rules },
      timeout = duration + 20 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    s:sh(([[
cd "$D"
for s in 1 2; do (for i in $(seq %d); do %s; done) & done
wait]]):format(STORM_EXECS, H.q(storm_true)))
    local rc = d:wait(duration + 10)
    local err = d:err()
    assert.are.equal(0, rc, "exit status at --duration:\n" .. err:sub(-3000))
    local st = assert(d:stats(), "no --stats:\n" .. err)
    assert.are.equal(0, st.handler_errors, err:sub(1, 3000))
    assert.is_nil(err:find("failed:", 1, true), err:sub(1, 3000))
    local mine, gone = 0, 0
    for line in d:out():gmatch("[^\n]+") do
      local msg = line:match('"msg":"(V kind=[^"]*)"')
      if msg then
        local f = {}
        for k, v in msg:gmatch("(%w+)=(%S+)") do f[k] = v end
        assert.is_nil(msg:find("MISMATCH", 1, true), "an exit shows another program than its exec: " .. msg)
        if f.exe == storm_true then mine = mine + 1 end
        -- exec and exit exe of this storm can only be storm-true
        if f.argv1 == storm_true then assert.is_truthy(f.exe == storm_true or f.exe == "nil", msg) end
        if f.v1 == "false" then
          gone = gone + 1
          -- gone at the first look: no live-only field, and still gone
          assert.are.equal("nil", f.cwd, msg)
          assert.are.equal("nil", f.stdin, msg)
          assert.are.equal("nil", f.env, msg)
          assert.are.equal("false", f.v2, msg)
        end
      end
    end
    assert.is_true(mine >= 1, "no event of the storm's own binary was seen")
    assert.is_true(gone >= 1, "no event of a vanished process: the storm did not test anything")
  end)

  -- A daemon stopped (SIGSTOP) while process X runs as pid P and exits,
  -- and Y takes the same pid P; continued, it handles X's events while
  -- /proc/P is Y. mode "exec": X execs storm-true; mode "fork": X is a
  -- fork that exits without exec. Returns what the rules logged for P.
  local function recycled_during_stop(mode)
    local xtrue, ysleep = s:path("x-true"), s:path("y-sleep")
    copy("/bin/true", xtrue)
    copy("/bin/sleep", ysleep)
    local pid = free_pid()
    local rules = s:rules("recycle.lua", EXEC_LOGGER .. ([[
local P = %d
local function show(kind, e)
  local v1 = e.valid
  local argv = e.argv
  log("info", ("R kind=%%s v1=%%s exe=%%s argv1=%%s cwd=%%s stdin=%%s env=%%s"):format(kind, tostring(v1),
    tostring(e.exe), tostring(argv and argv[1]), tostring(e.cwd), tostring(e.stdin), e.env and "set" or "nil"))
end
on("exec", function(e) if e.pid == P then show("exec", e) end end)
on("exit", function(e) if e.pid == P and not e.thread then show("exit", e) end end)
]]):format(pid))
    -- A big buffer: the stopped daemon must lose nothing of a busy machine.
    local d = s:start { args = { "--rcvbuf", tostring(256 << 20), "--stats", "--duration", "60", rules },
      timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    local first = mode == "exec" and xtrue or "-"
    local report = s:path("reuse.out")
    d:signal("STOP")
    local ok = pcall(function()
      -- Y sleeps 30 s; the helper waits for it in the background.
      os.execute(("timeout 40 %s %d %s -- %s 30 >%s 2>&1 </dev/null &"):format(H.q(tools.reuse), pid,
        H.q(first), H.q(ysleep), H.q(report)))
      assert.is_true(H.wait_grep(report, "^second=", 10), "reuse: " .. H.read(report))
    end)
    d:signal("CONT")
    assert.is_true(ok, "reuse: " .. H.read(report))
    local text = H.read(report)
    if text:find("second=none", 1, true) then
      d:stop()
      return nil, "pid " .. pid .. " could not be had twice: " .. text
    end
    assert.are.equal(tostring(pid), text:match("second=(%d+)"), text)
    assert.is_true(d:wait_out('"msg":"R kind=exec v1=[a-z]+ exe=[^ ]*/y-sleep ', 5 * SLOW),
      "Y's exec was not seen:\n" .. d:out():sub(-2000))
    H.run("sleep 0.3")
    -- P's events so far (before Y is killed and exits).
    local events = {}
    for msg in d:out():gmatch('"msg":"(R kind=[^"]*)"') do
      local f = { msg = msg }
      for k, v in msg:gmatch("(%w+)=(%S+)") do f[k] = v end
      events[#events + 1] = f
    end
    local y_alive = runs(pid, ysleep)
    if y_alive then os.execute("kill -KILL " .. pid) end
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local msgs = {}
    for i, f in ipairs(events) do msgs[i] = f.msg end
    return { events = events, all = table.concat(msgs, "\n"), xtrue = xtrue, ysleep = ysleep, pid = pid,
      y_alive = y_alive, err = d:err() }
  end

  it_root("pid recycled before the exit is handled (fork, no exec): the exit event is not the new process",
    function()
    local r, why = recycled_during_stop("fork")
    if not r then
      pending(why)
      return
    end
    assert.is_true(r.y_alive, "Y did not survive")
    -- Events of P in order: X's exit (X never exec'd), then Y's exec.
    local x_exit
    for _, f in ipairs(r.events) do
      if f.kind == "exit" then x_exit = x_exit or f end
    end
    assert.is_truthy(x_exit, "no exit event of X:\n" .. r.all)
    local last = r.events[#r.events]
    assert.is_true(last.kind == "exec" and last.exe == r.ysleep, "Y's exec is not the pid's last event:\n" .. r.all)
    -- An exit event's process is never valid: nothing is read from Y.
    assert.are.equal("false", x_exit.v1, x_exit.msg)
    assert.are.equal("nil", x_exit.cwd, x_exit.msg)
    assert.are.equal("nil", x_exit.stdin, x_exit.msg)
    assert.are.equal("nil", x_exit.env, x_exit.msg)
  end)

  it_root("pid recycled before an exec is handled: the exec and exit of X never show Y's program", function()
    local r, why = recycled_during_stop("exec")
    if not r then
      pending(why)
      return
    end
    assert.is_true(r.y_alive, "Y did not survive")
    local all = r.all
    -- P's events: X's exec, X's exit, Y's exec (Y still runs: no exit).
    local execs, exits = {}, {}
    for _, f in ipairs(r.events) do
      if f.kind == "exec" then execs[#execs + 1] = f else exits[#exits + 1] = f end
    end
    assert.are.equal(2, #execs, all)
    assert.are.equal(1, #exits, all)
    assert.are.equal(r.ysleep, execs[2].exe, all)
    assert.are.equal("true", execs[2].v1, all)
    local x_exec, x_exit = execs[1], exits[1]
    assert.are.equal("false", x_exit.v1, all)
    assert.are.equal("nil", x_exit.cwd, all)
    assert.are.equal("nil", x_exit.env, all)
    -- X's exec, read from /proc after Y took the pid: known stale only when
    -- Y's fork came in the same batch of events (the usual case here).
    known_bug("identity is pid + start time in 10 ms ticks: an exec whose pid is reused within the same tick, "
      .. "the new process's fork in a later batch, shows the new program", function()
      assert.is_truthy(x_exec.exe == r.xtrue or x_exec.exe == "nil", "X's exec shows " .. x_exec.exe .. ":\n" .. all)
      assert.is_truthy(x_exec.argv1 ~= r.ysleep, "X's exec shows Y's argv:\n" .. all)
      assert.is_truthy(x_exit.exe == r.xtrue or x_exit.exe == "nil", "X's exit shows " .. x_exit.exe .. ":\n" .. all)
    end)
  end)

  -- ---- 4. the Lua memory cap -------------------------------------------------

  it_root("a handler that hoards memory mid-storm: its calls fail, the daemon lives, other rules fire", function()
    local victim = s:path("still-sleep")
    copy("/bin/sleep", victim)
    -- 1 MiB more per exec, captured by the closure and never freed: the
    -- 128 MiB cap is reached within the start-up scan and the storm.
    local rules = s:rules("hoard.lua", EXEC_LOGGER .. ([[
local hoard = {}
on("exec", function(e)
  hoard[#hoard + 1] = string.rep("m", 1 << 20) .. #hoard
end)
rule { name = "still-alerting", on = "exec", match = { exe = %q }, action = alert "still here {pid}" }
]]):format(victim))
    local d = s:start { args = { "--stats", "-o", "json", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    os.execute(("( for s in 1 2; do (for i in $(seq %d); do /bin/true; done) & done; wait ) >/dev/null 2>&1 &")
      :format(STORM_EXECS))
    assert.is_true(H.wait_grep(d.err_file, "not enough memory", 10 * SLOW),
      "the cap was never hit:\n" .. d:err():sub(1, 2000))
    -- Victims long-lived enough to be captured, after the cap was hit,
    -- even while the loop is still behind the storm (ASan, a loaded host).
    local pids = {}
    for i = 1, 3 do
      pids[i] = s:sh(H.q(victim) .. " 1 & echo $!; wait"):match("%d+")
    end
    for _, pid in ipairs(pids) do
      assert.is_true(d:wait_out('"msg":"still here ' .. pid .. '"', 5 * SLOW),
        "no alert for victim " .. pid .. " after the cap was hit:\n" .. d:err():sub(-2000))
    end
    assert.is_false(d:done(), "the daemon died:\n" .. d:err():sub(-2000))
    assert.are.equal(0, d:stop(10 * SLOW), d:err():sub(-2000))
    local st = assert(d:stats(), "no --stats:\n" .. d:err():sub(-2000))
    assert.is_true(st.lua_alloc_refused >= 1, "lua_alloc_refused: " .. tostring(st.lua_alloc_refused))
    assert.is_true(st.handler_errors >= 1)
    local err = d:err()
    assert.is_truthy(err:find("hoard.lua:3 failed: not enough memory", 1, true)
      or err:find("hoard.lua:%d+.-not enough memory"), err:sub(1, 2000))
    assert.is_truthy(err:match("still%-alerting%s+exec%s+fired (%d+)"), err:sub(-1000))
    assert.is_true(tonumber(err:match("still%-alerting%s+exec%s+fired (%d+)")) >= 3)
  end)

  it_root("an exec() whose output no longer fits under the cap: on_exit fails, the daemon lives", function()
    -- The rules fill their file's share of the Lua state's cap (1 MiB per
    -- timer call, far under the call budget even on a sanitizer build) but
    -- 32 KiB: room for rules to
    -- run, not for the trigger's 60,000-byte stdout (charged to the file
    -- that started the command). Copying that output into Lua
    -- fails; it must fail as a call does (counted, logged), not outside a
    -- protected call, which aborts the daemon.
    local trigger, victim = s:path("trigger"), s:path("still-sleep")
    copy("/bin/sleep", trigger)
    copy("/bin/sleep", victim)
    local rules = s:rules("full.lua", ([[
local TRIGGER, VICTIM = %q, %q
local hoard, ran = {}, false
local function grow(n) hoard[#hoard + 1] = string.rep("m", n) end
local function fill()
  local mine = stats().lua_files[1] -- this file's memory and share of the cap
  if mine.share - mine.memory > 2 << 20 then
    grow(1 << 20)
    after(0.001, fill)
    return
  end
  -- to the brim (a refused allocation collects all garbage first), but a
  -- 32 KiB reserve given back at the end
  local reserve = string.rep("r", 32768)
  local size = 256 << 10
  while size >= 64 do
    if not pcall(grow, size) then size = size // 2 end
  end
  reserve = nil -- luacheck: ignore
  log("notice", "hoard full")
end
after(0.01, fill)
on("exec", function(e)
  if e.exe ~= TRIGGER then return end
  -- allocates nothing: had the copy fit, nothing after it could fail
  exec({ "/bin/sh", "-c", "head -c 60000 /dev/zero | tr '\\0' x" }, { on_exit = function() ran = true end })
end)
on("exec", function(e)
  if e.exe == VICTIM then log("notice", "still here " .. e.pid .. ", on_exit ran: " .. tostring(ran)) end
end)
]]):format(trigger, victim))
    local d = s:start { args = { "--stats", "-o", "json", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:wait_out('"msg":"hoard full', 20 * SLOW), "the hoard never filled:\n" .. d:err():sub(-2000))
    s:sh(H.q(trigger) .. " 0")
    assert.is_true(H.wait_grep(d.err_file, "exec on_exit exec /bin/sh failed: not enough memory", 10 * SLOW),
      "on_exit did not fail for memory:\n" .. d:err():sub(-2000) .. d:out():sub(-1000))
    assert.is_false(d:done(), "the daemon died:\n" .. d:err():sub(-2000))
    local pid = s:sh(H.q(victim) .. " 1 & echo $!; wait"):match("%d+")
    assert.is_true(d:wait_out('"msg":"still here ' .. pid .. ', on_exit ran: false"', 5 * SLOW),
      "no line after the failed on_exit, or on_exit ran after all:\n" .. d:err():sub(-2000) .. d:out():sub(-1000))
    assert.are.equal(0, d:stop(10 * SLOW), d:err():sub(-2000))
    local st = assert(d:stats(), "no --stats:\n" .. d:err():sub(-2000))
    assert.is_true(st.handler_errors >= 1, "handler_errors " .. tostring(st.handler_errors))
  end)
end)
