-- reload_spec.lua: SIGHUP reloads the rules atomically. The daemon runs in
-- the background on `--replay FIFO`, so it stays alive between signals; the
-- spec rewrites its rules file, sends SIGHUP, waits for the daemon to say
-- so on stderr, then feeds more events and looks at which rules fired.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

local OLD = [[rule { name = "old", on = "exec", action = alert "old {pid}" }]]
local NEW = [[rule { name = "new", on = "exec", action = alert "new {pid}" }]]

local function exec(pid) return { type = "exec", pid = pid, exe = "/usr/bin/true" } end
local function msg(text) return ('"msg":"%s"'):format(text) end

-- Start a daemon on the rules file `path` and check that it runs them.
local function start(path)
  local d = D.spawn { rules = { path }, stats = true }
  d:send(exec(1))
  assert.truthy(d:wait_out(msg("old 1")), "the daemon did not run its first rules")
  return d
end

-- SIGHUP, then wait for the daemon's verdict on stderr ("rules reloaded"
-- or "reload failed"), the n-th of them.
local function hup(d, n)
  d:signal("HUP")
  d:nudge()
  assert.truthy(d:wait(function()
    local err = d:stderr()
    return #D.grep(err, "rules reloaded") + #D.grep(err, "reload failed") >= n
  end, 60), "no reload verdict on stderr")
end

describe("SIGHUP", function()
  teardown(D.cleanup)

  it("reloads good rules: the new rules fire, the old ones no more", function()
    local path = D.policy(OLD, "reload-good.lua")
    local d = start(path)
    D.write(path, NEW)
    hup(d, 1)
    d:send(exec(2))
    assert.truthy(d:wait_out(msg("new 2")))
    local res = d:close()
    assert.equal(0, res.rc)
    assert.same({ "old 1", "new 2" }, D.msgs(res))
    assert.equal(1, #D.grep(res.err, "procwarden: notice: rules reloaded"))
    local counters = D.stats(res.err)
    assert.equal(1, counters.reloads)
    assert.equal(0, counters.reload_failures)
  end)

  it("keeps the old rules when the new file has a syntax error, and says where", function()
    local path = D.policy(OLD, "reload-broken.lua")
    local d = start(path)
    D.write(path, "rule { name = \"new\", on = \"exec\",\n  action = alert \"new {pid}\"\n")
    hup(d, 1)
    d:send(exec(2))
    assert.truthy(d:wait_out(msg("old 2")))
    local res = d:close()
    assert.same({ "old 1", "old 2" }, D.msgs(res))
    assert.same({ "procwarden: error: reload failed, the old rules stay: " .. path
      .. ":3: '}' expected (to close '{' at line 1) near <eof>" }, D.grep(res.err, "reload failed"))
    local counters = D.stats(res.err)
    assert.equal(0, counters.reloads)
    assert.equal(1, counters.reload_failures)
  end)

  it("keeps the old rules when the new file fails to load, and says where", function()
    local path = D.policy(OLD, "reload-bad-rule.lua")
    local d = start(path)
    D.write(path, "\n" .. [[rule { name = "new", on = "exec", mach = {} }]])
    hup(d, 1)
    d:send(exec(2))
    assert.truthy(d:wait_out(msg("old 2")))
    local res = d:close()
    assert.same({ "old 1", "old 2" }, D.msgs(res))
    assert.same({ "procwarden: error: reload failed, the old rules stay: " .. path
      .. ":2: rule: unknown key 'mach' (did you mean 'match'?)" }, D.grep(res.err, "reload failed"))
  end)

  it("counts failed and good reloads apart, and a good one after a failed one works", function()
    local path = D.policy(OLD, "reload-both.lua")
    local d = start(path)
    D.write(path, "error('not today')")
    hup(d, 1)
    d:send(exec(2))
    assert.truthy(d:wait_out(msg("old 2")))
    D.write(path, NEW)
    hup(d, 2)
    d:send(exec(3))
    assert.truthy(d:wait_out(msg("new 3")))
    local res = d:close()
    assert.same({ "old 1", "old 2", "new 3" }, D.msgs(res))
    local counters, rules = D.stats(res.err)
    assert.equal(1, counters.reloads)
    assert.equal(1, counters.reload_failures)
    assert.matches("^  new%s+exec%s+fired 1, failures 0$", rules.new)
    assert.is_nil(rules.old)
  end)

  it("gives a suspended handler a new start", function()
    local path = D.policy(OLD .. "\n"
      .. [[rule { name = "flaky", on = "exec", when = function() error("broken") end }]], "reload-suspended.lua")
    local d = start(path)
    for pid = 2, 6 do d:send(exec(pid)) end
    assert.truthy(d:wait_out("flaky (exec) suspended for 1 s"))
    D.write(path, OLD .. "\n" .. [[rule { name = "flaky", on = "exec", action = alert "flaky {pid}" }]])
    hup(d, 1)
    d:send(exec(7))
    assert.truthy(d:wait_out(msg("flaky 7")))
    local res = d:close()
    assert.equal(1, #D.grep(res.out, "flaky (exec) suspended for 1 s"))
    local counters = D.stats(res.err)
    assert.equal(1, counters.reloads)
  end)
end)

describe("signals during a replay from a pipe", function()
  teardown(D.cleanup)

  it("SIGHUP is acted on while the daemon waits for input", function()
    local path = D.policy(OLD, "reload-idle.lua")
    local d = start(path)
    D.write(path, NEW)
    d:signal("HUP")
    local prompt = d:wait_err("rules reloaded", 1, 3)
    d:nudge()
    d:close()
    D.known_bug(pending, "replay() runs the event loop only every 1024 input lines, so signals wait", function()
      assert.truthy(prompt, "no reload within 3 s of SIGHUP")
    end)
  end)

  it("SIGTERM stops the daemon while it waits for input", function()
    local d = start(D.policy(OLD, "term-idle.lua"))
    d:signal("TERM")
    local stopped = d:wait(function() return D.read(d.rcfile) end, 3)
    local res = d:close()
    assert.equal(0, res.rc)
    D.known_bug(pending, "replay() runs the event loop only every 1024 input lines, so SIGTERM waits", function()
      assert.truthy(stopped, "still running 3 s after SIGTERM")
    end)
  end)
end)
