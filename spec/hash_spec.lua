-- hash_spec.lua: src/hash.c (sha256 of executables, its cache) and
-- src/worker.c (calls that can block, run in workers with a deadline),
-- driven by spec/hash/driver.c, compiled here with cc against the sources
-- (an ASan build, PW_BUILD naming "asan", gets the sanitizers too).
-- Expected hashes come from sha256sum(1) or from the driver's own libcrypto
-- call, never from the code under test. No root needed; the FUSE and
-- coarse-timestamp attacks are in spec/integration/hash_spec.lua.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "integration/helpers.lua")

local SAN = H.build:find("asan", 1, true) and { "-fsanitize=address,undefined", "-fno-omit-frame-pointer" } or {}

local function driver_args()
  local args = { "-O1", "-g", "-Wall", "-Wextra", "-Wno-unused-parameter", "-D_GNU_SOURCE", "-pthread",
    "-Isrc", here .. "hash/driver.c", "src/hash.c", "src/worker.c", "src/mounts.c", "src/log.c", "-lcrypto" }
  for _, f in ipairs(SAN) do args[#args + 1] = f end
  return args
end

-- key=value words of the driver's line that starts with `first` (or of
-- every line when first is nil), as a table of strings.
local function fields(out, first)
  for line in out:gmatch("[^\n]+") do
    if first == nil or line:find("^" .. first .. " ") then return H.kv(line) end
  end
  return {}
end

local function num(t, k) return tonumber(t[k]) end

describe("sha256 of executables (src/hash.c, src/worker.c)", function()
  local tools, s

  setup(function()
    tools = H.build_tools { driver = driver_args() }
  end)

  teardown(function()
    if tools then tools.session:cleanup() end
  end)

  before_each(function() s = H.session() end)
  after_each(function() s:cleanup() end)

  local function driver(...)
    local words = { tools.driver, ... }
    local out, err, code = H.exec(words, s.dir)
    assert.are.equal(0, code, "driver failed: " .. err .. out)
    return out
  end

  it("hashes a file's content", function()
    local f = s:path("f")
    H.write(f, ("some content\n"):rep(1000))
    local want = H.run("sha256sum " .. H.q(f)):match("^(%x+)")
    local t = fields(driver("sha", f), "rc=0")
    assert.are.equal(want, t.sha256)
  end)

  -- A thrash of many small files cannot push a large binary out of the
  -- cache before capacity-1 newer files have been hashed: an LRU, not
  -- direct-mapped slots (the thrash includes a file picked for the large
  -- file's slot under the old scheme). And the cache stays bounded.
  it("keeps a large file's hash through a thrash of up to capacity-1 other files", function()
    local dir = s:path("thrash")
    os.execute("mkdir " .. H.q(dir))
    local out = driver("thrash", dir)
    local t = fields(out, "capacity=%d+")
    assert.are.equal("1", t.collider, out)
    assert.are.equal("1", t.first_miss, out)
    assert.are.equal("1", t.hit_after_s1, "evicted by capacity-1 files:\n" .. out)
    assert.are.equal("1", t.hit_after_s2, "a hit did not make it the most recent entry:\n" .. out)
    assert.are.equal("0", t.hit_after_s3, "capacity newer files did not push it out (unbounded?):\n" .. out)
  end)

  it("hashes a process's executable through a worker", function()
    local pid = tonumber(s:sh('sleep 5 >/dev/null 2>&1 & echo $!'):match("%d+"))
    local exe = H.run("readlink /proc/" .. pid .. "/exe"):gsub("\n$", "")
    local want = H.run("sha256sum " .. H.q(exe)):match("^(%x+)")
    local out = driver("exe", tostring(pid))
    os.execute("kill " .. pid .. " 2>/dev/null")
    local t = fields(out, "rc=%-?%d+")
    assert.are.equal("0", t.rc, out)
    assert.are.equal(want, t.sha256)
    assert.is_true(num(t, "worker_calls") >= 1, "not through a worker: " .. out)
  end)

  it("gives a gone process's executable an error, not a hash", function()
    local pid = H.free_pid()
    local t = fields(driver("exe", tostring(pid)), "rc=%-?%d+")
    assert.are.equal("-2", t.rc) -- -ENOENT
    assert.are.equal("-", t.sha256)
  end)

  -- A worker blocked in open(2) of a FIFO (as a read of a FUSE file whose
  -- server does not answer would block) is given up on by the deadline;
  -- the next call still works; the blocked worker's descriptor table has
  -- only 0-2 (not the caller's descriptors); with every worker blocked a
  -- call is refused at once; unblocked, the workers are used again.
  it("gives up on a blocked worker by the deadline and goes on with another", function()
    local fifo = s:path("fifo")
    assert(os.execute("mkfifo " .. H.q(fifo)))
    local out = driver("fifo", fifo)
    local blocked = fields(out, "blocked")
    assert.are.equal("-110", blocked.rc, out) -- -ETIMEDOUT
    assert.is_true(num(blocked, "ms") >= 90 and num(blocked, "ms") < 600, out)
    assert.are.equal("0", blocked.opened)
    -- the caller's table has its /dev/null; the blocked worker's only 0-2
    -- and its own pidfd (to take handed-over descriptors with)
    assert.truthy(fields(out, "caller").others:find("/dev/null", 1, true), out)
    local worker = fields(out, "blocked_worker")
    assert.are.equal("0,1,2,3", worker.fds, "the blocked worker holds the caller's descriptors:\n" .. out)
    assert.are.equal("anon_inode:[pidfd]", worker.others, out)
    local nxt = fields(out, "next")
    assert.are.equal("0", nxt.rc, out)
    assert.are.equal("42", nxt.sum)
    assert.is_true(num(nxt, "ms") < 500, out)
    local fd = fields(out, "fd")
    assert.are.equal("0", fd.rc, out)
    assert.are.equal("handed", fd.text, out)
    local full = fields(out, "full")
    assert.are.equal("8", full.timeouts, out)
    assert.are.equal("-11", full.rc, "not refused with every worker blocked:\n" .. out) -- -EAGAIN
    assert.is_true(num(full, "ms") < 50, "a refusal waited:\n" .. out)
    local after = fields(out, "after")
    assert.are.equal("0", after.rc, out)
    assert.are.equal("42", after.sum)
    assert.are.equal("0", after.busy, out)
    assert.are.equal("8", after.abandoned, out)
    assert.are.equal("8", after.recovered, out)
    assert.are.equal("1", after.refused, out)
    assert.is_true(num(after, "spawned") <= 8, out)
  end)
end)
