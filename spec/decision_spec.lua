-- decision_spec.lua: src/decision.c, the deny() rules compiled for the
-- fanotify responder thread. C must mean exactly what the Lua matchers
-- (lua/procwarden/match.lua) mean: every match value here is tested both
-- ways on the same facts. Also: which rules C decides alone, rule order,
-- disabled rules, and the hand-over to Lua.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local core = require "procwarden.core"
package.loaded["procwarden.host"] = package.loaded["procwarden.host"] or { testing = true } -- engine.c provides it
local match = require "procwarden.match"
local rules = require "procwarden.rules"

local prefix, suffix, contains, iglob, oneof, not_ =
  match.prefix, match.suffix, match.contains, match.iglob, match.oneof, match.not_

-- C's verdict for one entry key = value on one fact (nil: absent).
local function c_holds(key, value, fact)
  local desc = match.describe(value)
  assert.is_table(desc, "describable")
  local verdict = core.decide({ { name = "r", enabled = true, needs_lua = false,
    plan = { { field = key, test = desc } } } }, { [key] = fact })
  return verdict == "deny"
end

-- Lua's verdict: the same entry through match.entry on an event table.
local function lua_holds(key, value, fact)
  local test = match.entry(key, value)
  local first, rest = key:match("^([^.]+)%.(.+)$")
  local e = {}
  if first then e[first] = { [rest] = fact } else e[key] = fact end
  return test(e)
end

local STRINGS = { "/usr/bin/nmap", "/tmp/x/nmap", "/TMP/XMRIG", "/tmp/xmrig-6.1", "", "0", "54321",
  "/opt/a b/[x]", "/tmp/pwbench/.hidden/run", "nmap", "/usr/bin/nmap2" }
local NUMBERS = { 0, 1, 2, 1000, 54321, 2048, 511, -1 }

