-- rules_spec.lua: the rule{} DSL (name, on, match, when, action, priority,
-- tags, throttle, enabled), raw on() handlers and every/after timers beside
-- rules, through procwarden.testing (fake host and clock); the --check
-- summary through the real daemon.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local testing = require "procwarden.testing"
local D = require "helpers.daemon"

-- The outputs of a policy, as "kind level rule: text" strings.
local function said(p)
  local out = {}
  for i, o in ipairs(p:outputs()) do out[i] = ("%s %s %s: %s"):format(o.kind, o.level, o.rule, o.text) end
  return out
end

local function texts(p, kind)
  local out = {}
  for _, o in ipairs(p:outputs()) do
    if kind == nil or o.kind == kind then out[#out + 1] = o.text end
  end
  return out
end

describe("rule{}", function()
  teardown(D.cleanup)

  it("fires on the one event type a string `on` names, and on no other", function()
    local p = testing.load_string [[ rule { name = "r", on = "exec" } ]]
    p:feed { type = "exec" }
    p:feed { type = "fork", parent_pid = 1, child_pid = 2 }
    p:feed { type = "exit" }
    assert.same({ true, 1 }, { p:fired("r") })
  end)

  it("fires on each type of an `on` list", function()
    local p = testing.load_string [[ rule { name = "r", on = { "exec", "exit" } } ]]
    p:feed { type = "exec" }
    p:feed { type = "fork" }
    p:feed { type = "exit" }
    p:feed { type = "uid" }
    assert.same({ true, 2 }, { p:fired("r") })
  end)

  it("fires only when every match entry holds", function()
    local p = testing.load_string [[ rule { name = "r", on = "exec", match = { exe = "*/nc", uid = 0 } } ]]
    p:feed { type = "exec", exe = "/usr/bin/nc", uid = 1000 }
    p:feed { type = "exec", exe = "/usr/bin/ls", uid = 0 }
    assert.is_false((p:fired("r")))
    p:feed { type = "exec", exe = "/usr/bin/nc", uid = 0 }
    assert.same({ true, 1 }, { p:fired("r") })
  end)

  it("runs `when` after match, and fires only when it returns true", function()
    local p = testing.load_string [[
      rule { name = "r", on = "exec", match = { exe = "*/sudo" },
             when = function(e) if e.exe == "/bad/sudo" then error("when ran") end return e.uid ~= 0 end }
    ]]
    p:feed { type = "exec", exe = "/usr/bin/ls", uid = 1000 } -- match fails: when never runs
    p:feed { type = "exec", exe = "/usr/bin/sudo", uid = 0 }   -- when says no
    assert.is_false((p:fired("r")))
    assert.same({}, p:errors())
    p:feed { type = "exec", exe = "/usr/bin/sudo", uid = 1000 }
    assert.same({ true, 1 }, { p:fired("r") })
    p:feed { type = "exec", exe = "/bad/sudo", uid = 1000 }
    assert.equal(1, #p:errors())
    assert.matches("when ran", p:errors()[1].error, 1, true)
    assert.equal("r", p:errors()[1].rule)
  end)

  it("expands {field} templates in alert, including dotted paths into process objects", function()
    local p = testing.load_string [[
      rule { name = "web-shell", on = "exec", match = { ["parent.exe"] = "*/nginx" },
             action = alert "shell {exe} (pid {pid}, user {user}) under {parent.exe} [{parent.pid}]" }
    ]]
    p:feed { type = "exec", pid = 4242, exe = "/bin/sh", user = "www-data",
             parent = { exe = "/usr/sbin/nginx", pid = 900 } }
    assert.same({ "alert warning web-shell: shell /bin/sh (pid 4242, user www-data) under /usr/sbin/nginx [900]" },
      said(p))
  end)

  it("prints a missing template value as '-' and joins lists with spaces", function()
    local p = testing.load_string [[ rule { name = "r", on = "exec", action = alert "[{tty}] {argv} <{parent.exe}>" } ]]
    p:feed { type = "exec", argv = { "nc", "-l", "-p", "4444" } }
    assert.same({ "[-] nc -l -p 4444 <->" }, texts(p))
  end)

  it("log actions write at their own level with templates expanded", function()
    local p = testing.load_string [[
      rule { name = "r", on = "comm", action = log("notice", "renamed {pid} to {comm}") }
    ]]
    p:feed { type = "comm", pid = 77, comm = "kworker" }
    assert.same({ "log notice r: renamed 77 to kworker" }, said(p))
  end)

  it("runs several output actions in the order given", function()
    local p = testing.load_string [[
      rule { name = "r", on = "exec",
             action = { log("info", "first {pid}"), alert "second {pid}", log("debug", "third") } }
    ]]
    p:feed { type = "exec", pid = 5 }
    assert.same({ "log info r: first 5", "alert warning r: second 5", "log debug r: third" }, said(p))
  end)

  it("alerts at the rule's priority, warning when none is given", function()
    local p = testing.load_string [[
      rule { name = "crit", on = "exec", priority = "critical", action = alert "a" }
      rule { name = "dflt", on = "exec", action = alert "b" }
      rule { name = "dbg", on = "exec", priority = "debug", action = alert "c" }
    ]]
    p:feed { type = "exec" }
    assert.same({ "alert critical crit: a", "alert warning dflt: b", "alert debug dbg: c" }, said(p))
  end)

  it("carries the rule's tags on its outputs", function()
    local p = testing.load_string [[
      rule { name = "r", on = "exec", tags = { "mitre:T1496", "miner" }, action = alert "x" }
      rule { name = "untagged", on = "exec", action = alert "y" }
    ]]
    p:feed { type = "exec" }
    assert.same({ "mitre:T1496", "miner" }, p:outputs()[1].tags)
    assert.same({}, p:outputs()[2].tags)
  end)

  it("loads a rule with enabled = false, counts it, and never fires it", function()
    local p = testing.load_string [[
      rule { name = "off", on = "exec", enabled = false, action = alert "no" }
      rule { name = "on", on = "exec", enabled = true, action = alert "yes" }
    ]]
    p:feed { type = "exec" }
    assert.is_false((p:fired("off")))
    assert.same({ "yes" }, texts(p))
    assert.matches("^2 rules, ", p:summary())
  end)

  it("accepts a single action value without a list", function()
    local p = testing.load_string [[ rule { name = "r", on = "exec", action = alert "single {pid}" } ]]
    p:feed { type = "exec", pid = 3 }
    assert.same({ "single 3" }, texts(p))
  end)
end)

describe("throttle", function()
  local POLICY = [[
    rule { name = "miner", on = "exec", match = { exe = "*/xmrig*" }, priority = "error",
           throttle = { key = "exe", count = 2, per = 60 }, action = alert "miner {exe} {pid}" }
  ]]

  it("lets `count` firings per key through in a window and suppresses the rest", function()
    local p = testing.load_string(POLICY)
    for pid = 1, 5 do p:feed { type = "exec", pid = pid, exe = "/tmp/xmrig" } end
    assert.same({ true, 2 }, { p:fired("miner") })
    assert.same({ "miner /tmp/xmrig 1", "miner /tmp/xmrig 2" }, texts(p))
  end)

  it("keeps one window per key value", function()
    local p = testing.load_string(POLICY)
    for pid = 1, 3 do p:feed { type = "exec", pid = pid, exe = "/tmp/xmrig" } end
    for pid = 4, 6 do p:feed { type = "exec", pid = pid, exe = "/home/u/xmrig2" } end
    assert.same({ "miner /tmp/xmrig 1", "miner /tmp/xmrig 2", "miner /home/u/xmrig2 4", "miner /home/u/xmrig2 5" },
      texts(p))
  end)

  it("still suppresses inside the window and summarises it when the window rolls over", function()
    local p = testing.load_string(POLICY)
    for pid = 1, 5 do p:feed { type = "exec", pid = pid, exe = "/tmp/xmrig" } end
    p:advance(59)
    p:feed { type = "exec", pid = 6, exe = "/tmp/xmrig" }
    assert.same({ true, 2 }, { p:fired("miner") })
    p:advance(1)
    p:feed { type = "exec", pid = 7, exe = "/tmp/xmrig" }
    assert.same({ true, 3 }, { p:fired("miner") })
    local got = {}
    for i, o in ipairs(p:outputs()) do got[i] = ("%s %s: %s"):format(o.kind, o.level, o.text) end
    assert.same({
      "alert error: miner /tmp/xmrig 1",
      "alert error: miner /tmp/xmrig 2",
      "throttle error: suppressed 4 firings for exe=/tmp/xmrig in the last 60 s",
      "alert error: miner /tmp/xmrig 7",
    }, got)
  end)

  it("summarises a flood that stops, without waiting for a later firing", function()
    local p = testing.load_string(POLICY)
    for pid = 1, 5 do p:feed { type = "exec", pid = pid, exe = "/tmp/xmrig" } end
    p:advance(120)
    assert.same({ "suppressed 3 firings for exe=/tmp/xmrig in the last 60 s" }, texts(p, "throttle"))
  end)

  it("attributes the summary to the rule it throttled", function()
    local p = testing.load_string(POLICY)
    for pid = 1, 5 do p:feed { type = "exec", pid = pid, exe = "/tmp/xmrig" } end
    p:advance(120)
    D.known_bug(pending, "the sweep emits from the timer, so its output's rule is 'throttle summaries'", function()
      assert.same({ "throttle error miner: suppressed 3 firings for exe=/tmp/xmrig in the last 60 s" },
        (function()
          local out = {}
          for _, line in ipairs(said(p)) do
            if line:match("^throttle") then out[#out + 1] = line end
          end
          return out
        end)())
    end)
  end)

  it("says 'firing' for a single suppressed one, and nothing when none was suppressed", function()
    local p = testing.load_string(POLICY)
    for pid = 1, 3 do p:feed { type = "exec", pid = pid, exe = "/tmp/xmrig" } end
    p:advance(60)
    p:feed { type = "exec", pid = 4, exe = "/tmp/xmrig" }
    p:advance(60)
    p:feed { type = "exec", pid = 5, exe = "/tmp/xmrig" }
    assert.same({ "suppressed 1 firing for exe=/tmp/xmrig in the last 60 s" }, texts(p, "throttle"))
  end)

  it("throttles the whole rule when no key is given", function()
    local p = testing.load_string [[
      rule { name = "r", on = "exec", throttle = { count = 1, per = 10 }, action = alert "{exe}" }
    ]]
    p:feed { type = "exec", exe = "/a" }
    p:feed { type = "exec", exe = "/b" }
    p:feed { type = "exec", exe = "/c" }
    p:advance(10)
    p:feed { type = "exec", exe = "/d" }
    assert.same({ "/a", "/d" }, texts(p, "alert"))
    local summary = texts(p, "throttle")
    assert.equal(1, #summary)
    assert.matches("suppressed 2 firings", summary[1], 1, true)
  end)

  it("takes a dotted key from a process object", function()
    local p = testing.load_string [[
      rule { name = "r", on = "exec", throttle = { key = "parent.exe", count = 1, per = 60 }, action = alert "{exe}" }
    ]]
    p:feed { type = "exec", exe = "/bin/sh", parent = { exe = "/usr/sbin/nginx" } }
    p:feed { type = "exec", exe = "/bin/bash", parent = { exe = "/usr/sbin/nginx" } }
    p:feed { type = "exec", exe = "/bin/dash", parent = { exe = "/usr/sbin/httpd" } }
    D.known_bug(pending, "rules.throttle_pass reads e['parent.exe'] before splitting the dotted key", function()
      assert.same({}, p:errors())
      assert.same({ "/bin/sh", "/bin/dash" }, texts(p))
    end)
  end)
end)

describe("raw handlers and timers beside rules", function()
  teardown(D.cleanup)

  it("runs on() handlers and rules on the same event, in load order", function()
    local p = testing.load_string([[
rule { name = "first", on = "exec", action = alert "rule {pid}" }
on("exec", function(e) log("info", "handler {exe} {pid}", e) end)
on("exit", function(e) alert("exit {pid} status {exit_status}", e) end)
]], "pol")
    p:feed { type = "exec", pid = 10, exe = "/bin/true" }
    p:feed { type = "exit", pid = 10, exit_status = 3 }
    assert.same({
      "alert warning first: rule 10",
      "log info pol:2: handler /bin/true 10",
      "alert warning pol:3: exit 10 status 3",
    }, said(p))
  end)

  it("lets a handler keep state in globals declared at load", function()
    local p = testing.load_string [[
      seen = 0
      on("exec", function(e)
        seen = seen + 1
        if seen == 3 then alert("third exec {pid}", e) end
      end)
    ]]
    for pid = 1, 4 do p:feed { type = "exec", pid = pid } end
    assert.same({ "third exec 3" }, texts(p))
  end)

  it("runs every(s) each s seconds and after(s) once, as the clock advances", function()
    local p = testing.load_string [[
      ticks = 0
      every(10, function() ticks = ticks + 1; log("info", "tick " .. ticks) end)
      after(5, function() log("notice", "once") end)
    ]]
    p:advance(4)
    assert.same({}, texts(p))
    p:advance(1)
    assert.same({ "once" }, texts(p))
    p:advance(20)
    assert.same({ "once", "tick 1", "tick 2" }, texts(p))
    p:advance(100)
    assert.equal(13, #texts(p)) -- once + ticks at 10 .. 120
  end)

  it("keeps running a timer that raises, recording each error", function()
    local p = testing.load_string [[ every(1, function() error("timer broke") end) ]]
    p:advance(3)
    assert.equal(3, #p:errors())
    assert.matches("timer broke", p:errors()[3].error, 1, true)
  end)

  it("names a timer's outputs after the file:line that created it", function()
    D.known_bug(pending, "api.every/after tail-call timer(), so where(3) names '[C]:-1'", function()
      local p = testing.load_string([[
x = 1
every(10, function() log("info", "tick") end)
]], "pol")
      p:advance(10)
      assert.equal("pol:2", p:outputs()[1].rule)
    end)
  end)

  it("--check prints the rules, handlers and timers per event type", function()
    local path = D.policy([[
rule { name = "a", on = "exec" }
rule { name = "b", on = "exec", match = { exe = "*/nc" } }
rule { name = "c", on = { "exec", "exit" }, enabled = false }
on("fork", function() end)
on("exec", function() end)
every(60, function() end)
after(1, function() end)
]], "summary.lua")
    local res = D.check(path)
    assert.equal(0, res.rc)
    assert.equal("", res.err)
    local lines = {}
    for line in res.out:gmatch("[^\n]+") do lines[#lines + 1] = line:gsub("%s+$", "") end
    assert.same({
      "rules ok:",
      "  " .. path,
      "3 rules, 2 handlers, 2 timers",
      "  fork      0 rules, 1 handler",
      "  exec      3 rules, 1 handler",
      "  exit      1 rule, 0 handlers",
    }, lines)
  end)

  it("--check counts a policy with no rules as such", function()
    local res = D.check(D.policy([[local x = 1]], "empty.lua"))
    assert.equal(0, res.rc)
    assert.matches("\n0 rules, 0 handlers, 0 timers\n", res.out, 1, true)
  end)
end)
