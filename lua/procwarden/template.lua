-- procwarden.template: "{field}" expansion for log and alert messages.
-- Paths may be dotted ("{parent.exe}"); lists are joined by spaces, maps
-- (env) print as sorted name=value pairs, sets (caps) as sorted names, and
-- process objects as "exe[pid]"; a missing value prints as "-".
--
-- A value longer than VALUE_CAP bytes (an exe path, a command line or an
-- environment chosen by whoever started the process) is cut in its middle:
-- its start and its end stay, and "…[+N bytes]" says how many bytes were
-- left out. Only values are cut, never the template's own text, so the
-- "(pid {pid}, user {user})" after a long {cmdline} is always there.
local M = {}

M.VALUE_CAP = 1024 -- bytes of one expanded value, the cut marker excluded

local byte, sub, format = string.byte, string.sub, string.format

local function continuation(s, i)
  local b = byte(s, i)
  return b ~= nil and b >= 0x80 and b < 0xc0
end

-- s cut to about cap bytes: head, marker, tail. Cuts fall between UTF-8
-- characters (never more than 3 bytes moved, so bytes that are not UTF-8
-- cannot make it walk).
function M.cut(s, cap)
  local n = #s
  if n <= cap then return s end
  local head = cap // 2
  for _ = 1, 3 do
    if not continuation(s, head + 1) then break end
    head = head - 1
  end
  local tail = n - (cap - cap // 2) + 1 -- first byte kept at the end
  for _ = 1, 3 do
    if not continuation(s, tail) then break end
    tail = tail + 1
  end
  return sub(s, 1, head) .. format("\u{2026}[+%d bytes]", tail - head - 1) .. sub(s, tail)
end

local render

local function is_process(v)
  return getmetatable(v) == "procwarden.event"
end

local function render_table(value, depth)
  if is_process(value) then
    return format("%s[%s]", tostring(value.exe or "-"), tostring(value.pid or "-"))
  end
  local parts = {}
  for i, v in ipairs(value) do parts[i] = render(v, depth + 1) end
  if #parts > 0 then return table.concat(parts, " ") end
  local keys = {}
  for k in pairs(value) do
    if type(k) == "string" and byte(k, 1) ~= 95 then keys[#keys + 1] = k end -- not "_private"
  end
  table.sort(keys)
  for i, k in ipairs(keys) do
    local v = value[k]
    parts[i] = v == true and k or k .. "=" .. render(v, depth + 1)
  end
  return table.concat(parts, " ")
end

function render(value, depth)
  if value == nil then return "-" end
  if type(value) == "table" then
    if depth > 2 then return "..." end
    return render_table(value, depth)
  end
  return tostring(value)
end

local function lookup(e, path)
  local value = e
  for key in string.gmatch(path, "[^.]+") do
    if type(value) ~= "table" then return nil end
    value = value[math.tointeger(tonumber(key)) or key]
  end
  return value
end

-- The first unknown field a template names, or nil. is_field(name) tells
-- an event field; process objects (parent, tracer, ancestors.N) take one.
function M.unknown_field(msg, is_field)
  for path in string.gmatch(msg, "{([%w_%.]+)}") do
    local parts = {}
    for key in string.gmatch(path, "[^.]+") do
      if not math.tointeger(tonumber(key)) then parts[#parts + 1] = key end
    end
    for _, key in ipairs(parts) do
      if not is_field(key) then return key, path end
    end
  end
  return nil
end

-- msg with every {path} replaced by its value from e, each value cut to
-- cap bytes (default VALUE_CAP; false: whole).
function M.expand(msg, e, cap)
  if e == nil then return msg end
  if cap == nil then cap = M.VALUE_CAP end
  return (string.gsub(msg, "{([%w_%.]+)}", function(path)
    local text = render(lookup(e, path), 0)
    return cap and M.cut(text, cap) or text
  end))
end

return M
