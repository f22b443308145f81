-- sandbox_patterns_spec.lua: the bounded string and table functions that
-- procwarden.sandbox hands rule files, tested on the module itself (no
-- daemon; the daemon-side attacks are in sandbox_attacks_spec.lua). A
-- pattern too costly for its subject is "no match" plus a counted, reported
-- refusal, never an error; every pattern the sandbox lets through finishes
-- within the time budget whatever the subject; the C functions that loop get
-- bounded counts and results, and the budget is checked after each of them.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path

-- A host whose budget_check only counts: the sandbox must call it after
-- every C call that can run long (the engine's body raises when the call
-- is past its time budget).
local checks = 0
package.loaded["procwarden.host"] = { budget_check = function() checks = checks + 1 end }
package.loaded["procwarden.sandbox"] = nil
local sandbox = require "procwarden.sandbox"

local BUDGET_S = 0.25 -- the engine's time budget per call into user code

local env = sandbox.new_env({}, { loading = false })
local S, T = env.string, env.table

-- CPU seconds fn(...) took, and its results packed.
local function timed(fn, ...)
  local c = os.clock()
  local r = table.pack(fn(...))
  return os.clock() - c, r
end

local function count_gmatch(s, pat)
  local n = 0
  for _ in S.gmatch(s, pat) do n = n + 1 end
  return n
end

-- Refusals counted while fn runs.
local function refusals(fn)
  local before = sandbox.refused_count()
  fn()
  return sandbox.refused_count() - before
end

