-- procwarden.sandbox: the environment rule files run in. An allow-list of
-- safe Lua, own copies of the standard tables, strict globals, no __gc
-- finalizers, no coroutines (a hook does not follow them), and bounded
-- versions of the C functions that can run long where the count hook cannot
-- see them. Lua patterns (find, match, gmatch, gsub) are costed against
-- their subject before they run, and one too costly is "no match" plus a
-- counted, reported refusal; string.rep and the table functions that loop
-- get capped counts and results; after each of these C calls the time
-- budget is checked (host.budget_check raises the budget error when the call
-- into user code is past its time).
local M = {}

local host_ok, host = pcall(require, "procwarden.host")
local budget_check = host_ok and type(host) == "table" and host.budget_check or function() end

-- next as pairs sees it: through the read-only views and proxies of event
-- tables (procwarden.event), whose own tables are empty.
local event_ok, event = pcall(require, "procwarden.event")
local next_ = event_ok and event.next or next

local sfind, smatch, sgmatch, sgsub, srep, sbyte, ssub = string.find, string.match, string.gmatch, string.gsub,
  string.rep, string.byte, string.sub
local tconcat, tinsert, tremove, tmove, tsort = table.concat, table.insert, table.remove, table.move, table.sort
local rawset_, type_, error_, tostring_, tonumber_, select_ = rawset, type, error, tostring, tonumber, select
local tointeger, mmax = math.tointeger, math.max
local getmt = debug and debug.getmetatable or getmetatable -- not fooled by __metatable

-- Cost units: one unit is about one step of Lua's matcher (a class tried on
-- one byte, or one recursive call), a few ns. The budget keeps any call that
-- is let through well under the engine's time budget per call.
M.PATTERN_BUDGET = 1e7
-- Caps on what one C call may go through (each ~50 ms at most here).
M.STRING_CAP = 8 << 20  -- bytes of a string.rep or string.gsub result
M.REP_CAP = 1 << 22     -- pieces one string.rep copies (half as many with a separator)
M.TABLE_CAP = 1 << 18   -- elements one table.move or table.concat goes through
M.SORT_CAP = 50000      -- elements one table.sort orders (~50 ms with a C comparator)

-- ---- refusals ----------------------------------------------------------

local refused, on_refused = 0, nil

-- fn(kind, detail) is called on every refusal: kind "pattern" (the call
-- was no match), "string" or "table" (a result or count over its cap: the
-- call raised an error, but gsub, which gave its subject unchanged and 0).
-- detail: a short line naming the function. Called as is: it is trusted.
function M.set_refused_handler(fn) on_refused = fn end
function M.refused_count() return refused end

local function refuse(kind, detail)
  refused = refused + 1
  if on_refused then on_refused(kind, detail) end
end

-- A pattern as it may appear in a message: short, no control characters.
local function show(pat)
  local cut = #pat > 40 and ssub(pat, 1, 40) .. "..." or pat
  return (sgsub(cut, "%c", "?"))
end

-- ---- pattern costing ---------------------------------------------------
-- Lua's matcher (lstrlib.c) walks a pattern's items left to right, and
-- backtracks only in `*`, `+`, `-` (each tries the rest at every length it
-- can take) and `?` (tries the rest twice). For each item the model keeps
-- two bounds on the work of matching the items from there on, as
-- polynomials in x = bytes of subject left + 1: F, for a try that fails
-- (nil: cannot fail), and S, for one that succeeds, leaving out the work
-- paid by the bytes the match consumes (at most `am` per byte). A
-- polynomial p has p[k + 1] as the coefficient of x^k, all nonnegative.

