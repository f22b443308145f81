-- Integration specs for how an exec's context is captured (procwarden-rules(5),
-- "Capture early"): ids and the cgroup v2 id come from PIDFD_GET_INFO where
-- the kernel has it, and a cgroup's path is then looked up by its id (read
-- from /proc once per cgroup). These check that what rules see is still
-- what /proc/PID/cgroup and /proc/PID/status said, when processes run in
-- several cgroups, come back to one already seen, and move between them.
-- They need root (CAP_NET_ADMIN, and cgroup directories to create): as any
-- other user they are reported pending, never passed.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")
local json = require "dkjson"

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

-- The cgroup2 mount point, or nil (no cgroup v2 here).
local function cgroup2_mount()
  for line in H.read("/proc/self/mountinfo"):gmatch("[^\n]+") do
    local mnt, fstype = line:match("^%S+ %S+ %S+ %S+ (%S+) .- %- (%S+) ")
    if fstype == "cgroup2" then return mnt end
  end
end

local RULES = [[
on("exec", function(e)
  for _, a in ipairs(e.argv or {}) do
    if a:match("^cgspec%-") then
      log("info", "cg mark=" .. a .. " pid=" .. e.pid .. " cgroup=" .. tostring(e.cgroup)
        .. " uid=" .. tostring(e.uid) .. " gid=" .. tostring(e.gid), e)
      return
    end
  end
  log("info", "probe", e)
end)
]]

local function dump(d) return "\n--- stdout:\n" .. d:out():sub(-6000) .. "\n--- stderr:\n" .. d:err() end

-- "k=v k=v ..." words of a message into a table.
local kv = H.kv

-- The "cg" lines the daemon wrote, by mark (the last one of a mark: for
-- setpriv, the exec after its setresuid).
local function marks(d)
  local by = {}
  for line in d:out():gmatch("[^\n]+") do
    local o = json.decode(line)
    if type(o) == "table" and type(o.msg) == "string" and o.msg:sub(1, 3) == "cg " then
      local f = kv(o.msg)
      by[f.mark] = f
    end
  end
  return by
end

describe("exec context capture (root)", function()
  local s, base
  before_each(function()
    if is_root then s = H.session() end
  end)
  after_each(function()
    if base then os.execute("rmdir " .. H.q(base .. "/a") .. " " .. H.q(base .. "/b") .. " " .. H.q(base)
      .. " 2>/dev/null") end
    base = nil
    if s then s:cleanup() end
    s = nil
  end)

  it_root("the cgroup of execs in several cgroups, seen again and moved between, is the one /proc shows", function()
    local mnt = cgroup2_mount()
    if not mnt then return pending("no cgroup2 mount") end
    base = mnt .. "/pw-capture-spec." .. s.dir:match("[^.]+$")
    local _, code = H.run("mkdir " .. H.q(base) .. " " .. H.q(base .. "/a") .. " " .. H.q(base .. "/b")
      .. " 2>/dev/null")
    if code ~= 0 then
      base = nil
      return pending("cannot create cgroups under " .. mnt)
    end
    local d = s:start { args = { "-o", "json", "--duration", "20", s:rules("cg.lua", RULES) }, timeout = 24 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    -- Each step: a shell moves itself into a cgroup, notes what
    -- /proc/self/cgroup says, then execs a shell that sleeps a little (so
    -- it is there when its exec is read), with a mark in its argv. The
    -- same cgroups come back (the second time is a lookup by id), one
    -- shell moves twice before its exec, and one runs as another user.
    local steps = { "a", "b", "a", "b", "ab", "ba", "a", "u" }
    local script = {}
    for i, step in ipairs(steps) do
      local mark = "cgspec-" .. i
      local moves = {}
      for c in step:gsub("u", "b"):gmatch(".") do
        moves[#moves + 1] = ('echo $$ > "$B/%s/cgroup.procs"'):format(c)
      end
      local run = (step == "u" and "setpriv --reuid=65534 --regid=65534 --clear-groups " or "")
        .. '/bin/sh -c "sleep 0.1"'
      script[#script + 1] = ("sh -c '%s; grep ^0:: /proc/self/cgroup > \"$D/%s\"; exec %s %s'"):format(
        table.concat(moves, "; "), mark, run, mark)
    end
    s:sh("B=" .. H.q(base) .. "; export B\n" .. table.concat(script, "\n"))
    assert.is_true(d:wait_out("cg mark=cgspec-" .. #steps .. " ", 5), "the last exec unseen:" .. dump(d))
    H.run("sleep 0.2")
    assert.are.equal(0, d:stop())
    local seen = marks(d)
    for i, step in ipairs(steps) do
      local mark = "cgspec-" .. i
      local want = H.read(s:path(mark)):match("^0::([^\n]*)")
      assert.is_string(want, "step " .. step .. ": the workload did not say its cgroup")
      local f = seen[mark]
      assert.is_table(f, "no exec line for " .. mark .. dump(d))
      assert.are.equal(step == "u" and "65534" or "0", f.uid, mark)
      assert.are.equal(want, f.cgroup, "step " .. step .. " (" .. mark .. ")")
    end
    assert.are.equal("65534", seen["cgspec-" .. #steps].uid)
    assert.are.equal("65534", seen["cgspec-" .. #steps].gid)
  end)
end)
