-- replay_spec.lua: `procwarden --replay` with the record-format fixtures
-- (spec/fixtures/*.jsonl) through the 10-rule fixture policy: which rules
-- fire on what, output formats, --stats, bad lines, no reads of the live
-- system, and dry-run actions.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

local POLICY -- a copy of spec/fixtures/ten_rules.lua (see D.fixture_policy)
local EVENTS = D.fixtures .. "/events.jsonl"
local BAD = D.fixtures .. "/bad_lines.jsonl"

-- What events.jsonl is made to trigger: rule -> pids, in order.
local EXPECTED = {
  ["no-miners"] = { 3002, 3020, 3021 },
  ["web-shell"] = { 3003 },
  ["setuid-root"] = { 3005 },
  ["ptrace-attach"] = { 3007 },
  ["nc-exec"] = { 3011 },
  ["base64-decode"] = { 3013 },
  ["tmp-exec"] = { 3002, 3014, 3020 }, -- the third /tmp/xmrig is throttled
  ["history-wipe"] = { 3015 },
  ["crash"] = { 3017 },
  ["kthread-masquerade"] = { 3019 },
}

local function escape(s) return (s:gsub("%p", "%%%0")) end

-- rule -> pids of its alert/log outputs (action lines left out).
local function fired(res)
  local by_rule = {}
  for _, line in ipairs(res.lines) do
    if line.kind == "alert" or line.kind == "log" then
      by_rule[line.rule] = by_rule[line.rule] or {}
      table.insert(by_rule[line.rule], line.event and line.event.pid)
    end
  end
  return by_rule
end

local function lines_of(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

-- Is pid a live process (not a zombie)?
local function alive(pid)
  local stat = D.read("/proc/" .. pid .. "/stat")
  if not stat then return false end
  local state = stat:match("%) (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

describe("replaying the fixture through ten_rules.lua", function()
  teardown(D.cleanup)

  local res, counters, rules
  setup(function()
    POLICY = D.fixture_policy("ten_rules.lua")
    res = D.replay { rules = { POLICY }, file = EVENTS, stats = true }
    counters, rules = D.stats(res.err)
  end)

  it("loads the policy and replays every line", function()
    assert.equal(0, res.rc)
    assert.equal(20, counters.replayed)
    assert.equal(0, counters.replay_bad_lines)
    assert.equal(0, counters.handler_errors)
  end)

  it("fires each of the ten rules on exactly the events made for it", function()
    assert.same(EXPECTED, fired(res))
  end)

  it("expands templates from the recorded fields, process objects included", function()
    assert.same({ "shell /bin/sh spawned by web server /usr/sbin/nginx (pid 3003, user www-data)" },
      D.msgs(res, "web-shell"))
    assert.same({ "pid 3007 (/usr/sbin/sshd) traced by 3008 (/tmp/inject)" }, D.msgs(res, "ptrace-attach"))
    assert.same({ "reverse shell? nc -lvp 4444 -e /bin/sh (pid 3011, user bob)" }, D.msgs(res, "nc-exec"))
    assert.same({ "crashy (pid 3017) died of signal 11" }, D.msgs(res, "crash"))
  end)

  it("writes JSON lines with time, kind, rule, priority, msg, tags, event and actions", function()
    local alert = D.select(res, { rule = "no-miners", kind = "alert" })[1]
    assert.is_table(alert)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", alert.time)
    assert.equal("critical", alert.priority)
    assert.equal("crypto miner /tmp/xmrig (pid 3002, user bob) [would kill]", alert.msg)
    assert.same({ "mitre:T1496" }, alert.tags)
    assert.same({ { name = "kill", ok = true } }, alert.actions)
    assert.equal("exec", alert.event.type)
    assert.equal(3002, alert.event.pid)
    assert.equal("/tmp/xmrig", alert.event.exe)
  end)

  it("keeps process objects of the event in the JSON output", function()
    local alert = D.select(res, { rule = "web-shell" })[1]
    D.known_bug(pending, "sink.c json_of() writes any table as an array: \"parent\":[]", function()
      assert.same({ pid = 900, exe = "/usr/sbin/nginx", comm = "nginx", uid = 33 }, alert.event.parent)
    end)
  end)

  it("performs no action: kills are dry-run and say so", function()
    local kills = D.select(res, { rule = "no-miners", kind = "action" })
    local msgs = {}
    for i, line in ipairs(kills) do msgs[i] = line.msg end
    assert.same({
      "would kill pid 3002 (/tmp/xmrig) with SIGKILL",
      "would kill pid 3020 (/tmp/xmrig) with SIGKILL",
      "would kill pid 3021 (/tmp/xmrig) with SIGKILL",
    }, msgs)
  end)

  it("counts firings and throttling per rule in --stats", function()
    assert.matches("^  no%-miners%s+exec%s+fired 3, failures 0$", rules["no-miners"])
    assert.matches("^  tmp%-exec%s+exec%s+fired 3, failures 0, throttled 1$", rules["tmp-exec"])
    assert.matches("^  crash%s+exit%s+fired 1, failures 0$", rules.crash)
    assert.matches("^  setuid%-root%s+uid%s+fired 1, failures 0$", rules["setuid-root"])
  end)

  it("gives the same outputs when the lines come on stdin ('-')", function()
    local piped = D.replay { rules = { POLICY }, stdin = D.read(EVENTS) }
    assert.equal(0, piped.rc)
    assert.same(D.msgs(res), D.msgs(piped))
  end)

  it("writes text lines with -o text", function()
    local text = D.replay { rules = { POLICY }, file = EVENTS, format = "text" }
    local out = lines_of(text.out)
    assert.equal(#res.lines, #out)
    local ts = "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ "
    assert.equal(1, #D.grep(text.out, "web-shell"))
    assert.matches(ts .. escape("critical web-shell: shell /bin/sh spawned by web server /usr/sbin/nginx "
      .. "(pid 3003, user www-data)") .. "$", D.grep(text.out, "web-shell")[1])
    assert.matches(ts .. escape("critical no-miners: crypto miner /tmp/xmrig (pid 3002, user bob) [would kill]")
      .. "$", D.grep(text.out, "crypto miner")[1])
  end)
end)

describe("bad lines", function()
  teardown(D.cleanup)
  setup(function() POLICY = D.fixture_policy("ten_rules.lua") end)

  it("are reported with their line number and reason, and the good lines still run", function()
    local res = D.replay { rules = { POLICY }, file = BAD, stats = true }
    local reports = D.grep(res.err, "bad event line")
    -- line number -> what the reason must mention
    local want = {
      { 2, "not JSON: " }, { 3, "not a JSON object" }, { 4, "\"type\"" }, { 5, "unknown event type \"bogus\"" },
      { 6, "\"pid\"" }, { 7, "\"pid\"" }, { 10, "nested deeper than 8 levels" },
      { 11, "unknown event type \"ack\"" }, { 12, "\"pid\"" }, { 13, "not JSON: " },
    }
    assert.equal(#want, #reports)
    for i, w in ipairs(want) do
      local prefix = ("%s:%d: bad event line: "):format(BAD, w[1])
      assert.equal(prefix, reports[i]:sub(1, #prefix))
      assert.matches(w[2], reports[i]:sub(#prefix + 1), 1, true)
    end
    assert.same({ 4001, 4009, 4014 }, fired(res)["no-miners"])
  end)

  it("are counted (replay_bad_lines) and summed up at the end", function()
    local res = D.replay { rules = { POLICY }, file = BAD, stats = true }
    local counters = D.stats(res.err)
    assert.equal(10, counters.replay_bad_lines)
    assert.equal(3, counters.replayed)
    assert.same({ "procwarden: 10 bad lines in " .. BAD }, D.grep(res.err, "bad lines in"))
  end)

  it("from stdin are reported against '-'", function()
    local res = D.replay { rules = { POLICY }, stdin = '{"type":"exec","pid":1}\n{"type":"exec"}\n' }
    assert.same({ "-:2: bad event line: no valid \"pid\"" }, D.grep(res.err, "bad event line"))
  end)

  it("past the twentieth are only counted", function()
    local text = {}
    for i = 1, 25 do text[i] = '{"type":"nope","pid":' .. i .. "}" end
    local res = D.replay { rules = { POLICY }, stdin = table.concat(text, "\n") .. "\n", stats = true }
    assert.equal(20, #D.grep(res.err, "bad event line"))
    assert.equal(1, #D.grep(res.err, "-: more bad lines: only counted from here"))
    assert.equal(25, D.stats(res.err).replay_bad_lines)
  end)

  it("a line longer than the limit is one bad line, and the next line is read", function()
    local long = '{"type":"exec","pid":1,"exe":"/tmp/' .. ("x"):rep(1100 * 1024) .. '"}'
    local next_line = '{"type":"exec","pid":4242,"exe":"/tmp/xmrig"}'
    local res = D.replay { rules = { POLICY }, stdin = long .. "\n" .. next_line .. "\n", stats = true }
    assert.same({ "-:1: bad event line: line longer than 1048576 bytes" }, D.grep(res.err, "bad event line"))
    assert.same({ 4242 }, fired(res)["no-miners"])
    assert.equal(1, D.stats(res.err).replayed)
  end)
end)

describe("replayed events", function()
  teardown(D.cleanup)

  -- the pid of this busted process: alive, ours, readable in /proc
  local function my_pid()
    local p = assert(io.popen("echo $PPID"))
    local pid = tonumber(p:read("l"))
    p:close()
    return pid
  end

  local PROBE = [[
on("exec", function(e)
  local names = { "exe", "valid", "cwd", "comm", "argv", "cmdline", "ppid", "start_time", "uid", "user",
    "tty", "cgroup", "stdin", "env", "caps", "sha256", "parent", "ancestors", "tracer" }
  local parts = {}
  for i, name in ipairs(names) do parts[i] = name .. "=" .. tostring(e[name]) end
  log("info", table.concat(parts, " "))
end)
]]

  it("never read the live system: a line without fields leaves them nil, valid false", function()
    local pid = my_pid()
    assert.truthy(D.read("/proc/" .. pid .. "/cmdline"))
    local res = D.replay { rules = { D.policy(PROBE, "live.lua") }, events = { { type = "exec", pid = pid } } }
    assert.same({ "exe=nil valid=false cwd=nil comm=nil argv=nil cmdline=nil ppid=nil start_time=nil uid=nil "
      .. "user=nil tty=nil cgroup=nil stdin=nil env=nil caps=nil sha256=nil parent=nil ancestors=nil tracer=nil" },
      D.msgs(res))
  end)

  it("use the recorded fields as they are", function()
    local pid = my_pid()
    local res = D.replay { rules = { D.policy(PROBE, "recorded.lua") }, events = {
      { type = "exec", pid = pid, exe = "/opt/recorded", argv = { "recorded", "-x" }, uid = 4321, user = "ghost",
        cwd = "/nowhere", ppid = 1 } } }
    local msg = D.msgs(res)[1]
    for _, want in ipairs { "exe=/opt/recorded ", "valid=false ", "cwd=/nowhere ", "cmdline=recorded -x ",
      "ppid=1 ", "uid=4321 ", "user=ghost ", "comm=nil ", "parent=nil " } do
      assert.matches(want, msg, 1, true)
    end
  end)
end)

describe("actions in a replay", function()
  teardown(D.cleanup)
  setup(function() POLICY = D.fixture_policy("ten_rules.lua") end)

  local victim
  before_each(function()
    local p = assert(io.popen("sleep 120 >/dev/null 2>&1 & echo $!"))
    victim = tonumber(p:read("l"))
    p:close()
    assert.is_true(alive(victim))
  end)
  after_each(function()
    if victim and alive(victim) then os.execute("kill -KILL " .. victim) end
  end)

  local function miner_line(pid) return { type = "exec", pid = pid, tgid = pid, exe = "/tmp/xmrig", user = "bob" } end

  it("are dry-run by default: the process lives, the output says what would have been done", function()
    local res = D.replay { rules = { POLICY }, events = { miner_line(victim) } }
    assert.equal(0, res.rc)
    assert.same({ ("would kill pid %d (/tmp/xmrig) with SIGKILL"):format(victim) },
      D.msgs({ lines = D.select(res, { kind = "action" }) }))
    assert.is_true(alive(victim))
  end)

  it("are performed with --live-actions (so the dry run above had a real target)", function()
    local res = D.replay { rules = { POLICY }, events = { miner_line(victim) }, args = { "--live-actions" } }
    assert.equal(0, res.rc)
    assert.matches(("killed pid %d"):format(victim), res.out, 1, true)
    local gone = false
    for _ = 1, 100 do
      if not alive(victim) then gone = true break end
      D.sleep(0.05)
    end
    assert.is_true(gone)
  end)
end)
