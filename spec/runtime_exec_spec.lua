-- runtime_exec_spec.lua: exec() argument and environment lists of any size
-- up to execve's own limits, through the real engine (engine.c host_exec):
-- a rule forwarding an attacker's argv (thousands of arguments) must start
-- the command with all of them, and a list past what execve takes is
-- refused with nil and a message, never an error or a crash.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local D = require "helpers.daemon"

-- A policy whose raw exec handler runs /bin/sh with `nargs` extra
-- arguments of `arglen` bytes and `nenv` environment entries (values of
-- `envlen` bytes, 1 by default); the shell
-- writes "$# <entries named V...>" to `out`. The handler logs what exec()
-- returned.
local function policy(out, nargs, arglen, nenv, envlen)
  return D.policy(([[
on("exec", function(e)
  local argv = { "/bin/sh", "-c", 'printf "%%s %%s\n" "$#" "$(env | grep -c "^V")" > %s', "sh" }
  local arg = string.rep("a", %d)
  for i = 1, %d do argv[#argv + 1] = arg end
  local env, value = {}, string.rep("x", %d)
  for i = 1, %d do env["V" .. i] = value end
  local ok, why = exec(argv, { env = env })
  log("info", "exec " .. tostring(ok) .. " " .. tostring(why))
end)
]]):format(out, arglen, nargs, envlen or 1, nenv))
end

-- What the handler logged (the exec action writes lines of its own too).
local function logged(res)
  local out = {}
  for _, line in ipairs(D.select(res, { kind = "log" })) do out[#out + 1] = line.msg end
  return out
end

-- The run finished and exec() returned nil and a "too long" message.
local function refused_too_long(res)
  assert.equal(0, res.rc, res.err)
  local msgs = logged(res)
  assert.equal(1, #msgs)
  assert.matches("^exec nil exec: .*too long", msgs[1])
end

local function run(nargs, arglen, nenv, envlen)
  local out = D.path("exec.out")
  local res = D.replay { rules = { policy(out, nargs, arglen, nenv, envlen) }, events = { { type = "exec", pid = 7 } },
    args = { "--live-actions" }, stats = true }
  res.counters = D.stats(res.err)
  res.outfile = out
  return res
end

-- What the started shell wrote (it runs on after the daemon's exit).
local function shell_said(path)
  local text
  for _ = 1, 200 do
    text = D.read(path)
    if text and text:find("\n") then return text end
    D.sleep(0.05)
  end
  return text
end

describe("exec() argument lists", function()
  teardown(D.cleanup)

  it("starts a command with 4096 arguments and 4096 environment entries", function()
    local res = run(4096, 1, 4096)
    assert.equal(0, res.rc, res.err)
    assert.same({ "exec true nil" }, logged(res))
    assert.equal(0, res.counters.handler_errors)
    assert.equal("4096 4096\n", shell_said(res.outfile))
  end)

  it("takes any size execve takes: 30000 arguments", function()
    local res = run(30000, 1, 10)
    assert.equal(0, res.rc, res.err)
    assert.same({ "exec true nil" }, logged(res))
    assert.equal("30000 10\n", shell_said(res.outfile))
  end)

  it("refuses one string longer than execve takes, with nil and a message", function()
    local res = run(1, 32 * 4096, 0) -- MAX_ARG_STRLEN counts the NUL: one byte too long
    refused_too_long(res)
    assert.equal(0, res.counters.handler_errors)
    assert.equal(0, res.counters.execs_started)
  end)

  it("refuses lists larger in all than execve takes, with nil and a message", function()
    local res = run(100, 100 * 1024, 0) -- 10 MB: over any stack limit's share
    refused_too_long(res)
    assert.equal(0, res.counters.handler_errors)
    assert.equal(0, res.counters.execs_started)
  end)

  it("refuses an environment too large in all", function()
    local res = run(1, 1, 20000, 400) -- about 8 MB
    refused_too_long(res)
  end)
end)