local function padd(a, b)
  if a == nil then return b end
  if b == nil then return a end
  local r = {}
  for k = 1, mmax(#a, #b) do r[k] = (a[k] or 0) + (b[k] or 0) end
  return r
end

local function pscale(a, f)
  local r = {}
  for k = 1, #a do r[k] = a[k] * f end
  return r
end

local function pmax(a, b)
  if a == nil then return b end
  if b == nil then return a end
  local r = {}
  for k = 1, mmax(#a, #b) do r[k] = mmax(a[k] or 0, b[k] or 0) end
  return r
end

-- A bound on a(1) + ... + a(x): each x'^j with x' < x is at most the
-- integral of t^j over [x', x' + 1], so the sum of x'^j is at most
-- x^(j+1) / (j+1) + x^j.
local function psum(a)
  if a == nil then return nil end
  local r = {}
  for k = 1, #a + 1 do r[k] = 0 end
  for k = 1, #a do
    r[k] = r[k] + a[k]
    r[k + 1] = r[k + 1] + a[k] / k
  end
  return r
end

local function peval(a, x)
  if a == nil then return 0 end
  local v = 0
  for k = #a, 1, -1 do v = v * x + a[k] end
  return v
end

local L_ESC, LBRACK, RBRACK = 37, 91, 93
local MAXCAPTURES = 32

-- Index just after the single-byte class at i (Lua's classEnd) and the cost
-- of testing it on one byte: a character or `.` 1, a %class 2 (ctype
-- call), a set 1 plus what scanning it all costs (a %class in it 2.5, any
-- other byte 0.25). Or nil and Lua's message for a malformed class.
local function class_end(p, i, len)
  local c = sbyte(p, i)
  i = i + 1
  if c == L_ESC then
    if i > len then return nil, "malformed pattern (ends with '%')" end
    return i + 1, 2
  elseif c == LBRACK then
    local cost = 1
    if sbyte(p, i) == 94 then i = i + 1 end
    repeat
      if i > len then return nil, "malformed pattern (missing ']')" end
      local ci = sbyte(p, i)
      i = i + 1
      if ci == L_ESC and i <= len then
        i, cost = i + 1, cost + 2.5
      else
        cost = cost + 0.25
      end
    until sbyte(p, i) == RBRACK
    return i + 1, cost
  end
  return i, 1
end

-- The items of pattern p as Lua's matcher reads them: { k = kind, c = cost
-- of testing the class on one byte }. anchor: a leading ^ anchors (find,
-- match, gsub; gmatch takes it as a character). Returns the items and
-- whether the pattern is anchored, or nil and Lua's message for a malformed
-- pattern (which Lua's matcher only raises when it reaches the bad item).
local function parse(p, anchor)
  local len = #p
  local i, anchored = 1, false
  if anchor and sbyte(p, 1) == 94 then i, anchored = 2, true end
  local items, ncap, open, closed = {}, 0, {}, {}
  while i <= len do
    local c, nx = sbyte(p, i), sbyte(p, i + 1)
    local k, cost = "cap", 1
    if c == 40 then -- '(' or the position capture '()'
      ncap = ncap + 1
      if ncap > MAXCAPTURES then return nil, "too many captures" end
      if nx == 41 then
        closed[ncap] = true
        i = i + 2
      else
        open[#open + 1] = ncap
        i = i + 1
      end
    elseif c == 41 then -- ')'
      local l = open[#open]
      if l == nil then return nil, "invalid pattern capture" end
      open[#open], closed[l] = nil, true
      i = i + 1
    elseif c == 36 and i == len then -- '$' at the end
      k, i = "eos", i + 1
    elseif c == L_ESC and nx == 98 then -- %bxy
      if i + 3 > len then return nil, "malformed pattern (missing arguments to '%b')" end
      k, i = "bal", i + 4
    elseif c == L_ESC and nx == 102 then -- %f[set]
      if sbyte(p, i + 2) ~= LBRACK then return nil, "missing '[' after '%f' in pattern" end
      local e, c_set = class_end(p, i + 2, len)
      if not e then return nil, c_set end
      k, cost, i = "front", c_set, e
    elseif c == L_ESC and nx and nx >= 48 and nx <= 57 then -- %0-%9
      local l = nx - 48
      if l < 1 or l > ncap or not closed[l] then return nil, ("invalid capture index %%%d"):format(l) end
      k, i = "ref", i + 2
    else -- a single-byte class, with an optional ? * + -
      local e, c_class = class_end(p, i, len)
      if not e then return nil, c_class end
      cost = c_class
      local q = sbyte(p, e)
      k = q == 63 and "opt" or q == 42 and "star" or q == 43 and "plus" or q == 45 and "lazy" or "one"
      i = k == "one" and e or e + 1
    end
    items[#items + 1] = { k = k, c = cost }
  end
  return items, anchored
end

-- F, S and am (see above) at the first item.
local function model(items)
  local F, S, am = nil, { 1 }, 1 -- the end of the pattern: succeeds at once
  for j = #items, 1, -1 do
    local k, c = items[j].k, items[j].c
    if k == "one" then
      F = padd({ c }, F)
      am = mmax(am, c)
    elseif k == "opt" then -- the rest after one byte, then without it
      if F then
        F, S = padd({ c + 1 }, pscale(F, 2)), padd({ c + 1 }, padd(F, S))
      else
        S = padd({ c + 1 }, S)
      end
    elseif k == "star" or k == "plus" then -- count the run, then the rest at each length, longest first
      local first = k == "plus" and c or 0
      if F then
        local loop = padd({ c, c }, psum(padd({ 1 }, F)))
        F, S = padd({ first }, loop), padd({ first + 1 }, padd(loop, S))
      else -- the rest cannot fail: the first try ends the match, and the run is consumed
        F = k == "plus" and { c } or nil
        S = padd({ first + c + 1 }, S)
        am = mmax(am, c)
      end
    elseif k == "lazy" then -- the rest at each length, shortest first
      if F then
        local loop = psum(padd({ 1 + c }, F))
        F, S = loop, padd({ 1 }, padd(loop, S))
      else
        S = padd({ 1 }, S)
      end
    elseif k == "cap" then
      F, S = F and padd({ 1 }, F), padd({ 1 }, S)
    elseif k == "bal" then -- scans to the closing byte (or the end)
      F, S = padd({ 1, 1 / 8 }, F), padd({ 1 }, S)
    elseif k == "front" then
      F, S = padd({ 2 * c }, F), padd({ 2 * c }, S)
    elseif k == "ref" then -- compares the capture (memcmp)
      F, S = padd({ 1, 1 / 64 }, F), padd({ 1 }, S)
    else -- "eos"
      F, S = { 1 }, { 1 }
    end
  end
  return F, S, am
end

-- Analyses by pattern, for the functions that honour a leading ^ and for
-- gmatch; dropped wholesale when full.
local CACHE_MAX, CACHE_PATTERN_MAX = 256, 1024
local cache_anchor, cache_gmatch, cached = {}, {}, 0

local function analyse(pat, anchor)
  local a = (anchor and cache_anchor or cache_gmatch)[pat]
  if a then return a end
  local items, anchored = parse(pat, anchor)
  if items == nil then
    a = { err = anchored }
  else
    local F, S, am = model(items)
    a = { F = F, S = S, am = am, anchored = anchored,
          sumF = psum(F), sumS = psum(S), sumFS = psum(pmax(F, S)) }
  end
  if #pat <= CACHE_PATTERN_MAX then
    if cached >= CACHE_MAX then cache_anchor, cache_gmatch, cached = {}, {}, 0 end
    (anchor and cache_anchor or cache_gmatch)[pat] = a
    cached = cached + 1
  end
  return a
end

local SPECIALS = "[%^%$%*%+%?%.%(%[%%%-]" -- what makes find match a pattern (lstrlib's SPECIALS)
local PLAIN_BYTE = 1 / 32                 -- a byte compared by a plain find (memchr, memcmp)

-- Estimated cost of string[fname] on a subject of n bytes with pattern pat.
-- plain: find's 4th argument. per_match, extra: what gsub's replacement
-- costs per match and in all. Returns the cost, or nil and Lua's message
-- for a malformed pattern.
local function pattern_cost(n, pat, fname, plain, per_match, extra)
  local x = n + 1
  if fname == "find" and (plain or not sfind(pat, SPECIALS)) then
    return x * (#pat + 1) * PLAIN_BYTE + 1
  end
  local a = analyse(pat, fname ~= "gmatch")
  if a.err then return nil, a.err end
  per_match, extra = per_match or 0, extra or 0
  local consumed = a.am * n
  if a.anchored then -- one try
    return mmax(peval(a.F, x), peval(a.S, x)) + consumed + per_match + extra
  elseif fname == "find" or fname == "match" then -- tries at each start until one succeeds
    return peval(a.sumF, x) + peval(a.S, x) + consumed + x
  end
  -- gmatch, gsub: at most one try per start that fails (or matches empty
  -- where the last match ended), and at most one match per start
  return peval(a.sumFS, x) + peval(a.sumS, x) + consumed + x * (1 + per_match) + extra
end
M.pattern_cost = pattern_cost

local function as_string(v)
  local t = type_(v)
  if t == "string" then return v end
  if t == "number" then return tostring_(v) end
  return nil
end

-- Whether string[fname] on subject with pat is over the budget (then the
-- refusal is counted and reported). A malformed pattern raises Lua's own
-- message at the rule's line.
local function too_costly(fname, subject, pat, plain, per_match, extra)
  local cost, err = pattern_cost(#subject, pat, fname, plain, per_match, extra)
  if cost == nil then error_(err, 3) end
  if cost <= M.PATTERN_BUDGET then return false end
  refuse("pattern", ("string.%s: pattern '%s' too costly on a %d-byte subject"):format(fname, show(pat), #subject))
  return true
end

-- Passes a C function's results on, once the time budget is checked.
local function after(...)
  budget_check()
  return ...
end

-- Argument errors worded as Lua's, raised at the rule's line (not inside
-- the wrapper, where Lua's own would point): level 3 when the wrapper calls
-- this, 4 through a helper of the wrapper.
local function bad_arg(level, i, fname, expected, v)
  error_(("bad argument #%d to '%s' (%s expected, got %s)"):format(i, fname, expected, type_(v)), level)
end

local function over_cap(kind, fname, what, size, cap)
  local msg = ("%s: %s %.0f over the cap of %d"):format(fname, what, size, cap)
  refuse(kind, msg)
  error_(msg, 3)
end

-- subject and pattern of a pattern function, as strings.
local function pattern_args(fname, str, pat)
  local subject, p = as_string(str), as_string(pat)
  if subject == nil then bad_arg(4, 1, fname, "string", str) end
  if p == nil then bad_arg(4, 2, fname, "string", pat) end
  return subject, p
end

-- What gsub's replacement costs per match and in all (the result is
-- written at about OUT_BYTE per byte: the subject's bytes that no match
-- replaces, and a string replacement's bytes and captures); checks it as
-- Lua would (a string's % escapes before any match, unlike Lua).
local OUT_BYTE = 2
local function replacement_cost(repl, subject, p)
  local n = #subject
  local r = as_string(repl)
  if r == nil then
    local t = type_(repl)
    if t ~= "table" and t ~= "function" then bad_arg(4, 3, "gsub", "string/function/table", repl) end
    return 12, n * OUT_BYTE -- one call or lookup per match; what it returns is under the memory cap
  end
  local ncap = 0
  for c in sgmatch(p, "%%?.") do -- an upper bound on its captures: ( not escaped
    if c == "(" then ncap = ncap + 1 end
  end
  local esc, refs = 0, 0
  for c in sgmatch(r, "%%(.?)") do
    esc = esc + 1
    local d = tonumber_(c)
    if d then
      if d > mmax(ncap, 1) then error_(("invalid capture index %%%d"):format(d), 3) end
      refs = refs + 1
    elseif c ~= "%" then
      error_("invalid use of '%' in replacement string", 3)
    end
  end
  -- a position capture is written as a number: about 25 units a reference
  local per_esc = sfind(p, "()", 1, true) and 25 or 6
  return 2 + esc * per_esc + (#r - 2 * esc) * OUT_BYTE, (n + refs * n) * OUT_BYTE
end

local function nothing() return nil end

local function bounded_string()
  local s = {}
  for k, v in pairs(string) do s[k] = v end
  s.find = function(str, pat, init, plain)
    local subject, p = pattern_args("find", str, pat)
    if too_costly("find", subject, p, plain) then return nil end
    return after(sfind(str, pat, init, plain))
  end
  s.match = function(str, pat, init)
    local subject, p = pattern_args("match", str, pat)
    if too_costly("match", subject, p) then return nil end
    return after(smatch(str, pat, init))
  end
  s.gmatch = function(str, pat, init)
    local subject, p = pattern_args("gmatch", str, pat)
    if too_costly("gmatch", subject, p) then return nothing end
    local step = sgmatch(str, pat, init)
    return function() return after(step()) end
  end
  s.gsub = function(str, pat, repl, max_n)
    local subject, p = pattern_args("gsub", str, pat)
    local per, extra = replacement_cost(repl, subject, p)
    if too_costly("gsub", subject, p, false, per, extra) then return subject, 0 end
    local res, count = sgsub(str, pat, repl, max_n)
    budget_check()
    if #res > M.STRING_CAP then
      refuse("string", ("string.gsub: result of %d bytes over the cap of %d"):format(#res, M.STRING_CAP))
      return subject, 0
    end
    return res, count
  end
  s.rep = function(str, n, sep)
    local piece, count = as_string(str), tonumber_(n)
    if piece == nil then bad_arg(3, 1, "rep", "string", str) end
    if count == nil then bad_arg(3, 2, "rep", "number", n) end
    if count > 0 then -- C copies piece by piece
      local sep_s = sep ~= nil and as_string(sep) or ""
      local cap = #sep_s > 0 and M.REP_CAP // 2 or M.REP_CAP
      if count > cap then over_cap("string", "string.rep", "count", count, cap) end
      local size = count * #piece + (count - 1) * #sep_s
      if size > M.STRING_CAP then over_cap("string", "string.rep", "result of bytes", size, M.STRING_CAP) end
    end
    return after(srep(str, n, sep))
  end
  for _, name in ipairs { "format", "upper", "lower", "reverse" } do -- linear, but on strings of any size
    local f = string[name]
    s[name] = function(...) return after(f(...)) end
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

-- ---- table functions ---------------------------------------------------
-- Lua's table functions loop in C over a length that __len gives (and may
-- give differently on a second read), through __index and __newindex that
-- may be C functions: no count hook sees them. Here a length is read once,
-- counts are capped, and on a table with a metatable insert, remove and
-- sort loop in Lua, where the instruction budget sees every step.

-- #t read once, as an integer (C's luaL_len).
local function length(t)
  local n = tointeger(#t)
  if n == nil then error_("object length is not an integer", 3) end
  return n
end

local function int_arg(v, i, fname)
  local n = tointeger(v)
  if n == nil then
    if tonumber_(v) == nil then bad_arg(4, i, fname, "number", v) end
    error_(("bad argument #%d to '%s' (number has no integer representation)"):format(i, fname), 3)
  end
  return n
end

local function table_arg(v, i, fname)
  if type_(v) ~= "table" then bad_arg(4, i, fname, "table", v) end
end

local function bounded_table()
  local t = {}
  for k, v in pairs(table) do t[k] = v end
  t.concat = function(list, sep, i, j)
    table_arg(list, 1, "concat")
    i = i == nil and 1 or int_arg(i, 3, "concat")
    j = j == nil and length(list) or int_arg(j, 4, "concat")
    if j - i + 1 > M.TABLE_CAP then over_cap("table", "table.concat", "count", j - i + 1, M.TABLE_CAP) end
    return after(tconcat(list, sep, i, j))
  end
  t.move = function(a1, f, e, tpos, a2)
    table_arg(a1, 1, "move")
    f, e = int_arg(f, 2, "move"), int_arg(e, 3, "move")
    if e - f + 1 > M.TABLE_CAP then over_cap("table", "table.move", "count", e - f + 1, M.TABLE_CAP) end
    return after(tmove(a1, f, e, tpos, a2))
  end
  t.sort = function(list, comp)
    table_arg(list, 1, "sort")
    local n = length(list)
    if n > 1 and comp ~= nil and type_(comp) ~= "function" then bad_arg(3, 2, "sort", "function", comp) end
    if n > M.SORT_CAP then over_cap("table", "table.sort", "count", n, M.SORT_CAP) end
    if getmt(list) == nil then return after(tsort(list, comp)) end
    local plain = {} -- C sorts a plain copy; the table is read and written in Lua
    for k = 1, n do plain[k] = list[k] end
    tsort(plain, comp)
    budget_check()
    for k = 1, n do list[k] = plain[k] end
  end
  t.insert = function(list, ...)
    table_arg(list, 1, "insert")
    local nargs = select_("#", ...)
    if nargs ~= 1 and nargs ~= 2 then error_("wrong number of arguments to 'insert'", 2) end
    local e = length(list) + 1
    local pos, v = e, ...
    if nargs == 2 then
      pos, v = ...
      pos = int_arg(pos, 2, "insert")
      if pos < 1 or pos > e then error_("bad argument #2 to 'insert' (position out of bounds)", 2) end
    end
    if getmt(list) == nil then return after(tinsert(list, pos, v)) end -- C shifts the elements the table holds
    for k = e, pos + 1, -1 do list[k] = list[k - 1] end
    list[pos] = v
  end
  t.remove = function(list, pos)
    table_arg(list, 1, "remove")
    local size = length(list)
    pos = pos == nil and size or int_arg(pos, 2, "remove")
    if pos ~= size and (pos < 1 or pos > size + 1) then
      error_("bad argument #2 to 'remove' (position out of bounds)", 2)
    end
    if getmt(list) == nil then return after(tremove(list, pos)) end
    local v = list[pos]
    for k = pos, size - 1 do list[k] = list[k + 1] end
    list[pos < size and size or pos] = nil
    return v
  end
  return t
end
M.bounded_table = bounded_table

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
    assert = assert, error = error, ipairs = ipairs, next = next_, pairs = pairs,
    pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
    type = type, xpcall = xpcall, rawequal = rawequal, rawlen = rawlen, rawget = rawget,
    getmetatable = getmetatable, setmetatable = safe_setmetatable,
    _VERSION = _VERSION,
    string = bounded_string(), table = bounded_table(), math = copy(math), utf8 = copy(utf8),
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
