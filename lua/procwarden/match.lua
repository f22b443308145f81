-- procwarden.match: matchers, compiled once at load into closures
-- `function(value, e) -> bool`.
--
-- A match value is a glob string (fnmatch(3): *, ?, [...]; whole value,
-- case-sensitive; no Lua patterns, so no backtracking blow-up), a number
-- (equality), a list (any of them; plain strings become a hash set), a
-- function (value, e) -> bool, or a helper value: prefix, suffix, contains,
-- iglob, oneof, not_.
local core = require "procwarden.core"

local M = {}

local helpers = setmetatable({}, { __mode = "k" }) -- the helper values made here
local fnmatch = core.fnmatch
local find, sub = string.find, string.sub

local function is_helper(v) return helpers[v] == true end

local function has_magic(s) return find(s, "[%*%?%[\\]") ~= nil end

local compile

-- Helpers: each builds a value that compile() turns into a closure.
local function helper(kind, check)
  return function(x)
    local ok, why = check(x)
    if not ok then error(kind .. ": " .. why, 2) end
    local h = { kind = kind, arg = x }
    helpers[h] = true
    return h
  end
end
local function a_string(x) return type(x) == "string", "expects a string" end
local function a_table(x) return type(x) == "table", "expects a list" end
local function a_matcher(x)
  local ok = pcall(compile, x)
  return ok, "expects a match value"
end
M.prefix = helper("prefix", a_string)
M.suffix = helper("suffix", a_string)
M.contains = helper("contains", a_string)
M.iglob = helper("iglob", a_string)
M.oneof = helper("oneof", a_table)
M.not_ = helper("not_", a_matcher)

local function compile_string(s)
  if not has_magic(s) then
    return function(v) return v == s end
  end
  return function(v) return type(v) == "string" and fnmatch(s, v) end
end

local function compile_set(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return function(v) return v ~= nil and set[v] == true end
end

local function compile_helper(h)
  local kind, arg = h.kind, h.arg
  if kind == "prefix" then
    local n = #arg
    return function(v) return type(v) == "string" and sub(v, 1, n) == arg end
  elseif kind == "suffix" then
    local n = #arg
    return function(v) return type(v) == "string" and (n == 0 or sub(v, -n) == arg) end
  elseif kind == "contains" then
    return function(v) return type(v) == "string" and find(v, arg, 1, true) ~= nil end
  elseif kind == "iglob" then
    return function(v) return type(v) == "string" and fnmatch(arg, v, true) end
  elseif kind == "oneof" then
    return compile_set(arg)
  elseif kind == "not_" then
    local inner = compile(arg)
    return function(v, e) return not inner(v, e) end
  end
  error("unknown matcher " .. tostring(kind))
end

-- Compile a match value; raises "…" (without position) on a bad value.
function compile(value)
  local t = type(value)
  if t == "string" then return compile_string(value) end
  if t == "number" then return function(v) return v == value end end
  if t == "boolean" then return function(v) return v == value end end
  if t == "function" then
    return function(v, e) return not not value(v, e) end -- any true value
  end
  if t == "table" and is_helper(value) then return compile_helper(value) end
  if t == "table" then
    if #value == 0 then error("an empty list matches nothing") end
    local plain = true
    for _, v in ipairs(value) do
      if type(v) ~= "string" or has_magic(v) then plain = false end
    end
    if plain and #value > 4 then return compile_set(value) end
    local subs = {}
    for i, v in ipairs(value) do subs[i] = compile(v) end
    local n = #subs
    return function(v, e)
      for i = 1, n do
        if subs[i](v, e) then return true end
      end
      return false
    end
  end
  error(("a match value must be a string, number, list or function, not %s"):format(t))
end
M.compile = compile

-- A plain description of a match value for the C decision programs
-- (src/decision.c), or nil when only Lua can test it (a function, a
-- boolean). The C tests mean exactly what compile() builds.
local function describe(value)
  local t = type(value)
  if t == "string" and find(value, "\0", 1, true) then return nil end -- C strings end at NUL
  if t == "string" then return { k = has_magic(value) and "glob" or "eq", s = value } end
  if t == "number" then return { k = "num", n = value } end
  if t == "table" and is_helper(value) then
    local kind, arg = value.kind, value.arg
    if kind == "oneof" then
      for _, v in ipairs(arg) do
        if type(v) ~= "string" and type(v) ~= "number" then return nil end
        if type(v) == "string" and find(v, "\0", 1, true) then return nil end
      end
      return { k = "set", list = arg }
    elseif kind == "not_" then
      local inner = describe(arg)
      return inner and { k = "not", subs = { inner } }
    end
    if find(arg, "\0", 1, true) then return nil end
    return { k = kind, s = arg } -- prefix suffix contains iglob
  end
  if t == "table" then
    local plain = true
    for _, v in ipairs(value) do
      if type(v) ~= "string" or has_magic(v) then plain = false end
    end
    if plain and #value > 4 then
      for _, v in ipairs(value) do
        if find(v, "\0", 1, true) then return nil end
      end
      return { k = "set", list = value }
    end
    local subs = {}
    for i, v in ipairs(value) do
      subs[i] = describe(v)
      if subs[i] == nil then return nil end
    end
    return { k = "any", subs = subs }
  end
  return nil
end
M.describe = describe

-- The match keys a C decision program holds (src/decision.c dprog_field).
M.decision_fields = {}
for _, k in ipairs { "exe", "sha256", "exe_uid", "exe_gid", "exe_mode", "pid", "tgid", "ppid",
  "uid", "euid", "gid", "egid", "parent.exe", "parent.pid" } do
  M.decision_fields[k] = true
end

-- Fields whose value is a list: the matcher holds when any element matches.
M.list_fields = { argv = true, args = true, ancestors = true }

-- A matcher for one `match` entry `key = value`: the key may be dotted
-- ("parent.exe", "ancestors.comm"). Returns function(e) -> bool.
function M.entry(key, value)
  local test = compile(value)
  local first, rest = string.match(key, "^([^.]+)%.(.+)$")
  if not first then
    if M.list_fields[key] then
      return function(e)
        local list = e[key]
        if type(list) ~= "table" then return false end
        for i = 1, #list do
          if test(list[i], e) then return true end
        end
        return false
      end
    end
    return function(e) return test(e[key], e) end
  end
  if M.list_fields[first] then -- ancestors.comm: any of them
    return function(e)
      local list = e[first]
      if type(list) ~= "table" then return false end
      for i = 1, #list do
        if test(list[i][rest], e) then return true end
      end
      return false
    end
  end
  return function(e)
    local obj = e[first]
    return type(obj) == "table" and test(obj[rest], e)
  end
end

return M