local function agree(key, value)
  local facts = { false } -- false stands for an absent fact
  for _, s in ipairs(STRINGS) do facts[#facts + 1] = s end
  for _, n in ipairs(NUMBERS) do facts[#facts + 1] = n end
  for _, f in ipairs(facts) do
    local fact = f ~= false and f or nil
    local want = lua_holds(key, value, fact)
    assert.are.equal(want, c_holds(key, value, fact),
      ("%s = %s on %s: Lua says %s"):format(key, tostring(value), tostring(fact), tostring(want)))
  end
end

describe("decision programs mean what the Lua matchers mean", function()
  local values = {
    ["plain string"] = "/usr/bin/nmap",
    ["glob"] = "/tmp/*/nmap",
    ["glob with a class"] = "/opt/a b/[[]x]",
    ["glob star"] = "*",
    ["question mark"] = "/tmp/x/nma?",
    ["hidden path glob"] = "/tmp/pwbench/*/run",
    ["number"] = 54321,
    ["zero"] = 0,
    ["float equal to an integer"] = 2.0,
    ["float no integer equals"] = 1.5,
    ["short list (any of)"] = { "/usr/bin/nmap", "/tmp/*/nmap" },
    ["long plain list (a set)"] = { "/usr/bin/nmap", "nmap", "0", "/a", "/b", "/c" },
    ["list of numbers"] = { 0, 1000 },
    ["prefix"] = prefix("/tmp/"),
    ["empty prefix"] = prefix(""),
    ["suffix"] = suffix("nmap"),
    ["empty suffix"] = suffix(""),
    ["contains"] = contains("xmrig"),
    ["empty contains"] = contains(""),
    ["iglob"] = iglob("*xmrig*"),
    ["oneof strings"] = oneof { "/usr/bin/nmap", "nmap" },
    ["oneof numbers and strings"] = oneof { 0, "0", 54321, 1.5 },
    ["not_ of a number"] = not_(0),
    ["not_ of a glob"] = not_("/usr/*"),
    ["not_ of a list"] = not_ { "/usr/bin/nmap", 1000 },
    ["list of helpers"] = { prefix("/tmp/"), suffix("/nmap"), iglob("/TMP/*") },
  }
  for what, value in pairs(values) do
    it(what, function()
      agree("exe", value)
      agree("uid", value)
      agree("parent.exe", value)
    end)
  end
end)

describe("match.describe", function()
  it("leaves to Lua what C cannot test", function()
    assert.is_nil(match.describe(function() return true end))
    assert.is_nil(match.describe(true))
    assert.is_nil(match.describe { "/a", function() end })
    assert.is_nil(match.describe(not_(function() end)))
    assert.is_nil(match.describe("/tmp/\0x")) -- C strings end at NUL
    assert.is_nil(match.describe(oneof { "/a", "/b\0" }))
  end)
end)

-- rules.compile with a deny() action value, as the rules file would.
local function deny_rule(spec)
  spec.on = spec.on or "exec"
  spec.action = { rules.action("deny", "effect", function() return true end) }
  return rules.compile(spec, { exec = true }, 1)
end

local function program(list)
  local out = {}
  for i, r in ipairs(list) do
    out[i] = { name = r.name, enabled = r.enabled, needs_lua = r.needs_lua, plan = r.plan }
  end
  return out
end

describe("rules compiled for the responder", function()
  it("plans the plain entries and leaves functions, other fields and `when` to Lua", function()
    local r = deny_rule { name = "a", match = { exe = "/tmp/*", uid = 0, ["parent.exe"] = prefix("/usr/") } }
    assert.is_false(r.needs_lua)
    assert.are.equal(3, #r.plan)
    r = deny_rule { name = "b", match = { exe = "/tmp/*", exe_mode = function(m) return m & 2 ~= 0 end } }
    assert.is_true(r.needs_lua)
    assert.are.equal(1, #r.plan) -- the exe glob still spares Lua when it fails
    assert.is_true(deny_rule { name = "c", match = { ["ancestors.comm"] = "sshd" } }.needs_lua)
    assert.is_true(deny_rule { name = "d", match = { user = "root" } }.needs_lua)
    assert.is_true(deny_rule { name = "e", match = { exe = "/x" }, when = function() return true end }.needs_lua)
  end)

  it("denies with the first matching rule, in order", function()
    local p = program {
      deny_rule { name = "first", match = { exe = "/tmp/*" } },
      deny_rule { name = "second", match = { exe = "/tmp/x" } },
    }
    assert.same({ "deny", "first" }, { core.decide(p, { exe = "/tmp/x" }) })
    assert.same({ "allow", "" }, { core.decide(p, { exe = "/usr/bin/true" }) })
  end)

  it("skips disabled rules", function()
    local p = program {
      deny_rule { name = "off", match = { exe = "/tmp/*" }, enabled = false },
      deny_rule { name = "on", match = { uid = 1000 } },
    }
    assert.same({ "deny", "on" }, { core.decide(p, { exe = "/tmp/x", uid = 1000 }) })
    assert.same({ "allow", "" }, { core.decide(p, { exe = "/tmp/x", uid = 0 }) })
  end)

  it("hands over to Lua only when a rule needing it holds in C first", function()
    local p = program {
      deny_rule { name = "lua", match = { exe = "/tmp/*", exe_mode = function() return true end } },
      deny_rule { name = "c", match = { exe = "/tmp/x" } },
    }
    assert.same("lua", (core.decide(p, { exe = "/tmp/x" })))
    assert.same("allow", (core.decide(p, { exe = "/usr/bin/x" }))) -- the glob failed: no Lua
  end)

  it("reads sha256 and file facts", function()
    local h = string.rep("ab", 32)
    local p = program { deny_rule { name = "bad", match = { sha256 = oneof { h }, exe_uid = not_(0) } } }
    assert.same("deny", (core.decide(p, { sha256 = h, exe_uid = 1000 })))
    assert.same("allow", (core.decide(p, { sha256 = h, exe_uid = 0 })))
    assert.same("allow", (core.decide(p, { exe_uid = 1000 }))) -- no hash: no match
  end)

  it("refuses a malformed description", function()
    assert.has_error(function()
      core.decide({ { name = "x", enabled = true, plan = { { field = "argv", test = { k = "eq", s = "a" } } } } }, {})
    end)
    assert.has_error(function()
      core.decide({ { name = "x", enabled = true, plan = { { field = "exe", test = { k = "regex", s = "a" } } } } }, {})
    end)
  end)
end)

-- A kill action value as actions.lua builds it (kind, phase, signal).
local function kill_action(sig)
  return rules.action("kill", "effect", function() return true end, { signal = sig or 9 })
end
local function output_action()
  return rules.action("alert", "output", function() return true end)
end

describe("kill rules compiled for the exec hot path (r.prekill)", function()
  local function compile(spec)
    spec.on = spec.on or "exec"
    return rules.compile(spec, { exec = true }, 1)
  end

  it("takes a fast rule whose one effect is a signal, on plain exe/pid matchers", function()
    local r = compile { name = "k", match = { exe = "/tmp/*/miner" }, action = { kill_action(9), output_action() } }
    assert.are.equal(9, r.prekill.signal)
    assert.same({ { field = "exe", test = { k = "glob", s = "/tmp/*/miner" } } }, r.prekill.plan)
    local p = { { name = "k", enabled = true, needs_lua = false, plan = r.prekill.plan, signal = 9 } }
    assert.same({ "deny", "k" }, { core.decide(p, { exe = "/tmp/x/miner" }) })
    assert.same("allow", (core.decide(p, { exe = "/usr/bin/miner" })))
  end)

  it("leaves to Lua what C cannot judge alone", function()
    local function prekill(spec) return compile(spec).prekill end
    assert.is_nil(prekill { name = "argv", match = { argv = "--donate*" }, action = { kill_action() } })
    assert.is_nil(prekill { name = "fn", match = { exe = function() return true end }, action = { kill_action() } })
    assert.is_nil(prekill { name = "when", match = { exe = "/x" }, when = function() return true end,
      action = { kill_action() } })
    assert.is_nil(prekill { name = "throttled", match = { exe = "/x" }, action = { kill_action() },
      throttle = { count = 1, per = 60 } })
    assert.is_nil(prekill { name = "two", match = { exe = "/x" }, action = { kill_action(), kill_action(15) } })
    assert.is_nil(prekill { name = "alert only", match = { exe = "/x" }, action = { output_action() } })
    assert.is_nil(prekill { name = "uid", match = { exe = "/x", uid = 0 }, action = { kill_action() } })
  end)
end)

describe("what C cannot know, Lua decides", function()
  local p = program {
    deny_rule { name = "svc", match = { uid = 54321 } },
    deny_rule { name = "dropper", match = { ["parent.exe"] = not_("/usr/*") } },
  }
  it("an unknown caller fact hands the request to Lua", function()
    assert.same("lua", (core.decide(p, { uid = false }))) -- the caller's ids could not be read
    assert.same("lua", (core.decide(p, { uid = 0, ["parent.exe"] = false }))) -- not_ of no parent
    assert.same("allow", (core.decide(p, { uid = 0, ["parent.exe"] = "/usr/bin/bash" })))
    assert.same({ "deny", "dropper" }, { core.decide(p, { uid = 0, ["parent.exe"] = "/tmp/x" }) })
  end)

  it("an unknown fact of a rule that failed already costs nothing", function()
    local q = program { deny_rule { name = "r", match = { exe = "/tmp/*", uid = 0 } } }
    assert.same("allow", (core.decide(q, { exe = "/usr/bin/true", uid = false })))
  end)

  it("tgid and parent.pid are pid and ppid", function()
    local q = program {
      deny_rule { name = "t", match = { tgid = 42 } },
      deny_rule { name = "pp", match = { ["parent.pid"] = 7 } },
    }
    assert.same({ "deny", "t" }, { core.decide(q, { pid = 42 }) })
    assert.same({ "deny", "pp" }, { core.decide(q, { pid = 1, ppid = 7 }) })
  end)

  it("a set stops at its first hole, as ipairs does", function()
    local q = { { name = "h", enabled = true, plan = { { field = "exe",
      test = { k = "set", list = { "/a", nil, "/b" } } } } } }
    assert.same("deny", (core.decide(q, { exe = "/a" })))
    assert.same("allow", (core.decide(q, { exe = "/b" })))
  end)

  it("refuses a description nested past its bound, without overflowing the stack", function()
    local t = { k = "eq", s = "/x" }
    for _ = 1, 40 do t = { k = "not", subs = { t } } end
    local q = { { name = "deep", enabled = true, plan = { { field = "exe", test = t } } } }
    assert.has_error(function() core.decide(q, {}) end)
    local co = coroutine.wrap(function() return pcall(core.decide, q, {}) end)
    assert.is_false((co()))
  end)
end)

describe("the exec hot path's kill program (init.lua prekill_program)", function()
  local testing = require "procwarden.testing"
  local function load(src)
    return testing.load_string(src, "prekill")._runtime
  end

  it("holds the kill rules C may signal for, in order", function()
    local rt = load [[
rule { name = "a", on = "exec", match = { exe = "/tmp/a" }, action = { kill() } }
rule { name = "b", on = "exec", match = { exe = "/tmp/b" }, action = { stop(), alert "stopped {pid}" } }
]]
    local names = {}
    for i, r in ipairs(rt.prekill_program()) do names[i] = r.name .. ":" .. r.signal end
    assert.same({ "a:9", "b:19" }, names)
  end)

  it("stops at the first fast effect it cannot judge, so signals keep the rules' order", function()
    local rt = load [[
rule { name = "a", on = "exec", match = { exe = "/tmp/a" }, action = { kill() } }
rule { name = "cont", on = "exec", match = { exe = "/tmp/*" }, action = { signal "CONT" },
  throttle = { count = 1, per = 60 } }
rule { name = "b", on = "exec", match = { exe = "/tmp/b" }, action = { stop() } }
]]
    local names = {}
    for i, r in ipairs(rt.prekill_program()) do names[i] = r.name end
    assert.same({ "a" }, names)
  end)

  it("is empty in a dry run and under protect{}", function()
    local rt = load [[
rule { name = "a", on = "exec", match = { exe = "/tmp/a" }, action = { kill() } }
]]
    assert.are.equal(1, #rt.prekill_program())
    rt.state.dry_run = true
    assert.same({}, rt.prekill_program())
    rt = load [[
protect { "/usr/sbin/sshd" }
rule { name = "a", on = "exec", match = { exe = "/tmp/a" }, action = { kill() } }
]]
    assert.same({}, rt.prekill_program())
  end)
end)
