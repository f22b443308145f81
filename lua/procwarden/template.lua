-- procwarden.template: "{field}" expansion for log and alert messages.
-- Paths may be dotted ("{parent.exe}"); lists are joined by spaces; a
-- missing value prints as "-".
local M = {}

local function render(value)
  if value == nil then return "-" end
  if type(value) == "table" then
    local parts = {}
    for i, v in ipairs(value) do parts[i] = tostring(v) end
    return table.concat(parts, " ")
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

function M.expand(msg, e)
  if e == nil then return msg end
  return (string.gsub(msg, "{([%w_%.]+)}", function(path) return render(lookup(e, path)) end))
end

return M