describe("a refused pattern", function()
  after_each(function() sandbox.set_refused_handler(nil) end)

  local subject, pat = ("a"):rep(200), "a-a-a-a-b"

  it("is no match, not an error: find and match give nil, gmatch nothing, gsub the subject and 0", function()
    assert.is_nil(S.find(subject, pat))
    assert.is_nil(S.match(subject, pat))
    assert.equal(0, count_gmatch(subject, pat))
    assert.same({ subject, 0 }, { S.gsub(subject, pat, "x") })
  end)

  it("is no match on a number subject too (gsub gives its string)", function()
    local n = 12345678901234
    assert.same({ "12345678901234", 0 }, { S.gsub(n, ("%d-"):rep(12) .. "x", "") })
  end)

  it("is counted, and reported to the handler with the function, the pattern and the subject size", function()
    local seen = {}
    sandbox.set_refused_handler(function(kind, detail) seen[#seen + 1] = { kind = kind, detail = detail } end)
    local n = refusals(function()
      assert.is_nil(S.find(subject, pat))
      assert.is_nil(S.match(subject, pat))
    end)
    assert.equal(2, n)
    assert.equal(2, #seen)
    assert.equal("pattern", seen[1].kind)
    assert.matches("string.find", seen[1].detail, 1, true)
    assert.matches("a-a-a-a-b", seen[1].detail, 1, true)
    assert.matches("200-byte", seen[1].detail, 1, true)
    assert.matches("string.match", seen[2].detail, 1, true)
  end)

  it("is still counted when no handler is set", function()
    sandbox.set_refused_handler(nil)
    assert.equal(1, refusals(function() assert.is_nil(S.find(subject, pat)) end))
  end)

  it("cuts a long pattern in the detail, and shows no control characters", function()
    local detail
    sandbox.set_refused_handler(function(_, d) detail = d end)
    S.find(subject, "a-a-\na-a-" .. ("a"):rep(500) .. "b")
    assert.is_true(#detail < 200, detail)
    assert.is_nil(detail:find("\n", 1, true))
  end)

  it("does not raise on five 300-byte command lines (nothing an exec sends can make a rule fail)", function()
    local cmdline = "/usr/bin/python3 -c " .. ("x"):rep(280)
    for _ = 1, 5 do
      assert.has_no.errors(function() return S.find(cmdline, "nc.*%-e.*sh") end)
    end
    assert.truthy(S.find("nc -e /bin/sh", "nc.*%-e.*sh"))
  end)
end)

describe("pattern costing", function()
  -- Each attack ran for seconds in one C call, unseen by the count hook.
  local attacks = {
    { "gmatch, which takes a leading ^ as a plain character", function()
      return count_gmatch(("^"):rep(3161), "^.-.-z") end },
    { "a chain of ? (exponential)", function()
      local s = ("a"):rep(22)
      return S.find(s, ("a?"):rep(22) .. s .. "b") end },
    { "a back-reference (compares a capture at each step)", function()
      return S.find(("a"):rep(1000000) .. "b", "^(.-)%1$") end },
    { "match with a pattern without special characters (the matcher, not a plain search)", function()
      return S.match(("a"):rep(100000), ("a"):rep(1000) .. "b") end },
    { "gsub with a long literal", function()
      return S.gsub(("a"):rep(100000), ("a"):rep(1000) .. "b", "") end },
    { "%b on unbalanced text", function()
      return S.find(("("):rep(30000), "%b()") end },
    { "gsub anchored with a ^, then backtracking", function()
      return S.gsub(("a"):rep(3000), "^a-a-a-b", "") end },
  }
  for _, a in ipairs(attacks) do
    it("finishes within the budget: " .. a[1], function()
      local secs = timed(a[2])
      assert.is_true(secs < BUDGET_S, ("%s took %.2f s"):format(a[1], secs))
    end)
  end

  it("takes ^ as an anchor for find, match and gsub, and not for gmatch", function()
    local n = 3161
    local unanchored = sandbox.pattern_cost(n, ".-.-z", "find")
    for _, fname in ipairs { "find", "match", "gsub" } do
      assert.is_true(sandbox.pattern_cost(n, "^.-.-z", fname) * 100 < unanchored, fname)
    end
    assert.is_true(sandbox.pattern_cost(n, "^.-.-z", "gmatch") >= unanchored)
    -- and they behave so
    assert.equal(1, count_gmatch("a^b", "^b"))
    assert.is_nil(S.find("a^b", "^b"))
    assert.same({ "a^b", 0 }, { S.gsub("a^b", "^b", "") })
  end)

  it("costs ?, back-references, %b and %f", function()
    local base = sandbox.pattern_cost(100, "ab", "find")
    for _, pat in ipairs { "a?b", "(a)%1b", "%b()b", "%f[%w]ab" } do
      assert.is_true(sandbox.pattern_cost(100, pat, "find") > base, pat)
    end
    -- a ? chain grows exponentially with its length, not with the subject
    assert.is_true(sandbox.pattern_cost(30, ("a?"):rep(20) .. "b", "match") > 2 ^ 20)
  end)

  -- For each shape, the largest subject the model lets through, built to
  -- make Lua's matcher backtrack as much as it can: it must finish in time.
  local shapes = {
    { "find", "a-a-a-a-b", function(n) return ("a"):rep(n) end },
    { "gmatch", "^.-.-z", function(n) return ("^"):rep(n) end },
    { "find", "nc.*%-e.*sh", function(n) return ("nc-e"):rep(n // 4) end },
    { "match", "^(.-)%1$", function(n) return ("a"):rep(n - 1) .. "b" end },
    { "find", ("a?"):rep(12) .. ("a"):rep(12) .. "b", function(n) return ("a"):rep(n) end },
    { "find", "%b()x", function(n) return ("("):rep(n) end },
    { "gmatch", "(%w+)=(%w+)", function(n) return ("a"):rep(n) end },
    { "gsub", "[%w_%-%.]*[%w_%-%.]*x", function(n) return ("a"):rep(n) end },
    { "find", "%f[%w]%w+%f[%W]x", function(n) return ("a "):rep(n // 2) end },
    { "match", ("a"):rep(64) .. "b", function(n) return ("a"):rep(n) end },
    { "find", "(a*)*b", function(n) return ("a"):rep(n) end },
  }
  local call = {
    find = function(s, p) return S.find(s, p) end,
    match = function(s, p) return S.match(s, p) end,
    gmatch = count_gmatch,
    gsub = function(s, p) return S.gsub(s, p, "") end,
  }

  local function largest_allowed(fname, pat)
    local lo, hi = 0, 1 << 24
    while lo < hi do
      local mid = (lo + hi + 1) // 2
      if sandbox.pattern_cost(mid, pat, fname) <= sandbox.PATTERN_BUDGET then lo = mid else hi = mid - 1 end
    end
    return lo
  end

  for _, sh in ipairs(shapes) do
    it(("lets %s('%s') through only on subjects it finishes in time"):format(sh[1], sh[2]), function()
      -- (gsub's replacement adds to the pattern's cost: a refused call is
      -- instant, so shrink the subject until one is let through)
      local n = largest_allowed(sh[1], sh[2])
      local secs, len
      repeat
        local subject = sh[3](math.max(n, 4)):sub(1, n)
        local refused = refusals(function() secs = timed(call[sh[1]], subject, sh[2]) end)
        len, n = #subject, n * 15 // 16
      until refused == 0
      assert.is_true(secs < BUDGET_S, ("%d-byte subject: %.3f s"):format(len, secs))
    end)
  end

  it("lets everyday patterns through on a 4 KiB command line", function()
    local words = {}
    for i = 1, 400 do words[i] = "arg" .. i end
    local cmdline = "/usr/bin/tool --token=s3cr3t " .. table.concat(words, " ")
    cmdline = cmdline .. (" "):rep(4096 - #cmdline)
    local n = refusals(function()
      assert.equal(402, count_gmatch(cmdline, "%S+"))
      assert.equal("/usr/bin/tool", S.match(cmdline, "^(%S+)"))
      assert.equal("s3cr3t", S.match(cmdline, "%-%-token=(%S+)"))
      assert.is_nil(S.find(cmdline, "base64 %-d"))
      assert.equal(1, S.find(cmdline, "^/usr/"))
      assert.equal("tool", S.match("/usr/bin/tool", "([^/]+)$"))
      assert.equal(402, select(2, S.gsub(cmdline, "%S+", "")))
      assert.equal(2, count_gmatch("a=1 b=2", "(%w+)=(%w+)"))
    end)
    assert.equal(0, n)
  end)

  it("raises Lua's own error for a malformed pattern, whatever the subject", function()
    -- Lua's matcher only notices when it reaches the bad item, after any
    -- backtracking before it; here it is noticed before matching at all.
    for pat, msg in pairs {
      ["b["] = "malformed pattern (missing ']')",
      ["b%"] = "malformed pattern (ends with '%')",
      ["b%f"] = "missing '[' after '%f' in pattern",
      ["b%bx"] = "malformed pattern (missing arguments to '%b')",
      ["b(a)%2"] = "invalid capture index %2",
      ["b)"] = "invalid pattern capture",
      ["b" .. ("(a)"):rep(33)] = "too many captures",
    } do
      local ok, err = pcall(S.match, "x", pat)
      assert.is_false(ok, pat)
      assert.matches(msg, err, 1, true)
    end
  end)

  it("costs a plain find by the lengths it compares", function()
    assert.truthy(S.find(("a"):rep(1000) .. "b", ("a"):rep(10) .. "b", 1, true))
    assert.is_true(sandbox.pattern_cost(1e6, ("a"):rep(1e4), "find", true) > sandbox.PATTERN_BUDGET)
    local secs = timed(S.find, ("a"):rep(2000000), ("a"):rep(100000) .. "b", 1, true)
    assert.is_true(secs < BUDGET_S)
  end)
end)

describe("C functions that loop", function()
  it("string.rep refuses results over the cap, and empty pieces repeated without end", function()
    assert.equal("ab,ab,ab", S.rep("ab", 3, ","))
    assert.equal("", S.rep("x", 0))
    for _, args in ipairs { { "", math.maxinteger }, { "", 1 << 40, "" }, { "x", sandbox.REP_CAP + 1 },
                            { "xy", sandbox.REP_CAP // 2 + 1, "z" }, { ("x"):rep(1000), sandbox.STRING_CAP // 999 } } do
      local secs, r = timed(pcall, S.rep, table.unpack(args, 1, 3))
      assert.is_false(r[1])
      assert.matches("string.rep: ", r[2], 1, true)
      assert.is_true(secs < BUDGET_S)
    end
  end)

  it("table.move refuses to move more elements than the cap", function()
    local secs, r = timed(pcall, T.move, {}, 1, 1 << 40, 1, {})
    assert.is_false(r[1])
    assert.matches("table.move: ", r[2], 1, true)
    assert.is_true(secs < BUDGET_S)
    assert.same({ 1, 2, 3, 1, 2 }, T.move({ 1, 2, 3 }, 1, 2, 4))
  end)

  it("table.concat refuses a range over the cap, and reads the length once", function()
    local lying = setmetatable({}, { __index = function() return "" end, __len = function() return 1 << 40 end })
    local secs, r = timed(pcall, T.concat, lying)
    assert.is_false(r[1])
    assert.matches("table.concat: ", r[2], 1, true)
    assert.is_true(secs < BUDGET_S)
    secs, r = timed(pcall, T.concat, {}, "", 1, 1 << 40)
    assert.is_false(r[1])
    assert.is_true(secs < BUDGET_S)
    -- a proxy whose length changes between two reads
    local reads = 0
    local proxy = setmetatable({}, { __index = { "a", "b", "c" }, __len = function()
      reads = reads + 1
      return reads == 1 and 3 or 1 << 40
    end })
    assert.equal("a b c", T.concat(proxy, " "))
    assert.equal("b-c", T.concat({ "a", "b", "c" }, "-", 2))
  end)

  it("table.sort refuses more elements than the cap", function()
    local big = {}
    for i = 1, sandbox.SORT_CAP + 1 do big[i] = i end
    local ok, err = pcall(T.sort, big)
    assert.is_false(ok)
    assert.matches("table.sort: ", err, 1, true)
    local t = { 3, 1, 2 }
    T.sort(t)
    assert.same({ 1, 2, 3 }, t)
    T.sort(t, function(a, b) return a > b end)
    assert.same({ 3, 2, 1 }, t)
  end)

  it("table.insert and table.remove keep their behaviour on tables with a metatable", function()
    local backing = { "a", "b", "c" }
    local proxy = setmetatable({}, { __index = backing, __newindex = backing,
      __len = function() return #backing end })
    T.insert(proxy, 1, "z")
    assert.same({ "z", "a", "b", "c" }, backing)
    T.insert(proxy, "y")
    assert.same({ "z", "a", "b", "c", "y" }, backing)
    assert.equal("a", T.remove(proxy, 2))
    assert.equal("y", T.remove(proxy))
    assert.same({ "z", "b", "c" }, backing)
    assert.has_error(function() T.insert(proxy, 9, "x") end)
    local plain = { 1, 2 }
    T.insert(plain, 1, 0)
    assert.same({ 0, 1, 2 }, plain)
    assert.equal(2, T.remove(plain))
  end)

  it("refuses, counts and reports string and table results over the caps", function()
    local kinds = {}
    sandbox.set_refused_handler(function(kind) kinds[#kinds + 1] = kind end)
    local n = refusals(function()
      pcall(S.rep, "x", sandbox.REP_CAP + 1)
      pcall(T.move, {}, 1, 1 << 40, 1, {})
    end)
    sandbox.set_refused_handler(nil)
    assert.equal(2, n)
    assert.same({ "string", "table" }, kinds)
  end)

  it("checks the time budget after each C call that can run long", function()
    local function after(fn)
      local before = checks
      fn()
      return checks - before
    end
    assert.equal(1, after(function() S.find("abc", "b") end))
    assert.equal(1, after(function() S.find("abc", "b", 1, true) end))
    assert.equal(1, after(function() S.match("abc", "(b)") end))
    assert.equal(1, after(function() S.gsub("abc", "%w", string.upper) end))
    assert.equal(1, after(function() S.rep("ab", 10) end))
    assert.equal(1, after(function() S.format("%s", "x") end))
    assert.equal(1, after(function() S.upper("x") end))
    assert.equal(3, after(function() count_gmatch("a b", "%a") end)) -- each step of the iterator
    assert.equal(1, after(function() T.sort({ 2, 1 }, math.max) end))
    assert.equal(1, after(function() T.concat({ "a", "b" }) end))
    assert.equal(1, after(function() T.move({ 1 }, 1, 1, 2) end))
    assert.equal(1, after(function() T.insert({ 1 }, 1, 0) end))
    assert.equal(1, after(function() T.remove({ 1, 2 }, 1) end))
  end)
end)
