-- Actions against real processes (issue 6; procwarden-rules(5) ACTIONS):
-- kill through a pidfd after a start-time check, protect{},
-- the refusals (pid 1, kernel threads, procwarden itself), a recycled pid
-- never hit, exec() with a timeout and captured stdout, and --dry-run.
-- Root only: as any other user every test here is pending (the one
-- --check test runs for anyone).
--
-- Every rule matches only copies of system binaries in this spec's own
-- temp directory, so no other process on the machine is touched. The pid
-- recycling test uses spec/integration/faults/reuse.c (compiled with cc
-- into a temp dir), which runs a program as a chosen pid and, once it is
-- reaped, another one as the same pid.
--
-- Known bugs are reported pending ("known bug: ...") so `make check` stays
-- green until they are fixed; PW_STRICT=1 makes them fail. PW_SPEC_SCALE
-- (default 1) scales the number of kills (50 at 1).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

local SCALE = tonumber(os.getenv("PW_SPEC_SCALE") or "") or 1
local SLOW = H.build:find("asan", 1, true) and 3 or 1
local KILLS = math.max(10, math.floor(50 * SCALE + 0.5))

local function known_bug(note, fn) return H.known_bug(pending, note, fn) end
local lines_matching, EXEC_LOGGER = H.lines_matching, H.EXEC_LOGGER

