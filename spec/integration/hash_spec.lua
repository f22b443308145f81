-- hash_spec.lua (integration, root): the attacks on src/hash.c that need
-- a mount. Helper programs (compiled here with cc, nothing prebuilt):
--   spec/hash/driver.c    drives hash.c and worker.c (see spec/hash_spec.lua)
--   spec/hash/stallfs.c   a libfuse3 filesystem serving one executable,
--                         that stops answering every request on SIGUSR1
-- As any other user every test here is pending.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end
local SAN = H.build:find("asan", 1, true) and { "-fsanitize=address,undefined", "-fno-omit-frame-pointer" } or {}

local function has_fuse()
  local _, code = H.run("pkg-config --exists fuse3 && command -v fusermount3 >/dev/null && test -c /dev/fuse")
  return code == 0
end

local function fields(out, first)
  for line in out:gmatch("[^\n]+") do
    if line:find("^" .. first .. " ") then return H.kv(line) end
  end
  return {}
end

local function build(with_fuse)
  local driver = { "-O1", "-g", "-Wall", "-D_GNU_SOURCE", "-pthread", "-Isrc",
    here .. "../hash/driver.c", "src/hash.c", "src/worker.c", "src/mounts.c", "src/log.c", "-lcrypto" }
  for _, f in ipairs(SAN) do driver[#driver + 1] = f end
  local progs = { driver = driver }
  if with_fuse then
    local flags = H.run("pkg-config --cflags --libs fuse3"):gsub("%s+$", "")
    local stallfs = { "-O1", "-Wall", here .. "../hash/stallfs.c" }
    for w in flags:gmatch("%S+") do stallfs[#stallfs + 1] = w end
    progs.stallfs = stallfs
  end
  return H.build_tools(progs)
end

describe("sha256 cache and workers against a hostile file (root)", function()
  local tools, s

  setup(function()
    if is_root then tools = build(has_fuse()) end
  end)

  teardown(function()
    if tools then tools.session:cleanup() end
  end)

  before_each(function() if is_root then s = H.session() end end)
  after_each(function() if s then s:cleanup() end end)

  -- ramfs stamps files with the coarse clock (as every filesystem of
  -- Debian 12's 6.1 kernel does): a rewrite in place within one tick keeps
  -- size, mtime and ctime. The second hash must be the new content's.
  it_root("keeps no stale hash of a file rewritten in place within one tick", function()
    local mnt = s:path("ramfs")
    assert(os.execute("mkdir " .. H.q(mnt) .. " && mount -t ramfs pw-hash " .. H.q(mnt)))
    local out, err, code = H.exec({ tools.driver, "rewrite", mnt .. "/prog", "50" }, s.dir)
    os.execute("umount " .. H.q(mnt))
    assert.are.equal(0, code, err)
    local t = fields(out, "tries=50")
    assert.is_true(tonumber(t.same_ts) > 0, "no rewrite kept its timestamps here: the attack did not happen\n" .. out)
    assert.are.equal("0", t.failed, out)
    assert.are.equal("0", t.stale, "stale hashes after a same-tick rewrite:\n" .. out)
  end)

  -- A process runs a file of a FUSE mount whose server then stops
  -- answering. Its executable's hash is late at once (a FUSE file is never
  -- read: its server could park every worker); a worker that opens the
  -- file anyway is given up on by the deadline; the next hash still comes;
  -- and the caller's descriptors close when it exits although the worker
  -- stays stuck in the FUSE request (a stuck thread sharing the descriptor
  -- table would keep every one of them open: for the daemon, its fanotify
  -- groups, which hold every exec on the machine).
  it_root("gives up on a stalled FUSE file by the deadline and holds none of the caller's descriptors", function()
    if not tools.stallfs then
      pending("no libfuse3 / fusermount3 / /dev/fuse here")
      return
    end
    local mnt = s:path("fuse")
    os.execute("mkdir " .. H.q(mnt))
    local srv_pid = tonumber(s:sh(('%s /bin/sleep %s >"$D/stallfs.log" 2>&1 & echo $!')
      :format(H.q(tools.stallfs), H.q(mnt))):match("%d+"))
    local ok, fail = pcall(function()
      local _, code = H.run(("timeout 5 sh -c 'until [ -x %s/prog ]; do sleep 0.05; done'"):format(H.q(mnt)))
      assert.are.equal(0, code, "the FUSE mount did not come up: " .. H.read(s:path("stallfs.log")))
      -- a process running the FUSE file, and one running a local file
      local victim = tonumber(s:sh(('%s/prog 30 >/dev/null 2>&1 & echo $!'):format(H.q(mnt))):match("%d+"))
      local other = tonumber(s:sh('sleep 30 >/dev/null 2>&1 & echo $!'):match("%d+"))
      _, code = H.run(("timeout 3 sh -c 'until readlink /proc/%d/exe | grep -q /prog; do sleep 0.05; done'")
        :format(victim))
      assert.are.equal(0, code, "the FUSE program did not start")
      os.execute("kill -USR1 " .. srv_pid)
      -- past libfuse's 1 s attribute timeout: the kernel's copy is stale now,
      -- and only a statx that asks no server (AT_STATX_DONT_SYNC) returns
      os.execute("sleep 1.2")
      -- fd 3 of the driver (and of nothing else): the write end of a FIFO
      -- whose reader writes "released" once every writer has closed it
      local script = [[
mkfifo "$D/p"
( timeout 8 cat "$D/p" >/dev/null && echo released >"$D/released" ) &
ASAN_OPTIONS=detect_leaks=0 timeout -k 1 20 sh -c 'exec 3>"$D/p"; exec "$@"' \
  sh "$1" stalled "$2" "$3" "$4" >"$D/out" 2>"$D/err" &
echo started]]
      H.run(("D=%s sh -c %s sh %s %d %d %s >/dev/null 2>&1 </dev/null"):format(H.q(s.dir), H.q(script),
        H.q(tools.driver), victim, other, H.q(mnt .. "/prog")))
      assert(H.wait_grep(s:path("out"), "^other ", 5), "the driver hung in the FUSE file: " .. H.read(s:path("out")))
      local out = H.read(s:path("out"))
      -- the FUSE executable's hash: late at once, no worker spent on it
      local st = fields(out, "stalled")
      assert.are.equal("-110", st.rc, out) -- -ETIMEDOUT
      assert.is_true(tonumber(st.ms) < 500, out)
      assert.are.equal("0", st.worker_calls, out)
      assert.are.equal("1", st.unread_served, out)
      -- a worker opening the file: given up on by the deadline
      local wk = fields(out, "worker")
      assert.are.equal("-110", wk.rc, out)
      assert.is_true(tonumber(wk.ms) >= 90 and tonumber(wk.ms) < 600, out)
      local ot = fields(out, "other")
      assert.are.equal("0", ot.rc, out)
      assert.are.equal("1", ot.stuck, out)
      local want = H.run("sha256sum /bin/sleep"):match("^(%x+)")
      assert.are.equal(want, ot.sha256)
      assert.is_true(H.wait_file(s:path("released"), 5),
        "the driver's descriptors stayed open while its worker was stuck")
      -- the server still stalls: the worker is still in its request
      local stuck = H.run("ls /proc/" .. srv_pid .. " >/dev/null 2>&1 && echo alive")
      assert.are.equal("alive\n", stuck)
      os.execute(("kill -9 %d %d 2>/dev/null"):format(victim, other))
    end)
    -- the server dies: the connection is aborted, the stuck worker wakes
    os.execute("kill -9 " .. srv_pid .. " 2>/dev/null")
    os.execute("fusermount3 -u -z " .. H.q(mnt) .. " 2>/dev/null; sleep 0.2")
    if not ok then error(fail, 0) end
  end)
end)
