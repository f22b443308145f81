-- procwarden.event: the fields of event tables and process objects.
--
-- An event table holds the kernel's fields (type, pid, tgid, ...). Every
-- process field comes from one source, behind this one accessor:
--   * the process context captured when the event arrived (`_ctx`, filled
--     in on first access: exe argv uid ... as they were at that moment);
--   * the live /proc, for what was not captured (cwd, env, caps ...), and
--     only while the process is still the same one (pid + start time);
--   * a recorded line (`--replay`): what the line lacks is nil, never read
--     from this machine.
-- Values are cached in the table. A field that cannot be had is nil; a
-- name that is no field is an error.
--
-- Nothing a rule is handed can be written: an event and every process
-- object are read-only proxies, and their lists and maps (argv, args, env,
-- caps, ancestors) read-only views, so one rules file cannot change what
-- the next one (or a kill) sees.
local core = require "procwarden.core"
local host = require "procwarden.host"
local container = require "procwarden.container"

local M = {}

local fields = {}
local misses = setmetatable({}, { __mode = "k" }) -- table -> { name = true }
local MAX_ANCESTORS = 64

local function replayed(e) return rawget(e, "_replay") == true end

-- ---- read-only views -------------------------------------------------------
-- A view is an empty table whose metatable indexes the real list or map:
-- reads (t[k], #, ipairs, pairs, table.concat, table.unpack ...) go
-- through, every write reaches __newindex and fails. The metatable is
-- protected, and pairs hands out a closure: the real table never leaks.
local getmt = debug.getmetatable
local VIEW = "procwarden.view"

local function view_write(v)
  error(("event field '%s' is read-only"):format(tostring(rawget(getmt(v), "field"))), 2)
end
local function view_len(v) return #rawget(getmt(v), "__index") end
local function view_pairs(v)
  local t, k = rawget(getmt(v), "__index"), nil
  return function()
    local value
    k, value = next(t, k)
    return k, value
  end
end

local function view(t, field)
  return setmetatable({}, {
    __index = t, __newindex = view_write, __len = view_len, __pairs = view_pairs,
    __name = VIEW, __metatable = VIEW, field = field,
  })
end

-- The list and map fields, always handed out as views.
local VIEWED = { argv = true, args = true, env = true, caps = true, ancestors = true }
local VIEWED_LIST = { "argv", "args", "env", "caps", "ancestors" }

function M.is_view(t)
  local mt = getmt(t)
  return mt ~= nil and rawget(mt, "__name") == VIEW
end

-- next(t, k) that sees what pairs sees: through a view, and through an
-- event proxy to its fields (private "_" names left out).
function M.next(t, k)
  local mt = getmt(t)
  local name = mt ~= nil and rawget(mt, "__name")
  local shown = (name == VIEW or name == "procwarden.event") and rawget(mt, "__index")
  if type(shown) ~= "table" then return next(t, k) end
  local v
  repeat
    k, v = next(shown, k)
  until k == nil or name == VIEW or type(k) ~= "string" or string.byte(k, 1) ~= 95
  return k, v
end

-- Turn the plain lists and maps a store holds (put there by the process
-- context or a recorded line) into views, in place.
local function freeze_lists(s)
  for i = 1, #VIEWED_LIST do
    local k = VIEWED_LIST[i]
    local v = rawget(s, k)
    if v ~= nil and type(v) == "table" and getmt(v) == nil then rawset(s, k, view(v, k)) end
  end
end

-- Copy the captured context into e, once (no /proc read). Of the lists,
-- the context holds argv only.
local function fill(e)
  if rawget(e, "_filled") then return end
  rawset(e, "_filled", true)
  local ctx = rawget(e, "_ctx")
  if ctx ~= nil and host.ctx_fill then
    host.ctx_fill(ctx, e)
    local argv = rawget(e, "argv")
    if argv ~= nil and getmt(argv) == nil then rawset(e, "argv", view(argv, "argv")) end
  end
end

-- Is e's process alive (not exited, not a zombie) and still the same
-- process (pid + start time)? Never on the exit event of a process.
function fields.valid(e)
  if replayed(e) then return false end
  -- The kernel sends a process's exit event once it is a zombie: a live
  -- process with that pid is another one (the pid was reused).
  if rawget(e, "type") == "exit" and rawget(e, "thread") == false then return false end
  local st = core.proc_stat(e.tgid)
  if st == nil or st.state == "Z" or st.state == "X" then return false end
  fill(e)
  local then_ = rawget(e, "start_time")
  if then_ ~= nil then return then_ == st.start_time end
  local est = rawget(e, "_start_est") -- from the fork event's time, to a tick
  return est == nil or math.abs(est - st.start_time) <= 1
end

-- A live /proc read, only while e is still the process it was.
local function live(e, read, ...)
  if not e.valid then return nil end
  return (read(e.tgid, ...))
end

local function stat_field(name)
  return function(e)
    local st = live(e, core.proc_stat)
    return st and st[name]
  end
end
local function status_field(name)
  return function(e)
    local st = live(e, core.proc_status)
    return st and st[name]
  end
end

-- Captured at exec (live only when the table never knew the process).
fields.exe = function(e) return live(e, core.proc_exe) end
fields.argv = function(e)
  if not e.valid then return nil end
  local argv, truncated = core.proc_cmdline(e.tgid)
  if argv then rawset(e, "argv_truncated", truncated) end
  return argv
end
fields.argv_truncated = function(e)
  local _ = e.argv
  return rawget(e, "argv_truncated")
end
fields.comm = function(e) return live(e, core.proc_comm) end
fields.cgroup = function(e)
  local text = live(e, core.proc_read, "cgroup")
  local m = string.match
  return text and (m(text, "^0::([^\n]*)") or m(text, "\n0::([^\n]*)") or m(text, "^[^:]*:[^:]*:([^\n]*)"))
end
fields.tty = stat_field("tty")
fields.start_time = function(e) return core.proc_start_time(e.tgid) end
for _, name in ipairs { "ppid", "pgid", "sid" } do fields[name] = stat_field(name) end
for _, name in ipairs { "uid", "euid", "gid", "egid" } do fields[name] = status_field(name) end
-- Only on uid/gid events, from the process table; never guessed.
for _, name in ipairs { "prev_ruid", "prev_euid", "prev_rgid", "prev_egid" } do
  fields[name] = function() return nil end
end

-- Derived.
fields.args = function(e)
  local argv = e.argv
  return argv and table.move(argv, 2, #argv, 1, {}) or nil
end
fields.cmdline = function(e)
  local argv = e.argv
  return argv and table.concat(argv, " ") or nil
end

local user_cache = {}
function M.user_name(uid)
  if uid == nil then return nil end
  local name = user_cache[uid]
  if name == nil then
    name = core.user_name(uid) or tostring(uid)
    user_cache[uid] = name
  end
  return name
end
fields.user = function(e) return M.user_name(e.uid) end
fields.euser = function(e) return M.user_name(e.euid) end
fields.container_id = function(e) return container.id(e.cgroup) end

-- Live only (not captured: read on access, while the process is the same).
fields.cwd = function(e) return live(e, core.proc_link, "cwd") end
fields.stdin = function(e) return live(e, core.proc_link, "fd/0") end
fields.stdout = function(e) return live(e, core.proc_link, "fd/1") end
fields.stderr = function(e) return live(e, core.proc_link, "fd/2") end
fields.loginuid = function(e)
  local text = live(e, core.proc_read, "loginuid")
  local v = text and math.tointeger(tonumber(text))
  return v ~= nil and v ~= 4294967295 and v or nil
end
fields.login_user = function(e) return M.user_name(e.loginuid) end
fields.ns_pid = status_field("ns_pid")
-- NAME=value entries of an environ block, in one pass: plain finds only,
-- each moving forward (no pattern that could backtrack over a long entry
-- without '='). An entry without a name is skipped; a name given twice
-- keeps its last value, as ld.so does for LD_PRELOAD.
function M.parse_environ(text)
  local find, sub = string.find, string.sub
  local env, pos, n, eq = {}, 1, #text, 0
  while pos <= n do
    local stop = find(text, "\0", pos, true) or n + 1
    if eq < pos then eq = find(text, "=", pos, true) or n + 1 end
    if eq < stop and eq > pos then env[sub(text, pos, eq - 1)] = sub(text, eq + 1, stop - 1) end
    pos = stop + 1
  end
  return env
end

-- Read up to core.environ_cap bytes; env_truncated says the rest was cut
-- (an entry placed after padding is then not in the table).
fields.env = function(e)
  if not e.valid then return nil end
  local text, truncated = core.proc_read(e.tgid, "environ")
  if not text then return nil end
  rawset(e, "env_truncated", truncated)
  return M.parse_environ(text)
end
fields.env_truncated = function(e)
  local _ = e.env
  return rawget(e, "env_truncated")
end

local CAP_NAMES = {
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
  "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
  "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
  "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
  "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}
M.CAP_NAMES = CAP_NAMES
function M.caps_from_hex(hex)
  local n = tonumber(hex, 16)
  if n == nil then return nil end
  local set = {}
  for bit, name in ipairs(CAP_NAMES) do
    if (n >> (bit - 1)) & 1 == 1 then set[name] = true end
  end
  return set
end
fields.caps = function(e)
  local st = live(e, core.proc_status)
  return st and st.cap_eff and M.caps_from_hex(st.cap_eff)
end

fields.sha256 = function(e)
  if rawget(e, "_decision") or not e.valid or not host.sha256 then return nil end
  local hex, _, late = host.sha256(e.tgid)
  if late then rawset(e, "_sha256_late", true) end -- not had in time, or too big: see deny rules
  return hex
end
-- The executable file: owner, group, mode (& 07777), filesystem type
-- ("ext4", "tmpfs", "fuse.sshfs" ...) and, when it could not be read, why
-- ("ENAMETOOLONG" ...). From the responder at pre-exec decisions, from the
-- captured context on exec events (a recorded line's own). Never read
-- live: a stat of /proc/PID/exe can wait on a FUSE server.
for _, name in ipairs { "exe_uid", "exe_gid", "exe_mode", "exe_fs", "exe_error" } do
  fields[name] = function() return nil end
end
-- An exec deny() did not decide before it ran: why ("unmarked filesystem",
-- "memfd ...", "not decided by the deadline" ...), from the loop; nil when
-- it was decided, or no deny rule is loaded.
fields.uncovered = function() return nil end

-- Process objects.
local function process(pid)
  if math.type(pid) ~= "integer" or pid <= 0 then return nil end
  local p = { type = "proc", pid = pid, tgid = pid }
  if host.proc_ctx then p._ctx = host.proc_ctx(pid) end
  return M.seal(p)
end
M.process = process

-- The parent: from the context, and only if it started before the child
-- (a parent pid reused by a later process is not the parent).
fields.parent = function(e)
  if replayed(e) then return nil end
  local ppid = e.ppid
  if ppid == nil or ppid == 0 then return nil end
  local p = process(ppid)
  local mine, theirs = e.start_time, p and p.start_time
  if p == nil or theirs == nil or (mine ~= nil and theirs > mine) then return nil end
  return p
end
fields.ancestors = function(e)
  if replayed(e) then return nil end
  local list, cur = {}, e
  for _ = 1, MAX_ANCESTORS do
    cur = cur.parent
    if cur == nil then break end
    list[#list + 1] = cur
  end
  return list
end
fields.tracer = function(e)
  if replayed(e) then return nil end
  fill(e)
  local tracer = rawget(e, "_tracer")
  if tracer == nil then
    local st = live(e, core.proc_status)
    tracer = st and st.tracer_pid
  end
  if tracer == nil or tracer == 0 then return nil end
  return process(tracer)
end

M.fields = fields

local is_kernel -- set below
-- Not known before an exec runs (pre-exec decisions): the new program's
-- argv and name. rules.lua refuses deny rules that match on them.
local NOT_AT_DECISION = { argv = true, args = true, cmdline = true, comm = true, argv_truncated = true }
M.NOT_AT_DECISION = NOT_AT_DECISION
local IMAGE_FIELDS = { exe = true, argv = true, argv_truncated = true, comm = true, cgroup = true, tty = true,
  exe_uid = true, exe_gid = true, exe_mode = true, exe_fs = true, exe_error = true }

local function lazy_index(e, name)
  local read = fields[name]
  if read == nil then
    if is_kernel[name] then return nil end -- a kernel field this event type lacks
    if type(name) == "string" and string.byte(name, 1) == 95 then return nil end -- "_private"
    error(("unknown event field '%s'"):format(tostring(name)), 2)
  end
  fill(e)
  local value = rawget(e, name)
  if value ~= nil then return value end
  local missed = misses[e]
  if missed and missed[name] then return nil end
  -- Before an exec runs, the new program's argv and name are not known:
  -- never read them from the caller.
  if NOT_AT_DECISION[name] and rawget(e, "_decision") then return nil end
  -- What a process runs is the process table's to say when it knows the
  -- process: read live, it could be a later program (an exec since).
  if IMAGE_FIELDS[name] and rawget(e, "_ctx") ~= nil then return nil end
  if replayed(e) then
    value = nil -- a recorded line has what it has
    if name == "valid" then value = false
    elseif name == "args" or name == "cmdline" or name == "user" or name == "euser"
      or name == "container_id" or name == "login_user" then value = read(e) end
  else
    value = read(e)
  end
  if name == "valid" or name == "start_time" then return value end -- about now: never cached
  if value == nil then
    missed = missed or {}
    missed[name] = true
    misses[e] = missed
  else
    if VIEWED[name] and type(value) == "table" and getmt(value) == nil then value = view(value, name) end
    rawset(e, name, value)
  end
  return value
end

-- An event (or process object) is a read-only proxy: an empty table whose
-- metatable's __index is the store (raw fields, plus what the accessor
-- caches), and the store's metatable (M.metatable) is the lazy accessor.
-- So no rule can change what another rule (or a kill) sees.
M.metatable = { __index = lazy_index, __name = "procwarden.event", __metatable = "procwarden.event" }

function M.readonly(_, k)
  error(("event field '%s' is read-only"):format(tostring(k)), 2)
end

-- The store behind a proxy (or t itself when it is not one).
local function store(t)
  local mt = getmt(t)
  local s = mt and rawget(mt, "__index")
  if type(s) == "table" then return s end
  return t
end
M.store = store
M.fill = function(t) fill(store(t)) end

-- pairs(e): the fields, through a closure (the store itself never leaks).
function M.pairs(p)
  local s, k = store(p), nil
  return function()
    local v
    k, v = next(s, k)
    while k ~= nil and type(k) == "string" and string.byte(k, 1) == 95 do k, v = next(s, k) end -- "_private"
    return k, v
  end
end

-- A raw field of an event or process object (no accessor, no /proc read).
function M.raw(t, k) return rawget(store(t), k) end

-- The proxy of store s (which gets the accessor apart: see M.seal).
local function proxy_of(s)
  return setmetatable({}, {
    __index = s, __newindex = M.readonly, __pairs = M.pairs,
    __name = "procwarden.event", __metatable = "procwarden.event",
  })
end

function M.seal(s)
  setmetatable(s, M.metatable)
  return proxy_of(s)
end

-- The kernel's fields (present in the table from the start).
M.kernel_fields = {
  "type", "pid", "tgid", "thread", "cpu", "ktime_ns", "seq", "time", "startup",
  "parent_pid", "parent_tgid", "child_pid", "child_tgid", "exit_code", "exit_signal",
  "exit_status", "term_signal", "core_dumped", "ruid", "euid", "rgid", "egid",
  "tracer_pid", "tracer_tgid", "comm", "lost",
}
is_kernel = {}
for _, k in ipairs(M.kernel_fields) do is_kernel[k] = true end

-- Is name a field an event may have (kernel or process)?
function M.is_field(name)
  return is_kernel[name] ~= nil or fields[name] ~= nil
end

-- The process field names, sorted (for messages and records).
function M.field_names()
  local names = {}
  for k in pairs(fields) do names[#names + 1] = k end
  for k in pairs(is_kernel) do if fields[k] == nil then names[#names + 1] = k end end
  table.sort(names)
  return names
end

function M.wrap(t)
  freeze_lists(t)
  return M.seal(t)
end

-- A recorded line (a plain table, and so are its process objects) is
-- frozen before it is sealed: its parent, tracer and ancestors (and
-- theirs, in turn) become recorded proxies, its lists and maps views.
-- This runs for every replayed line, so it indexes plainly and makes few
-- calls. seen (when given) maps a table to its proxy: one given twice, or
-- as its own parent, is sealed once.
local MAX_NESTING = 8 -- as deep as a recorded line may nest
local freeze

local function recorded_object(o, depth, seen)
  if type(o) ~= "table" then return o end
  local proxy = seen and seen[o]
  if proxy then return proxy end
  local mt = getmt(o)
  if mt ~= nil then -- sealed already: a proxy stays, a bare store is never handed out
    if mt == M.metatable then return nil end
    return o
  end
  proxy = proxy_of(o) -- before o is frozen (it may be its own parent), and
  if seen then seen[o] = proxy end
  o._replay = true
  freeze(o, depth + 1, seen)
  setmetatable(o, M.metatable) -- its accessor after (freezing indexes plainly)
  return proxy
end

local function ancestors_of(list, depth, seen)
  if type(list) ~= "table" or getmt(list) ~= nil then return list end
  local n, j = #list, 0
  for i = 1, n do
    local o = recorded_object(list[i], depth, seen)
    list[i] = nil
    if o ~= nil then
      j = j + 1
      list[j] = o
    end
  end
  return view(list, "ancestors")
end

function freeze(s, depth, seen)
  if depth > MAX_NESTING then return end
  local v = s.parent
  if v ~= nil then s.parent = recorded_object(v, depth, seen) end
  v = s.tracer
  if v ~= nil then s.tracer = recorded_object(v, depth, seen) end
  v = s.ancestors
  if v ~= nil then s.ancestors = ancestors_of(v, depth, seen) end
  v = s.argv
  if v ~= nil then s.argv = view(v, "argv") end
  v = s.args
  if v ~= nil then s.args = view(v, "args") end
  v = s.env
  if v ~= nil then s.env = view(v, "env") end
  v = s.caps
  if v ~= nil then s.caps = view(v, "caps") end
end

-- The store of a recorded line, as the engine builds it, before it is
-- sealed.
function M.freeze(s)
  freeze(s, 0, nil)
end

-- A recorded event (replay): fields it lacks are nil, never read live.
function M.recorded(t)
  rawset(t, "_replay", true)
  freeze(t, 0, {})
  return M.seal(t)
end

return M
