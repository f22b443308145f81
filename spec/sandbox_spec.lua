-- sandbox_spec.lua: what rule code can and cannot reach, in the real
-- daemon (the shared string metatable is locked there, not under
-- procwarden.testing). One replayed exec event runs a policy of probes: each
-- probe is an on("exec") handler that pcalls a snippet and prints
-- "name|ok|value"; the specs read those lines back. A second policy, loaded
-- first, meddles with its own copies of the standard tables.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

local PROBES = {
  -- absent globals
  { "io", "return io" },
  { "load", "return load" },
  { "loadstring", "return loadstring" },
  { "dofile", "return dofile" },
  { "loadfile", "return loadfile" },
  { "require", "return require" },
  { "debug", "return debug" },
  { "coroutine", "return coroutine" },
  { "rawset", "return rawset" },
  { "collectgarbage", "return collectgarbage" },
  { "package", "return package" },
  -- os: only the clock
  { "os.execute", "return tostring(os.execute)" },
  { "os.exit", "return tostring(os.exit)" },
  { "os.getenv", "return tostring(os.getenv)" },
  { "os.remove", "return tostring(os.remove)" },
  { "os keys", "local k = {} for name in pairs(os) do k[#k + 1] = name end table.sort(k) return table.concat(k, ',')" },
  -- no bytecode, no string table
  { "string.dump", "return tostring(string.dump)" },
  { "(\"\").dump", "return tostring(('').dump)" },
  { "getmetatable('')", "return type(getmetatable(''))" },
  { "string mt __index", "getmetatable('').__index = {} return 'changed'" },
  -- metatables
  { "__gc", "setmetatable({}, { __gc = function() end }) return 'set'" },
  { "__gc later", "local mt = {} local t = setmetatable({}, mt) mt.__gc = function() end return 'no effect'" },
  { "getmetatable(_ENV)", "return getmetatable(_ENV)" },
  { "setmetatable(_ENV)", "setmetatable(_ENV, {}) return 'unlocked'" },
  { "_G is _ENV", "return _G == _ENV" },
  -- strict globals at run time
  { "read undeclared", "return nope_value" },
  { "assign undeclared", "typo_count = 1 return 'assigned'" },
  { "declared at load", "counter = counter + 1 return counter" },
  -- event tables
  { "event write", "e.exe = '/bin/true' return 'written'" },
  { "event write pid", "e.pid = 1 return 'written'" },
  { "event pid later", "return e.pid .. ' ' .. e.exe" },
  { "event new field", "e.mine = 1 return 'written'" },
  { "event setmetatable", "setmetatable(e, nil) return 'unlocked'" },
  { "event getmetatable", "return getmetatable(e)" },
  -- other policies' changes do not reach this file
  { "own string.upper", "return string.upper('a')" },
  { "method upper", "return ('a'):upper()" },
  { "method find", "return tostring(('abc'):find('z'))" },
  { "own table.concat", "return table.concat({ 'x', 'y' })" },
  { "own math.floor", "return math.floor(1.5)" },
  { "own alert", "return type(alert) .. ',' .. tostring(alert == procwarden.alert)" },
  -- bounded string patterns: too costly for the subject is no match
  { "find catastrophic", "local r = ('a'):rep(200):find('a-a-a-a-b') return r" },
  { "string.find catastrophic", "local r = string.find(('a'):rep(200), 'a-a-a-a-b') return r" },
  { "match catastrophic", "local r = ('a'):rep(200):match('a-a-a-a-b') return r" },
  { "gmatch catastrophic", "local n = 0 for _ in ('a'):rep(200):gmatch('a-a-a-a-b') do n = n + 1 end return n" },
  { "gsub catastrophic", "local r, n = string.gsub(('a'):rep(200), 'a-a-a-a-b', '') return #r .. ' ' .. n" },
  { "gmatch ^ bomb", "local c = os.clock() for _ in ('^'):rep(3161):gmatch('^.-.-z') do end "
    .. "return os.clock() - c < 0.25" },
  { "plain find long", "return tostring(('a'):rep(200000):find('a-a-a-a-b', 1, true))" },
  { "cheap match", "return ('hello world'):match('^(%w+)')" },
  { "cheap gsub", "return (string.gsub('a.b.c', '%.', '-'))" },
  { "cheap gmatch", "local n = 0 for _ in ('a b c d'):gmatch('%a') do n = n + 1 end return n" },
}

