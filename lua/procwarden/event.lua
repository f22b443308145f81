-- procwarden.event: lazy process fields on event tables.
-- An event table holds the kernel's fields (type, pid, tgid, ...); every
-- other field (exe, argv, user, ...) is read from /proc on first access and
-- cached in the table. A field that cannot be read (process gone) is nil and
-- is not read twice. Reading a name that is no field is an error.
local core = require "procwarden.core"

local M = {}

local fields = {}
local misses = setmetatable({}, { __mode = "k" }) -- event -> { name = true }

local function status(e)
  local st = rawget(e, "_status")
  if st == nil then
    st = core.proc_status(e.tgid) or false
    rawset(e, "_status", st)
  end
  return st or nil
end

local function argv_read(e)
  local argv, truncated = core.proc_cmdline(e.tgid)
  if argv then rawset(e, "argv_truncated", truncated) end
  return argv
end

function fields.exe(e) return (core.proc_exe(e.tgid)) end
function fields.argv(e) return argv_read(e) end
function fields.argv_truncated(e)
  argv_read(e)
  return rawget(e, "argv_truncated")
end
function fields.args(e)
  local argv = e.argv
  return argv and table.move(argv, 2, #argv, 1, {}) or nil
end
function fields.cmdline(e)
  local argv = e.argv
  return argv and table.concat(argv, " ") or nil
end
function fields.comm(e) return (core.proc_comm(e.tgid)) end
function fields.cwd(e) return (core.proc_link(e.tgid, "cwd")) end
function fields.stdin(e) return (core.proc_link(e.tgid, "fd/0")) end
function fields.stdout(e) return (core.proc_link(e.tgid, "fd/1")) end
function fields.stderr(e) return (core.proc_link(e.tgid, "fd/2")) end
function fields.start_time(e) return (core.proc_start_time(e.tgid)) end
function fields.valid(e) return e.start_time ~= nil end
for _, name in ipairs { "ppid", "uid", "euid", "gid", "egid" } do
  fields[name] = function(e)
    local st = status(e)
    return st and st[name]
  end
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
function fields.user(e) return M.user_name(e.uid) end
function fields.euser(e) return M.user_name(e.euid) end

M.fields = fields

local function lazy_index(e, name)
  local read = fields[name]
  if read == nil then
    if type(name) == "string" and name:sub(1, 1) == "_" then return nil end
    error(("unknown event field '%s'"):format(tostring(name)), 2)
  end
  local missed = misses[e]
  if missed and missed[name] then return nil end
  local value = read(e)
  if value == nil then
    missed = missed or {}
    missed[name] = true
    misses[e] = missed
  else
    rawset(e, name, value)
  end
  return value
end

M.metatable = { __index = lazy_index, __name = "procwarden.event" }

-- Is name a field an event may have (kernel or lazy)?
local kernel_fields = {
  type = true, pid = true, tgid = true, thread = true, cpu = true, ktime_ns = true,
  seq = true, time = true, startup = true, parent_pid = true, parent_tgid = true,
  child_pid = true, child_tgid = true, exit_code = true, exit_signal = true,
  exit_status = true, term_signal = true, core_dumped = true, ruid = true,
  rgid = true, egid = true, tracer_pid = true, tracer_tgid = true, lost = true, err = true,
  ack = true,
}
function M.is_field(name)
  return kernel_fields[name] ~= nil or fields[name] ~= nil
end

function M.wrap(t)
  return setmetatable(t, M.metatable)
end

return M
