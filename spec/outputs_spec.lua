-- outputs_spec.lua: logs and alerts as they leave the daemon (README "Outputs",
-- §3 -o/--log, SIGHUP), parsed back. No root needed: events come from
-- --replay (the spec/fixtures/events.jsonl fixture through the fixture
-- ten-rule policy, plus events of this spec's own), so every action is a
-- dry run. An attacker's long exe path and argv must not cut an alert's
-- facts: procwarden.template's value cuts, then the daemon's text, JSON and
-- syslog lines (syslog through a python3 listener on the /dev/log of a
-- private mount namespace: `unshare -m` as root, `unshare -Urm` otherwise;
-- pending where neither works).
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
    -- a 20 KB argument: whole in the event, cut in the message (its middle,
    -- marked with the number of bytes left out)
    local long = find(r, { kind = "alert", rule = "echo-cmdline", pid = 4004 })
    assert.are.equal(1, #long)
    assert.are.same({ "echo", string.rep("y", 20000) }, long[1].event.argv)
    local head, n, tail = long[1].msg:match("^cmd: (echo y*)\u{2026}%[%+(%d+) bytes%](y*)$")
    assert.is_truthy(head, long[1].msg:sub(1, 200))
    assert.are.equal(#"echo " + 20000, #head + tonumber(n) + #tail)
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

  it("the documented text format: time, priority, rule, message, with the effects' results", function()
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

describe("procwarden.template: long values", function()
  local template = require "procwarden.template"
  local MARK = "\u{2026}%[%+(%d+) bytes%]"

  -- The pieces of s around its one cut marker: head, n, tail (nil if none).
  local function around(s)
    local head, n, tail = s:match("^(.-)" .. MARK .. "(.*)$")
    return head, tonumber(n), tail
  end

  it("cuts a value longer than VALUE_CAP in its middle, saying how many bytes it left out", function()
    local exe = "/tmp/" .. string.rep("d", 5000) .. "/xmrig"
    local out = template.expand("miner {exe} (pid {pid}, user {user})", { exe = exe, pid = 7, user = "bob" })
    local head, n, tail = around(out)
    assert.is_truthy(head, out:sub(1, 100))
    assert.matches("^miner /tmp/ddd", head)
    assert.matches("ddd/xmrig %(pid 7, user bob%)$", tail) -- the end of the value, then the text around it
    assert.are.equal(#"miner " + #exe + #" (pid 7, user bob)", #head + n + #tail)
    assert.is_true(#out <= #"miner  (pid 7, user bob)" + template.VALUE_CAP + 24, #out .. " bytes")
  end)

  it("leaves values up to VALUE_CAP whole", function()
    local v = string.rep("x", template.VALUE_CAP)
    assert.are.equal("[" .. v .. "]", template.expand("[{cmdline}]", { cmdline = v }))
  end)

  it("cuts each long value on its own: the short fields between them stay whole", function()
    local e = { argv = { "sh", "-c", string.rep("A", 100 * 1024), "--tail" }, pid = 4242, user = "bob",
      exe = "/x/" .. string.rep("e", 4000) }
    local out = template.expand("{exe} (pid {pid}) {argv} (user {user})", e)
    local _, cuts = out:gsub(MARK, "")
    assert.are.equal(2, cuts)
    assert.truthy(out:find(" (pid 4242) sh -c AAA", 1, true))
    assert.matches("AAA %-%-tail %(user bob%)$", out)
  end)

  it("never splits a UTF-8 character", function()
    for extra = 0, 3 do
      local v = string.rep("x", extra) .. string.rep("\u{e9}\u{20ac}\u{1f600}", 800)
      local out = template.expand("{cmdline}", { cmdline = v })
      assert.is_truthy(around(out))
      assert.is_truthy(utf8.len(out), "invalid UTF-8 with " .. extra .. " leading bytes")
    end
  end)

  it("renders maps as sorted name=value pairs and sets as sorted names", function()
    local e = { env = { PATH = "/bin", LD_PRELOAD = "/tmp/x.so" }, caps = { CAP_SYS_ADMIN = true, CAP_NET_RAW = true } }
    assert.are.equal("LD_PRELOAD=/tmp/x.so PATH=/bin | CAP_NET_RAW CAP_SYS_ADMIN", template.expand("{env} | {caps}", e))
  end)

  it("renders process objects as exe[pid], in an alert of a loaded policy", function()
    local testing = require "procwarden.testing"
    local p = testing.load_string [[
      rule { name = "r", on = "exec", action = alert "{parent} | {ancestors} | {env}" } ]]
    p:feed { type = "exec", pid = 5, exe = "/bin/sh", parent = { pid = 4, exe = "/usr/sbin/nginx" },
      ancestors = { { pid = 4, exe = "/usr/sbin/nginx" }, { pid = 1, exe = "/sbin/init" } },
      env = { PATH = "/bin", HOME = "/root" } }
    assert.same({}, p:errors())
    assert.are.equal("/usr/sbin/nginx[4] | /usr/sbin/nginx[4] /sbin/init[1] | HOME=/root PATH=/bin",
      p:outputs()[1].text)
  end)

  it("cuts a long environment too", function()
    local env = { LD_PRELOAD = "/tmp/evil.so" }
    for i = 1, 500 do env[("PAD%03d"):format(i)] = string.rep("p", 64) end
    local out = template.expand("{env}", { env = env })
    local head, n = around(out)
    assert.is_truthy(head)
    assert.is_true(n > 0)
    assert.is_true(#out <= template.VALUE_CAP + 24)
    assert.matches("^LD_PRELOAD=/tmp/evil%.so PAD001=", out) -- sorted: the preload comes first
  end)
end)

-- An attacker's process: a 4000+ byte exe path and a 100 KB argument. The
-- rule kills it, but protect{} covers its directory, so the kill fails with
-- a reason that repeats the long path: the alert that matters most is the
-- longest one.
-- (4090 bytes: just under PATH_MAX)
local LONG_DIR = "/tmp/pw-long" .. string.rep("/" .. string.rep("d", 200), 20) .. "/" .. string.rep("e", 51)
local LONG_EXE = LONG_DIR .. "/xmrig"
local LONG_ARG = string.rep("A", 100 * 1024)
local LONG_POLICY = [[
protect { "]] .. LONG_DIR .. [[/*" }
rule { name = "long-miner", on = "exec", match = { exe = "*/xmrig" },
  action = { kill(), alert "crypto miner {exe} {cmdline} (pid {pid}, user {user})" },
  priority = "critical", tags = { "mitre:T1496" } }
on("exec", function(e)
  if e.pid == 4243 then log("notice", "raw " .. table.concat(e.argv, " ") .. " (pid {pid}, user {user})", e) end
end)
]]
local LONG_EVENTS = {
  { type = "exec", pid = 4242, tgid = 4242, uid = 1000, user = "bob", exe = LONG_EXE,
    argv = { "xmrig", "-o", LONG_ARG, "--tail" } },
  -- a handler's own message, 100 KB long: no template cut it
  { type = "exec", pid = 4243, tgid = 4243, uid = 1001, user = "eve", exe = "/usr/bin/true",
    argv = { "true", LONG_ARG, "--end" } },
}
local MARKS = "\u{2026}%[%+(%d+) bytes%]"

-- The bytes a line declares left out, summed over its markers.
local function declared(s)
  local n, sum = 0, 0
  for k in s:gmatch(MARKS) do
    n, sum = n + 1, sum + tonumber(k)
  end
  return sum, n
end

local function long_policy() return { D.policy(LONG_POLICY, "long.lua") } end

describe("a long-exe alert", function()
  teardown(cleanup)

  it("-o text: rule, priority, pid, user and the kill's result survive; only the long values are cut", function()
    local r = D.replay { rules = long_policy(), events = LONG_EVENTS, format = "text", stats = true }
    assert.are.equal(0, r.rc, r.err)
    local all = lines(r.out)
    assert.are.equal(D.stats(r.err).output_lines, #all)
    for _, line in ipairs(all) do
      assert.is_true(#line < 8192, "a line of " .. #line .. " bytes")
      assert.matches("^" .. TIME .. " %a+ %S+: ", line)
    end
    local alert = D.grep(r.out, " critical long-miner: crypto miner /tmp/pw-long/")
    assert.are.equal(1, #alert, r.out:sub(1, 300))
    local line = alert[1]
    assert.truthy(line:find("(pid 4242, user bob)", 1, true), line:sub(-300))
    assert.truthy(line:find("[kill failed: refused: protected", 1, true), line:sub(-300))
    assert.truthy(line:find("/xmrig ", 1, true), "the end of the exe path is gone")
    assert.truthy(line:find(" --tail ", 1, true), "the last argument is gone")
    -- what is not shown is declared: at least the bytes of the exe and the
    -- argument that do not fit in the line
    local sum, n = declared(line)
    assert.is_true(n >= 2, "no cut marker")
    assert.is_true(sum >= #LONG_EXE + #LONG_ARG - #line, ("declares %d bytes"):format(sum))
  end)

  it("-o text: a line too long even so leads with pid, user and the results, and is counted", function()
    local r = D.replay { rules = long_policy(), events = LONG_EVENTS, format = "text", stats = true }
    assert.are.equal(0, r.rc, r.err)
    -- the handler's own 100 KB message
    local raw = D.grep(r.out, " raw true AAA")
    assert.are.equal(1, #raw, r.out:sub(1, 300))
    assert.matches("^" .. TIME .. " notice %S+long%.lua:%d+: %(pid 4243, user eve%) raw true AAA", raw[1])
    assert.matches("AAA %-%-end %(pid 4243, user eve%)$", raw[1])
    local sum = declared(raw[1])
    assert.is_true(sum >= #LONG_ARG - #raw[1], ("declares %d bytes"):format(sum))
    -- the kill's own record repeats the exe twice: it leads with the result
    local kill = D.grep(r.out, " long-miner: (pid 4242, user bob) [kill failed: refused: protected")
    assert.are.equal(1, #kill, r.out:sub(1, 600))
    local cut = D.stats(r.err).output_cut
    assert.is_number(cut, "--stats has no output_cut counter")
    assert.is_true(cut >= 2, r.err)
  end)

  it("-o json: one whole record per line, every field there, the event uncut", function()
    local r = D.replay { rules = long_policy(), events = LONG_EVENTS, format = "json", stats = true }
    assert.are.equal(0, r.rc, r.err)
    local path = D.write(D.path("long.json"), r.out)
    local ok, why = python_valid(path)
    if ok ~= nil then assert.is_true(ok, why) end
    assert.are.equal(D.stats(r.err).output_lines, #r.lines)
    local a = find(r, { kind = "alert", rule = "long-miner", pid = 4242 })
    assert.are.equal(1, #a, r.out:sub(1, 300))
    a = a[1]
    assert.are.equal("critical", a.priority)
    assert.are.equal("bob", a.event.user)
    assert.are.equal(LONG_EXE, a.event.exe)
    assert.are.same({ "xmrig", "-o", LONG_ARG, "--tail" }, a.event.argv)
    assert.are.equal("kill", a.actions[1].name)
    assert.is_false(a.actions[1].ok)
    assert.matches("^refused: protected", a.actions[1].error)
    assert.truthy(a.msg:find("(pid 4242, user bob) [kill failed: refused: protected", 1, true), a.msg:sub(-300))
    assert.is_true(select(2, declared(a.msg)) >= 2)
  end)
end)

-- The daemon's syslog target writes to /dev/log: run it in a mount
-- namespace of its own with a tmpfs on /dev, where a small python3
-- listener has bound /dev/log and keeps every datagram.
local LISTENER = [[
import json, os, re, socket, sys, time
path, out, done = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind(path)
if os.fork():  # bound: the caller goes on, the child listens
    os._exit(0)
s.settimeout(0.05)
got, deadline = [], time.time() + 100
while time.time() < deadline:
    try:
        got.append(s.recv(1 << 20))
    except socket.timeout:
        if os.path.exists(done):
            break
res = []
for d in got:
    m = re.match(rb"^<(\d+)>procwarden\[\d+\]: ", d)
    payload = d[m.end():] if m else d
    rec = {"size": len(d), "header": m is not None, "text": payload.decode("utf-8", "replace")}
    try:
        rec["json"] = json.loads(payload.decode("utf-8"))
        rec["json_ok"] = isinstance(rec["json"], dict)
    except Exception as e:
        rec["json_ok"], rec["error"] = False, str(e)
    res.append(rec)
with open(out + ".tmp", "w") as f:
    json.dump(res, f)
os.rename(out + ".tmp", out)
]]

-- Replay events into the daemon with `--log syslog`; returns the datagrams
-- (decoded by the listener) and the daemon's result, or nil and why.
local function syslog_replay(format, rules, evs)
  local p = io.popen("python3 -c 'import sys; print(sys.executable)' 2>/dev/null")
  local python = p and p:read("l")
  if p then p:close() end
  if not python or python == "" then return nil, "no python3" end
  local unshare = "unshare -m"
  local idp = assert(io.popen("id -u"))
  if idp:read("l") ~= "0" then unshare = "unshare -Urm" end
  idp:close()
  local listener = D.write(D.path("listener.py"), LISTENER)
  local got, out, err = D.path("syslog.json"), D.path("stdout"), D.path("stderr")
  local evfile = D.write(D.path("events.jsonl"), D.jsonl(evs))
  local args = { "-o", format, "--stats", "--log", "syslog", "--replay", evfile }
  for _, f in ipairs(rules) do args[#args + 1] = f end
  for i, a in ipairs(args) do args[i] = D.quote(a) end
  local script = table.concat({
    "mount -t tmpfs tmpfs /dev || exit 97",
    -- (no background job: sh would give it a /dev/null, gone here)
    ("%s %s /dev/log %s /dev/done || exit 98"):format(D.quote(python), D.quote(listener), D.quote(got)),
    ("%s %s >%s 2>%s; rc=$?"):format(D.quote(D.bin), table.concat(args, " "), D.quote(out), D.quote(err)),
    ": > /dev/done",
    ("i=0; while [ ! -f %s ] && [ $i -lt 400 ]; do i=$((i+1)); sleep 0.05; done"):format(D.quote(got)),
    "exit $rc" }, "\n")
  local _, how, code = os.execute(("timeout -k 5 %d %s sh -c %s </dev/null >/dev/null 2>&1"):format(
    D.TIMEOUT, unshare, D.quote(script)))
  local rc = how == "exit" and code or 128 + (code or 0)
  if rc == 97 or rc == 98 then return nil, "no private /dev/log (mount namespace refused)" end
  local json = require "dkjson"
  local text = D.read(got)
  return { rc = rc, out = D.read(out) or "", err = D.read(err) or "", grams = text and json.decode(text) or {} }
end

describe("--log syslog", function()
  teardown(cleanup)

  it("a long-exe alert as JSON: every datagram fits and parses, and keeps what matters", function()
    local r, why = syslog_replay("json", long_policy(), LONG_EVENTS)
    if not r then
      pending(why)
      return
    end
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal(D.stats(r.err).output_lines, #r.grams)
    local alert
    for _, g in ipairs(r.grams) do
      assert.is_true(g.header, g.text:sub(1, 100))
      assert.is_true(g.size <= 8192, "a datagram of " .. g.size .. " bytes")
      assert.is_true(g.json_ok, (g.error or "") .. ": " .. g.text:sub(-200))
      if g.json.kind == "alert" and g.json.rule == "long-miner" then alert = g.json end
    end
    assert.is_truthy(alert, "no alert among " .. #r.grams .. " datagrams")
    assert.are.equal("critical", alert.priority)
    assert.is_true(alert.cut)
    assert.are.equal(4242, alert.event.pid)
    assert.are.equal("bob", alert.event.user)
    assert.are.equal("kill", alert.actions[1].name)
    assert.is_false(alert.actions[1].ok)
    assert.matches("^refused: protected", alert.actions[1].error)
    assert.truthy(alert.msg:find("(pid 4242, user bob) [kill failed: refused: protected", 1, true), alert.msg)
    -- the long values are there, cut in their middle and marked
    assert.matches("^/tmp/pw%-long/ddd.*" .. MARKS .. ".*/eee+/xmrig$", alert.event.exe)
    assert.are.equal("xmrig", alert.event.argv[1])
    assert.are.equal("--tail", alert.event.argv[4])
    local head, n, tail = alert.event.argv[3]:match("^(A*)" .. MARKS .. "(A*)$")
    assert.is_truthy(head)
    assert.are.equal(#LONG_ARG, #head + tonumber(n) + #tail)
    local cut = D.stats(r.err).output_cut
    assert.is_number(cut, "--stats has no output_cut counter")
    assert.is_true(cut >= 1, r.err)
  end)

  it("-o text: the same alert as a datagram keeps pid, user and the kill's result", function()
    local r, why = syslog_replay("text", long_policy(), LONG_EVENTS)
    if not r then
      pending(why)
      return
    end
    assert.are.equal(0, r.rc, r.err)
    local alert
    for _, g in ipairs(r.grams) do
      assert.is_true(g.size <= 8192, "a datagram of " .. g.size .. " bytes")
      if g.text:find(" critical long-miner: crypto miner", 1, true) then alert = g.text end
    end
    assert.is_truthy(alert, "no alert among " .. #r.grams .. " datagrams")
    assert.truthy(alert:find("(pid 4242, user bob)", 1, true), alert:sub(-300))
    assert.truthy(alert:find("[kill failed: refused: protected", 1, true), alert:sub(-300))
  end)
end)
