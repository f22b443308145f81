-- testing_spec.lua: the procwarden.testing API that users write their own
-- policy specs with: load, load_string, load_error, feed, feed_file, fired,
-- fired_rules, outputs, actions, errors, advance, reset, summary.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local testing = require "procwarden.testing"
local D = require "helpers.daemon"

local POLICY = D.fixtures .. "/ten_rules.lua"
local EVENTS = D.fixtures .. "/events.jsonl"
local BAD = D.fixtures .. "/bad_lines.jsonl"

local ALL_TEN = { "base64-decode", "crash", "history-wipe", "kthread-masquerade", "nc-exec", "no-miners",
  "ptrace-attach", "setuid-root", "tmp-exec", "web-shell" }

local function texts(p, kind)
  local out = {}
  for _, o in ipairs(p:outputs()) do
    if kind == nil or o.kind == kind then out[#out + 1] = o.text end
  end
  return out
end

describe("procwarden.testing", function()
  teardown(D.cleanup)

  describe("load", function()
    it("loads a policy file", function()
      local p = testing.load(POLICY)
      assert.matches("^10 rules, 0 handlers, 0 timers\n", p:summary())
    end)

    it("loads several files into one policy", function()
      local extra = D.policy([[on("exec", function() end) every(5, function() end)]], "extra.lua")
      local p = testing.load(POLICY, extra)
      assert.matches("^10 rules, 1 handler, 1 timer\n", p:summary())
    end)

    -- (luassert's has_error strips "file:line: ", so compare by hand)
    local function load_failure(...)
      local ok, err = pcall(testing.load, ...)
      assert.is_false(ok)
      return (tostring(err):match("^[^\n]*"))
    end

    it("raises a bad file's error as file:line: message", function()
      local bad = D.policy("\nrule { name = \"x\", on = \"exec\", match = { exee = \"a\" } }", "bad.lua")
      assert.equal(bad .. ":2: rule x: unknown event field 'exee' (did you mean 'exe'?)", load_failure(bad))
    end)

    it("raises a syntax error as file:line: message", function()
      local bad = D.policy("rule {", "syntax.lua")
      assert.equal(bad .. ":1: unexpected symbol near <eof>", load_failure(bad))
    end)

    it("raises the error of the file that has it", function()
      local good = D.policy([[rule { name = "a", on = "exec" }]], "good.lua")
      local bad = D.policy([[rule { name = "a", on = "exit" }]], "again.lua")
      assert.equal(("%s:1: rule a: duplicate name (first defined at %s:1)"):format(bad, good), load_failure(good, bad))
    end)
  end)

  describe("load_string and load_error", function()
    it("load_string names the source in messages", function()
      local p = testing.load_string("\non(\"exec\", function(e) log(\"info\", \"x\") end)", "inline")
      p:feed { type = "exec" }
      assert.equal("inline:2", p:outputs()[1].rule)
    end)

    it("load_error gives the first line of the load error", function()
      assert.equal("pol:1: rule: unknown key 'mach' (did you mean 'match'?)",
        testing.load_error([[rule { name = "x", on = "exec", mach = {} }]], "pol"))
      assert.equal("pol:1: top level broke", testing.load_error([[error("top level broke")]], "pol"))
    end)

    it("load_error gives nil when the source loads", function()
      assert.is_nil(testing.load_error([[rule { name = "x", on = "exec" }]]))
    end)

    it("gives each policy its own runtime", function()
      local a = testing.load_string [[ rule { name = "same", on = "exec", action = alert "a" } ]]
      local b = testing.load_string [[ rule { name = "same", on = "exit", action = alert "b" } ]]
      a:feed { type = "exec" }
      assert.same({ "a" }, texts(a))
      assert.same({}, texts(b))
      assert.is_false((b:fired("same")))
    end)

    it("leaves the caller's own string metatable alone", function()
      testing.load_string [[ rule { name = "x", on = "exec" } ]]
      assert.is_table(getmetatable(""))
      assert.equal(string, getmetatable("").__index)
    end)
  end)

  describe("feed", function()
    it("dispatches one event table and returns the policy for chaining", function()
      local p = testing.load(POLICY)
      local r = p:feed { type = "exec", pid = 4242, exe = "/tmp/xmrig", user = "bob" }
      assert.equal(p, r)
      assert.same({ "no-miners", "tmp-exec" }, p:fired_rules())
    end)

    it("fills in pid, tgid, thread, startup and time", function()
      local p = testing.load_string [[
        on("exec", function(e)
          log("info", ("%s %s %s %s %s"):format(e.pid, e.tgid, tostring(e.thread), tostring(e.startup),
            type(e.time)))
        end)
      ]]
      p:feed { type = "exec" }
      p:feed { type = "exec", pid = 7, tgid = 5 }
      assert.same({ "1000 1000 false false number", "7 5 true false number" }, texts(p))
    end)

    it("leaves absent fields nil: nothing is read from this machine", function()
      local p = testing.load_string [[
        on("exec", function(e) log("info", tostring(e.exe) .. " " .. tostring(e.valid) .. " " .. tostring(e.cwd)) end)
      ]]
      p:feed { type = "exec", pid = 1 }
      assert.same({ "nil false nil" }, texts(p))
    end)

    it("refuses an unknown event type", function()
      local p = testing.load_string [[ rule { name = "x", on = "exec" } ]]
      assert.has_error(function() p:feed { type = "bogus" } end, "feed: unknown event type 'bogus'")
    end)
  end)

  describe("feed_file", function()
    it("replays a --record fixture the way the daemon does", function()
      local p = testing.load(POLICY):feed_file(EVENTS)
      assert.same(ALL_TEN, p:fired_rules())
      assert.same({ true, 3 }, { p:fired("no-miners") })
      assert.same({ true, 3 }, { p:fired("tmp-exec") })
      assert.same({ true, 1 }, { p:fired("web-shell") })
      assert.same({}, p:errors())
    end)

    it("stops at a bad line with file:line, after feeding the lines before it", function()
      local p = testing.load(POLICY)
      local ok, err = pcall(p.feed_file, p, BAD)
      assert.is_false(ok)
      assert.matches("^" .. BAD:gsub("%p", "%%%0") .. ":2: bad event line: not JSON: ", err)
      assert.same({ true, 1 }, { p:fired("no-miners") }) -- line 1
    end)
  end)

  describe("fired and fired_rules", function()
    it("fired gives whether and how many times a rule fired", function()
      local p = testing.load(POLICY)
      assert.same({ false, 0 }, { p:fired("no-miners") })
      p:feed { type = "exec", exe = "/opt/minerd" }
      p:feed { type = "exec", exe = "/opt/minerd" }
      assert.same({ true, 2 }, { p:fired("no-miners") })
    end)

    it("fired refuses a rule name the policy does not have", function()
      local p = testing.load(POLICY)
      assert.has_error(function() p:fired("no-minerz") end, "fired: no rule named 'no-minerz'")
    end)

    it("fired_rules lists the rules that fired, sorted", function()
      local p = testing.load(POLICY)
      assert.same({}, p:fired_rules())
      p:feed { type = "exec", exe = "/tmp/xmrig" }
      p:feed { type = "comm", comm = "kworker/1:0" }
      assert.same({ "kthread-masquerade", "no-miners", "tmp-exec" }, p:fired_rules())
    end)
  end)

  describe("outputs, actions and errors", function()
    it("outputs hold level, text, kind, rule, tags and the event", function()
      local p = testing.load(POLICY)
      p:feed { type = "exec", pid = 42, exe = "/opt/xmrig", user = "eve" }
      local alert
      for _, o in ipairs(p:outputs()) do
        if o.kind == "alert" then alert = o end
      end
      assert.is_table(alert)
      assert.equal("critical", alert.level)
      assert.equal("no-miners", alert.rule)
      assert.same({ "mitre:T1496" }, alert.tags)
      assert.equal(42, alert.event.pid)
      assert.matches("^crypto miner /opt/xmrig %(pid 42, user eve%)", alert.text)
    end)

    it("actions record the effects instead of performing them", function()
      local p = testing.load(POLICY)
      p:feed { type = "exec", pid = 4242, exe = "/tmp/xmrig" }
      p:feed { type = "exec", pid = 4243, exe = "/usr/bin/ls" }
      local actions = p:actions()
      assert.equal(1, #actions)
      assert.equal("kill", actions[1].kind)
      assert.equal("no-miners", actions[1].rule)
      assert.equal(4242, actions[1].pid)
      assert.equal(9, actions[1].signal)
    end)

    it("errors hold the rule and the error with its traceback", function()
      local p = testing.load_string([[
rule { name = "broken", on = "exec", when = function(e) return e.nope end }
]], "pol")
      p:feed { type = "exec" }
      local errs = p:errors()
      assert.equal(1, #errs)
      assert.equal("broken", errs[1].rule)
      assert.matches("^pol:1: unknown event field 'nope'", errs[1].error)
      assert.matches("stack traceback:", errs[1].error, 1, true)
    end)
  end)

  describe("advance", function()
    it("moves the clock for throttle windows", function()
      local p = testing.load(POLICY)
      for _ = 1, 3 do p:feed { type = "exec", exe = "/tmp/a.out" } end
      assert.same({ true, 2 }, { p:fired("tmp-exec") })
      p:advance(60)
      p:feed { type = "exec", exe = "/tmp/a.out" }
      assert.same({ true, 3 }, { p:fired("tmp-exec") })
      assert.same({ "suppressed 1 firing for exe=/tmp/a.out in the last 60 s" }, texts(p, "throttle"))
    end)

    it("runs the timers that fall due, and returns the policy", function()
      local p = testing.load_string [[ every(2, function() log("info", "beat") end) ]]
      assert.equal(p, p:advance(1))
      assert.same({}, texts(p))
      p:advance(5)
      assert.same({ "beat", "beat", "beat" }, texts(p))
    end)
  end)

  describe("reset", function()
    it("forgets outputs, actions, errors and firing counts, keeping the rules", function()
      local p = testing.load(POLICY)
      p:feed { type = "exec", exe = "/tmp/xmrig" }
      p:feed { type = "exit", term_signal = 11, comm = "x" }
      assert.is_true(#p:outputs() > 0)
      assert.is_true(#p:actions() > 0)
      assert.equal(p, p:reset())
      assert.same({}, p:outputs())
      assert.same({}, p:actions())
      assert.same({}, p:errors())
      assert.same({}, p:fired_rules())
      p:feed { type = "exec", exe = "/tmp/xmrig" }
      assert.same({ true, 1 }, { p:fired("no-miners") })
    end)
  end)

  describe("summary", function()
    it("is the daemon's --check summary", function()
      local p = testing.load(POLICY)
      local res = D.check(D.fixture_policy("ten_rules.lua"))
      assert.equal(0, res.rc)
      assert.matches("\n" .. p:summary():gsub("%p", "%%%0") .. "\n$", res.out)
      assert.equal(table.concat({
        "10 rules, 0 handlers, 0 timers",
        "  exec      6 rules, 0 handlers",
        "  exit      1 rule, 0 handlers",
        "  uid       1 rule, 0 handlers",
        "  ptrace    1 rule, 0 handlers",
        "  comm      1 rule, 0 handlers",
      }, "\n"), p:summary())
    end)
  end)
end)
