-- outputs_spec.lua: logs and alerts as they leave the daemon (DESIGN §5,
-- §3 -o/--log, SIGHUP), parsed back. No root needed: events come from
-- --replay (the spec/fixtures/events.jsonl fixture through the fixture
-- ten-rule policy, plus events of this spec's own), so every action is a
-- dry run.
--
-- Known bugs are reported pending ("known bug: ...") so `make check` stays
-- green until they are fixed; PW_STRICT=1 makes them fail.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

local TIME = "%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ"
local PRIORITIES = { debug = true, info = true, notice = true, warning = true, error = true, critical = true }

-- A policy of this spec: handler logs with and without the event, a rule
-- with tags and one without, a message that is not UTF-8, and an alert
-- that repeats a command line (so its characters reach the output).
local POLICY = [[
on("exec", function(e)
  if e.pid == 3001 then
    log("notice", "handler saw {pid} ({exe})", e)
    log("info", "no event here")
  elseif e.pid == 4001 then
    log("info", "bad " .. string.char(255) .. " byte", e)
  end
end)
rule { name = "echo-cmdline", on = "exec", match = { exe = "/spec/echo" }, action = alert "cmd: {cmdline}",
  priority = "notice", tags = { "spec", "echo" } }
rule { name = "untagged", on = "exec", match = { exe = "/spec/untagged" }, action = log("info", "untagged {pid}") }
]]

local TRICKY = 'q"uote b\\slash\nnew\ttab\1ctl caf\195\169 end'
local INJECTED = "2026-01-01T00:00:00.000Z critical fake-rule: injected"
local EXTRA = {
  { type = "exec", pid = 4001, exe = "/usr/bin/env" },
  { type = "exec", pid = 4002, exe = "/spec/echo", argv = { "echo", TRICKY } },
  { type = "exec", pid = 4003, exe = "/spec/echo", argv = { "echo", "x\n" .. INJECTED } },
  { type = "exec", pid = 4004, exe = "/spec/echo", argv = { "echo", string.rep("y", 20000) } },
  { type = "exec", pid = 4005, exe = "/spec/untagged" },
}

-- The fixture's 20 events, then EXTRA, as one JSONL file.
local events_file
local function events()
  if events_file then return events_file end
  local text = assert(D.read(D.fixtures .. "/events.jsonl"))
  events_file = D.write(D.path("events.jsonl"), text .. D.jsonl(EXTRA))
  return events_file
end

local function cleanup()
  D.cleanup()
  events_file = nil
end

local function policies()
  return { D.fixture_policy("ten_rules.lua"), D.policy(POLICY, "outputs.lua") }
end

-- Lines of text (without the newlines).
local function lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

local function count_lines(text)
  local _, n = (text or ""):gsub("\n", "")
  return n
end

-- Validate every line of a file as a JSON object with python3's json (a
-- second, strict parser). Returns ok, message.
local PY = [[
import json, sys
n = 0
with open(sys.argv[1], "rb") as f:
    for i, raw in enumerate(f, 1):
        try:
            obj = json.loads(raw.decode("utf-8"))
        except Exception as e:
            print("line %d: %s" % (i, e)); sys.exit(1)
        if not isinstance(obj, dict):
            print("line %d: not an object" % i); sys.exit(1)
        n += 1
print("ok %d" % n)
]]
local function python_valid(path)
  if not os.execute("command -v python3 >/dev/null 2>&1") then return nil, "no python3" end
  local script = D.write(D.path("check.py"), PY)
  local p = assert(io.popen(("python3 %s %s 2>&1"):format(D.quote(script), D.quote(path))))
  local out = p:read("a")
  p:close()
  return out:match("^ok (%d+)") ~= nil, out
end