-- Escape a literal for a Lua pattern.
local function lit(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

local function copy(from, to)
  assert(os.execute(("cp %s %s && chmod 755 %s"):format(H.q(from), H.q(to), H.q(to))), "cp " .. to)
end

-- Is pid alive (not a zombie) and running exe?
local function runs(pid, exe)
  local stat = H.read("/proc/" .. pid .. "/stat")
  local state = stat:match("^%d+ %b() (%a)")
  if state == nil or state == "Z" or state == "X" then return false end
  return (H.run("readlink /proc/" .. pid .. "/exe 2>/dev/null"):gsub("\n$", "")) == exe
end

-- Seconds of the day of an output line's "time" (…THH:MM:SS.mmmZ).
local function line_time(line)
  local h, m, sec = line:match('"time":"%d+%-%d+%-%d+T(%d+):(%d+):([%d.]+)Z"')
  assert(h, "no time in " .. line)
  return tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(sec)
end

local free_pid = H.free_pid

local tools -- { session, reuse }

local function build_tools()
  tools = tools or H.build_tools { reuse = { "-O1", "-Wall", here .. "faults/reuse.c" } }
  return tools
end

describe("actions (root)", function()
  local s

  before_each(function()
    if not is_root then return end
    s = H.session()
  end)

  after_each(H.end_test)
  lazy_teardown(H.end_file)

  it_root(("a forbidden binary started %d times is killed by SIGKILL every time"):format(KILLS), function()
    local victim = s:path("forbidden")
    copy("/bin/sleep", victim)
    local rules = s:rules("forbid.lua", EXEC_LOGGER .. ([[
rule { name = "forbidden", on = "exec", match = { exe = %q }, action = { kill(), alert "forbidden {pid}" } }
]]):format(victim))
    local d = s:start { args = { "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    -- The shell's wait status of each run: 137 = killed by SIGKILL. A
    -- victim that is not killed sleeps 5 s (and the 10 s limit shows it).
    local out = s:sh(("for i in $(seq %d); do %s 5; echo \"status=$?\"; done"):format(KILLS, H.q(victim)))
    local statuses = {}
    for st in out:gmatch("status=(%d+)") do statuses[#statuses + 1] = tonumber(st) end
    assert.are.equal(KILLS, #statuses, "runs that ended: " .. out)
    for i, st in ipairs(statuses) do
      assert.are.equal(137, st, "run " .. i .. " of " .. KILLS .. " was not killed by SIGKILL")
    end
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local st = assert(d:stats(), "no --stats:\n" .. d:err())
    assert.is_true(st.signals_sent >= KILLS, "signals_sent " .. st.signals_sent)
    -- an exe glob and kill() alone: sent from C at the exec event, reported once by the rule
    assert.are.equal(KILLS, st.signals_hot_path, "signals_hot_path " .. tostring(st.signals_hot_path))
    assert.are.equal(KILLS, #lines_matching(d:out(), '"kind":"action".*"msg":"killed pid %d+ %(' .. lit(victim)
      .. '%) with SIGKILL'))
    assert.are.equal(KILLS, #lines_matching(d:out(), '"kind":"alert".*"msg":"forbidden %d+ %[killed%]"'))
  end)

  -- One daemon with protect{} and a kill rule on the same binary, shared
  -- by the two tests below.
  local protect_run
  local function run_protect()
    if protect_run then return protect_run end
    local protected = s:path("protected-sleep")
    copy("/bin/sleep", protected)
    local rules = s:rules("protect.lua", EXEC_LOGGER .. ([[
protect { %q }
rule { name = "kill-it", on = "exec", match = { exe = %q }, action = { kill(), alert "tried {pid}" } }
]]):format(s.dir .. "/protected*", s.dir .. "/protected*"))
    local d = s:start { args = { "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    local pid = assert(tonumber(s:sh(("%s 30 >/dev/null 2>&1 & echo $!"):format(H.q(protected))):match("%d+")))
    local refused = d:wait_out('"msg":"kill pid ' .. pid .. ' .* refused: protected', 5 * SLOW)
    H.run("sleep 0.3")
    local alive = runs(pid, protected)
    if alive then os.execute("kill -KILL " .. pid) end
    local rc = d:stop(10 * SLOW)
    protect_run = { pid = pid, refused = refused, alive = alive, rc = rc, out = d:out(), err = d:err(),
      stats = d:stats() or {} }
    return protect_run
  end

  it_root("a protected process is never signalled: the kill is refused and said so", function()
    local r = run_protect()
    assert.is_true(r.refused, "no 'refused: protected' for pid " .. r.pid .. ":\n" .. r.out:sub(-2000))
    assert.is_true(r.alive, "the protected process " .. r.pid .. " was killed")
    assert.are.equal(0, r.rc, r.err)
    -- The rule's alert carries the refusal.
    assert.are.equal(1, #lines_matching(r.out, '"msg":"tried ' .. r.pid .. ' %[kill failed: refused: protected'))
    assert.are.equal(0, r.stats.signals_sent)
  end)

  it_root("a protect{} refusal is counted in signals_refused", function()
    local r = run_protect()
    assert.is_true(r.refused, "no 'refused: protected' for pid " .. r.pid)
    assert.is_true(r.stats.signals_refused >= 1, "signals_refused " .. tostring(r.stats.signals_refused))
  end)

  -- One daemon whose handler, on the exec of a trigger binary, calls the
  -- refused kills and three exec()s; shared by the tests below.
  local handler_run
  local function run_handler()
    if handler_run then return handler_run end
    local trigger = s:path("trigger")
    copy("/bin/sleep", trigger)
    local marker = s:path("relative-ran")
    local rules = s:rules("handler.lua", EXEC_LOGGER .. ([[
local TRIGGER, MARKER = %q, %q
local function show(what, ok, err) log("info", ("%%s -> %%s, %%s"):format(what, tostring(ok), tostring(err))) end
on("exec", function(e)
  if e.exe ~= TRIGGER then return end
  show("kill(1)", kill(1))
  local env = e.env or {}
  local kthread = tonumber(env.PW_KTHREAD)
  if kthread then show("kill(kthread)", kill(kthread)) end
  show("kill(self)", kill(tonumber(env.PW_SELF)))
  log("info", "exec sleep begins")
  show("exec sleep", exec({ "/bin/sleep", "5" }, { timeout = 0.3, on_exit = function(status, out)
    log("info", ("sleep on_exit status=%%s out=%%d"):format(tostring(status), #out))
  end }))
  show("exec echo", exec({ "/bin/echo", "hello" }, { on_exit = function(status, out)
    log("info", ("echo on_exit status=%%s exact=%%s len=%%d"):format(tostring(status),
      tostring(out == "hello\n"), #out))
  end }))
  show("exec relative", pcall(exec, { "touch", MARKER }))
end)
]]):format(trigger, marker))
    local d = s:start { args = { "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    -- a kernel thread: kthreadd (pid 2) where it is one
    local kthread = H.read("/proc/2/stat"):match("^2 %(kthreadd%)") and 2 or nil
    s:sh(("PW_KTHREAD=%s PW_SELF=%d %s 0.3"):format(tostring(kthread or ""), d:pid(), H.q(trigger)))
    local done = d:wait_out('"msg":"sleep on_exit', 5 * SLOW) and d:wait_out('"msg":"echo on_exit', 2 * SLOW)
    H.run("sleep 0.2")
    local alive = not d:done()
    local rc = d:stop(10 * SLOW)
    handler_run = { done = done, alive = alive, rc = rc, out = d:out(), err = d:err(), stats = d:stats() or {},
      kthread = kthread, marker = marker, marker_exists = os.execute("test -e " .. H.q(marker)) == true }
    return handler_run
  end

  local function msg_line(r, prefix)
    return lines_matching(r.out, '"msg":"' .. lit(prefix))[1]
  end

  it_root("pid 1, a kernel thread and procwarden itself are refused: nil and the reason", function()
    local r = run_handler()
    assert.is_true(r.alive, "the daemon died:\n" .. r.err)
    assert.are.equal(0, r.rc, r.err)
    assert.is_truthy(msg_line(r, "kill(1) -> nil, refused: init (pid 1)"), r.out:sub(-3000))
    assert.is_truthy(msg_line(r, "kill(self) -> nil, refused: procwarden itself"), r.out:sub(-3000))
    if r.kthread then
      assert.is_truthy(msg_line(r, "kill(kthread) -> nil, refused: kernel thread"), r.out:sub(-3000))
    end
    assert.is_true(r.stats.signals_refused >= (r.kthread and 3 or 2), "signals_refused " .. r.stats.signals_refused)
    assert.are.equal(0, r.stats.signals_sent)
  end)

  it_root("exec with a timeout: the command is killed, on_exit gets status 9 within about a second", function()
    local r = run_handler()
    assert.is_true(r.done, "on_exit was not called:\n" .. r.out:sub(-3000) .. r.err)
    assert.is_truthy(msg_line(r, "exec sleep -> true, nil"), r.out:sub(-3000))
    local begin = assert(msg_line(r, "exec sleep begins"))
    local ended = assert(msg_line(r, "sleep on_exit status="), r.out:sub(-3000))
    assert.is_truthy(ended:find('"msg":"sleep on_exit status=9 out=0"', 1, true), ended)
    local dt = line_time(ended) - line_time(begin)
    assert.is_true(dt >= 0.25 and dt <= 1.2, ("on_exit %.3f s after the start"):format(dt))
    assert.is_true(r.stats.exec_timeouts >= 1)
    assert.is_truthy(r.err:find("exec /bin/sleep: timed out after 0.3 s, killing pid", 1, true), r.err)
  end)

  it_root("exec captures the command's stdout for on_exit", function()
    local r = run_handler()
    assert.is_truthy(msg_line(r, "exec echo -> true, nil"), r.out:sub(-3000))
    assert.is_truthy(msg_line(r, "echo on_exit status=0 exact=true len=6"), r.out:sub(-3000))
  end)

  it_root("exec with a relative path is refused with a message, and nothing runs", function()
    local r = run_handler()
    local line = msg_line(r, "exec relative -> ")
    assert.is_truthy(line, r.out:sub(-3000))
    -- Either a raised error (pcall: false, msg) or nil, msg: never true.
    assert.is_nil(line:find("exec relative -> true", 1, true), line)
    assert.is_truthy(line:find("must be an absolute path", 1, true), line)
    assert.is_false(r.marker_exists, "the relative command ran")
  end)

  it_root("--dry-run: a kill rule says 'would kill' and the process lives", function()
    local victim = s:path("dry-victim")
    copy("/bin/sleep", victim)
    local rules = s:rules("dry.lua", EXEC_LOGGER .. ([[
rule { name = "dry-kill", on = "exec", match = { exe = %q }, action = { kill(), alert "victim {pid}" } }
]]):format(victim))
    local d = s:start { args = { "-n", "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    local out = s:sh(H.q(victim) .. ' 1 & p=$!; echo "pid=$p"; wait $p; echo "status=$?"')
    local pid = out:match("pid=(%d+)")
    assert.is_truthy(out:find("status=0", 1, true), "the victim did not live to exit 0: " .. out)
    assert.is_true(d:wait_out('"msg":"would kill pid ' .. pid .. ' ', 2 * SLOW), d:out():sub(-2000))
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local st = assert(d:stats())
    assert.are.equal(0, st.signals_sent)
    assert.are.equal(1, #lines_matching(d:out(), '"msg":"would kill pid ' .. pid .. ' %(' .. lit(victim)
      .. '%) with SIGKILL"'))
    assert.are.equal(1, #lines_matching(d:out(), '"msg":"victim ' .. pid .. ' %[would kill%]"'))
  end)

  it_root("a recycled pid is not hit: kill() of a process object whose pid now runs another process",
    function()
    build_tools()
    local a, b, trigger = s:path("first-sleep"), s:path("second-sleep"), s:path("trigger")
    copy("/bin/sleep", a)
    copy("/bin/sleep", b)
    copy("/bin/sleep", trigger)
    local pid = free_pid()
    -- saved = proc(P) while the first process runs; then kill(saved) on the
    -- exec of the second one at P (same batch: the hot path) and again on
    -- a later trigger (the /proc path).
    local rules = s:rules("recycle.lua", EXEC_LOGGER .. ([[
local P, A, B, TRIGGER = %d, %q, %q, %q
local saved
local function show(what, ok, err) log("info", ("%%s -> %%s, %%s"):format(what, tostring(ok), tostring(err))) end
on("exec", function(e)
  if e.pid == P and e.exe == A then
    saved = proc(P)
    log("info", "saved " .. P)
  elseif e.pid == P and e.exe == B and saved then
    show("kill(saved) at B's exec", kill(saved))
  elseif e.exe == TRIGGER and saved then
    show("kill(saved) later", kill(saved))
  end
end)
]]):format(pid, a, b, trigger))
    local d = s:start { args = { "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    local report = s:path("reuse.out")
    os.execute(("timeout 40 %s %d %s 30 -- %s 30 >%s 2>&1 </dev/null &"):format(H.q(tools.reuse), pid, H.q(a),
      H.q(b), H.q(report)))
    assert.is_true(H.wait_grep(report, "^first=", 5), "reuse: " .. H.read(report))
    if H.read(report):find("first=none", 1, true) then
      d:stop()
      pending("pid " .. pid .. " could not be had: " .. H.read(report))
      return
    end
    assert.is_true(d:wait_out('"msg":"saved ' .. pid .. '"', 5 * SLOW), "A was not seen:\n" .. d:out():sub(-2000))
    os.execute("kill -KILL " .. pid) -- A, by the helper's report
    assert.is_true(H.wait_grep(report, "^second=", 5), "reuse: " .. H.read(report))
    local second = H.read(report):match("second=(%S+)")
    local hot, late
    if second == tostring(pid) then
      hot = d:wait_out('"msg":"kill\\(saved\\) at B', 3 * SLOW)
      s:sh(H.q(trigger) .. " 0.2")
      late = d:wait_out("kill\\(saved\\) later", 3 * SLOW)
    else -- no reuse: the saved process simply exited
      s:sh(H.q(trigger) .. " 0.2")
      late = d:wait_out("kill\\(saved\\) later", 3 * SLOW)
    end
    H.run("sleep 0.2")
    local b_alive = second == tostring(pid) and runs(pid, b)
    if b_alive then os.execute("kill -KILL " .. pid) end
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local out = d:out()
    assert.is_truthy(late, "no later kill(saved):\n" .. out:sub(-2000))
    local function refused(line)
      return line and (line:find("-> nil, no such process (exited)", 1, true)
        or line:find("-> nil, process changed (pid reused)", 1, true))
    end
    local late_line = lines_matching(out, "kill%(saved%) later")[1]
    if second ~= tostring(pid) then
      assert.is_truthy(refused(late_line), late_line)
      return
    end
    assert.is_true(b_alive, "the process that took pid " .. pid .. " was killed:\n" .. out:sub(-2000))
    assert.is_truthy(hot, "kill(saved) did not run at B's exec:\n" .. out:sub(-2000))
    local hot_line = lines_matching(out, "kill%(saved%) at B's exec")[1]
    assert.is_truthy(hot_line:find("-> nil, process changed (pid reused)", 1, true), hot_line)
    assert.is_truthy(late_line:find("-> nil, process changed (pid reused)", 1, true), late_line)
    assert.are.equal(0, (d:stats() or {}).signals_sent)
  end)
  it_root("a recycled pid is not hit: a process object taken at fork (the process never exec'd)", function()
    build_tools()
    local b, trigger = s:path("second-sleep"), s:path("trigger")
    copy("/bin/sleep", b)
    copy("/bin/sleep", trigger)
    local pid = free_pid()
    -- The first process at P is a fork of the helper that runs no program
    -- ("+": it pauses); saved = proc(P) on its fork event.
    local rules = s:rules("recycle-fork.lua", EXEC_LOGGER .. ([[
local P, TRIGGER = %d, %q
local saved
on("fork", function(e)
  if e.child_pid == P and not saved then
    saved = proc(P)
    log("info", "saved " .. P)
  end
end)
on("exec", function(e)
  if e.exe == TRIGGER and saved then
    local ok, err = kill(saved)
    log("info", ("kill(saved) -> %%s, %%s"):format(tostring(ok), tostring(err)))
  end
end)
]]):format(pid, trigger))
    local d = s:start { args = { "--stats", "--duration", "60", rules }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    local report = s:path("reuse.out")
    os.execute(("timeout 40 %s %d + -- %s 30 >%s 2>&1 </dev/null &"):format(H.q(tools.reuse), pid, H.q(b),
      H.q(report)))
    assert.is_true(H.wait_grep(report, "^first=", 5), "reuse: " .. H.read(report))
    if not H.read(report):find("first=" .. pid, 1, true) then
      d:stop()
      pending("pid " .. pid .. " could not be had: " .. H.read(report))
      return
    end
    assert.is_true(d:wait_out('"msg":"saved ' .. pid .. '"', 5 * SLOW), "the fork was not seen:\n" .. d:err())
    os.execute("kill -KILL " .. pid)
    assert.is_true(H.wait_grep(report, "^second=", 5), "reuse: " .. H.read(report))
    local second = H.read(report):match("second=(%S+)")
    if second ~= tostring(pid) then
      d:stop()
      pending("pid " .. pid .. " could not be had twice: " .. H.read(report))
      return
    end
    assert.is_true(H.wait_grep("/proc/" .. pid .. "/comm", "second-sleep", 3), "B did not start")
    s:sh(H.q(trigger) .. " 0.2")
    local late = d:wait_out("kill\\(saved\\) -> ", 3 * SLOW)
    H.run("sleep 0.2")
    local b_alive = runs(pid, b)
    if b_alive then os.execute("kill -KILL " .. pid) end
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local line = lines_matching(d:out(), "kill%(saved%) %->")[1]
    assert.is_truthy(late and line, "kill(saved) did not run:\n" .. d:out():sub(-2000))
    -- proc(P) in the fork handler pins P while it runs: its exact start
    -- time and, on Linux 6.9+, its pidfs inode, so B is told apart even
    -- when it took the pid within the same 10 ms tick.
    local function told_apart()
      assert.is_true(b_alive, "the process that took pid " .. pid .. " was killed: " .. line)
      assert.is_truthy(line:find("-> nil, ", 1, true), line)
    end
    if H.kernel_at_least(6, 9) then
      told_apart()
    else
      known_bug("before Linux 6.9 (no pidfs) identity is pid + start time in 10 ms ticks: a pid reused "
        .. "within the same tick is not told apart", told_apart)
    end
  end)
end)

describe("actions (any user)", function()
  it("exec with a relative path in an action list is a load error with file:line", function()
    local dir = H.run("mktemp -d /tmp/pw-integration.XXXXXX"):gsub("%s+$", "")
    local path = dir .. "/rel.lua"
    H.write(path, 'rule { name = "r", on = "exec",\n  action = exec { "touch", "/tmp/nowhere" } }\n')
    local _, err, code = H.exec({ H.bin, "--check", path }, dir)
    os.execute("rm -rf " .. H.q(dir))
    assert.are.equal(2, code, err)
    assert.is_truthy(err:find(path .. ":2: exec: argv[1] must be an absolute path", 1, true), err)
  end)
end)
