-- runtime_limits_spec.lua: what one rules file may hold. Timers: at most
-- MAX_TIMERS alive per file, every()/after() past that return nil and a
-- message and are counted (through procwarden.testing and the engine).
-- Memory: each file has its own share of the Lua state's cap (engine.c),
-- shown by stats() and --stats.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local testing = require "procwarden.testing"
local D = require "helpers.daemon"

local MAX = 256 -- procwarden's MAX_TIMERS

describe("timers per rules file", function()
  teardown(D.cleanup)

  it("every() past the cap returns nil and a message", function()
    local p = testing.load_string([[
for _ = 1, 300 do every(60, function() end) end
]], "many.lua")
    local file = p._runtime.files[1] -- the file's counters
    assert.equal(MAX, file.timers)
    assert.equal(300 - MAX, file.timers_refused)
    assert.equal(MAX, #p._timers)
  end)

  it("after() from a handler: one-shots hold a slot until they fire", function()
    local p = testing.load_string([[
on("exec", function(e)
  local ok, err = after(10, function() end)
  log("info", tostring(ok) .. " " .. tostring(err), e)
end)
]], "oneshots.lua")
    for pid = 1, MAX + 10 do p:feed { type = "exec", pid = pid } end
    local said = {}
    for _, o in ipairs(p:outputs()) do said[o.text] = (said[o.text] or 0) + 1 end
    assert.equal(MAX, said["true nil"])
    assert.equal(10, said["nil after: refused: oneshots.lua already has 256 timers"])
    p:advance(11) -- they fire: the slots are free again
    p:reset()
    p:feed { type = "exec", pid = 1 }
    assert.same({ "true nil" }, (function()
      local out = {}
      for i, o in ipairs(p:outputs()) do out[i] = o.text end
      return out
    end)())
  end)

  it("are counted per file in --stats, and other files keep theirs", function()
    local many = D.policy([[
for _ = 1, 300 do every(60, function() end) end
]], "many.lua")
    local other = D.policy([[
local ok = every(60, function() end)
on("exec", function(e) log("info", "other every: " .. tostring(ok), e) end)
]], "other.lua")
    local res = D.replay { rules = { many, other }, events = { { type = "exec", pid = 1 } }, stats = true }
    assert.equal(0, res.rc, res.err)
    assert.same({ "other every: true" }, D.msgs(res))
    local _, rules = D.stats(res.err)
    assert.matches("timers 256, timers refused 44,", rules["file:" .. many])
    assert.matches("timers 1, timers refused 0,", rules["file:" .. other])
  end)
end)

describe("memory per rules file", function()
  teardown(D.cleanup)

  -- A file that tries to hold 20 MiB (strings of 1 MiB) at an exec event
  -- and says whether it could.
  local BIG = [[
on("exec", function(e)
  local ok = pcall(function()
    local t, kib = {}, ("x"):rep(1024)
    for i = 1, 20 do t[i] = kib:rep(1024) end
  end)
  local f = stats().lua_files
  log("info", ("20 MiB: %s, files %d, share %d MiB"):format(tostring(ok), #f, f[1].share >> 20), e)
end)
]]

  it("a single file may use the cap less the runtime's reserve", function()
    local res = D.replay { rules = { D.policy(BIG, "big.lua") }, events = { { type = "exec", pid = 1 } } }
    assert.equal(0, res.rc, res.err)
    assert.same({ "20 MiB: true, files 1, share 112 MiB" }, D.msgs(res))
  end)

  it("with eight files, each has an eighth of it", function()
    local files = { D.policy(BIG, "big.lua") }
    for i = 2, 8 do files[i] = D.policy("", ("empty%d.lua"):format(i)) end
    local res = D.replay { rules = files, events = { { type = "exec", pid = 1 } }, stats = true }
    assert.equal(0, res.rc, res.err)
    assert.same({ "20 MiB: false, files 8, share 14 MiB" }, D.msgs(res))
    local counters, rules = D.stats(res.err)
    assert.is_true(counters.lua_alloc_refused >= 1)
    assert.matches("allocations refused [1-9]", rules["file:" .. files[1]])
    assert.matches("allocations refused 0,", rules["file:" .. files[2]])
  end)
end)