local MEDDLER = [[
-- a policy that changes its own copies of the standard tables, and tries
-- to change what other policies share
string.upper = function() return "pwned" end
string.find = function() return 1 end
table.concat = function() return "pwned" end
math.floor = function() return -1 end
procwarden.alert = function() end
alert = function() end
meddled = pcall(function() getmetatable("").__index.upper = function() return "pwned" end end)
]]

local function probe_policy()
  local src = { [[
counter = 0
local function probe(name, fn)
  on("exec", function(e)
    local ok, value = pcall(fn, e)
    print(name .. "|" .. tostring(ok) .. "|" .. tostring(value))
  end)
end
]] }
  for _, p in ipairs(PROBES) do
    src[#src + 1] = ("probe(%q, function(e) %s end)"):format(p[1], p[2])
  end
  -- unprotected: these errors reach the engine's log
  src[#src + 1] = "on(\"exec\", function() local x = nope_global_read return x end)"
  src[#src + 1] = "on(\"exec\", function() typo_total = 1 end)"
  return table.concat(src, "\n") .. "\n"
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

describe("the rule sandbox", function()
  local path, res, results

  setup(function()
    local meddler = D.policy(MEDDLER, "meddler.lua")
    path = D.policy(probe_policy(), "probes.lua")
    res = D.replay { rules = { meddler, path }, events = { { type = "exec", pid = 4242, exe = "/bin/sh" } } }
    results = {}
    for _, line in ipairs(res.lines) do
      local name, ok, value = tostring(line.msg):match("^(.-)|(%a+)|(.*)$")
      if name then results[name] = { ok = ok == "true", value = value } end
    end
  end)

  teardown(D.cleanup)

  -- The probe ran and raised "<path>:<line>: message".
  local function raised(name, message)
    local r = results[name]
    assert.is_table(r, "probe '" .. name .. "' did not run")
    assert.is_false(r.ok, ("probe '%s' returned %s"):format(name, r.value))
    assert.matches("^" .. escape(path) .. ":%d+: " .. escape(message) .. "$", r.value)
  end

  local function returned(name, value)
    local r = results[name]
    assert.is_table(r, "probe '" .. name .. "' did not run")
    assert.same({ ok = true, value = value }, r)
  end

  it("runs every probe, and the daemon finishes cleanly", function()
    assert.equal(0, res.rc)
    for _, p in ipairs(PROBES) do assert.is_table(results[p[1]], "probe '" .. p[1] .. "' did not run") end
  end)

  it("has no io, load, loadstring, dofile, loadfile, require or package", function()
    for _, name in ipairs { "io", "load", "loadstring", "dofile", "loadfile", "require", "package" } do
      raised(name, ("undeclared global '%s'"):format(name))
    end
  end)

  it("has no debug, coroutine, rawset or collectgarbage", function()
    for _, name in ipairs { "debug", "coroutine", "rawset", "collectgarbage" } do
      raised(name, ("undeclared global '%s'"):format(name))
    end
  end)

  it("gives os the clock functions only (no execute, exit, getenv, remove)", function()
    for _, name in ipairs { "os.execute", "os.exit", "os.getenv", "os.remove" } do returned(name, "nil") end
    returned("os keys", "clock,date,difftime,time")
  end)

  it("has no string.dump, also not through a string's methods", function()
    returned("string.dump", "nil")
    returned("(\"\").dump", "nil")
  end)

  it("refuses a precompiled (bytecode) rules file", function()
    local bc_path = D.tmpdir() .. "/compiled.lua"
    D.write(bc_path, string.dump(load([[rule { name = "x", on = "exec" }]])))
    local check = D.check(bc_path)
    assert.equal(2, check.rc)
    assert.matches("attempt to load a binary chunk (mode is 't')", check.err, 1, true)
    assert.not_matches("rules ok", check.out, 1, true)
    D.known_bug(pending, "the binary-chunk load error does not name the file", function()
      assert.matches(bc_path, check.err, 1, true)
    end)
  end)

  it("does not hand out the shared string metatable", function()
    assert.not_equal("table", results["getmetatable('')"].value)
    raised("string mt __index", "attempt to index a boolean value")
  end)

  it("refuses __gc metamethods, and one added later does nothing", function()
    raised("__gc", "setmetatable: __gc finalizers are not allowed in rules")
    returned("__gc later", "no effect")
  end)

  it("locks the environment's metatable", function()
    returned("getmetatable(_ENV)", "locked")
    assert.is_false(results["setmetatable(_ENV)"].ok)
    assert.matches("cannot change a protected metatable", results["setmetatable(_ENV)"].value, 1, true)
    returned("_G is _ENV", "true")
  end)

  it("reports a refused setmetatable against the rule file, not the runtime", function()
    D.known_bug(pending, "safe_setmetatable raises at level 1 (lua/procwarden/sandbox.lua:NN)", function()
      raised("setmetatable(_ENV)", "cannot change a protected metatable")
      raised("event setmetatable", "cannot change a protected metatable")
    end)
  end)

  it("makes reading or assigning an undeclared global at run time an error naming it", function()
    raised("read undeclared", "undeclared global 'nope_value'")
    raised("assign undeclared", "assignment to undeclared global 'typo_count'")
    returned("declared at load", "1")
  end)

  it("logs an unprotected undeclared-global error with the handler's file:line", function()
    local read = D.grep(res.err, "undeclared global 'nope_global_read'")
    local assign = D.grep(res.err, "assignment to undeclared global 'typo_total'")
    assert.equal(1, #read)
    assert.equal(1, #assign)
    assert.matches("^procwarden: error: handler " .. escape(path) .. ":%d+ failed: " .. escape(path) .. ":%d+: ",
      read[1])
  end)

  it("refuses new fields on event tables, and changes to their metatable", function()
    raised("event new field", "event field 'mine' is read-only")
    assert.is_false(results["event setmetatable"].ok)
    assert.matches("cannot change a protected metatable", results["event setmetatable"].value, 1, true)
    returned("event getmetatable", "procwarden.event")
  end)

  it("refuses changes to fields an event already has, so no rule alters what later rules see", function()
    raised("event write", "event field 'exe' is read-only")
    raised("event write pid", "event field 'pid' is read-only")
    returned("event pid later", "4242 /bin/sh")
  end)

  it("gives each rule file its own string, table, math and API tables", function()
    returned("own string.upper", "A")
    returned("method upper", "A")
    returned("method find", "nil")
    returned("own table.concat", "xy")
    returned("own math.floor", "1")
    returned("own alert", "function,true")
  end)

  it("treats catastrophic string patterns as no match, instead of spinning or raising", function()
    returned("find catastrophic", "nil")
    returned("string.find catastrophic", "nil")
    returned("match catastrophic", "nil")
    returned("gmatch catastrophic", "0")
    returned("gsub catastrophic", "200 0")
  end)

  it("ends a ^-prefixed gmatch bomb within the time budget (gmatch takes ^ as a character)", function()
    returned("gmatch ^ bomb", "true")
  end)

  it("still runs plain finds on long subjects and cheap patterns", function()
    returned("plain find long", "nil")
    returned("cheap match", "hello")
    returned("cheap gsub", "a-b-c")
    returned("cheap gmatch", "4")
  end)
end)
