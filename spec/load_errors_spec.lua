-- load_errors_spec.lua: every kind of load error, through the real daemon:
-- `procwarden --check FILE...` exits 2 and prints "FILE:LINE: message" on
-- stderr (and no "rules ok" summary on stdout).
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

local function lines(text)
  local out = {}
  for line in (text or ""):gmatch("[^\n]+") do out[#out + 1] = line:gsub("%s+$", "") end
  return out
end

-- --check a policy (source) and expect exit 2 with "FILE:LINE: message".
local function expect_error(src, line, message)
  local path = D.policy(src, "policy.lua")
  local res = D.check(path)
  assert.equal(2, res.rc)
  assert.not_matches("rules ok", res.out, 1, true)
  assert.same({ ("%s:%d: %s"):format(path, line, message) }, lines(res.err))
end

describe("load errors", function()
  teardown(D.cleanup)

  describe("rule keys", function()
    it("an unknown key, with the close one suggested", function()
      expect_error([[rule { name = "x", on = "exec", mach = { exe = "*" } }]], 1,
        "rule: unknown key 'mach' (did you mean 'match'?)")
    end)

    it("an unknown key with no close one, at the line of the rule{} call", function()
      expect_error("local a = 1\n\nrule {\n  name = \"x\",\n  on = \"exec\",\n  frobnicate = true,\n}\n", 3,
        "rule: unknown key 'frobnicate'")
    end)

    it("an API name misspelt at the top level", function()
      expect_error([[rulee { name = "x", on = "exec" }]], 1, "undeclared global 'rulee'")
    end)
  end)

  describe("event types", function()
    it("unknown in a rule's `on`, with a suggestion", function()
      expect_error([[rule { name = "x", on = "exex" }]], 1, "rule x: unknown event type 'exex' (did you mean 'exec'?)")
    end)

    it("unknown in an `on` list", function()
      expect_error([[rule { name = "x", on = { "exec", "forkk" } }]], 1,
        "rule x: unknown event type 'forkk' (did you mean 'fork'?)")
    end)

    it("unknown in an on() handler, listing the known ones", function()
      expect_error("\non(\"exe\", function() end)", 2, "unknown event type 'exe' (did you mean 'exec'?); "
        .. "known: fork exec exit uid gid sid ptrace comm coredump overflow")
    end)

    it("`on` that is neither a type nor a list", function()
      expect_error([[rule { name = "x", on = 5 }]], 1, "rule x: 'on' must be an event type or a list of them")
      expect_error([[rule { name = "x" }]], 1, "rule x: 'on' must be an event type or a list of them")
    end)
  end)

  describe("match fields", function()
    it("an unknown field, with a suggestion", function()
      expect_error([[rule { name = "x", on = "exec", match = { exee = "/bin/sh" } }]], 1,
        "rule x: unknown event field 'exee' (did you mean 'exe'?)")
    end)

    it("an unknown process object in a dotted key", function()
      expect_error([[rule { name = "x", on = "exec", match = { ["parnt.exe"] = "*/nginx" } }]], 1,
        "rule x: 'parnt' is not a process object (parent, tracer, ancestors) (did you mean 'parent'?)")
    end)

    it("an unknown field of a process object", function()
      expect_error([[rule { name = "x", on = "exec", match = { ["parent.exee"] = "*/nginx" } }]], 1,
        "rule x: unknown field 'exee' in 'parent.exee' (did you mean 'exe'?)")
      expect_error([[rule { name = "x", on = "exec", match = { ["ancestors.comm.x"] = "sshd" } }]], 1,
        "rule x: unknown field 'comm.x' in 'ancestors.comm.x' (did you mean 'comm'?)")
    end)

    it("match that is not a table", function()
      expect_error([[rule { name = "x", on = "exec", match = "*/sh" }]], 1, "rule x: 'match' must be a table")
    end)
  end)

  it("a duplicate rule name, pointing at the first one", function()
    local path = D.policy("rule { name = \"x\", on = \"exec\" }\nrule { name = \"x\", on = \"exit\" }\n", "dup.lua")
    local res = D.check(path)
    assert.equal(2, res.rc)
    assert.same({ ("%s:2: rule x: duplicate name (first defined at %s:1)"):format(path, path) }, lines(res.err))
  end)

  describe("wrong value types", function()
    it("name not a non-empty string", function()
      expect_error([[rule { name = 5, on = "exec" }]], 1, "rule: 'name' must be a non-empty string")
      expect_error([[rule { name = "", on = "exec" }]], 1, "rule: 'name' must be a non-empty string")
      expect_error([[rule { on = "exec" }]], 1, "rule: 'name' must be a non-empty string")
    end)

    it("when not a function", function()
      expect_error([[rule { name = "x", on = "exec", when = true }]], 1, "rule x: 'when' must be a function")
    end)

    it("action not an action value", function()
      expect_error([[rule { name = "x", on = "exec", action = "alert" }]], 1,
        "rule x: 'action' must be a list of actions")
      expect_error([[rule { name = "x", on = "exec", action = alert }]], 1,
        "rule x: 'action' must be a list of actions")
      expect_error([[rule { name = "x", on = "exec", action = { alert "a", "b" } }]], 1,
        "rule x: action 2 is not an action (use alert \"...\", log(...), kill() ...)")
    end)

    it("an unknown priority", function()
      expect_error([[rule { name = "x", on = "exec", priority = "critcal" }]], 1,
        "rule x: unknown priority 'critcal' (did you mean 'critical'?)")
      expect_error([[rule { name = "x", on = "exec", priority = 3 }]], 1, "rule x: unknown priority '3'")
    end)

    it("a bad throttle", function()
      expect_error([[rule { name = "x", on = "exec", throttle = 5 }]], 1,
        "rule x: 'throttle' must be { key, count, per }")
      expect_error([[rule { name = "x", on = "exec", throttle = { count = 0, per = 1 } }]], 1,
        "rule x: throttle.count must be a positive integer")
      expect_error([[rule { name = "x", on = "exec", throttle = { count = 1.5, per = 1 } }]], 1,
        "rule x: throttle.count must be a positive integer")
      expect_error([[rule { name = "x", on = "exec", throttle = { count = 1, per = 0 } }]], 1,
        "rule x: throttle.per must be a positive number of seconds")
      expect_error([[rule { name = "x", on = "exec", throttle = { count = 1, per = 1, kye = "exe" } }]], 1,
        "rule x: throttle: unknown key 'kye' (did you mean 'key'?)")
      expect_error([[rule { name = "x", on = "exec", throttle = { key = 1, count = 1, per = 1 } }]], 1,
        "rule x: throttle.key must be a field name")
      expect_error([[rule { name = "x", on = "exec", throttle = { key = "exee", count = 1, per = 1 } }]], 1,
        "rule x: unknown event field 'exee' (did you mean 'exe'?)")
    end)

    it("tags that are not a list of strings", function()
      expect_error([[rule { name = "x", on = "exec", tags = "mitre" }]], 1, "rule x: 'tags' must be a list of strings")
      expect_error([[rule { name = "x", on = "exec", tags = { "a", 2 } }]], 1,
        "rule x: 'tags' must be a list of strings")
    end)

    it("enabled that is not a boolean", function()
      expect_error([[rule { name = "x", on = "exec", enabled = "no" }]], 1,
        "rule x: 'enabled' must be true or false")
    end)

    it("a log level that does not exist", function()
      expect_error([[rule { name = "x", on = "exec", action = log("infoo", "m") }]], 1,
        "log: unknown level 'infoo' (did you mean 'info'?)")
    end)

    it("a match helper given the wrong argument", function()
      expect_error([[rule { name = "x", on = "exec", match = { exe = prefix(42) } }]], 1, "prefix: expects a string")
    end)

    it("a timer without a positive period, at its line", function()
      expect_error("x = 1\nevery(0, function() end)", 2, "every: seconds must be a number from 0 (excluded) to 1e7")
    end)

    it("a timer whose period is not a number (NaN)", function()
      expect_error("every(0/0, function() end)", 1, "every: seconds must be a number from 0 (excluded) to 1e7")
    end)
  end)

  it("a syntax error", function()
    expect_error("rule {\n  name = \"x\",\n  on = \"exec\"\n", 4, "'}' expected (to close '{' at line 1) near <eof>")
  end)

  it("an undeclared global read by top-level code", function()
    expect_error("local ok = 1\nlocal limit = max_procs + 1", 2, "undeclared global 'max_procs'")
  end)

  it("a runtime error in top-level code", function()
    expect_error("local x = 1\nerror(\"policy refused to load\")", 2, "policy refused to load")
    expect_error("local t\nlocal v = t.field", 2, "attempt to index a nil value (local 't')")
  end)

  it("a missing file", function()
    local path = D.tmpdir() .. "/no-such-policy.lua"
    local res = D.check(path)
    assert.equal(2, res.rc)
    assert.not_matches("rules ok", res.out, 1, true)
    assert.matches(path .. ": No such file or directory", lines(res.err)[1], 1, true)
  end)

  describe("rules files others can write", function()
    it("a group-writable file is refused, naming the file and the fix", function()
      local path = D.policy([[rule { name = "x", on = "exec" }]], "group-writable.lua")
      assert(os.execute("chmod 664 " .. D.quote(path)))
      local res = D.check(path)
      assert.equal(2, res.rc)
      assert.not_matches("rules ok", res.out, 1, true)
      assert.same({ ("procwarden: refusing rules file %s: writable by its group (chmod go-w)"):format(path),
        "  (rules run as root: fix the permissions, or use --insecure-rules for development)" }, lines(res.err))
    end)

    it("a file in a directory others can write is refused", function()
      local dir = D.path("open-dir")
      assert(os.execute("mkdir -m 777 " .. D.quote(dir)))
      local path = D.write(dir .. "/policy.lua", [[rule { name = "x", on = "exec" }]])
      local res = D.check(path)
      assert.equal(2, res.rc)
      assert.equal(("procwarden: refusing rules file %s: directory of %s is writable by others"):format(dir, path),
        lines(res.err)[1])
    end)

    it("--insecure-rules loads it anyway, with a warning", function()
      local path = D.policy([[rule { name = "x", on = "exec" }]], "insecure.lua")
      assert(os.execute("chmod 666 " .. D.quote(path)))
      local res = D.check(path, { "--insecure-rules" })
      assert.equal(0, res.rc)
      assert.matches("1 rule, 0 handlers, 0 timers", res.out, 1, true)
      assert.same({ ("procwarden: warning: --insecure-rules: loading %s although %s: writable by others (chmod go-w)")
        :format(path, path) }, lines(res.err))
    end)
  end)

  describe("several rule files", function()
    it("load all of them, and --check lists and counts them all", function()
      local a = D.policy([[rule { name = "a", on = "exec" }]], "first.lua")
      local b = D.policy([[rule { name = "b", on = "exit" } on("fork", function() end)]], "second.lua")
      local res = D.check { a, b }
      assert.equal(0, res.rc)
      assert.same({ "rules ok:", "  " .. a, "  " .. b, "2 rules, 1 handler, 0 timers",
        "  fork      0 rules, 1 handler", "  exec      1 rule, 0 handlers", "  exit      1 rule, 0 handlers" },
        lines(res.out))
    end)

    it("report an error in the second file against the second file", function()
      local a = D.policy([[rule { name = "a", on = "exec" }]], "good.lua")
      local b = D.policy("\n\nrule { name = \"b\", on = \"exec\", match = { exee = \"x\" } }", "bad.lua")
      local res = D.check { a, b }
      assert.equal(2, res.rc)
      assert.same({ b .. ":3: rule b: unknown event field 'exee' (did you mean 'exe'?)" }, lines(res.err))
    end)

    it("share one namespace of rule names", function()
      local a = D.policy([[rule { name = "same", on = "exec" }]], "one.lua")
      local b = D.policy([[rule { name = "same", on = "exit" }]], "two.lua")
      local res = D.check { a, b }
      assert.equal(2, res.rc)
      assert.same({ ("%s:1: rule same: duplicate name (first defined at %s:1)"):format(b, a) }, lines(res.err))
    end)
  end)
end)
