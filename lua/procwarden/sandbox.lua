-- procwarden.sandbox: the environment rule files run in. An allow-list of
-- safe Lua, own copies of the standard tables, strict globals, no __gc
-- finalizers, no coroutines (a hook does not follow them), and bounded
-- versions of the string functions whose Lua patterns run in C, where the
-- instruction budget cannot see them.
local M = {}

local sfind, smatch, sgmatch, sgsub = string.find, string.match, string.gmatch, string.gsub
local rawset_, type_, error_, tostring_ = rawset, type, error, tostring

M.PATTERN_BUDGET = 1e7 -- estimated matching steps a pattern call may take (~0.1 s)

-- Estimated worst-case steps of matching pat against a subject of n bytes:
-- each backtracking quantifier multiplies by n; an unanchored pattern is
-- tried at every position.
local function pattern_cost(n, pat)
  local q = 0
  local i, len = 1, #pat
  while i <= len do
    local c = pat:byte(i)
    if c == 37 then -- '%'
      local nx = pat:byte(i + 1)
      if nx == 98 then q = q + 1; i = i + 3 end -- %bxy scans
      i = i + 2
    else
      if c == 42 or c == 43 or c == 45 then q = q + 1 end -- * + -
      i = i + 1
    end
  end
  local anchored = pat:byte(1) == 94
  return (n + 1) ^ (q + (anchored and 0 or 1))
end
M.pattern_cost = pattern_cost

local function check(fname, s, pat, plain)
  if plain or type_(s) ~= "string" or type_(pat) ~= "string" then return end
  if not sfind(pat, "[%^%$%*%+%-%?%.%[%]%%%(%)]") then return end
  if pattern_cost(#s, pat) > M.PATTERN_BUDGET then
    error_(("string.%s: pattern '%s' is too costly on a %d-byte subject "
      .. "(Lua patterns backtrack); use plain find, prefix/suffix/contains or a glob")
      :format(fname, pat, #s), 3)
  end
end

local function bounded_string()
  local s = {}
  for k, v in pairs(string) do s[k] = v end
  s.find = function(str, pat, init, plain)
    check("find", str, pat, plain)
    return sfind(str, pat, init, plain)
  end
  s.match = function(str, pat, init)
    check("match", str, pat)
    return smatch(str, pat, init)
  end
  s.gmatch = function(str, pat, init)
    check("gmatch", str, pat)
    return sgmatch(str, pat, init)
  end
  s.gsub = function(str, pat, repl, n)
    check("gsub", str, pat)
    return sgsub(str, pat, repl, n)
  end
  s.dump = nil -- bytecode is never loaded, and never made
  return s
end
M.bounded_string = bounded_string

-- Lock the shared string metatable once per state: method calls on strings
-- get the bounded functions, and getmetatable("") gives nothing to change.
local locked = false
function M.lock_string_metatable()
  if locked then return end
  locked = true
  local mt = getmetatable("")
  mt.__index = bounded_string()
  mt.__metatable = false
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function safe_setmetatable(t, mt)
  if type_(t) ~= "table" then error_("setmetatable: expects a table", 2) end
  if mt ~= nil and type_(mt) ~= "table" then error_("setmetatable: the metatable must be a table or nil", 2) end
  if mt and rawget(mt, "__gc") ~= nil then
    error_("setmetatable: __gc finalizers are not allowed in rules", 2)
  end
  local ok, res = pcall(setmetatable, t, mt)
  if not ok then error_(tostring(res), 2) end -- at the rule's line
  return res
end

-- A fresh environment for one rule file. api: the procwarden functions.
-- state.loading tells whether top-level code is running (assigning a new
-- global then declares it); afterwards undeclared globals are errors.
function M.new_env(api, state)
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
    type = type, xpcall = xpcall, rawequal = rawequal, rawlen = rawlen, rawget = rawget,
    getmetatable = getmetatable, setmetatable = safe_setmetatable,
    _VERSION = _VERSION,
    string = bounded_string(), table = copy(table), math = copy(math), utf8 = copy(utf8),
    os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
  }
  env.procwarden = copy(api)
  for k, v in pairs(api) do env[k] = v end
  env._G = env
  return setmetatable(env, {
    __index = function(_, k)
      error_(("undeclared global '%s'"):format(tostring_(k)), 2)
    end,
    __newindex = function(t, k, v)
      if not state.loading then
        error_(("assignment to undeclared global '%s'"):format(tostring_(k)), 2)
      end
      rawset_(t, k, v)
    end,
    __metatable = "locked",
  })
end

return M
