-- examples_spec.lua: the example policies in rules/examples/. Each one is
-- loaded with procwarden.testing and fed its fixture,
-- spec/fixtures/examples/<policy>.jsonl (the --record format), which holds
-- events that must fire and near misses that must not. The spec says
-- exactly which rules fired how often, which pids were alerted on and
-- which were killed; then that the real daemon, replaying the same fixture,
-- agrees; that every example passes --check; and that the embedded default
-- policy stays alert-only. The rules that match on argv are also fed
-- command lines cut at capture (argv_truncated): a cut hides no argument.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local testing = require "procwarden.testing"
local json = require "dkjson"

local BIN = (os.getenv("PW_BUILD") or "build") .. "/procwarden"

local function policy(name) return "rules/examples/" .. name .. ".lua" end
local function fixture(name) return "spec/fixtures/examples/" .. name .. ".jsonl" end

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

-- Run a shell command: its exit code and stdout.
local function run(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

-- Expected results per policy:
--   fired  = { rule = firings } for every rule of the policy (0 included);
--   alerts = { rule = { pid, ... } } in event order;
--   kills  = { "rule pid", ... } in order (SIGKILL);
--   quiet  = pids of near misses: in the fixture, in no output or action.
local CASES = {
  forbidden_binaries = {
    fired = { ["forbidden-binary-exe"] = 3, ["forbidden-binary-sha256"] = 1 },
    alerts = { ["forbidden-binary-exe"] = { 4101, 4102, 4104 }, ["forbidden-binary-sha256"] = { 4103 } },
    kills = { "forbidden-binary-exe 4101", "forbidden-binary-exe 4102", "forbidden-binary-sha256 4103",
      "forbidden-binary-exe 4104" },
    quiet = { 4201, 4202, 4203, 4204, 4205, 4206 },
  },
  miners = {
    -- 5107-5109, 5207, 5208: command lines cut at capture (argv_truncated)
    fired = { ["miner-binary"] = 4, ["miner-arguments"] = 4, ["miner-arguments-truncated"] = 2 },
    alerts = { ["miner-binary"] = { 5101, 5104, 5106, 5108 }, ["miner-arguments"] = { 5102, 5103, 5105, 5109 },
      ["miner-arguments-truncated"] = { 5107, 5109 } },
    kills = { "miner-binary 5101", "miner-arguments 5102", "miner-arguments 5103", "miner-binary 5104",
      "miner-arguments 5105", "miner-binary 5106", "miner-binary 5108", "miner-arguments 5109" },
    -- 5207: a linker (LONG_ARGV_OK); 5208: the same cut program as 5107 within 5 minutes, throttled
    quiet = { 5201, 5202, 5203, 5204, 5205, 5206, 5207, 5208 },
  },
  privilege_escalation = {
    fired = { ["privesc-euid-root"] = 4 },
    alerts = { ["privesc-euid-root"] = { 6101, 6102, 6103, 6104 } },
    kills = {},
    -- 6209: already root (its setuid exec was the escalation); 6210: su's child, su's own ids
    -- captured before its setuid took effect
    quiet = { 6201, 6202, 6203, 6204, 6205, 6206, 6207, 6208, 6209, 6210 },
  },
  ptrace = {
    fired = { ["ptrace-attach-non-debugger"] = 5, ["ptrace-attach-unknown-tracer"] = 1 },
    alerts = { ["ptrace-attach-non-debugger"] = { 7001, 7002, 7004, 7005, 7007 },
      ["ptrace-attach-unknown-tracer"] = { 7003 } },
    kills = {},
    quiet = { 7006, 7101, 7102, 7103, 7104, 7105 }, -- 7006: the tracer's 4th attach, throttled
  },
  webserver_shell = {
    -- 8110, 8203: an allowed command and a postgres title cut at capture (argv_truncated)
    fired = { ["webserver-shell"] = 8, ["database-shell"] = 3 },
    alerts = { ["webserver-shell"] = { 8101, 8102, 8103, 8104, 8105, 8106, 8107, 8110 },
      ["database-shell"] = { 8201, 8202, 8203 } },
    kills = {},
    -- 8108, 8109: php-fpm's 6th and 7th shells (8109 from another worker), throttled per server binary;
    -- 8310: 8110's command, whole
    quiet = { 8108, 8109, 8301, 8302, 8303, 8304, 8305, 8306, 8307, 8308, 8309, 8310 },
  },
  reverse_shell = {
    fired = { ["reverse-shell"] = 3, ["reverse-shell-interpreter"] = 1 },
    alerts = { ["reverse-shell"] = { 9101, 9102, 9105 }, ["reverse-shell-interpreter"] = { 9103 } },
    kills = {},
    quiet = { 9104, 9201, 9202, 9203, 9204, 9205, 9206, 9207 }, -- 9104: same socket as 9101, throttled
  },
  fork_bomb = {
    fired = { ["fork-bomb"] = 1 },
    alerts = { ["fork-bomb"] = { 22002 } }, -- uid 1000's 1001st fork within the window (9 more throttled)
    kills = {},
    -- The near misses are per uid, so the exact alert list above covers them: uid 1001 forks
    -- 600 processes and creates 401 threads within a second, then 401 more processes 6 s later;
    -- uid 1000 forks 5 more once its window has slid.
    quiet = {},
  },
  core_dumps = {
    fired = { ["core-dump"] = 3, ["core-dump-root"] = 2 },
    alerts = { ["core-dump"] = { 9501, 9503, 9504 }, ["core-dump-root"] = { 9601, 9602 } },
    kills = {},
    quiet = { 9502, 9505, 9506, 9603, 9701, 9702, 9703, 9704, 9705 }, -- 9505/9506: the same exe, throttled
  },
}
local ORDER = { "forbidden_binaries", "miners", "privilege_escalation", "ptrace", "webserver_shell",
  "reverse_shell", "fork_bomb", "core_dumps" }

local function replay(name)
  local p = testing.load(policy(name))
  p:feed_file(fixture(name))
  return p
end

local function firings(p, names)
  local out = {}
  for name in pairs(names) do out[name] = select(2, p:fired(name)) end
  return out
end

local function alerted(p)
  local out = {}
  for _, o in ipairs(p:outputs()) do
    if o.kind == "alert" then
      out[o.rule] = out[o.rule] or {}
      table.insert(out[o.rule], o.event.pid)
    end
  end
  return out
end

local function killed(p)
  local out = {}
  for _, a in ipairs(p:actions()) do
    assert.equal("kill", a.kind)
    assert.equal(9, a.signal)
    out[#out + 1] = ("%s %d"):format(a.rule, a.pid)
  end
  return out
end

-- Every pid an output or an action was about.
local function touched(p)
  local set = {}
  for _, o in ipairs(p:outputs()) do
    if o.event then set[o.event.pid] = true end
  end
  for _, a in ipairs(p:actions()) do set[a.pid] = true end
  return set
end

local function fixture_pids(name)
  local set = {}
  for line in io.lines(fixture(name)) do
    local e = assert(json.decode(line))
    set[e.pid] = true
  end
  return set
end

-- What the real daemon says replaying the fixture (-o json): alerts per
-- rule and the kills it would perform, in the shapes above.
local function daemon_replay(name)
  local err = os.tmpname()
  local code, out = run(("timeout 120 %s --replay %s -o json %s 2>%s"):format(
    q(BIN), q(fixture(name)), q(policy(name)), q(err)))
  local diag = read(err)
  os.remove(err)
  local alerts, kills = {}, {}
  for line in out:gmatch("[^\n]+") do
    local o = assert(json.decode(line), line)
    if o.kind == "alert" then
      alerts[o.rule] = alerts[o.rule] or {}
      table.insert(alerts[o.rule], o.event.pid)
    elseif o.kind == "action" then
      assert.equal("kill", o.actions[1].name)
      kills[#kills + 1] = ("%s %d"):format(o.rule, o.event.pid)
    end
  end
  return code, alerts, kills, diag
end

describe("example policy", function()
  for _, name in ipairs(ORDER) do
    local case = CASES[name]
    describe(name, function()
      it("replays its fixture without a rule error", function()
        assert.same({}, replay(name):errors())
      end)

      it("fires exactly the expected rules, the expected number of times", function()
        local p = replay(name)
        assert.same(case.fired, firings(p, case.fired))
        local expected = {}
        for rule, n in pairs(case.fired) do
          if n > 0 then expected[#expected + 1] = rule end
        end
        table.sort(expected)
        assert.same(expected, p:fired_rules())
      end)

      it("alerts on exactly the expected processes", function()
        assert.same(case.alerts, alerted(replay(name)))
      end)

      it(#case.kills > 0 and "kills exactly the expected processes (and alerts)" or "is alert-only", function()
        assert.same(case.kills, killed(replay(name)))
      end)

      it("stays quiet on the near misses", function()
        local in_fixture, seen = fixture_pids(name), touched(replay(name))
        for _, pid in ipairs(case.quiet) do
          assert.is_true(in_fixture[pid], ("near miss %d is not in the fixture"):format(pid))
          assert.is_nil(seen[pid], ("near miss %d fired"):format(pid))
        end
      end)

      it("passes procwarden --check", function()
        local code, out = run(("%s --check %s 2>&1"):format(q(BIN), q(policy(name))))
        assert.equal(0, code, out)
        local n = 0
        for _ in pairs(case.fired) do n = n + 1 end
        assert.matches(("%d rules?, 0 handlers"):format(n), out)
      end)

      it("gives the same answer replayed by the daemon (actions dry-run)", function()
        local code, alerts, kills, diag = daemon_replay(name)
        assert.equal(0, code, diag)
        assert.same(case.alerts, alerts)
        assert.same(case.kills, kills)
      end)
    end)
  end
end)

describe("forbidden_binaries", function()
  it("kills through the identity check (pid and the start time from the line), then alerts", function()
    local p = replay("forbidden_binaries")
    local a = p:actions()[3]
    assert.same({ "kill", "forbidden-binary-sha256", 4103, 104103, 9 },
      { a.kind, a.rule, a.pid, a.start_time, a.signal })
    local last
    for _, o in ipairs(p:outputs()) do
      if o.kind == "alert" and o.event.pid == 4103 then last = o end
    end
    assert.equal("critical", last.level)
    assert.same({ "mitre:T1588.001", "mitre:T1204.002" }, last.tags)
    assert.equal("forbidden binary by hash: /tmp/update-helper sha256 "
      .. "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f (pid 4103, user alice) [killed]", last.text)
  end)

  it("judges processes already running at start-up", function()
    local p = testing.load(policy("forbidden_binaries"))
    p:feed { type = "exec", pid = 77, startup = true, exe = "/opt/bin/hashcat", uid = 0 }
    assert.same({ true, 1 }, { p:fired("forbidden-binary-exe") })
    assert.equal(77, p:actions()[1].pid)
  end)
end)

describe("miners", function()
  it("kills a miner that matches by name and by arguments once", function()
    local p = testing.load(policy("miners"))
    p:feed { type = "exec", pid = 50, exe = "/tmp/xmrig", argv = { "xmrig", "-o", "stratum+tcp://p:3333" } }
    assert.same({ "miner-binary" }, p:fired_rules())
    assert.equal(1, #p:actions())
  end)
end)

describe("miners: a command line cut at capture", function()
  local PAD = string.rep("x", 4090)

  it("cannot hide a pool past the cut: the cut itself alerts, naming the program", function()
    local p = testing.load(policy("miners"))
    p:feed { type = "exec", pid = 60, exe = "/home/eve/.k/kthreadd", user = "eve",
      argv = { "[kthreadd]", "--pad=" .. PAD }, argv_truncated = true }
    assert.same({ "miner-arguments-truncated" }, p:fired_rules())
    assert.same({}, p:actions()) -- an alert, not a kill: long command lines are also what builds run
    local o = p:outputs()[1]
    assert.equal("warning", o.level)
    assert.matches("^command line of /home/eve/%.k/kthreadd cut at capture", o.text)
    assert.matches("%(pid 60, user eve%)$", o.text)
  end)

  it("the same arguments whole: nothing to suspect", function()
    local p = testing.load(policy("miners"))
    p:feed { type = "exec", pid = 61, exe = "/home/eve/.k/kthreadd", argv = { "[kthreadd]", "--pad=" .. PAD },
      argv_truncated = false }
    assert.same({}, p:fired_rules())
  end)

  it("a pool within the captured part is still killed", function()
    local p = testing.load(policy("miners"))
    p:feed { type = "exec", pid = 62, exe = "/home/eve/.k/kthreadd",
      argv = { "[kthreadd]", "-o", "stratum+tcp://pool:3333", "--pad=" .. PAD }, argv_truncated = true }
    assert.same({ "miner-arguments", "miner-arguments-truncated" }, p:fired_rules())
    assert.equal(1, #p:actions())
    assert.equal(62, p:actions()[1].pid)
  end)
end)

describe("webserver_shell: a command line cut at capture", function()
  local function apache() -- (a fresh table each time: a fed table becomes the event)
    return { pid = 8002, exe = "/usr/sbin/apache2", argv = { "/usr/sbin/apache2", "-k", "start" } }
  end

  it("is never an allowed command: the part past the cut could hold anything", function()
    local p = testing.load(policy("webserver_shell"))
    local cmd = "/usr/bin/logger " .. string.rep("a", 4000)
    p:feed { type = "exec", pid = 70, exe = "/usr/bin/dash", argv = { "sh", "-c", cmd }, argv_truncated = false,
      parent = apache() }
    assert.same({}, p:fired_rules()) -- whole, it is one allowed command
    p:feed { type = "exec", pid = 71, exe = "/usr/bin/dash", argv = { "sh", "-c", cmd }, argv_truncated = true,
      parent = apache() }
    assert.same({ true, 1 }, { p:fired("webserver-shell") })
    assert.equal(71, p:outputs()[1].event.pid)
  end)

  it("a postgres title cut short is not a background process", function()
    local p = testing.load(policy("webserver_shell"))
    local title = "postgres: 15/main: archiver " .. string.rep("p", 4000)
    local function pg(truncated)
      return { pid = 8006, exe = "/usr/lib/postgresql/15/bin/postgres", argv = { title }, argv_truncated = truncated }
    end
    p:feed { type = "exec", pid = 72, exe = "/usr/bin/dash", argv = { "sh", "-c", "cp a b" }, parent = pg(false) }
    assert.same({}, p:fired_rules())
    p:feed { type = "exec", pid = 73, exe = "/usr/bin/dash", argv = { "sh", "-c", "cp a b" }, parent = pg(true) }
    assert.same({ true, 1 }, { p:fired("database-shell") })
  end)
end)

describe("privilege_escalation", function()
  it("says who became root, from what, under which parent", function()
    local p = replay("privilege_escalation")
    assert.equal("privilege escalation: /tmp/.x/exploit (pid 6101) became euid 0 from euid 1000 (uid 1000), "
      .. "parent /usr/bin/bash (pid 4000, uid 1000)", p:outputs()[1].text)
  end)

  it("throttles to 5 alerts per parent a minute", function()
    local p = testing.load(policy("privilege_escalation"))
    for pid = 1, 7 do
      p:feed { type = "uid", pid = 100 + pid, ppid = 99, euid = 0, prev_euid = 1000, exe = "/tmp/x",
        parent = { pid = 99, exe = "/usr/bin/bash", uid = 1000, euid = 1000 } }
    end
    assert.same({ true, 5 }, { p:fired("privesc-euid-root") })
  end)
end)

describe("ptrace", function()
  it("throttles per tracer, and sums up what it suppressed when the window reopens", function()
    local p = replay("ptrace")
    -- Throttles run on the events' own time (replays are deterministic):
    -- the next attach comes 61 s after the fixture's last line.
    p:feed { type = "ptrace", pid = 7008, exe = "/usr/sbin/sshd", tracer_pid = 7100, tracer_tgid = 7100,
      tracer = { pid = 7100, exe = "/tmp/.x/inject", uid = 0 }, time = 1764072006.0 + 61 }
    assert.same({ true, 6 }, { p:fired("ptrace-attach-non-debugger") })
    local texts = {}
    for _, o in ipairs(p:outputs()) do
      if o.kind == "throttle" then texts[#texts + 1] = o.text end
    end
    assert.same({ "suppressed 1 firing for tracer_tgid=7100 in the last 60 s" }, texts)
  end)
end)

describe("fork_bomb", function()
  local function burst(p, uid, n, t0, seconds, first_pid)
    for i = 0, n - 1 do
      p:feed { type = "fork", pid = first_pid + i, uid = uid, parent_pid = first_pid - 1, time = t0 + i * seconds / n }
    end
  end

  it("counts by the event's time, not the clock: the same forks spread out do not fire", function()
    local p = testing.load(policy("fork_bomb"))
    burst(p, 1000, 1001, 1764072000, 20, 40000) -- 50 a second
    assert.same({ false, 0 }, { p:fired("fork-bomb") })
    burst(p, 1001, 1001, 1764072000, 1, 50000) -- the same number within a second
    assert.same({ true, 1 }, { p:fired("fork-bomb") })
  end)

  it("alerts once per uid a minute and then reports what it held back", function()
    local p = replay("fork_bomb")
    p:advance(61)
    burst(p, 1000, 1001, 1764072100, 1, 60000)
    assert.same({ true, 2 }, { p:fired("fork-bomb") })
    local texts = {}
    for _, o in ipairs(p:outputs()) do
      if o.kind == "throttle" then texts[#texts + 1] = o.text end
    end
    assert.same({ "suppressed 9 firings for uid=1000 in the last 60 s" }, texts)
  end)

  it("keeps its memory bounded under a flood of new uids, and still catches a bomb after", function()
    local p = testing.load(policy("fork_bomb"))
    local function uids(from, to) -- all within one window: none can be forgotten as idle
      for uid = from, to do
        p:feed { type = "fork", pid = 100000 + uid, uid = 100000 + uid, time = 1764072000 + uid / 1e6 }
      end
      p:reset() -- drop the recorded outputs, keep the policy's state
      collectgarbage("collect")
      collectgarbage("collect")
      return collectgarbage("count")
    end
    local before = uids(1, 5000)
    local after = uids(5001, 40000)
    assert.is_true(after - before < 3072, ("grew by %.0f KB"):format(after - before))
    burst(p, 1000, 1001, 1764072002, 1, 200000)
    assert.same({}, p:errors())
    assert.same({ true, 1 }, { p:fired("fork-bomb") })
  end)
end)

describe("the default policy", function()
  -- The source without comments and string literals (enough of a lexer for
  -- this file): `on("exec", ...)` names an event type, it is no action.
  local function code_of(src)
    src = src:gsub("%-%-%[(=*)%[.-%]%1%]", ""):gsub("%-%-[^\n]*", "")
    src = src:gsub("%[(=*)%[.-%]%1%]", '""'):gsub('"[^"\n]*"', '""'):gsub("'[^'\n]*'", "''")
    return src
  end

  it("has no kill, stop, signal, exec, deny or protect in its code", function()
    local code = code_of(read("rules/default.lua"))
    assert.matches("on%(", code) -- the lexer left the code
    for _, word in ipairs { "kill", "stop", "signal", "exec", "deny", "protect" } do
      assert.is_nil(code:find("%f[%w_]" .. word .. "%f[^%w_]"), ("rules/default.lua calls %s"):format(word))
    end
  end)

  it("takes no action on any example fixture, and only logs", function()
    local p = testing.load("rules/default.lua")
    for _, name in ipairs(ORDER) do p:feed_file(fixture(name)) end
    assert.same({}, p:errors())
    assert.same({}, p:actions())
    for _, o in ipairs(p:outputs()) do assert.equal("log", o.kind) end
    assert.is_true(#p:outputs() > 0)
  end)
end)