-- One line (decoded) per output record of the run, selected by fields.
local function find(res, want)
  local found = {}
  for _, line in ipairs(res.lines) do
    local ok = true
    for k, v in pairs(want) do
      if k == "pid" then
        if type(line.event) ~= "table" or line.event.pid ~= v then ok = false end
      elseif line[k] ~= v then
        ok = false
      end
    end
    if ok then found[#found + 1] = line end
  end
  return found
end

describe("-o json", function()
  teardown(cleanup)
  local res

  local function run()
    if res then return res end
    res = D.replay { rules = policies(), file = events(), format = "json", stats = true }
    res.path = D.write(D.path("out.json"), res.out)
    return res
  end

  it("every line is one JSON object (checked by a second parser, python3's json)", function()
    local r = run()
    assert.are.equal(0, r.rc, r.err)
    local n = count_lines(r.out)
    assert.is_true(n >= 20, "only " .. n .. " lines:\n" .. r.out)
    -- dkjson decodes each line to an object
    assert.are.equal(n, #r.lines)
    local ok, why = python_valid(r.path)
    if ok == nil then
      pending(why)
      return
    end
    assert.is_true(ok, why)
    assert.are.equal("ok " .. n, why:match("ok %d+"))
    -- every line was written: the output counter agrees
    assert.are.equal(n, D.stats(r.err).output_lines)
  end)

  it("an alert: time, kind, rule, priority, msg, tags, event and the results of the rule's effects", function()
    local r = run()
    local found = find(r, { kind = "alert", rule = "no-miners", pid = 3002 })
    assert.are.equal(1, #found, r.out)
    local a = found[1]
    assert.matches("^" .. TIME .. "$", a.time)
    assert.are.equal("critical", a.priority)
    assert.are.equal("crypto miner /tmp/xmrig (pid 3002, user bob) [would kill]", a.msg)
    assert.are.same({ "mitre:T1496" }, a.tags)
    assert.are.equal("table", type(a.event))
    assert.are.equal("exec", a.event.type)
    assert.are.equal(3002, a.event.pid)
    assert.are.equal("/tmp/xmrig", a.event.exe)
    assert.are.same({ "/tmp/xmrig", "-o", "pool.example:3333" }, a.event.argv)
    assert.are.same({ { name = "kill", ok = true } }, a.actions)
  end)

  it("an action: its own record with the result", function()
    local r = run()
    local found = find(r, { kind = "action", rule = "no-miners", pid = 3002 })
    assert.are.equal(1, #found, r.out)
    local a = found[1]
    assert.matches("^" .. TIME .. "$", a.time)
    assert.are.equal("would kill pid 3002 (/tmp/xmrig) with SIGKILL", a.msg)
    assert.is_truthy(PRIORITIES[a.priority], a.priority)
    assert.are.equal(1, #a.actions)
    assert.are.equal("kill", a.actions[1].name)
    assert.is_true(a.actions[1].ok)
    assert.is_nil(a.actions[1].error)
  end)

  it("an action record of a tagged rule carries the rule's tags", function()
    local r = run()
    local a = find(r, { kind = "action", rule = "no-miners", pid = 3002 })[1]
    assert.is_truthy(a, r.out)
    D.known_bug(pending, "actions.lua emits action records without the rule's tags", function()
      assert.are.same({ "mitre:T1496" }, a.tags)
    end)
  end)

  it("a rule without effects has no actions key; a rule without tags has an empty tags list", function()
    local r = run()
    local shell = find(r, { kind = "alert", rule = "web-shell", pid = 3003 })
    assert.are.equal(1, #shell, r.out)
    assert.is_nil(shell[1].actions)
    assert.are.same({ "mitre:T1505.003" }, shell[1].tags)
    local untagged = find(r, { kind = "log", rule = "untagged", pid = 4005 })
    assert.are.equal(1, #untagged, r.out)
    assert.are.equal("untagged 4005", untagged[1].msg)
    assert.are.equal("info", untagged[1].priority)
    assert.are.same({}, untagged[1].tags)
    assert.is_nil(untagged[1].actions)
  end)

  it("a handler's log: rule is file:line, the event only when one is given", function()
    local r = run()
    local with = find(r, { kind = "log", msg = "handler saw 3001 (/usr/bin/ls)" })
    assert.are.equal(1, #with, r.out)
    assert.matches("outputs%.lua:1$", with[1].rule)
    assert.are.equal("notice", with[1].priority)
    assert.are.equal(3001, with[1].event.pid)
    assert.are.equal("/usr/bin/ls", with[1].event.exe)
    local without = find(r, { kind = "log", msg = "no event here" })
    assert.are.equal(1, #without, r.out)
    assert.matches("outputs%.lua:1$", without[1].rule)
    assert.is_nil(without[1].event)
    assert.is_nil(without[1].actions)
  end)

  it("quotes, backslashes, newlines, tabs, control characters and UTF-8 survive the round trip", function()
    local r = run()
    local found = find(r, { kind = "alert", rule = "echo-cmdline", pid = 4002 })
    assert.are.equal(1, #found, r.out)
    assert.are.equal("cmd: echo " .. TRICKY, found[1].msg)
    assert.are.same({ "echo", TRICKY }, found[1].event.argv)
    assert.are.same({ "spec", "echo" }, found[1].tags)
    -- a 20 KB argument is written whole, on one line
    local long = find(r, { kind = "alert", rule = "echo-cmdline", pid = 4004 })
    assert.are.equal(1, #long)
    assert.are.equal("cmd: echo " .. string.rep("y", 20000), long[1].msg)
  end)

  it("a message that is not UTF-8 still has its msg", function()
    local r = run()
    -- the record is there...
    local found = find(r, { kind = "log", pid = 4001 })
    assert.are.equal(1, #found, r.out)
    D.known_bug(pending, "sink.c: json_string() refuses the text, so the msg key is silently left out", function()
      assert.is_string(found[1].msg)
      assert.matches("^bad .* byte$", found[1].msg)
    end)
  end)
end)

describe("-o text", function()
  teardown(cleanup)
  local res

  local function run()
    if res then return res end
    res = D.replay { rules = policies(), file = events(), format = "text", stats = true }
    return res
  end

  -- `<time> <priority> <rule>: <msg>`; nil when the line is not one.
  local function parse(line)
    local time, priority, rule, msg = line:match("^(" .. TIME .. ") (%a+) (%S+): (.*)$")
    if not time or not PRIORITIES[priority] then return nil end
    return { time = time, priority = priority, rule = rule, msg = msg }
  end

  it("the DESIGN §5 format: time, priority, rule, message, with the effects' results", function()
    local r = run()
    assert.are.equal(0, r.rc, r.err)
    local miner
    for _, line in ipairs(lines(r.out)) do
      local rec = parse(line)
      if rec and rec.rule == "no-miners" and rec.msg:find("(pid 3002,", 1, true) then miner = rec end
    end
    assert.is_truthy(miner, r.out)
    assert.are.equal("critical", miner.priority)
    assert.are.equal("crypto miner /tmp/xmrig (pid 3002, user bob) [would kill]", miner.msg)
    -- a handler's line names its file:line
    assert.matches("\n" .. TIME .. " notice [^ ]*outputs%.lua:1: handler saw 3001 %(/usr/bin/ls%)\n", "\n" .. r.out)
  end)

  it("one line per record, even for a 20 KB message (cut, still one line)", function()
    local r = run()
    local n = D.stats(r.err).output_lines
    assert.is_true(n >= 20, r.err)
    local long
    for _, line in ipairs(lines(r.out)) do
      if line:find(" echo%-cmdline: cmd: echo yyyy") then long = line end
    end
    assert.is_truthy(long, "no line for the long message")
    assert.is_truthy(parse(long), long:sub(1, 100))
    assert.is_true(#long <= 8192, "a line of " .. #long .. " bytes")
    -- records other than those with a newline in a field: each one line
    local bad = {}
    for _, line in ipairs(lines(r.out)) do
      if not parse(line) and not line:find(INJECTED, 1, true) and not line:find("^new\ttab") then
        bad[#bad + 1] = line
      end
    end
    assert.are.same({}, bad)
  end)

  it("a newline in a process's argv cannot forge a record", function()
    local r = run()
    assert.are.equal(0, r.rc, r.err)
    assert.matches(" echo%-cmdline: cmd: echo x", r.out)
    local records = D.stats(r.err).output_lines
    D.known_bug(pending, "text output writes fields with raw newlines and control characters (log forging)",
      function()
      for _, line in ipairs(lines(r.out)) do
        assert.is_nil(line:find("^" .. INJECTED:gsub("%p", "%%%0")), "a forged record: " .. line)
      end
      assert.are.equal(records, count_lines(r.out), "more lines than records")
    end)
  end)
end)

describe("--log", function()
  teardown(cleanup)

  local ONE = { { type = "exec", pid = 4005, exe = "/spec/untagged" } }
  local TWO = { { type = "exec", pid = 4006, exe = "/spec/untagged" } }

  it("FILE appends: two runs leave the lines of both, in order, and nothing on stdout", function()
    local log = D.path("app.log")
    local rules = { D.policy(POLICY, "outputs.lua") }
    local a = D.replay { rules = rules, events = ONE, args = { "--log", log } }
    local b = D.replay { rules = rules, events = TWO, args = { "--log", log } }
    assert.are.equal(0, a.rc, a.err)
    assert.are.equal(0, b.rc, b.err)
    assert.are.equal("", a.out)
    assert.are.equal("", b.out)
    local got = D.decode_lines(D.read(log))
    assert.are.equal(2, #got, D.read(log))
    assert.are.equal("untagged 4005", got[1].msg)
    assert.are.equal("untagged 4006", got[2].msg)
  end)

  it("FILE is created readable by its owner and group only", function()
    local log = D.path("mode.log")
    local r = D.replay { rules = { D.policy(POLICY, "outputs.lua") }, events = ONE, args = { "--log", log } }
    assert.are.equal(0, r.rc, r.err)
    local p = assert(io.popen("stat -c %a " .. D.quote(log)))
    local mode = p:read("l")
    p:close()
    assert.is_truthy(mode and mode:match("^%d?%d%d0$"), "mode " .. tostring(mode))
  end)

  it("two targets at once: both get every line", function()
    local f1, f2 = D.path("one.log"), D.path("two.log")
    local r = D.replay { rules = policies(), file = events(), stats = true, args = { "--log", f1, "--log", f2 } }
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("", r.out)
    local t1, t2 = D.read(f1), D.read(f2)
    local n = D.stats(r.err).output_lines
    assert.is_true(n >= 20)
    assert.are.equal(n, count_lines(t1))
    assert.are.equal(t1, t2)
    -- stdout as one of the targets: the same lines
    local s = D.replay { rules = policies(), file = events(), format = "text",
      args = { "--log", "stdout", "--log", f1 } }
    assert.are.equal(0, s.rc, s.err)
    local tail = D.read(f1):sub(#t1 + 1)
    assert.is_true(#s.out > 0)
    assert.are.equal(s.out, tail)
  end)

  it("FILE is reopened on SIGHUP: after a rename, new lines go to a new file at the path", function()
    local log = D.path("rotate.log")
    local rules = D.policy(POLICY, "rotate.lua")
    local d = D.spawn { rules = { rules }, args = { "--log", log }, stats = true }
    local function has(path, msg)
      return function() return (D.read(path) or ""):find('"msg":"' .. msg .. '"', 1, true) end
    end
    d:send(ONE)
    assert.truthy(d:wait(has(log, "untagged 4005"), 30), "no first line in " .. log)
    local rotated = log .. ".1"
    assert.is_true(os.rename(log, rotated))
    d:signal("HUP")
    d:nudge()
    assert.truthy(d:wait_err("rules reloaded", 1, 30), "no reload after SIGHUP:\n" .. d:stderr())
    d:send(TWO)
    assert.truthy(d:wait(has(log, "untagged 4006"), 30), "no line at the original path after SIGHUP")
    local res = d:close()
    assert.are.equal(0, res.rc, res.err)
    local old, new = D.decode_lines(D.read(rotated)), D.decode_lines(D.read(log))
    assert.are.equal(1, #old)
    assert.are.equal("untagged 4005", old[1].msg)
    assert.are.equal(1, #new)
    assert.are.equal("untagged 4006", new[1].msg)
    assert.are.equal("", res.out)
  end)
end)
