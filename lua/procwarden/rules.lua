-- procwarden.rules: the rule{} DSL. A rule is data, checked and compiled
-- once at load: its match entries become closures, its actions are action
-- values, and it becomes one handler per event type it is `on`.
local event = require "procwarden.event"
local match = require "procwarden.match"
local suggest = require "procwarden.suggest"

local M = {}

M.KEYS = { "name", "on", "match", "when", "action", "priority", "tags", "throttle", "enabled" }
local KEY_SET = {}
for _, k in ipairs(M.KEYS) do KEY_SET[k] = true end

M.PRIORITIES = { debug = 1, info = 2, notice = 3, warning = 4, error = 5, critical = 6 }
M.PROCESS_OBJECTS = { parent = true, tracer = true, ancestors = true }
M.THROTTLE_KEYS = 4096 -- keys a throttle remembers at most

-- What an exec event knows before the rest of its context is read (the
-- hot path: exe and argv), plus the process table's parent links.
M.FAST_FIELDS = {}
for _, f in ipairs { "type", "pid", "tgid", "thread", "cpu", "ktime_ns", "seq", "time", "startup",
  "exe", "argv", "args", "cmdline", "argv_truncated", "parent", "ancestors" } do
  M.FAST_FIELDS[f] = true
end

-- Fields a signal can be decided on in C at an exec event (the exe is read first).
M.PREKILL_FIELDS = { exe = true, pid = true, tgid = true }

