-- Integration specs for the process context that rules see (procwarden-rules(5):
-- the process fields table, "Capture early", start-up): the daemon runs a
-- rules file against real workloads and its JSON-lines stdout (-o json:
-- one object per log line, with "msg" and "event") is decoded and checked.
-- They need root (CAP_NET_ADMIN): as any other user every test here is
-- reported pending, never passed.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")
local json = require "dkjson"
local container = require "procwarden.container"

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

-- This busted process: the workloads below are its descendants.
local MY_PID = math.tointeger(tonumber(H.read("/proc/self/stat"):match("^(%d+)")))

local function resolved(path)
  return (H.run("readlink -f " .. H.q(path)):gsub("\n$", ""))
end

-- The container id the workloads (children of this process) should get:
-- the same cgroup as this process; "-" (a nil field in a template) on the host.
local function my_container_id()
  local text = H.read("/proc/self/cgroup")
  local path = text:match("^0::([^\n]*)") or text:match("\n0::([^\n]*)") or text:match("^[^:]*:[^:]*:([^\n]*)")
  return container.id(path) or "-"
end

-- Every JSON line the daemon wrote to stdout, decoded (undecodable lines
-- are kept as { bad = line } so a test can show them).
local function entries(d)
  local list = {}
  for line in d:out():gmatch("[^\n]+") do
    local o = json.decode(line)
    list[#list + 1] = type(o) == "table" and o or { bad = line }
  end
  return list
end

-- Log entries whose msg starts with prefix (and, if given, whose event pid is pid).
local function find(d, prefix, pid)
  local found = {}
  for _, o in ipairs(entries(d)) do
    if type(o.msg) == "string" and o.msg:sub(1, #prefix) == prefix
      and (pid == nil or (type(o.event) == "table" and o.event.pid == pid)) then
      found[#found + 1] = o
    end
  end
  return found
end

-- "k=v k=v ..." words of a message into a table (values have no spaces).
local kv = H.kv

local function unhex(s)
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- "hex,hex,,hex" -> list of strings (the empty word is the empty string).
local function unhex_list(s)
  local list = {}
  for w in (s .. ","):gmatch("([^,]*),") do list[#list + 1] = unhex(w) end
  return list
end

local function pids_of(text)
  local pids = {}
  for p in text:gmatch("%d+") do pids[#pids + 1] = math.tointeger(tonumber(p)) end
  return pids
end

-- Every exec becomes a line with its event (so Daemon:ready() can probe).
local PROBE = [[
on("exec", function(e) log("info", "probe", e) end)
]]

-- Rule-side helper: a string as hex (no braces, no separators, no escapes).
local HEX = [[
local function hex(s)
  local out = {}
  for i = 1, #s do out[i] = string.format("%02x", string.byte(s, i)) end
  return table.concat(out)
end
]]

local function dump(d) return "\n--- stdout:\n" .. d:out():sub(-6000) .. "\n--- stderr:\n" .. d:err() end

describe("process context seen by rules (root)", function()
  local s
  before_each(function()
    if is_root then s = H.session() end
  end)
  after_each(function()
    if s then s:cleanup() end
    s = nil
  end)

  it_root("exec of sleep under sh -c: parent is the shell, ancestors reach this test runner", function()
    local rules = s:rules("chain.lua", PROBE .. HEX .. [[
on("exec", function(e)
  local argv = e.argv
  if not argv or argv[1] ~= "sleep" or argv[2] ~= "0.4321" then return end
  local parts = {}
  for i, a in ipairs(e.ancestors) do parts[i] = tostring(a.pid) .. ":" .. hex(tostring(a.exe)) end
  local parent = e.parent
  log("info", "chain pid=" .. e.pid .. " ppid=" .. tostring(e.ppid) .. " parent=" .. tostring(parent and parent.pid)
    .. " pexe=" .. tostring(parent and parent.exe) .. " anc=" .. table.concat(parts, ","))
end)
]])
    local d = s:start { args = { "-o", "json", "--duration", "10", rules }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    -- sleep <- sh (the snippet, $$) <- timeout <- sh (popen) <- this busted process
    local shell = tonumber(s:sh("sleep 0.4321; echo $$"):match("%d+"))
    assert.is_number(shell)
    assert.is_true(d:wait_out('"msg":"chain pid=[0-9]+ ppid=' .. shell .. ' ', 5), "no chain line:" .. dump(d))
    assert.are.equal(0, d:stop())
    local lines = {} -- (another run of this spec may be going on: ours only)
    for _, o in ipairs(find(d, "chain ")) do
      if kv(o.msg).ppid == tostring(shell) then lines[#lines + 1] = o end
    end
    assert.are.equal(1, #lines, dump(d))
    local f = kv(lines[1].msg)
    assert.are.equal(tostring(shell), f.ppid)
    assert.are.equal(tostring(shell), f.parent)
    assert.are.equal(resolved("/bin/sh"), f.pexe)
    local anc = {}
    for pid, exe in f.anc:gmatch("(%d+):(%x*)") do anc[#anc + 1] = { pid = tonumber(pid), exe = unhex(exe) } end
    assert.is_true(#anc >= 4, f.anc)
    for i = 2, #anc do assert.is_true(anc[i].pid ~= anc[i - 1].pid, f.anc) end
    assert.are.equal(shell, anc[1].pid, "ancestors are nearest first")
    assert.are.equal(resolved("/usr/bin/timeout"), anc[2].exe, f.anc)
    local runner
    for i, a in ipairs(anc) do
      if a.pid == MY_PID then runner = i end
    end
    assert.is_truthy(runner, "busted (pid " .. MY_PID .. ") is not among the ancestors: " .. f.anc)
    assert.are.equal((H.run("readlink /proc/" .. MY_PID .. "/exe"):gsub("\n$", "")), anc[runner].exe)
    local shown = {}
    for i, a in ipairs(anc) do shown[i] = a.pid .. "=" .. a.exe end
    assert.are.equal(1, anc[#anc].pid, "the ancestors stop short of pid 1: " .. table.concat(shown, " "))
  end)

  it_root("argv is exact, with spaces and empty arguments; args and cmdline follow", function()
    local rules = s:rules("argv.lua", PROBE .. HEX .. [[
on("exec", function(e)
  local argv = e.argv
  if not argv then return end
  local marked = false
  for _, a in ipairs(argv) do marked = marked or a == "a b" end
  if not marked then return end
  local words, args = {}, {}
  for i, a in ipairs(argv) do words[i] = hex(a) end
  for i, a in ipairs(e.args) do args[i] = hex(a) end
  log("info", "argv n=" .. #argv .. " argv=" .. table.concat(words, ",") .. " nargs=" .. #e.args
    .. " args=" .. table.concat(args, ",") .. " cmdline=" .. hex(e.cmdline) .. " exe=" .. tostring(e.exe)
    .. " truncated=" .. tostring(e.argv_truncated), e)
end)
]])
    local d = s:start { args = { "-o", "json", "--duration", "10", rules }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    -- /bin/true may be gone before its exec is read: try a few, at
    -- SCHED_IDLE (it runs when no other task wants the CPU, the daemon
    -- included). The shell variant lives 0.3 s: its argv is always read.
    local out = s:sh([[
for i in 1 2 3 4 5 6; do chrt --idle 0 /bin/true "a b" "" c & p=$!; wait $p; echo $p; done
sh -c 'sleep 0.3' "a b" "" c & p=$!; wait $p; echo "sh $p"]])
    local shpid = tonumber(out:match("sh (%d+)"))
    local pids = pids_of(out:gsub("sh %d+", ""))
    assert.are.equal(6, #pids, out)
    assert.is_number(shpid, out)
    d:wait_out('"msg":"argv n=6 ', 3)
    assert.are.equal(0, d:stop())

    -- The long-lived one: always there, exact.
    local lines = find(d, "argv ", shpid)
    assert.are.equal(1, #lines, dump(d))
    local f = kv(lines[1].msg)
    assert.are.same({ "sh", "-c", "sleep 0.3", "a b", "", "c" }, unhex_list(f.argv))
    assert.are.same({ "sh", "-c", "sleep 0.3", "a b", "", "c" }, lines[1].event.argv)
    assert.are.same({ "-c", "sleep 0.3", "a b", "", "c" }, unhex_list(f.args))
    assert.are.equal("sh -c sleep 0.3 a b  c", unhex(f.cmdline))
    assert.are.equal(resolved("/bin/sh"), f.exe)
    assert.are.equal("false", f.truncated)

    -- /bin/true (after chrt's own exec of the same pid).
    local want = {
      chrt = { argv = { "chrt", "--idle", "0", "/bin/true", "a b", "", "c" }, exe = resolved("/usr/bin/chrt") },
      true_ = { argv = { "/bin/true", "a b", "", "c" }, exe = resolved("/bin/true") },
    }
    local seen = 0
    for _, pid in ipairs(pids) do
      for _, o in ipairs(find(d, "argv ", pid)) do
        f = kv(o.msg)
        local argv = unhex_list(f.argv)
        local w = argv[1] == "chrt" and want.chrt or want.true_
        if w == want.true_ then seen = seen + 1 end
        assert.are.same(w.argv, argv, o.msg)
        assert.are.same(w.argv, o.event.argv)
        assert.are.equal(tostring(#w.argv), f.n, o.msg)
        assert.are.equal(tostring(#w.argv - 1), f.nargs)
        assert.are.same(table.move(w.argv, 2, #w.argv, 1, {}), unhex_list(f.args))
        assert.are.equal(table.concat(w.argv, " "), unhex(f.cmdline))
        assert.are.equal(w.exe, f.exe)
        assert.are.equal("false", f.truncated)
      end
    end
    assert.is_true(seen >= 1, "no /bin/true exec had its argv captured (of " .. #pids .. "):" .. dump(d))
  end)

  it_root("a /bin/true that has exited still shows its exe at its exit event", function()
    local rules = s:rules("exit.lua", PROBE .. [[
on("exec", function(e)
  local argv = e.argv
  if argv and argv[1] == "/bin/true" and argv[2] == "ctx-exit-marker" then
    log("info", "exec exe=" .. tostring(e.exe), e)
  end
end)
on("exit", function(e)
  if e.thread then return end
  local argv = e.argv
  if argv and argv[2] == "ctx-exit-marker" then
    log("info", "exit exe=" .. tostring(e.exe) .. " status=" .. tostring(e.exit_status), e)
  end
end)
]])
    local d = s:start { args = { "-o", "json", "--duration", "10", rules }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    local pids = pids_of(s:sh(
      'for i in 1 2 3 4 5 6; do chrt --idle 0 /bin/true ctx-exit-marker & p=$!; wait $p; echo $p; done'))
    assert.are.equal(6, #pids)
    d:wait_out('"msg":"exit exe=', 3)
    H.run("sleep 0.3")
    assert.are.equal(0, d:stop())
    local want = resolved("/bin/true")
    local checked = 0
    for _, pid in ipairs(pids) do
      local execs, exits = find(d, "exec exe=", pid), find(d, "exit exe=", pid)
      if #execs > 0 and kv(execs[1].msg).exe ~= "nil" then
        assert.are.equal(want, kv(execs[1].msg).exe)
        assert.are.equal(1, #exits, "pid " .. pid .. ": exec captured, but no single exit line:" .. dump(d))
        assert.are.equal(want, kv(exits[1].msg).exe, exits[1].msg)
        assert.are.equal("0", kv(exits[1].msg).status)
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 1, "no /bin/true exec had its exe captured (pids " .. table.concat(pids, " ") .. "):"
      .. dump(d))
  end)

  it_root("setuid: the uid event carries ruid/euid and prev_ruid/prev_euid; later events the new ids", function()
    local rules = s:rules("uid.lua", PROBE .. [[
on("uid", function(e)
  if e.ruid ~= 65534 then return end
  log("info", string.format("uid ruid=%s euid=%s prev_ruid=%s prev_euid=%s uid=%s user=%s euser=%s exe=%s",
    tostring(e.ruid), tostring(e.euid), tostring(e.prev_ruid), tostring(e.prev_euid), tostring(e.uid),
    tostring(e.user), tostring(e.euser), tostring(e.exe)), e)
end)
on("gid", function(e)
  if e.rgid ~= 65534 then return end
  log("info", string.format("gid rgid=%s egid=%s prev_rgid=%s prev_egid=%s gid=%s",
    tostring(e.rgid), tostring(e.egid), tostring(e.prev_rgid), tostring(e.prev_egid), tostring(e.gid)), e)
end)
on("exec", function(e)
  if e.uid ~= 65534 then return end
  log("info", string.format("nobody-exec uid=%s euid=%s gid=%s egid=%s user=%s prev_ruid=%s",
    tostring(e.uid), tostring(e.euid), tostring(e.gid), tostring(e.egid), tostring(e.user),
    tostring(e.prev_ruid)), e)
end)
]])
    local d = s:start { args = { "-o", "json", "--duration", "10", rules }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    local pid = tonumber(s:sh(
      'setpriv --reuid=65534 --regid=65534 --clear-groups /bin/true & p=$!; wait $p; echo $p'):match("%d+"))
    assert.is_number(pid)
    assert.is_true(d:wait_out('"msg":"nobody-exec ', 5), "no exec as nobody:" .. dump(d))
    assert.are.equal(0, d:stop())
    local nobody = H.run("getent passwd 65534 | cut -d: -f1"):gsub("\n$", "")

    local uids = find(d, "uid ", pid)
    assert.are.equal(1, #uids, "uid events of pid " .. pid .. ":" .. dump(d))
    local u = kv(uids[1].msg)
    assert.are.equal("65534", u.ruid)
    assert.are.equal("65534", u.euid)
    assert.are.equal("0", u.prev_ruid)
    assert.are.equal("0", u.prev_euid)
    assert.are.equal("65534", u.uid)
    assert.are.equal(nobody, u.user)
    assert.are.equal(nobody, u.euser)

    local gids = find(d, "gid ", pid)
    assert.are.equal(1, #gids, "gid events of pid " .. pid .. ":" .. dump(d))
    local g = kv(gids[1].msg)
    assert.are.equal("65534", g.rgid)
    assert.are.equal("65534", g.egid)
    assert.are.equal("0", g.prev_rgid)
    assert.are.equal("0", g.prev_egid)
    assert.are.equal("65534", g.gid)

    -- The exec of /bin/true that follows runs as nobody. (setpriv's own
    -- exec event, when read after setpriv went on, may wrongly look the
    -- same: the last test of this file covers that.)
    local execs = find(d, "nobody-exec ", pid)
    assert.is_true(#execs >= 1, dump(d))
    for _, o in ipairs(execs) do
      local x = kv(o.msg)
      assert.are.equal("65534", x.uid)
      assert.are.equal("65534", x.euid)
      assert.are.equal("65534", x.gid)
      assert.are.equal("65534", x.egid)
      assert.are.equal(nobody, x.user)
      assert.are.equal("nil", x.prev_ruid, "prev_* only on uid/gid events")
    end
  end)

  -- The workload for the next two: a marker sleep that lives 0.25 s, run
  -- from the session dir; the rule looks again 0.8 s after its exec.
  local LATER = [[
on("exec", function(e)
  local argv = e.argv
  if not argv or argv[1] ~= "sleep" or argv[2] ~= "0.2468" then return end
  local fresh = proc(e.pid)  -- not read before the process is gone
  local seen = proc(e.pid)   -- read while it runs, and again after
  local now = "valid=" .. tostring(seen.valid) .. " cwd=" .. tostring(e.cwd)
  after(0.8, function()
    log("info", "later pid=" .. e.pid .. " " .. now .. " fresh.valid=" .. tostring(fresh.valid)
      .. " fresh.cwd=" .. tostring(fresh.cwd) .. " fresh.exe=" .. tostring(fresh.exe)
      .. " seen.valid=" .. tostring(seen.valid) .. " e.valid=" .. tostring(e.valid)
      .. " e.exe=" .. tostring(e.exe) .. " e.stdin=" .. tostring(e.stdin))
  end)
end)
]]

  local function run_later(name)
    local rules = s:rules(name, PROBE .. LATER)
    local d = s:start { args = { "-o", "json", "--duration", "10", rules }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    local pid = tonumber(s:sh('cd "$D" && { sleep 0.2468 & p=$!; wait $p; echo $p; }'):match("%d+"))
    assert.is_number(pid)
    assert.is_true(d:wait_out('"msg":"later pid=' .. pid .. ' ', 5), "no later line:" .. dump(d))
    assert.are.equal(0, d:stop())
    local lines = find(d, "later pid=" .. pid .. " ")
    assert.are.equal(1, #lines, dump(d))
    return kv(lines[1].msg)
  end

  it_root("a process object read after its process is gone: valid false, live fields nil", function()
    local f = run_later("later1.lua")
    assert.are.equal("true", f.valid, "proc(pid) was not valid while the process ran")
    assert.are.equal(H.abspath(s.dir), f.cwd, "cwd at exec time")
    assert.are.equal("false", f["fresh.valid"])
    assert.are.equal("nil", f["fresh.cwd"], "a live-only field of a gone process")
    assert.are.equal("nil", f["e.stdin"], "a live-only field of a gone process, read from the event")
    -- What was captured at exec stays known.
    assert.are.equal(resolved("/bin/sleep"), f["e.exe"])
    assert.are.equal(resolved("/bin/sleep"), f["fresh.exe"])
  end)

  it_root("valid read while the process ran turns false once it is gone", function()
    local f = run_later("later2.lua")
    assert.are.equal("true", f.valid)
    assert.are.equal("false", f["seen.valid"], "a process object kept valid = true after its process was gone")
    assert.are.equal("false", f["e.valid"], "an event table kept valid = true after its process was gone")
  end)

  it_root("the 'done means' rule: {exe} child of {parent.exe} in {container_id}, nested pipeline", function()
    local rules = s:rules("done.lua", [[
on("exec", function(e) log("info", "{exe} child of {parent.exe} in {container_id}", e) end)
]])
    local d = s:start { args = { "-o", "json", "--duration", "10", rules }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    local ids = s:sh([[sh -c 'sleep 0.2 | cat' & p=$!; wait $p; echo "$$ $p"]])
    local outer, inner = ids:match("(%d+) (%d+)")
    outer, inner = tonumber(outer), tonumber(inner)
    assert.is_number(inner, ids)
    H.run("sleep 0.2")
    assert.are.equal(0, d:stop())
    local sh_exe, cid = resolved("/bin/sh"), my_container_id()
    local by_pid, children = {}, {}
    for _, o in ipairs(entries(d)) do
      local ev = o.event
      if type(ev) == "table" and ev.type == "exec" then
        if ev.pid == inner then by_pid[#by_pid + 1] = o.msg end
        if ev.ppid == inner then children[#children + 1] = o.msg end
      end
    end
    assert.are.same({ ("%s child of %s in %s"):format(sh_exe, sh_exe, cid) }, by_pid, dump(d))
    table.sort(children)
    assert.are.same({
      ("%s child of %s in %s"):format(resolved("/bin/cat"), sh_exe, cid),
      ("%s child of %s in %s"):format(resolved("/bin/sleep"), sh_exe, cid),
    }, children, "the pipeline's processes (parent " .. inner .. ", its parent " .. outer .. ")" .. dump(d))
  end)

  it_root("start-up: a sleep started before the daemon is judged once, startup = true", function()
    local marker = "29.1357"
    local spid = tonumber(H.run("sleep " .. marker .. " >/dev/null 2>&1 </dev/null & echo $!"):match("%d+"))
    assert.is_number(spid)
    finally(function() os.execute("kill " .. spid .. " 2>/dev/null") end)
    local rules = s:rules("startup.lua", PROBE .. [[
on("exec", function(e)
  local argv = e.argv
  if argv and argv[1] == "sleep" and argv[2] == "]] .. marker .. [[" then
    log("info", "old sleep startup=" .. tostring(e.startup) .. " exe=" .. tostring(e.exe)
      .. " n=" .. #argv .. " uid=" .. tostring(e.uid), e)
  end
end)
]])
    local d = s:start { args = { "-o", "json", "--duration", "10", rules }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    H.run("sleep 0.3")
    assert.are.equal(0, d:stop())
    local lines = find(d, "old sleep ", spid)
    assert.are.equal(1, #lines, "judged " .. #lines .. " times:" .. dump(d))
    local f = kv(lines[1].msg)
    assert.are.equal("true", f.startup)
    assert.are.equal(resolved("/bin/sleep"), f.exe)
    assert.are.equal("2", f.n)
    assert.are.equal("0", f.uid)
    local ev = lines[1].event
    assert.are.equal("exec", ev.type)
    assert.is_true(ev.startup)
    assert.are.equal(spid, ev.tgid)
    assert.are.same({ "sleep", marker }, ev.argv)
  end)

  -- The daemon is stopped (SIGSTOP) while a workload runs, so each exec
  -- event is read after its process has exited or exec'd again: the
  -- context must then say nil (unknown), never another program's values.
  local LATE = HEX .. [[
on("exec", function(e)
  local argv = e.argv
  local words = {}
  for i, a in ipairs(argv or {}) do words[i] = hex(a) end
  log("info", "late exe=" .. tostring(e.exe) .. " comm=" .. tostring(e.comm) .. " uid=" .. tostring(e.uid)
    .. " n=" .. (argv and #argv or "nil") .. " argv=" .. table.concat(words, ","), e)
end)
on("uid", function(e)
  log("info", "lateuid ruid=" .. e.ruid .. " prev_ruid=" .. tostring(e.prev_ruid) .. " exe=" .. tostring(e.exe), e)
end)
]]

  -- Run snippet while the daemon d is stopped; its stdout.
  local function while_stopped(d, snippet)
    d:signal("STOP")
    local ok, out = pcall(s.sh, s, snippet)
    d:signal("CONT")
    assert.is_true(ok, tostring(out))
    return out
  end

  -- The "late" exec lines of pid, oldest first, as k=v tables (argv decoded).
  local function late_execs(d, pid)
    local list = find(d, "late ", pid)
    table.sort(list, function(a, b) return a.event.ktime_ns < b.event.ktime_ns end)
    for i, o in ipairs(list) do
      local f = kv(o.msg)
      f.argv = f.n ~= "nil" and (f.n == "0" and {} or unhex_list(f.argv)) or nil
      f.msg = o.msg
      list[i] = f
    end
    return list
  end

  -- Checks that collect what is wrong, so one failure tells all of it.
  local function checker()
    local problems = {}
    local function check(ok, what) if not ok then problems[#problems + 1] = what end end
    local function verdict(d)
      assert.is_true(#problems == 0, table.concat(problems, "\n") .. dump(d))
    end
    return check, verdict
  end

  it_root("an exec read after its process exited: nil, not the parent's exe, argv or name", function()
    local d = s:start { args = { "-o", "json", "--duration", "10", s:rules("late1.lua", LATE) }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    -- t: gone (reaped) before its exec is read. z: exited, but a zombie
    -- then (its parent exec'd a sleep that never reaps it).
    local out = while_stopped(d, [[
/bin/true & t=$!; wait $t
sh -c '/bin/true & echo $! > "$D/zpid"; exec sleep 3' >/dev/null 2>&1 &
sleep 0.25; echo "$t $(cat "$D/zpid")"]])
    local t, z = out:match("(%d+) (%d+)")
    t, z = tonumber(t), tonumber(z)
    assert.is_number(z, out)
    assert.is_true(d:wait_out('"pid":' .. z .. '[,}]', 5), "exec of " .. z .. " unseen:" .. dump(d))
    H.run("sleep 0.2")
    assert.are.equal(0, d:stop())
    local check, verdict = checker()
    for _, pid in ipairs { t, z } do
      local who = pid == t and "reaped /bin/true" or "zombie /bin/true"
      local list = late_execs(d, pid)
      check(#list == 1, who .. ": " .. #list .. " exec lines")
      local f = list[1] or { argv = {} }
      check(f.exe == "nil" or f.exe == resolved("/bin/true"), who .. ": exe given as " .. tostring(f.exe))
      check(f.argv == nil or (f.argv[1] == "/bin/true" and #f.argv == 1),
        who .. ": argv given as {" .. table.concat(f.argv or {}, ",") .. "} (n=" .. tostring(f.n)
          .. "); unknown is nil")
      check(f.comm == "nil" or f.comm == "true", who .. ": comm given as '" .. tostring(f.comm) .. "'")
    end
    verdict(d)
  end)

  it_root("an exec read after its process exec'd again: never the next program's exe, argv, name or ids", function()
    local d = s:start { args = { "-o", "json", "--duration", "10", s:rules("late2.lua", LATE) }, timeout = 14 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:" .. dump(d))
    local out = while_stopped(d, [[
sh -c 'exec sleep 0.6' >/dev/null & x=$!
setpriv --reuid=65534 --regid=65534 --clear-groups sleep 0.6 >/dev/null & y=$!
sleep 0.25; echo "$x $y"]])
    local x, y = out:match("(%d+) (%d+)")
    x, y = tonumber(x), tonumber(y)
    assert.is_number(y, out)
    assert.is_true(d:wait_out('"pid":' .. y .. '[,}]', 5), "exec of " .. y .. " unseen:" .. dump(d))
    H.run("sleep 0.3")
    assert.are.equal(0, d:stop())
    local sleep_exe = resolved("/bin/sleep")
    local check, verdict = checker()

    -- sh -c 'exec sleep 0.6': the shell's exec, then sleep's, one pid.
    local xs = late_execs(d, x)
    assert.are.equal(2, #xs, "exec events of " .. x .. dump(d))
    check(xs[2].exe == sleep_exe, "sleep's own exec event: exe " .. xs[2].exe)
    check(xs[1].exe ~= sleep_exe, "the shell's exec event was given sleep's exe")
    check(xs[1].argv == nil or xs[1].argv[1] == "sh",
      "the shell's exec event was given the argv {" .. table.concat(xs[1].argv or {}, ",") .. "}")
    check(xs[1].comm ~= "sleep", "the shell's exec event was given sleep's comm")

    -- setpriv (as root) -> setresuid(65534) -> exec sleep.
    local ys = late_execs(d, y)
    assert.are.equal(2, #ys, "exec events of " .. y .. dump(d))
    check(ys[2].exe == sleep_exe and ys[2].uid == "65534", "sleep's own exec event: " .. ys[2].msg)
    check(ys[1].exe ~= sleep_exe, "setpriv's exec event was given sleep's exe")
    check(ys[1].uid ~= "65534", "setpriv's exec event (run as root) was given uid 65534, taken later")
    local uids = find(d, "lateuid ", y)
    assert.are.equal(1, #uids, dump(d))
    local u = kv(uids[1].msg)
    check(u.ruid == "65534", "uid event ruid " .. u.ruid)
    check(u.prev_ruid == "0", "uid event prev_ruid " .. u.prev_ruid)
    check(u.exe ~= sleep_exe, "the uid event (setresuid by setpriv) was given sleep's exe")
    verdict(d)
  end)
end)
