-- procwarden.testing: test a policy from your own busted specs, without
-- root and without the kernel. Load rule files, feed events (tables or a
-- JSON-lines fixture as --record writes them), then look at which rules
-- fired and what they did. Actions never touch the system: effects are
-- recorded as they would have been performed.
--
--   local testing = require "procwarden.testing"
--   local p = testing.load("rules/examples/miners.lua")
--   p:feed { type = "exec", pid = 4242, exe = "/tmp/xmrig", uid = 1000 }
--   assert.is_true(p:fired("no-miners"))
--   assert.equal("kill", p:actions()[1].kind)
local core = require "procwarden.core"

local M = {}


local RUNTIME = {
  "procwarden", "procwarden.event", "procwarden.template", "procwarden.suggest",
  "procwarden.match", "procwarden.rules", "procwarden.sandbox", "procwarden.container",
  "procwarden.actions",
}

local Policy = {}
Policy.__index = Policy

-- A fake host: what engine.c provides to the runtime, recorded instead.
local function new_host(policy)
  local host = { testing = true }
  function host.want() end
  function host.emit(level, text, kind, e, tags, results, rule)
    policy._outputs[#policy._outputs + 1] = {
      level = level, text = text, kind = kind, event = e, tags = tags, results = results,
      rule = rule or policy._current,
    }
  end
  function host.timer(t) policy._timers[#policy._timers + 1] = { entry = t, due = policy._now + t.seconds } end
  function host.now() return policy._now end
  function host.stats() return {} end
  -- Effects are recorded, never performed.
  local function effect(a)
    a.rule = policy._current
    policy._actions[#policy._actions + 1] = a
  end
  function host.signal(pid, start_time, sig)
    effect { kind = sig == 9 and "kill" or "signal", pid = pid, start_time = start_time, signal = sig }
    return true
  end
  function host.exec(argv, opts)
    effect { kind = "exec", argv = argv, user = opts and opts.user, timeout = opts and opts.timeout }
    return true
  end
  function host.children() return {} end
  -- The rules file a call charges (engine.c's host.file): set by each file's
  -- top level; read back with the running handler's name.
  function host.file(id)
    if id ~= nil then
      policy._file = id
      return
    end
    return policy._file or 0, policy._current
  end
  return host
end

-- A fresh runtime (its own module instances) around a fake host.
local function fresh_runtime(host)
  local saved = {}
  for _, name in ipairs(RUNTIME) do
    saved[name] = package.loaded[name]
    package.loaded[name] = nil
  end
  local saved_host = package.loaded["procwarden.host"]
  package.loaded["procwarden.host"] = host
  local ok, rt = pcall(require, "procwarden")
  local event = ok and require "procwarden.event" or nil
  for _, name in ipairs(RUNTIME) do package.loaded[name] = saved[name] end
  package.loaded["procwarden.host"] = saved_host
  if not ok then error(rt, 0) end
  return rt, event
end

local function new_policy()
  local p = setmetatable({ _outputs = {}, _actions = {}, _errors = {}, _timers = {}, _now = 1e9 }, Policy)
  p._host = new_host(p)
  p._runtime, p._event = fresh_runtime(p._host)
  return p
end

local function run_chunk(p, chunk)
  p._runtime.state.loading = true
  local ok, err = pcall(chunk) -- "file:line: message", as the daemon reports it
  p._runtime.state.loading = false
  if not ok then error(err, 0) end
end

-- Load rule files into a new policy. Errors are raised as "file:line: ...".
function M.load(...)
  local p = new_policy()
  for _, path in ipairs { ... } do
    local chunk, err = p._runtime.compile_file(path)
    if not chunk then error(err, 0) end
    run_chunk(p, chunk)
  end
  return p
end

-- Load rules from a string (name is used in messages).
function M.load_string(src, name)
  local p = new_policy()
  local chunk, err = p._runtime.compile_string(src, "=" .. (name or "rules"))
  if not chunk then error(err, 0) end
  run_chunk(p, chunk)
  return p
end

-- The load error a policy source gives, or nil when it loads.
function M.load_error(src, name)
  local ok, err = pcall(M.load_string, src, name)
  if ok then return nil end
  return (tostring(err):match("^[^\n]*"))
end

local function dispatch(p, e)
  local list = p._runtime.handlers[e.type]
  if list == nil then error(("feed: unknown event type '%s'"):format(tostring(e.type)), 3) end
  for _, entry in ipairs(list) do
    if not entry.suspended then
      p._current = entry.name
      local ok, err = xpcall(entry.fn, debug.traceback, e)
      if not ok then
        p._errors[#p._errors + 1] = { rule = entry.name, error = err }
        -- as the daemon does: counted, and suspended for a while (then
        -- resumed by a timer: advance) when the rule's own bugs keep failing it
        local cause = tostring(err):find("not enough memory", 1, true) and 2 or 1
        p._runtime.entry_failed(entry, cause, err)
      elseif (entry.in_a_row or 0) ~= 0 then
        p._runtime.entry_ok(entry)
      end
      p._current = nil
    end
  end
end

-- Feed one event (a table with the event's fields: type, pid, exe ...).
-- Fields it lacks are nil, as in a replay; pid defaults to 1000.
function Policy:feed(t)
  local e = {}
  for k, v in pairs(t) do e[k] = v end
  e.pid = e.pid or 1000
  e.tgid = e.tgid or e.pid
  if e.thread == nil then e.thread = e.pid ~= e.tgid end
  if e.startup == nil then e.startup = false end
  if e.time == nil then e.time = self._now end
  dispatch(self, self._event.recorded(e))
  return self
end

-- Feed every line of a JSON-lines fixture (the --record format).
function Policy:feed_file(path)
  local f = assert(io.open(path, "r"))
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line:match("%S") then
      local e, err = core.parse_record(line)
      if not e then
        f:close()
        error(("%s:%d: bad event line: %s"):format(path, n, err), 2)
      end
      e._replay = nil
      dispatch(self, self._event.recorded(e))
    end
  end
  f:close()
  return self
end

-- Move the fake clock (throttle windows, timers) forward; due timers run.
function Policy:advance(seconds)
  self._now = self._now + seconds
  for _, t in ipairs(self._timers) do
    while t.due and t.due <= self._now do
      self._current = t.entry.name
      local ok, err = xpcall(t.entry.fn, debug.traceback)
      if not ok then self._errors[#self._errors + 1] = { rule = t.entry.name, error = err } end
      t.due = t.entry.again and t.due + t.entry.seconds or nil
    end
  end
  self._current = nil
  return self
end

-- Outputs (log/alert lines): { level, text, kind, rule, tags, event }.
function Policy:outputs() return self._outputs end
-- Effects the rules took (kill, exec, deny ...): { kind, rule, ... }.
function Policy:actions() return self._actions end
-- Errors raised by handlers: { rule, error }.
function Policy:errors() return self._errors end

-- How many times rule `name` fired (0 when it did not).
function Policy:fired(name)
  for _, r in ipairs(self._runtime.rules) do
    if r.name == name then return r.fired > 0, r.fired end
  end
  error(("fired: no rule named '%s'"):format(tostring(name)), 2)
end

-- Names of the rules that fired, sorted.
function Policy:fired_rules()
  local names = {}
  for _, r in ipairs(self._runtime.rules) do
    if r.fired > 0 then names[#names + 1] = r.name end
  end
  table.sort(names)
  return names
end

-- Forget outputs, actions, errors and firing counts (rules stay loaded).
function Policy:reset()
  self._outputs, self._actions, self._errors = {}, {}, {}
  for _, r in ipairs(self._runtime.rules) do r.fired = 0 end
  return self
end

-- The --check summary of the policy.
function Policy:summary() return self._runtime.summary() end

return M
