-- procwarden: the Lua half of the runtime. Builds the API that rule files
-- see (rule, on, log, alert, every, after, proc, stats and the matcher
-- helpers), the sandboxed environment they run in, and the handler lists
-- that the C engine dispatches events to. The C side is
-- `procwarden.host` (engine.c); procwarden.testing provides a fake one.
local core = require "procwarden.core"
local host = require "procwarden.host"
local event = require "procwarden.event"
local template = require "procwarden.template"
local suggest = require "procwarden.suggest"
local match = require "procwarden.match"
local rules = require "procwarden.rules"
local sandbox = require "procwarden.sandbox"
local actions = require "procwarden.actions"

local M = {}

-- handlers[type] = { entry, ... }, entry = { fn = f, name = "...", rule = r?,
-- file = n }. Read by engine.c at dispatch: an empty list means events of
-- that type never become Lua tables; an entry with `suspended` set is
-- skipped; `file` is the rules file its memory is charged to. A failed call
-- comes back here (M.entry_failed), which counts it and may suspend the
-- entry for a while.
M.handlers = {}
-- fast_handlers.exec: fast rules, run on exec events as soon as exe and
-- argv are read, before the rest of the batch (engine_dispatch_fast).
M.fast_handlers = { exec = {} }
-- predecided_handlers.exec: the exec handlers but the deny() rules', for an
-- exec the responder decided before it ran (the rules need not run again:
-- their kill after exec is for the execs fanotify did not see).
M.predecided_handlers = { exec = {} }
M.predecided_fast_handlers = { exec = {} }
-- Fast rules whose signal C sends on its own (rules.lua r.prekill), as
-- decision.c programs: { name, enabled, plan, signal }.
M.prekill_rules = {}
M.types = {}
M.type_set = {}
for _, t in ipairs(core.event_types) do
  if t ~= "ack" then
    M.handlers[t] = {}
    M.types[#M.types + 1] = t
    M.type_set[t] = true
  end
end
M.timers = {}
M.rules = {}       -- compiled rules, in load order
M.decision_rules = {} -- rules with deny(): evaluated before an exec runs
M.rule_names = {}  -- name -> "file:line" where it was defined
M.state = { loading = false, dry_run = false }
M.levels = rules.PRIORITIES

-- ---- rules files ------------------------------------------------------------
-- Each rules file has a number: the engine charges the memory its code
-- allocates to it (a share of the state's cap, engine.c), and it may keep at
-- most MAX_TIMERS timers alive. files[n] = { path, timers, timers_refused,
-- refused (patterns) }.
M.MAX_TIMERS = 256
M.files = {}
local loading_file -- the file whose top level runs (or ran last)

-- The running call's file (or nil: the runtime) and name, as the engine
-- knows them; procwarden.testing's fake host may not say.
local function running()
  if host.file then
    local id, who = host.file()
    return M.files[id], who
  end
  return loading_file, nil
end

-- The file a new handler, rule or timer belongs to.
local function current_file()
  if M.state.loading then return loading_file end
  return (running())
end

local function new_file(path)
  local f = { id = #M.files + 1, path = path, timers = 0, timers_refused = 0, refused = 0 }
  M.files[f.id] = f
  return f
end

-- The chunk of a rules file, run as that file: what it allocates is its own.
local function as_file(chunk, f)
  return function(...)
    if host.file then host.file(f.id) end
    loading_file = f
    return chunk(...)
  end
end

-- ---- failures and suspension ----------------------------------------------
-- A handler entry (or a decision rule) whose own code keeps failing is
-- suspended for a while, not for good: SUSPEND_AFTER failures in a row
-- suspend it for BACKOFF_FIRST seconds, doubled at each suspension that
-- follows within BACKOFF_MAX of the last resumption, up to BACKOFF_MAX; then
-- it resumes by itself. Both are error-level lines on the outputs.
--
-- What counts: the rule's own errors (indexing a nil local, error(), a
-- typo'd global, writing to the event) and the instruction/time budget (a
-- rule that takes 250 ms on an event stalls every other rule: its work must
-- be bounded whatever the event). What does not count, being caused by
-- event data: memory errors (a refused allocation during the call: the
-- file's share or the cap is full, e.g. a cache an attacker feeds, or a
-- field read that does not fit); using an event field the event does not
-- have ("attempt to index a nil value (field 'argv')": the process was gone
-- before its argv was read, it has no parent any more ...); and what the
-- sandbox refuses (a pattern too costly is "no match", not an error at all;
-- a string or table result over its cap raises): each refusal is counted
-- per rule and warned once, see M.refused.
M.SUSPEND_AFTER = 5
M.BACKOFF_FIRST = 1
M.BACKOFF_MAX = 300
M.CAUSES = { "error", "memory", "budget" } -- engine.c's FAIL_ERROR, FAIL_MEMORY, FAIL_BUDGET
M.suspensions = 0 -- entries suspended now

-- The rule behind an entry (a decision rule is its own entry).
local function rule_of(entry)
  if entry.rule then return entry.rule end
  if entry.deny and entry.test then return entry end
  return nil
end

local function first_line(msg)
  return (tostring(msg):match("^[^\n]*"))
end

local function what(entry)
  return ("%s (%s)"):format(entry.name, entry.type or "deny")
end

local function suspension_line(entry, text)
  local r = rule_of(entry)
  host.emit("error", text, "alert", nil, r and r.tags, nil, entry.name)
end

-- C signals only for rules whose entries all run (M.prekill_program).
local function prekill_changed(entry)
  local r = rule_of(entry)
  if r and r.prekill and host.prekill_off then host.prekill_off(true) end
end

function M.resume(entry)
  if not entry.suspended then return end
  entry.suspended = nil
  entry.resumed_at = host.now()
  M.suspensions = M.suspensions - 1
  local r = rule_of(entry)
  if r then r.suspended_entries = r.suspended_entries - 1 end
  prekill_changed(entry)
  suspension_line(entry, ("%s resumed after %d s suspended"):format(what(entry), entry.backoff))
end

local function suspend(entry, msg)
  local now = host.now()
  if entry.backoff and entry.resumed_at and now - entry.resumed_at < M.BACKOFF_MAX then
    entry.backoff = math.min(entry.backoff * 2, M.BACKOFF_MAX)
  else
    entry.backoff = M.BACKOFF_FIRST
  end
  local n = entry.in_a_row
  entry.suspended, entry.in_a_row = true, 0
  M.suspensions = M.suspensions + 1
  local r = rule_of(entry)
  if r then r.suspended_entries = (r.suspended_entries or 0) + 1 end
  prekill_changed(entry)
  host.timer { name = entry.name, seconds = entry.backoff, again = false, internal = true, file = 0,
    fn = function() M.resume(entry) end }
  suspension_line(entry, ("%s suspended for %d s after %d failures in a row, the last: %s")
    :format(what(entry), entry.backoff, n, first_line(msg)))
end

-- Was the error raised by a refusal of the sandbox (its message is the
-- refusal's, see M.refused)?
local last_refusal
local function refused_error(msg)
  return last_refusal ~= nil and first_line(msg):find(last_refusal, 1, true) ~= nil
end

-- Did the error come from an event field that is nil for this event? Lua
-- names the field it found nil: "attempt to index a nil value (field
-- 'parent')", "... to concatenate a nil value (field 'exe')".
local function missing_field(msg)
  local name = first_line(msg):match("a nil value %(field '([%w_]+)'%)$")
  return name ~= nil and event.is_field(name)
end

-- engine.c, after a failed call of entry: cause 1 (the rule's error),
-- 2 (memory), 3 (budget); msg the logged message. True when this failure
-- suspended the entry.
function M.entry_failed(entry, cause, msg)
  entry.failures = (entry.failures or 0) + 1
  local data = M.CAUSES[cause] == "memory"
    or (M.CAUSES[cause] == "error" and (missing_field(msg) or refused_error(msg)))
  if data then
    entry.data_failures = (entry.data_failures or 0) + 1
    return false
  end
  entry.in_a_row = (entry.in_a_row or 0) + 1
  if entry.suspended or entry.in_a_row < M.SUSPEND_AFTER then return false end
  suspend(entry, msg)
  return true
end

-- engine.c, after a call that succeeded while failures were in a row.
function M.entry_ok(entry)
  entry.in_a_row = 0
  return false
end

-- The sandbox refused something (procwarden.sandbox: a pattern too costly
-- on its subject, which then does not match; a result over its cap, which
-- then raises): counted per rule (or handler, timer) and per file; the
-- first refusal of each is a warning of procwarden's on the outputs.
M.refusals = {} -- name -> count
function M.refused(kind, detail)
  last_refusal = first_line(detail)
  local f, who = running()
  who = who or "procwarden"
  if f then f.refused = f.refused + 1 end
  local n = (M.refusals[who] or 0) + 1
  M.refusals[who] = n
  if n == 1 then
    host.emit("warning", ("%s: %s refused (%s); further refusals are only counted")
      :format(who, tostring(kind), first_line(detail)), "log", nil, nil, nil, "procwarden")
  end
end
if sandbox.set_refused_handler then sandbox.set_refused_handler(M.refused) end

-- "file:line" of the user code `level` frames up.
local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if not info then return "?" end
  return ("%s:%d"):format(info.short_src, info.currentline)
end

local function check_type(t, level)
  if type(t) ~= "string" or M.handlers[t] == nil then
    error(("unknown event type '%s'%s; known: %s"):format(
      tostring(t), suggest.hint(t, M.types), table.concat(M.types, " ")), level + 1)
  end
end

-- Was rule r fully judged by a pre-exec decision that allowed the exec? A
-- deny rule without `when`: its entries saw what the exec event would
-- show. A `when` may hold only once the program runs: it judges again.
function M.judged_before(r)
  return r ~= nil and r.deny == true and not r.has_when
end

local function add_handler(t, entry)
  local list = M.handlers[t]
  list[#list + 1] = entry
  if t == "exec" and not M.judged_before(entry.rule) then
    list = M.predecided_handlers.exec
    list[#list + 1] = entry
  end
  host.want(t)
end

local api = {}

function api.on(t, fn)
  check_type(t, 2)
  if type(fn) ~= "function" then error("on: the handler must be a function", 2) end
  local f = current_file()
  add_handler(t, { fn = fn, name = where(2), type = t, failures = 0, in_a_row = 0, file = f and f.id })
end

-- Output: at load time inside an action list, log/alert build action
-- values; called from a handler or timer they write at once.
local function emit(level, msg, kind, e, r, results)
  host.emit(level, template.expand(msg, e), kind, e, r and r.tags, results, r and r.name)
  return true
end

local function results_suffix(results)
  if results == nil or #results == 0 then return "" end
  local parts = {}
  for i, res in ipairs(results) do
    parts[i] = res.ok and res.done or (res.done .. " failed: " .. tostring(res.error))
  end
  return " [" .. table.concat(parts, ", ") .. "]"
end

-- A misspelt {field} in a message is a load error, not a failure at every
-- firing.
local function check_template(fname, msg)
  local bad, path = template.unknown_field(msg, event.is_field)
  if bad then
    error(("%s: unknown field '%s' in {%s}%s"):format(fname, bad, path, suggest.hint(bad, event.field_names())), 3)
  end
end

function api.log(level, msg, e)
  if M.levels[level] == nil then
    error(("log: unknown level '%s'%s"):format(tostring(level), suggest.hint(level, M.levels)), 2)
  end
  if type(msg) ~= "string" then error("log: the message must be a string", 2) end
  if M.state.loading and e == nil then
    check_template("log", msg)
    return rules.action("log", "output", function(ev, r, results)
      return emit(level, msg .. results_suffix(results), "log", ev, r, results)
    end)
  end
  return emit(level, msg, "log", e)
end

function api.alert(msg, e)
  if type(msg) ~= "string" then error("alert: the message must be a string", 2) end
  if M.state.loading and e == nil then
    check_template("alert", msg)
    return rules.action("alert", "output", function(ev, r, results)
      return emit(r.priority, msg .. results_suffix(results), "alert", ev, r, results)
    end)
  end
  return emit("warning", msg, "alert", e)
end

-- Run a compiled rule on an event: match, when, throttle, then the effect
-- actions (kill, exec ...) before any output, then log/alert with their
-- results appended. A fast rule runs in two steps on kernel exec events:
-- `fast` (match, throttle, effects) as soon as exe and argv are read, and
-- `full` later, which only writes the outputs with the stashed results.
local MAX_PENDING = 8192 -- above the events of one wake-up (engine: 8 x 513)

local function fire(r)
  local effects, outputs = {}, {}
  for _, a in ipairs(r.actions) do
    if a.phase == "effect" then effects[#effects + 1] = a else outputs[#outputs + 1] = a end
  end
  local pending, npending = {}, 0
  local function key(e) return tostring(event.raw(e, "pid")) .. ":" .. tostring(event.raw(e, "ktime_ns")) end

  local function act(e)
    -- the event's own time: a replay throttles as the live run did
    local pass, summary = rules.throttle_pass(r, e, event.raw(e, "time") or host.now())
    if summary then emit(r.priority, summary, "throttle", nil, r) end
    if not pass then return nil end
    r.fired = r.fired + 1
    local results = {}
    for i = 1, #effects do
      local ok, err, done = effects[i].run(e, r)
      results[#results + 1] = { name = effects[i].kind, ok = ok == true, error = err, done = done or effects[i].kind }
    end
    return results
  end

  -- A deny rule matching on sha256, on an exec the pre-exec path did not
  -- decide: a hash not had (a padded or huge binary) must buy no bypass.
  -- Not at the start-up scan: what runs already is judged on what can be
  -- read (a late hash there says nothing of the exec, and would kill every
  -- large program running).
  local function test(e)
    if r.test(e) then return true end
    return r.deny and r.uses_sha256 and not e.startup and e.sha256 == nil
      and event.raw(e, "_sha256_late") == true and r.test_without_sha256(e)
  end

  local function full(e)
    if r.fast then
      local k = key(e)
      local stashed = pending[k]
      if stashed ~= nil then
        pending[k], npending = nil, npending - 1
        if stashed then
          for i = 1, #outputs do outputs[i].run(e, r, stashed) end
        end
        return
      end
    end
    if not r.enabled or not test(e) then return end
    local results = act(e)
    if results then
      for i = 1, #outputs do outputs[i].run(e, r, results) end
    end
  end

  local function fast(e)
    if not r.enabled or not test(e) then return end
    if npending >= MAX_PENDING then pending, npending = {}, 0 end
    pending[key(e)] = act(e) or false
    npending = npending + 1
  end
  return full, fast
end

-- One sweep timer for all throttles: closed windows report what they
-- suppressed even when no later firing comes.
local sweep_started = false
local function start_throttle_sweep()
  if sweep_started then return end
  sweep_started = true
  local t = { name = "throttle summaries", seconds = 5, again = true, internal = true }
  t.fn = function()
    local now = host.now()
    for _, r in ipairs(M.rules) do
      for _, msg in ipairs(rules.throttle_sweep(r, now)) do emit(r.priority, msg, "throttle", nil, r) end
    end
  end
  M.timers[#M.timers + 1] = t
  host.timer(t)
end

function api.rule(spec)
  local r = rules.compile(spec, M.type_set, 2)
  if r.throttle then start_throttle_sweep() end
  r.where = where(2)
  if M.rule_names[r.name] then
    error(("rule %s: duplicate name (first defined at %s)"):format(r.name, M.rule_names[r.name]), 2)
  end
  M.rule_names[r.name] = r.where
  r.fired = 0
  r.denied = 0
  local f = current_file()
  r.file = f and f.id
  M.rules[#M.rules + 1] = r
  if r.deny then
    r.failures, r.in_a_row = 0, 0
    M.decision_rules[#M.decision_rules + 1] = r
    host.want("exec", nil, r.uses_sha256 and "deny+sha256" or "deny")
  end
  -- C signals only ahead of every fast effect it does not judge itself:
  -- the effects keep the order of the rules.
  if r.prekill and not M.prekill_closed then
    M.prekill_rules[#M.prekill_rules + 1] = { name = r.name, enabled = r.enabled, needs_lua = false,
      plan = r.prekill.plan, signal = r.prekill.signal, rule = r }
  elseif r.fast and not r.deny then
    M.prekill_closed = true
  end
  local full, fast = fire(r)
  for _, t in ipairs(r.types) do
    add_handler(t, { fn = full, name = r.name, type = t, rule = r, failures = 0, in_a_row = 0, file = r.file })
    if r.fast and t == "exec" then
      local entry = { fn = fast, name = r.name, type = t, rule = r, failures = 0, in_a_row = 0, file = r.file }
      local list = M.fast_handlers.exec
      list[#list + 1] = entry
      if not M.judged_before(r) then
        list = M.predecided_fast_handlers.exec
        list[#list + 1] = entry
      end
      host.want(t, true)
    end
  end
end

-- The rules C may signal for (engine.c, after loading and after each
-- suspension or resumption): none in a dry run or once protect{} holds
-- globs (is_protected is Lua's to judge), and none of a rule with an entry
-- suspended (its Lua side, which reports the signal, would not run).
function M.prekill_program()
  if M.state.dry_run or #actions.protected > 0 then return {} end
  if M.suspensions == 0 then return M.prekill_rules end
  local list = {}
  for _, p in ipairs(M.prekill_rules) do
    if (p.rule.suspended_entries or 0) == 0 then list[#list + 1] = p end
  end
  return list
end

-- A pre-exec decision (engine.c, called from the loop for each fanotify
-- request): the first enabled decision rule that matches denies. The event
-- is the exec to be: exe, sha256, exe_uid/exe_gid/exe_mode and the calling
-- process; the verdict is left in the table for the engine to read.
function M.decide(r, e)
  local hit
  if r.enabled then
    if event.raw(e, "_hash_late") and r.uses_sha256 then hit = r.test_without_sha256(e) else hit = r.test(e) end
  end
  if hit then
    r.denied = r.denied + 1
    r.fired = r.fired + 1
    rawset(e, "_verdict", r.name)
  end
end

-- After the answer was written: the deciding rule's outputs, or a line
-- saying the daemon answered by default. fast: the responder thread
-- decided in C (src/decision.c) and M.decide never ran.
function M.decided(e, rule_name, late, denied, fast)
  local name = rule_name
  if late then
    emit("warning", ("no decision in time for exec of {exe} by pid {pid}: %s by default")
      :format(denied and "denied" or "allowed"), "deny", e)
    return
  end
  for _, r in ipairs(M.decision_rules) do
    if r.name == name then
      if fast then -- decided in the responder thread (C): count the firing here
        r.denied = r.denied + 1
        r.fired = r.fired + 1
      end
      local done = M.state.dry_run and "would deny" or "denied"
      local results = { { name = "deny", ok = true, done = done } }
      host.emit(r.priority, template.expand(done .. " exec of {exe} by pid {pid}", e), "action", e, r.tags, results)
      for _, a in ipairs(r.actions) do
        if a.phase == "output" then a.run(e, r, results) end
      end
      return
    end
  end
  -- The rule is gone (renamed or dropped by a reload since): say it anyway.
  local done = M.state.dry_run and "would deny" or "denied"
  local msg = template.expand(done .. " exec of {exe} by pid {pid}", e)
    .. (" (rule %s, since reloaded)"):format(tostring(name))
  host.emit("warning", msg, "action", e, nil, { { name = "deny", ok = true, done = done } })
end

-- A timer of the running file. Each file keeps at most MAX_TIMERS alive
-- (every() for good, after() until it fires): past that, nil and a message,
-- counted per file.
local function timer(name, seconds, fn, again)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds <= 0 or seconds > 1e7 then
    error(name .. ": seconds must be a number from 0 (excluded) to 1e7", 3)
  end
  if type(fn) ~= "function" then error(name .. ": the callback must be a function", 3) end
  local f = current_file()
  if f then
    if f.timers >= M.MAX_TIMERS then
      f.timers_refused = f.timers_refused + 1
      return nil, ("%s: refused: %s already has %d timers"):format(name, f.path, M.MAX_TIMERS)
    end
    f.timers = f.timers + 1
    if not again then
      local callback = fn
      fn = function() f.timers = f.timers - 1; return callback() end
    end
  end
  local t = { fn = fn, name = where(3), seconds = seconds, again = again, file = f and f.id }
  if again or M.state.loading then M.timers[#M.timers + 1] = t end -- one-shots from handlers are not kept
  host.timer(t)
  return true
end

-- (not tail calls: timer() names the caller's line two frames up)
function api.every(seconds, fn)
  local ok, err = timer("every", seconds, fn, true)
  return ok, err
end
function api.after(seconds, fn)
  local ok, err = timer("after", seconds, fn, false)
  return ok, err
end

function api.proc(pid)
  if math.type(pid) ~= "integer" or pid <= 0 then error("proc: pid must be a positive integer", 2) end
  return event.process(pid)
end

function api.stats() return host.stats() end

function api.print(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  return emit("info", table.concat(parts, "\t", 1, parts.n), "log")
end

for _, name in ipairs { "prefix", "suffix", "contains", "iglob", "oneof", "not_" } do
  api[name] = match[name]
end
for name, fn in pairs(actions.make(M.state)) do api[name] = fn end

M.api = api

-- The string metatable is shared by the whole state: lock it before any
-- rule file runs (not under procwarden.testing, whose host is the user's
-- own busted process).
if not host.testing then sandbox.lock_string_metatable() end

function M.new_env()
  return sandbox.new_env(api, M.state)
end

-- Compile a rule file (text only). Returns the chunk, or nil and
-- "file:line: message". The engine runs the chunk through its safe call
-- with state.loading set.
function M.compile_file(path)
  local chunk, err = loadfile(path, "t", M.new_env())
  if not chunk then
    if not string.find(err, path, 1, true) then
      err = ("%s: %s"):format(path, err) -- e.g. a binary (bytecode) chunk: say which file
    end
    return nil, err
  end
  return as_file(chunk, new_file(path))
end

function M.compile_string(src, chunkname)
  local chunk, err = load(src, chunkname, "t", M.new_env())
  if not chunk then return nil, err end
  return as_file(chunk, new_file((tostring(chunkname):gsub("^[@=]", ""))))
end

local function plural(n, word) return ("%d %s%s"):format(n, word, n == 1 and "" or "s") end

-- Lines for --check.
function M.summary()
  local lines = {}
  local nhandlers = 0
  for _, t in ipairs(M.types) do
    local nrules, nraw = 0, 0
    for _, entry in ipairs(M.handlers[t]) do
      if entry.rule then nrules = nrules + 1 else nraw = nraw + 1 end
    end
    nhandlers = nhandlers + nraw
    if nrules + nraw > 0 then
      lines[#lines + 1] = ("  %-9s %s, %s"):format(t, plural(nrules, "rule"), plural(nraw, "handler"))
    end
  end
  local ntimers = 0
  for _, t in ipairs(M.timers) do
    if not t.internal then ntimers = ntimers + 1 end
  end
  table.insert(lines, 1, ("%s, %s, %s"):format(plural(#M.rules, "rule"), plural(nhandlers, "handler"),
    plural(ntimers, "timer")))
  return table.concat(lines, "\n")
end

local function counted(n, what_)
  return (n or 0) > 0 and (", %s %d"):format(what_, n) or ""
end

-- Per-rule lines for --stats, then one per rules file.
-- (rules with deny() also count their pre-exec denials as firings)
function M.rule_stats()
  local lines = {}
  for _, t in ipairs(M.types) do
    for _, entry in ipairs(M.handlers[t]) do
      lines[#lines + 1] = ("  %-30s %-9s fired %d, failures %d%s%s%s%s"):format(
        entry.name, t, entry.rule and entry.rule.fired or 0, entry.failures or 0,
        counted(entry.data_failures, "data errors"), counted(M.refusals[entry.name], "refused"),
        entry.rule and entry.rule.throttle and (", throttled " .. entry.rule.throttle.suppressed) or "",
        entry.suspended and " (suspended)" or "")
    end
  end
  local mem = host.stats and host.stats().lua_files or {}
  for _, f in ipairs(M.files) do
    local m = mem[f.id]
    lines[#lines + 1] = ("  file:%s memory %d of %d, allocations refused %d, timers %d, timers refused %d, "
      .. "patterns refused %d"):format(f.path, m and m.memory or 0, m and m.share or 0, m and m.refused or 0,
      f.timers, f.timers_refused, f.refused)
  end
  if rules.unknown_holds > 0 or rules.unknown_gone > 0 then
    lines[#lines + 1] = ("  exe unknown: entries held (failed closed) %d, processes gone before their exe was read %d")
      :format(rules.unknown_holds, rules.unknown_gone)
  end
  return table.concat(lines, "\n")
end

return M
