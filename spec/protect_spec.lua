-- protect_spec.lua: protect{} names root-owned executables, not names
-- (procwarden.actions, src/identity.c). Where no process is pinned (a
-- dry run, a replay, procwarden.testing) an entry is judged by name as the
-- inode check judges a root-owned file at that path: a glob starting with
-- '*' names files below the system directories only. The checks by inode
-- on live processes are in spec/integration/protect_spec.lua (root).
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local testing = require "procwarden.testing"
local D = require "helpers.daemon"

local README_PROTECT = [[
protect { "/usr/sbin/sshd", "*/systemd" }
rule { name = "kill-systemd-named", on = "exec", match = { exe = "*/systemd" }, action = kill() }
]]

local function kinds(p)
  local out = {}
  for _, a in ipairs(p:actions()) do out[#out + 1] = a.kind .. " " .. tostring(a.pid) end
  return out
end

local function is_root() return (io.popen("id -u"):read("l")) == "0" end

describe("protect{} judged by name (no process pinned)", function()
  teardown(D.cleanup)

  it("does not cover a user's file named like a protected one (~/.cache/systemd)", function()
    local p = testing.load_string(README_PROTECT)
    p:feed { type = "exec", pid = 4242, exe = "/home/eve/.cache/systemd", uid = 1000 }
    assert.same({ "kill 4242" }, kinds(p))
  end)

  it("covers the system's file that a '*' glob names", function()
    local p = testing.load_string(README_PROTECT)
    p:feed { type = "exec", pid = 4243, exe = "/usr/lib/systemd/systemd", uid = 0 }
    assert.same({}, kinds(p))
    local refused = 0
    for _, o in ipairs(p:outputs()) do
      if o.text:find("refused: protected (/usr/lib/systemd/systemd)", 1, true) then refused = refused + 1 end
    end
    assert.equal(1, refused)
  end)

  it("covers an upgraded binary still running (exe ' (deleted)')", function()
    local p = testing.load_string([[
protect { "/usr/sbin/sshd" }
rule { name = "k", on = "exec", match = { exe = "/usr/sbin/*" }, action = kill() }
]])
    p:feed { type = "exec", pid = 11, exe = "/usr/sbin/sshd (deleted)" }
    p:feed { type = "exec", pid = 12, exe = "/usr/sbin/cron" }
    assert.same({ "kill 12" }, kinds(p))
  end)

  it("refuses an entry that is neither absolute nor starts with '*', at its line", function()
    assert.equal('policy:2: protect: \'sshd\' is neither an absolute path nor a glob starting with \'*\'',
      testing.load_error("local x = 1\nprotect { 'sshd' }", "policy"))
  end)

  it("is a load-time declaration: a handler calling it gets an error", function()
    local p = testing.load_string('on("exec", function() protect { "/bin/sh" } end)')
    p:feed { type = "exec", pid = 5 }
    assert.equal(1, #p:errors())
    assert.matches("protect: only at the top level of a rules file", p:errors()[1].error, 1, true)
  end)

  it("replays (a dry run) the same way: the user's copy would be killed, the system's refused", function()
    local rules = D.policy(README_PROTECT, "protect-replay.lua")
    local res = D.replay { rules = { rules }, events = {
      { type = "exec", pid = 501, exe = "/home/eve/.cache/systemd" },
      { type = "exec", pid = 502, exe = "/usr/lib/systemd/systemd" },
    } }
    assert.equal(0, res.rc, res.err)
    local msgs = table.concat(D.msgs(res), "\n")
    assert.matches("would kill pid 501 (/home/eve/.cache/systemd)", msgs, 1, true)
    assert.matches("kill pid 502 (/usr/lib/systemd/systemd) refused: protected", msgs, 1, true)
    assert.not_matches("would kill pid 502", msgs, 1, true)
  end)
end)

describe("protect{} at load (the daemon resolves entries to files)", function()
  teardown(D.cleanup)

  it("warns, with the line, that a glob starting with '*' covers the system directories only", function()
    local res = D.check(D.policy(README_PROTECT, "protect-star.lua"))
    assert.equal(0, res.rc, res.err)
    local warn = D.grep(res.err, "protect: '*/systemd' starts with '*'")
    assert.equal(1, #warn, res.err)
    assert.matches("protect%-star%.lua:1: protect:", warn[1])
    assert.matches("below /usr/bin /usr/sbin", warn[1], 1, true)
  end)

  it("is quiet about a root-owned program that is there", function()
    local res = D.check_src('protect { "/bin/sh" }', "protect-sh.lua")
    assert.equal(0, res.rc, res.err)
    assert.equal("", res.err)
  end)

  it("warns about an entry that names no file it could protect (not root's, or writable by others)", function()
    local file = D.write(D.path("not-protectable"), "#!/bin/sh\n")
    -- as root, a root-owned file that others may write is no better than a user's
    assert(os.execute("chmod 0777 " .. D.quote(file)))
    local res = D.check_src(("protect { %q }"):format(file), "protect-none.lua")
    assert.equal(0, res.rc, res.err)
    assert.equal(1, #D.grep(res.err, "names no root-owned file now"), res.err)
  end)

  it("refuses a relative entry at load", function()
    local res = D.check_src('protect { "sshd" }', "protect-rel.lua")
    assert.equal(2, res.rc)
    assert.matches("protect%-rel%.lua:1: protect: 'sshd' is neither an absolute path", res.err)
  end)

  it("expands a glob below its fixed directory only, on that filesystem", function()
    if not is_root() then return pending("needs root (root-owned files to protect)") end
    local dir = D.path("bin")
    assert(os.execute("mkdir -m 755 " .. D.quote(dir) .. " && mkdir -m 755 " .. D.quote(dir .. "/sub")))
    for _, f in ipairs { "/a-1", "/a-2", "/sub/a-3", "/b" } do
      assert(os.execute(("cp /bin/true %s && chmod 755 %s"):format(D.quote(dir .. f), D.quote(dir .. f))))
    end
    local res = D.check_src(("protect { %q }"):format(dir .. "/*a-*"), "protect-glob.lua")
    assert.equal(0, res.rc, res.err)
    assert.equal("", res.err) -- three found: no warning
    res = D.check_src(("protect { %q }"):format(dir .. "/c*"), "protect-glob2.lua")
    assert.equal(1, #D.grep(res.err, "names no root-owned file now"), res.err)
  end)
end)
