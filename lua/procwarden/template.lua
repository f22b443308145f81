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

function M.expand(msg, e)
  if e == nil then return msg end
  return (string.gsub(msg, "{([%w_%.]+)}", function(path) return render(lookup(e, path)) end))
end

return M