local actions = setmetatable({}, { __mode = "k" }) -- the action values made here
-- An action value: run(e, rule) -> true | nil, message. phase "effect"
-- (kill, exec, deny: run first) or "output" (log, alert: run after, with
-- the effects' results).
function M.action(kind, phase, run, fields)
  local a = fields or {}
  a.kind, a.phase, a.run = kind, phase, run
  actions[a] = true
  return a
end
function M.is_action(v) return actions[v] == true end

-- Raise a load error at the rule's call site (level counts from rule()).
local function fail(level, fmt, ...)
  error(fmt:format(...), level + 1)
end

local function check_field(name, key, level)
  local first, rest = string.match(key, "^([^.]+)%.(.+)$")
  local names = event.field_names()
  if first then
    if not M.PROCESS_OBJECTS[first] then
      fail(level + 1, "rule %s: '%s' is not a process object (parent, tracer, ancestors)%s",
        name, first, suggest.hint(first, M.PROCESS_OBJECTS))
    end
    if string.find(rest, ".", 1, true) or not event.is_field(rest) then
      fail(level + 1, "rule %s: unknown field '%s' in '%s'%s", name, rest, key, suggest.hint(rest, names))
    end
    return
  end
  if not event.is_field(key) then
    fail(level + 1, "rule %s: unknown event field '%s'%s", name, key, suggest.hint(key, names))
  end
end

-- Fields of the executable that a process can make unreadable (a path over
-- 4095 bytes, a file gone, a hash not had). A rule that acts (kill, signal,
-- deny) and matches on one of them fails closed: an unknown value holds,
-- and the firing says why (e._unknown, shown with the action's result).
local EXE_FIELDS = { exe = true, sha256 = true, exe_uid = true, exe_gid = true, exe_mode = true, exe_fs = true }
M.unknown_holds = 0 -- firings of an entry that held because its value could not be read

-- Why e's executable fields are unknown (not merely absent), or nil.
-- Only what a process can make unreadable fails closed: a path too long to
-- read (ENAMETOOLONG), a FUSE file whose attributes its server withholds.
-- A process gone before its exe was read can no longer be acted on, and
-- any busy host has many (counted, not held); EACCES is an LSM or sandbox
-- denying root, not the process. A hash not had holds only at a pre-exec
-- decision (deny's own rule: a sha256 rule whose other entries hold
-- denies); on an exec event a late hash must not kill a legitimate
-- process, so it does not hold there.
M.unknown_gone = 0 -- exe unknown because the process was gone: not held
local CLOSED_ERRORS = { ENAMETOOLONG = true, ["FUSE attributes withheld"] = true }
local function unknown_reason(e)
  local err = e.exe_error
  if err and CLOSED_ERRORS[err] then return "exe unreadable: " .. err end
  if err == "process gone" then M.unknown_gone = M.unknown_gone + 1 end
  return nil
end

-- The entry test m on field k, failing closed.
local function fail_closed(k, m)
  return function(e)
    if m(e) then return true end
    if e[k] ~= nil then return false end -- known, and it does not hold
    local why = unknown_reason(e)
    if not why then return false end
    M.unknown_holds = M.unknown_holds + 1
    rawset(e, "_unknown", why)
    return true
  end
end

-- The match entries of spec C can test (src/decision.c) on the fields it
-- holds: a list of { field, test }, and whether that is every entry.
local function plan_of(spec, fields, holds)
  local plan, complete = {}, true
  for _, k in ipairs(fields or {}) do
    local desc = holds[k] and match.describe(spec.match[k])
    if desc then plan[#plan + 1] = { field = k, test = desc } else complete = false end
  end
  return plan, complete
end

-- Compile a rule table. Returns the compiled rule:
-- { name, types = {...}, test = function(e) -> bool, actions, ... }
-- level: stack level of the user's rule{} call, for error positions.
function M.compile(spec, known_types, level)
  level = level + 1
  if type(spec) ~= "table" then fail(level, "rule: expects a table, got %s", type(spec)) end
  for k in pairs(spec) do
    if type(k) ~= "string" or not KEY_SET[k] then
      fail(level, "rule: unknown key '%s'%s", tostring(k), suggest.hint(k, M.KEYS))
    end
  end
  local name = spec.name
  if type(name) ~= "string" or name == "" then fail(level, "rule: 'name' must be a non-empty string") end
  local r = { name = name }

  local on = spec.on
  if type(on) == "string" then on = { on } end
  if type(on) ~= "table" or #on == 0 then
    fail(level, "rule %s: 'on' must be an event type or a list of them", name)
  end
  r.types = {}
  for _, t in ipairs(on) do
    if type(t) ~= "string" or not known_types[t] then
      fail(level, "rule %s: unknown event type '%s'%s", name, tostring(t), suggest.hint(t, known_types))
    end
    r.types[#r.types + 1] = t
  end

  local tests, tests_but_sha256, exe_entries = {}, {}, {}
  if spec.match ~= nil then
    if type(spec.match) ~= "table" then fail(level, "rule %s: 'match' must be a table", name) end
    local keys = {}
    for k in pairs(spec.match) do
      if type(k) ~= "string" then fail(level, "rule %s: match keys must be field names", name) end
      keys[#keys + 1] = k
    end
    table.sort(keys) -- a stable order
    for _, k in ipairs(keys) do
      check_field(name, k, level)
      local ok, m = pcall(match.entry, k, spec.match[k])
      if not ok then
        fail(level, "rule %s: match.%s: %s", name, k, (string.gsub(tostring(m), "^[^:]*:%d+: ", "")))
      end
      tests[#tests + 1] = m
      if k ~= "sha256" then tests_but_sha256[#tests_but_sha256 + 1] = m end
      if EXE_FIELDS[k] then exe_entries[#exe_entries + 1] = { k = k, i = #tests, j = #tests_but_sha256 } end
      r.fields = r.fields or {}
      r.fields[#r.fields + 1] = k
    end
  end
  if spec.when ~= nil and type(spec.when) ~= "function" then
    fail(level, "rule %s: 'when' must be a function", name)
  end
  local when = spec.when
  r.has_when = when ~= nil
  local n = #tests
  r.test = function(e)
    for i = 1, n do
      if not tests[i](e) then return false end
    end
    return when == nil or not not when(e) -- any true value, as in Lua
  end
  -- A decision whose hash was not had in time: the other entries decide
  -- (and not `when`, which may need the hash): a match denies.
  r.test_without_sha256 = function(e)
    for i = 1, #tests_but_sha256 do
      if not tests_but_sha256[i](e) then return false end
    end
    return true
  end

  local action = spec.action
  if action == nil then action = {} end
  if M.is_action(action) then action = { action } end
  if type(action) ~= "table" then fail(level, "rule %s: 'action' must be a list of actions", name) end
  for i, a in ipairs(action) do
    if not M.is_action(a) then
      fail(level, "rule %s: action %d is not an action (use alert \"...\", log(...), kill() ...)", name, i)
    end
  end
  r.actions = action

  local prio = spec.priority or "warning"
  if M.PRIORITIES[prio] == nil then
    fail(level, "rule %s: unknown priority '%s'%s", name, tostring(prio), suggest.hint(prio, M.PRIORITIES))
  end
  r.priority = prio

  r.tags = {}
  if spec.tags ~= nil then
    if type(spec.tags) ~= "table" then fail(level, "rule %s: 'tags' must be a list of strings", name) end
    for _, tag in ipairs(spec.tags) do
      if type(tag) ~= "string" then fail(level, "rule %s: 'tags' must be a list of strings", name) end
      r.tags[#r.tags + 1] = tag
    end
  end

  if spec.throttle ~= nil then
    local th = spec.throttle
    if type(th) ~= "table" then fail(level, "rule %s: 'throttle' must be { key, count, per }", name) end
    for k in pairs(th) do
      if k ~= "key" and k ~= "count" and k ~= "per" then
        fail(level, "rule %s: throttle: unknown key '%s'%s", name, tostring(k),
          suggest.hint(k, { "key", "count", "per" }))
      end
    end
    if th.key ~= nil then
      if type(th.key) ~= "string" then fail(level, "rule %s: throttle.key must be a field name", name) end
      check_field(name, th.key, level)
    end
    if math.type(th.count) ~= "integer" or th.count < 1 then
      fail(level, "rule %s: throttle.count must be a positive integer", name)
    end
    if type(th.per) ~= "number" or th.per <= 0 then
      fail(level, "rule %s: throttle.per must be a positive number of seconds", name)
    end
    r.throttle = { key = th.key, count = th.count, per = th.per, windows = {}, nkeys = 0, suppressed = 0 }
  end

  if spec.enabled ~= nil and type(spec.enabled) ~= "boolean" then
    fail(level, "rule %s: 'enabled' must be true or false", name)
  end
  r.enabled = spec.enabled ~= false

  -- deny(): a decision before the program runs (fanotify), so only what is
  -- known then may be matched: not the new program's argv or name.
  for _, a in ipairs(r.actions) do r.deny = r.deny or a.kind == "deny" end
  if r.deny then
    if #r.types ~= 1 or r.types[1] ~= "exec" then
      fail(level, "rule %s: deny() only applies to exec rules (on = \"exec\")", name)
    end
    for _, k in ipairs(r.fields or {}) do
      if event.NOT_AT_DECISION[k] then
        fail(level, "rule %s: deny() decides before the program runs, when its %s is not known yet; "
          .. "match on exe, sha256, exe_uid/exe_mode or the calling process (uid, user, parent, ancestors ...)",
          name, k)
      end
    end
    r.uses_sha256 = spec.match ~= nil and spec.match.sha256 ~= nil
    -- nothing to judge without an exe, unless a process made it unreadable
    -- (a kernel thread or pid 1 at the start-up scan, a process gone)
    local test = r.test
    r.test = function(e)
      if e.exe == nil and not CLOSED_ERRORS[e.exe_error] then return false end
      return test(e)
    end
    -- What the responder thread can test in C (src/decision.c): the plain
    -- entries; the rest (functions, other fields, `when`) needs Lua.
    local complete
    r.plan, complete = plan_of(spec, r.fields, match.decision_fields)
    r.needs_lua = spec.when ~= nil or not complete
  end

  -- A fast rule acts on an exec before the rest of the context is read:
  -- no `when`, an effect (kill ...), and only fields known at once.
  local fast = spec.when == nil
  for _, k in ipairs(r.fields or {}) do
    local first = string.match(k, "^([^.]+)") or k
    if not M.FAST_FIELDS[first] then fast = false end
  end
  local effect = false
  for _, a in ipairs(r.actions) do effect = effect or a.phase == "effect" end
  r.fast = fast and effect
  -- A rule that acts on what a binary is must not be dodged by making it
  -- unreadable: its entries on the executable fail closed.
  local acts = false
  for _, a in ipairs(r.actions) do acts = acts or a.kind == "deny" or a.signal ~= nil end
  if acts then
    for _, x in ipairs(exe_entries) do
      local closed = fail_closed(x.k, tests[x.i])
      tests[x.i] = closed
      if x.k ~= "sha256" then tests_but_sha256[x.j] = closed end
    end
  end

  -- A fast rule whose one effect is a signal and whose entries are plain
  -- matchers on exe (or pid): engine.c sends that signal from C as soon as
  -- exe is read (src/decision.c), before any Lua runs; the rule's own kill
  -- then reports that result (api.c). Throttled rules stay in Lua.
  if r.fast and not r.deny and spec.throttle == nil then
    local sig, effects = nil, 0
    for _, a in ipairs(r.actions) do
      if a.phase == "effect" then effects, sig = effects + 1, a.signal end
    end
    local plan, complete = plan_of(spec, r.fields, M.PREKILL_FIELDS)
    if effects == 1 and sig and complete then r.prekill = { plan = plan, signal = sig } end
  end
  return r
end

-- Summaries of windows that closed with suppressed firings (called by a
-- periodic sweep so a flood that stops is still reported). Returns a list
-- of messages and forgets those windows.
function M.throttle_sweep(r, now)
  local th = r.throttle
  local out = {}
  if th == nil then return out end
  for key, w in pairs(th.windows) do
    if now - w.start >= th.per then
      if w.suppressed > 0 then
        out[#out + 1] = ("suppressed %d firing%s for %s=%s in the last %g s"):format(
          w.suppressed, w.suppressed == 1 and "" or "s", th.key or "rule", key, th.per)
      end
      th.windows[key] = nil
      th.nkeys = th.nkeys - 1
    end
  end
  return out
end

-- Throttle: may this firing go ahead? Counts suppressed firings per key and
-- returns, when a window closes, a summary of what it suppressed.
function M.throttle_pass(r, e, now)
  local th = r.throttle
  if th == nil then return true end
  local key = "*"
  if th.key then
    local first, rest = string.match(th.key, "^([^.]+)%.(.+)$")
    local v
    if first then
      local obj = e[first]
      v = type(obj) == "table" and obj[rest] or nil
    else
      v = e[th.key]
    end
    key = tostring(v)
  end
  local w = th.windows[key]
  local summary
  if w == nil and th.nkeys >= M.THROTTLE_KEYS then -- bounded: forget closed windows
    for k, old in pairs(th.windows) do
      if now - old.start >= th.per then th.windows[k] = nil; th.nkeys = th.nkeys - 1 end
    end
    if th.nkeys >= M.THROTTLE_KEYS then th.windows, th.nkeys = {}, 0 end
  end
  if w == nil then th.nkeys = th.nkeys + 1 end
  if w == nil or now - w.start >= th.per then
    if w and w.suppressed > 0 then
      summary = ("suppressed %d firing%s for %s=%s in the last %g s"):format(
        w.suppressed, w.suppressed == 1 and "" or "s", th.key or "rule", key, th.per)
    end
    w = { start = now, count = 0, suppressed = 0 }
    th.windows[key] = w
  end
  if w.count >= th.count then
    w.suppressed = w.suppressed + 1
    th.suppressed = th.suppressed + 1
    return false, summary
  end
  w.count = w.count + 1
  return true, summary
end

return M
