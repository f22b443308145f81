-- procwarden: the Lua half of the runtime. Builds the API that rule files
-- see (on, log, alert, every, after, proc, stats), the environment they run
-- in, and the handler lists that the C engine dispatches events to.
-- The C side is `procwarden.host` (engine.c); specs preload a fake one.
local core = require "procwarden.core"
local host = require "procwarden.host"
local event = require "procwarden.event"
local template = require "procwarden.template"
local suggest = require "procwarden.suggest"

local M = {}

-- handlers[type] = { { fn = f, name = "file.lua:12", type = "exec" }, ... }
-- Read by engine.c at dispatch; an empty list means events of that type
-- never become Lua tables.
M.handlers = {}
M.types = {}
for _, t in ipairs(core.event_types) do
  if t ~= "ack" then
    M.handlers[t] = {}
    M.types[#M.types + 1] = t
  end
end
M.timers = {}

M.levels = { debug = 1, info = 2, notice = 3, warning = 4, error = 5, critical = 6 }

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

local api = {}

function api.on(t, fn)
  check_type(t, 2)
  if type(fn) ~= "function" then error("on: the handler must be a function", 2) end
  local list = M.handlers[t]
  list[#list + 1] = { fn = fn, name = where(2), type = t }
  host.want(t)
end

function api.log(level, msg, e)
  if M.levels[level] == nil then
    error(("log: unknown level '%s'%s"):format(tostring(level), suggest.hint(level, M.levels)), 2)
  end
  if type(msg) ~= "string" then error("log: the message must be a string", 2) end
  host.emit(level, template.expand(msg, e), "log", e)
  return true
end

function api.alert(msg, e)
  if type(msg) ~= "string" then error("alert: the message must be a string", 2) end
  host.emit("warning", template.expand(msg, e), "alert", e)
  return true
end

local function timer(name, seconds, fn, again)
  if type(seconds) ~= "number" or seconds <= 0 then
    error(name .. ": seconds must be a positive number", 3)
  end
  if type(fn) ~= "function" then error(name .. ": the callback must be a function", 3) end
  local t = { fn = fn, name = where(3), seconds = seconds, again = again }
  M.timers[#M.timers + 1] = t
  host.timer(t)
  return true
end

function api.every(seconds, fn) return timer("every", seconds, fn, true) end
function api.after(seconds, fn) return timer("after", seconds, fn, false) end

function api.proc(pid)
  if math.type(pid) ~= "integer" or pid <= 0 then error("proc: pid must be a positive integer", 2) end
  return event.wrap { type = "proc", pid = pid, tgid = pid }
end

function api.stats() return host.stats() end

M.api = api

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A fresh environment for one rule file: an allow-list of safe Lua, own
-- copies of the standard tables, and the procwarden API as globals.
function M.new_env()
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
    type = type, xpcall = xpcall, rawequal = rawequal, rawlen = rawlen,
    _VERSION = _VERSION,
    string = copy(string), table = copy(table), math = copy(math), utf8 = copy(utf8),
    os = { time = os.time, clock = os.clock, date = os.date },
  }
  env.procwarden = copy(api)
  for k, v in pairs(api) do env[k] = v end
  env._G = env
  return env
end

-- Compile a rule file (text only). Returns the chunk, or nil and
-- "file:line: message". The chunk is run by the engine's safe call.
function M.compile_file(path)
  return loadfile(path, "t", M.new_env())
end

function M.compile_string(src, chunkname)
  return load(src, chunkname, "t", M.new_env())
end

-- Lines for --check.
function M.summary()
  local lines, total = {}, 0
  for _, t in ipairs(M.types) do
    local n = #M.handlers[t]
    if n > 0 then
      lines[#lines + 1] = ("  %-9s %d handler%s"):format(t, n, n == 1 and "" or "s")
      total = total + n
    end
  end
  table.insert(lines, 1, ("%d handler%s, %d timer%s"):format(
    total, total == 1 and "" or "s", #M.timers, #M.timers == 1 and "" or "s"))
  return table.concat(lines, "\n")
end

return M
