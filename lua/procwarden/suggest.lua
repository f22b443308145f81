-- procwarden.suggest: "did you mean ...?" for misspelt names.
local M = {}

local function distance(a, b)
  local la, lb = #a, #b
  if math.abs(la - lb) > 2 then return 3 end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[lb]
end

-- The closest of candidates (a list or a set's keys) within 2 edits, or nil.
function M.closest(name, candidates)
  if type(name) ~= "string" then return nil end
  local best, best_d = nil, 3
  local list = candidates
  if #candidates == 0 then
    list = {}
    for k in pairs(candidates) do list[#list + 1] = k end
    table.sort(list)
  end
  for _, c in ipairs(list) do
    local d = distance(name, c)
    if d < best_d then best, best_d = c, d end
  end
  return best
end

-- " (did you mean 'x'?)" or "".
function M.hint(name, candidates)
  local c = M.closest(name, candidates)
  return c and (" (did you mean '%s'?)"):format(c) or ""
end

return M
