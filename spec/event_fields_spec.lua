-- event_fields_spec.lua: the lazy accessor of procwarden.event (procwarden-rules(5),
-- "Event table" and the process fields table): unknown names are errors,
-- kernel fields a type lacks are nil, recorded (replay) tables never read
-- the live /proc, live tables read this very busted process, derived fields,
-- capabilities, read-only tables, and the bounded /proc readers of
-- procwarden.core on a process that is gone. No root needed.
--
-- The runtime is loaded around an empty `procwarden.host` (no process
-- table, no hashing): every process field then comes from the live /proc,
-- or from the table itself; the process context specs lend it a ctx_fill.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath

local core = require "procwarden.core"
local D = require "helpers.daemon"

local host = {} -- the specs below lend it a ctx_fill for a while
local event, container = D.load_runtime(host, { "procwarden.event", "procwarden.container" })

-- ---- helpers ---------------------------------------------------------------

local read = D.read

local function sh(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return (out:gsub("\n$", ""))
end

-- /proc/PID/stat fields after the comm: [3] state, [4] ppid ... [22] starttime.
local function stat_fields(pid)
  local text = assert(read("/proc/" .. pid .. "/stat"))
  local rest = text:match("^.*%)%s(.*)$")
  local f, i = {}, 3
  for w in rest:gmatch("%S+") do
    f[i] = w
    i = i + 1
  end
  return f
end

local function status_line(pid, key)
  local text = assert(read("/proc/" .. pid .. "/status"))
  return text:match("\n" .. key .. ":%s*([^\n]*)")
end

local MY_PID = math.tointeger(tonumber(assert(read("/proc/self/stat")):match("^(%d+)")))

-- The pid of a process that has exited and been reaped (and not reused).
local function gone_pid()
  for _ = 1, 10 do
    local pid = math.tointeger(tonumber(sh("sh -c 'echo $$'")))
    if pid and read("/proc/" .. pid .. "/stat") == nil then return pid end
  end
  error("could not find a pid that stays free")
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- Start `sleep 30` as a direct child of this process (popen: sh execs it,
-- so the shell's pid is the sleep's pid). Returns pid and a function that
-- kills and reaps it.
local function start_sleep()
  local h = assert(io.popen("echo $$; exec sleep 30", "r"))
  local pid = math.tointeger(tonumber(h:read("l")))
  assert(pid, "no pid from the sleep")
  for _ = 1, 200 do -- until the exec is done
    if (read("/proc/" .. pid .. "/comm") or ""):match("^sleep") then break end
    sh("sleep 0.01")
  end
  local stopped = false
  return pid, function()
    if stopped then return end
    stopped = true
    os.execute("kill -KILL " .. pid .. " 2>/dev/null")
    h:close() -- waits for it: reaped, /proc/PID is gone
  end
end

-- ---- unknown names and absent kernel fields ------------------------------

describe("unknown field names", function()
  local gone
  setup(function() gone = gone_pid() end)

  local function tables()
    return {
      live = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID },
      gone = event.wrap { type = "exec", pid = gone, tgid = gone },
      recorded = event.recorded { type = "exec", pid = 4242, tgid = 4242 },
      process = event.process(MY_PID),
    }
  end

  it("raise \"unknown event field 'x'\" on every kind of table", function()
    for kind, e in pairs(tables()) do
      for _, name in ipairs { "x", "exee", "parent_exe", "Exe", "argc", "container", "valid_" } do
        local ok, err = pcall(function() return e[name] end)
        assert.is_false(ok, kind .. ": reading '" .. name .. "' did not raise")
        assert.is_truthy(tostring(err):find("unknown event field '" .. name .. "'", 1, true),
          kind .. ": " .. tostring(err))
      end
    end
  end)

  it("the error names the caller's line (the rule), not event.lua", function()
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID }
    local ok, err = pcall(function() return e.nosuchfield end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("event_fields_spec.lua:%d+: unknown event field 'nosuchfield'"),
      tostring(err))
  end)

  it("dotted paths are not field names of the table itself", function()
    local e = event.recorded { type = "exec", pid = 4242, tgid = 4242 }
    local ok, err = pcall(function() return e["parent.exe"] end)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("unknown event field 'parent.exe'", 1, true), tostring(err))
  end)

  it("names starting with '_' are private: nil, not an error", function()
    local e = event.recorded { type = "exec", pid = 4242, tgid = 4242 }
    assert.is_nil(e._nothing)
  end)
end)

describe("kernel fields a type lacks", function()
  -- Kernel-only names (procwarden-rules(5) EVENT TABLE), none of them a process field.
  local KERNEL_ONLY = {
    "parent_pid", "parent_tgid", "child_pid", "child_tgid", "exit_code", "exit_signal",
    "exit_status", "term_signal", "core_dumped", "ruid", "rgid", "tracer_pid", "tracer_tgid", "lost",
  }

  it("are nil on an exec event, not errors (live, gone and recorded)", function()
    local gone = gone_pid()
    for _, e in ipairs {
      event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID },
      event.wrap { type = "exec", pid = gone, tgid = gone },
      event.recorded { type = "exec", pid = 4242, tgid = 4242 },
    } do
      for _, name in ipairs(KERNEL_ONLY) do
        local ok, v = pcall(function() return e[name] end)
        assert.is_true(ok, name .. ": " .. tostring(v))
        assert.is_nil(v, name)
      end
    end
  end)

  it("term_signal is nil on a normal exit, exit_status nil on a killed one", function()
    local gone = gone_pid()
    local exited = event.wrap { type = "exit", pid = gone, tgid = gone, exit_code = 256, exit_status = 1,
      exit_signal = 17, core_dumped = false, parent_pid = 1, parent_tgid = 1 }
    assert.is_nil(exited.term_signal)
    assert.are.equal(1, exited.exit_status)
    local killed = event.wrap { type = "exit", pid = gone, tgid = gone, exit_code = 9, term_signal = 9,
      exit_signal = 17, core_dumped = false, parent_pid = 1, parent_tgid = 1 }
    assert.is_nil(killed.exit_status)
    assert.are.equal(9, killed.term_signal)
  end)

  it("every kernel field name is known to event.is_field", function()
    for _, name in ipairs(KERNEL_ONLY) do assert.is_true(event.is_field(name), name) end
    for _, name in ipairs { "type", "pid", "tgid", "thread", "cpu", "ktime_ns", "time", "startup",
      "comm", "euid", "egid" } do
      assert.is_true(event.is_field(name), name)
    end
    assert.is_false(event.is_field("nosuchfield"))
  end)

  it("every documented process field is a field", function()
    for _, name in ipairs {
      "pid", "ppid", "start_time", "exe", "comm", "cwd", "argv", "args", "cmdline", "argv_truncated",
      "uid", "euid", "gid", "egid", "user", "euser", "loginuid", "login_user",
      "prev_ruid", "prev_euid", "prev_rgid", "prev_egid", "pgid", "sid", "tty",
      "stdin", "stdout", "stderr", "env", "env_truncated", "caps", "cgroup", "container_id", "ns_pid",
      "parent", "tracer", "ancestors", "sha256", "valid",
      "exe_uid", "exe_gid", "exe_mode", "exe_fs", "exe_error",
    } do
      assert.is_true(event.is_field(name), name)
    end
  end)
end)

-- ---- live values: this busted process ------------------------------------

describe("a live table (event.wrap of this process) reads /proc", function()
  local e, st
  before_each(function()
    e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID, thread = false, startup = false }
    st = stat_fields(MY_PID)
  end)

  it("is valid", function()
    assert.is_true(e.valid)
  end)

  it("exe is this interpreter's path", function()
    local want = sh("readlink /proc/" .. MY_PID .. "/exe")
    assert.are.equal(want, e.exe)
    assert.is_truthy(e.exe:match("/lua[%w%.%-]*$") or e.exe:match("/busted$"), e.exe)
  end)

  it("argv is /proc/PID/cmdline split at NULs; args and cmdline derive from it", function()
    local raw = assert(read("/proc/" .. MY_PID .. "/cmdline"))
    local want = {}
    for arg in raw:gmatch("([^%z]*)%z") do want[#want + 1] = arg end
    assert.are.same(want, e.argv)
    assert.is_false(e.argv_truncated)
    assert.are.same(table.move(want, 2, #want, 1, {}), e.args)
    assert.are.equal(table.concat(want, " "), e.cmdline)
  end)

  it("ids and names are the current user's", function()
    assert.are.equal(tonumber(sh("id -ru")), e.uid)
    assert.are.equal(tonumber(sh("id -u")), e.euid)
    assert.are.equal(tonumber(sh("id -rg")), e.gid)
    assert.are.equal(tonumber(sh("id -g")), e.egid)
    assert.are.equal(sh("id -run"), e.user)
    assert.are.equal(sh("id -un"), e.euser)
  end)

  it("comm, ppid, pgid, sid and start_time are those of /proc/PID/stat", function()
    assert.are.equal((assert(read("/proc/" .. MY_PID .. "/comm")):gsub("\n$", "")), e.comm)
    assert.are.equal(tonumber(st[4]), e.ppid)
    assert.are.equal(tonumber(st[5]), e.pgid)
    assert.are.equal(tonumber(st[6]), e.sid)
    assert.are.equal(tonumber(st[22]), e.start_time)
    assert.are.equal("integer", math.type(e.start_time))
  end)

  it("tty is nil without a controlling terminal, a name otherwise", function()
    if tonumber(st[7]) == 0 then
      assert.is_nil(e.tty)
    else
      assert.is_string(e.tty)
      assert.is_truthy(e.tty:match("^%a"), e.tty)
    end
  end)

  it("cwd and stdin/stdout/stderr are what readlink shows", function()
    assert.are.equal(sh("readlink /proc/" .. MY_PID .. "/cwd"), e.cwd)
    for fd, name in pairs { [0] = "stdin", [1] = "stdout", [2] = "stderr" } do
      local want = sh("readlink /proc/" .. MY_PID .. "/fd/" .. fd .. " 2>/dev/null")
      if want == "" then want = nil end
      assert.are.equal(want, e[name], name)
    end
  end)

  it("env is the environment as a table", function()
    assert.is_table(e.env)
    assert.are.equal(os.getenv("PATH"), e.env.PATH)
    if os.getenv("HOME") then assert.are.equal(os.getenv("HOME"), e.env.HOME) end
    assert.is_false(e.env_truncated)
  end)

  it("caps is the effective set from /proc/PID/status", function()
    local want = event.caps_from_hex(status_line(MY_PID, "CapEff"))
    assert.are.same(want, e.caps)
    if sh("id -u") == "0" then assert.is_true(e.caps.CAP_NET_ADMIN ~= nil or next(want) == nil) end
  end)

  it("cgroup is the unified (0::) path, container_id follows from it", function()
    local text = assert(read("/proc/" .. MY_PID .. "/cgroup"))
    local want = text:match("^0::([^\n]*)") or text:match("\n0::([^\n]*)") or text:match("^[^:]*:[^:]*:([^\n]*)")
    assert.are.equal(want, e.cgroup)
    assert.are.equal(container.id(want), e.container_id)
  end)

  it("ns_pid is the pid in its own pid namespace", function()
    local nspid = status_line(MY_PID, "NSpid")
    assert.are.equal(tonumber(nspid:match("(%d+)%s*$")), e.ns_pid)
  end)

  it("loginuid is nil when unset, login_user follows it", function()
    local raw = tonumber(read("/proc/" .. MY_PID .. "/loginuid") or "")
    if raw == nil or raw == 4294967295 then
      assert.is_nil(e.loginuid)
      assert.is_nil(e.login_user)
    else
      assert.are.equal(raw, e.loginuid)
      assert.is_string(e.login_user)
    end
  end)

  it("tracer is nil when nobody traces it", function()
    if tonumber(status_line(MY_PID, "TracerPid")) == 0 then
      assert.is_nil(e.tracer)
    end
  end)

  it("prev_* ids are nil outside uid/gid events (never guessed)", function()
    for _, name in ipairs { "prev_ruid", "prev_euid", "prev_rgid", "prev_egid" } do
      assert.is_nil(e[name], name)
    end
  end)

  it("sha256 without a hashing host is nil, not an error", function()
    assert.is_nil(e.sha256)
  end)

  it("parent is a process object for the ppid; ancestors go up nearest first", function()
    local parent = e.parent
    assert.is_table(parent)
    assert.are.equal(tonumber(st[4]), parent.pid)
    local want_exe = sh("readlink /proc/" .. st[4] .. "/exe 2>/dev/null")
    if want_exe ~= "" then assert.are.equal(want_exe, parent.exe) end
    assert.is_true(parent.valid)
    assert.is_true(parent.start_time <= e.start_time)
    local anc = e.ancestors
    assert.is_table(anc)
    assert.is_true(#anc >= 1)
    assert.are.equal(parent.pid, anc[1].pid)
    for i = 2, #anc do
      assert.are.equal(anc[i - 1].ppid, anc[i].pid, "ancestor " .. i)
    end
    -- The chain ends at a process without a parent (ppid 0), not halfway.
    local top = anc[#anc]
    assert.is_true(top.ppid == 0 or top.pid == 1, "ends at pid " .. tostring(top.pid))
  end)

  it("values are read once and cached in the table", function()
    local argv = e.argv
    assert.is_true(rawequal(argv, e.argv))
    assert.is_true(rawequal(e.parent, e.parent))
    assert.is_true(rawequal(e.env, e.env))
  end)

  it("a process object (event.process) has the same fields", function()
    local p = event.process(MY_PID)
    assert.are.equal(e.exe, p.exe)
    assert.are.same(e.argv, p.argv)
    assert.are.equal(e.start_time, p.start_time)
    assert.are.equal(e.ppid, p.ppid)
    assert.is_true(p.valid)
    assert.is_nil(event.process(0))
    assert.is_nil(event.process(-1))
    assert.is_nil(event.process("1"))
  end)
end)

describe("a live table whose pid now belongs to another process", function()
  it("(start_time differs) is not valid and reads nothing live", function()
    local st = stat_fields(MY_PID)
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID, start_time = tonumber(st[22]) + 1 }
    assert.is_false(e.valid)
    for _, name in ipairs { "exe", "argv", "cwd", "env", "caps", "stdin", "uid", "cgroup", "comm", "ppid" } do
      assert.is_nil(e[name], name .. " read from the process now holding the pid")
    end
  end)
end)

describe("the exit event of a process", function()
  -- The kernel sends it once the process is a zombie: a live process with
  -- its pid is another one, and nothing may be read from it.
  it("is never valid, even while a live process has its pid", function()
    local e = event.wrap { type = "exit", pid = MY_PID, tgid = MY_PID, thread = false }
    assert.is_false(e.valid)
    assert.is_nil(e.cwd)
    assert.is_nil(e.env)
  end)

  it("but a thread's exit leaves its process valid", function()
    local e = event.wrap { type = "exit", pid = MY_PID + 1, tgid = MY_PID, thread = true }
    assert.is_true(e.valid)
  end)
end)

describe("valid is about now, not about the first time it was read", function()
  it("an event table turns invalid once its process is gone", function()
    local pid, stop = start_sleep()
    finally(stop)
    local e = event.wrap { type = "exec", pid = pid, tgid = pid }
    assert.is_true(e.valid)
    assert.is_truthy(e.exe:match("/sleep$"), e.exe)
    stop()
    assert.is_nil(read("/proc/" .. pid .. "/stat"), "the sleep was not reaped")
    assert.is_nil(e.cwd)
    assert.is_truthy(e.exe:match("/sleep$"), "exe, once read, stays")
    assert.is_false(e.valid, "valid stayed true after the process was gone")
  end)

  it("a process object turns invalid once its process is gone", function()
    local pid, stop = start_sleep()
    finally(stop)
    local p = event.process(pid)
    assert.is_true(p.valid)
    stop()
    assert.is_false(event.process(pid).valid)
    assert.is_nil(p.cwd)
    assert.is_false(p.valid, "valid stayed true after the process was gone")
  end)
end)

describe("a zombie (exited, not reaped yet)", function()
  it("has no argv, args, cmdline or exe: unknown is nil, not an empty list", function()
    -- sh prints its pid and its child's, then execs a sleep that never reaps the child.
    -- The child outlives the shell's own turn (0.2 s): a shell may reap a child
    -- that exited before it execs.
    local h = assert(io.popen("echo $$; /bin/sleep 0.2 & echo $!; exec sleep 5", "r"))
    local sleeper = math.tointeger(tonumber(h:read("l")))
    local z = math.tointeger(tonumber(h:read("l")))
    finally(function()
      os.execute("kill -KILL " .. sleeper .. " 2>/dev/null")
      h:close()
    end)
    for _ = 1, 200 do -- until it is a zombie
      if stat_fields(z)[3] == "Z" then break end
      sh("sleep 0.01")
    end
    assert.are.equal("Z", stat_fields(z)[3])
    local e = event.wrap { type = "exec", pid = z, tgid = z }
    assert.is_nil(e.exe)
    assert.is_nil(e.argv)
    assert.is_nil(e.args)
    assert.is_nil(e.cmdline)
    assert.is_nil(e.cwd)
  end)
end)

-- ---- recorded tables -------------------------------------------------------

describe("a recorded (replay) table never reads the live /proc", function()
  it("even for the pid of this very process: every process field is nil, valid false", function()
    local e = event.recorded { type = "exec", pid = MY_PID, tgid = MY_PID, startup = false }
    assert.is_false(e.valid)
    assert.is_nil(e.exe)
    for _, name in ipairs(sorted_keys(event.fields)) do
      if name ~= "valid" then
        local ok, v = pcall(function() return e[name] end)
        assert.is_true(ok, name .. ": " .. tostring(v))
        assert.is_nil(v, name .. " was read from the live system")
      end
    end
  end)

  it("uses what the line has, and derives args, cmdline, names and container_id from it", function()
    local id = ("ab"):rep(32)
    local e = event.recorded { type = "exec", pid = MY_PID, tgid = MY_PID,
      exe = "/usr/bin/xmrig", argv = { "xmrig", "-o", "pool:3333", "" }, uid = 0, euid = 0,
      loginuid = 0, cgroup = "/system.slice/docker-" .. id .. ".scope", start_time = 1 }
    assert.are.equal("/usr/bin/xmrig", e.exe)
    assert.are.same({ "-o", "pool:3333", "" }, e.args)
    assert.are.equal("xmrig -o pool:3333 ", e.cmdline)
    assert.are.equal("root", e.user)
    assert.are.equal("root", e.euser)
    assert.are.equal("root", e.login_user)
    assert.are.equal(id, e.container_id)
    assert.are.equal(1, e.start_time)
    assert.is_false(e.valid)
    assert.is_nil(e.cwd)
    assert.is_nil(e.parent)
    assert.is_nil(e.ancestors)
    assert.is_nil(e.comm)
  end)
end)

-- ---- derived fields --------------------------------------------------------

describe("derived fields", function()
  local gone
  setup(function() gone = gone_pid() end)

  local function ev(t)
    t.type, t.pid, t.tgid = t.type or "exec", gone, gone
    return event.wrap(t)
  end

  it("args is argv without argv[0]; cmdline joins argv with single spaces", function()
    local e = ev { argv = { "/bin/true", "a b", "", "c" } }
    assert.are.same({ "a b", "", "c" }, e.args)
    assert.are.equal("/bin/true a b  c", e.cmdline)
    e = ev { argv = { "/bin/true" } }
    assert.are.same({}, e.args)
    assert.are.equal("/bin/true", e.cmdline)
  end)

  it("args and cmdline are nil when argv is", function()
    local e = ev {}
    assert.is_nil(e.argv)
    assert.is_nil(e.args)
    assert.is_nil(e.cmdline)
  end)

  it("user and euser come from uid and euid", function()
    local e = ev { uid = 0, euid = 65534 }
    assert.are.equal("root", e.user)
    local nobody = sh("getent passwd 65534 | cut -d: -f1")
    if nobody ~= "" then assert.are.equal(nobody, e.euser) end
  end)

  it("a uid without a passwd entry is named by its number", function()
    local uid = 3999999
    assert.are.equal("", sh("getent passwd " .. uid .. " || true"))
    local e = ev { uid = uid }
    assert.are.equal(tostring(uid), e.user)
  end)

  it("user is nil when uid is", function()
    assert.is_nil(ev({}).user)
    assert.is_nil(event.user_name(nil))
  end)

  it("login_user comes from loginuid", function()
    local e = ev { loginuid = 0 }
    assert.are.equal("root", e.login_user)
  end)

  it("container_id comes from cgroup", function()
    local id = ("0123456789abcdef"):rep(4)
    assert.are.equal(id, ev({ cgroup = "/docker/" .. id }).container_id)
    assert.is_nil(ev({ cgroup = "/system.slice/sshd.service" }).container_id)
  end)
end)

-- ---- capabilities ----------------------------------------------------------

describe("caps_from_hex", function()
  local function names(set)
    local list = sorted_keys(set)
    return table.concat(list, " ")
  end

  it("no capabilities: an empty set", function()
    assert.are.same({}, event.caps_from_hex("0000000000000000"))
  end)

  it("single bits name the right capability", function()
    assert.are.same({ CAP_CHOWN = true }, event.caps_from_hex("0000000000000001"))
    assert.are.same({ CAP_NET_ADMIN = true }, event.caps_from_hex("0000000000001000"))
    assert.are.same({ CAP_SYS_ADMIN = true }, event.caps_from_hex("0000000000200000"))
    assert.are.same({ CAP_PERFMON = true }, event.caps_from_hex("0000004000000000"))
    assert.are.same({ CAP_BPF = true }, event.caps_from_hex("0000008000000000"))
    assert.are.same({ CAP_CHECKPOINT_RESTORE = true }, event.caps_from_hex("0000010000000000"))
  end)

  it("docker's default set (CapEff 00000000a80425fb)", function()
    assert.are.equal(table.concat({
      "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
      "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
      "CAP_SETUID", "CAP_SYS_CHROOT" }, " "), names(event.caps_from_hex("00000000a80425fb")))
  end)

  it("a full root set (000001ffffffffff) has all 41 names", function()
    local set = event.caps_from_hex("000001ffffffffff")
    assert.are.equal(41, #sorted_keys(set))
    for _, name in ipairs(event.CAP_NAMES) do assert.is_true(set[name], name) end
  end)

  it("bits above the known ones are ignored, even the sign bit", function()
    local set = event.caps_from_hex("ffffffffffffffff")
    assert.are.equal(41, #sorted_keys(set))
    assert.are.same({}, event.caps_from_hex("fffffe0000000000"))
  end)

  it("not hex: nil", function()
    assert.is_nil(event.caps_from_hex("zz"))
    assert.is_nil(event.caps_from_hex(""))
  end)
end)

-- ---- env: how much of it, and what was cut ---------------------------------

describe("env", function()
  local dir, helper
  setup(function()
    dir = sh("mktemp -d /tmp/pwenv.XXXXXX")
    assert.is_truthy(dir:match("^/tmp/pwenv%."), dir)
    -- execs sleep with exactly the environment entries given as arguments
    -- (so an entry may lack its '=', as execve allows)
    local src = dir .. "/envexec.c"
    local f = assert(io.open(src, "w"))
    f:write([[
#include <unistd.h>
int main(int argc, char **argv)
{
	char *args[] = {"sleep", "30", 0};
	(void)argc;
	execve("/bin/sleep", args, argv + 1);
	return 127;
}
]])
    f:close()
    helper = dir .. "/envexec"
    assert.are.equal("", sh("cc -o " .. helper .. " " .. src .. " 2>&1"))
  end)
  teardown(function()
    if dir then os.execute("rm -rf " .. dir) end
  end)

  -- A sleep whose environment is the entries the shell words give (each
  -- "$Pn" is n bytes of 'a'). Returns its event table and a stop function.
  local function process(words)
    local h = assert(io.popen("P20000=$(head -c 20000 /dev/zero | tr '\\0' a); "
      .. "P100000=$(head -c 100000 /dev/zero | tr '\\0' a); "
      .. "P120000=$(head -c 120000 /dev/zero | tr '\\0' a); "
      .. "echo $$; exec " .. helper .. " " .. words, "r"))
    local pid = math.tointeger(tonumber(h:read("l")))
    assert(pid, "no pid")
    for _ = 1, 200 do
      if (read("/proc/" .. pid .. "/comm") or ""):match("^sleep") then break end
      sh("sleep 0.01")
    end
    return event.wrap { type = "exec", pid = pid, tgid = pid }, function()
      os.execute("kill -KILL " .. pid .. " 2>/dev/null")
      h:close()
    end
  end

  it("an entry after 20 KiB of padding is seen: the first 128 KiB are read", function()
    assert.are.equal(128 * 1024, core.environ_cap)
    local e, stop = process([["PAD=$P20000" "LD_PRELOAD=/tmp/evil.so"]])
    local env, truncated = e.env, e.env_truncated
    stop()
    assert.are.equal(20000, #env.PAD)
    assert.are.equal("/tmp/evil.so", env.LD_PRELOAD)
    assert.is_false(truncated)
  end)

  it("past the cap, env_truncated is true and the cut entry is kept as far as read", function()
    local e, stop = process([["A=$P100000" "B=$P100000" "LD_PRELOAD=/tmp/evil.so"]])
    local env, truncated = e.env, e.env_truncated
    stop()
    assert.is_true(truncated)
    assert.are.equal(100000, #env.A)
    assert.are.equal(core.environ_cap - #"A=" - 100000 - 1 - #"B=", #env.B)
    assert.is_nil(env.LD_PRELOAD)
  end)

  it("is parsed in linear time: an entry without '=' cannot stall the read", function()
    local e, stop = process([["$P120000" "LD_PRELOAD=/tmp/evil.so"]])
    local t0 = os.clock()
    local env = e.env
    local took = os.clock() - t0
    stop()
    assert.is_true(took < 0.1, ("reading env took %.3f s"):format(took))
    assert.are.equal("/tmp/evil.so", env.LD_PRELOAD)
    assert.is_false(e.env_truncated)
  end)

  it("parse_environ: NAME=value entries, the last of a name wins, nameless ones skipped", function()
    assert.are.same({ A = "1", B = "x=y", C = "", D = "2" },
      event.parse_environ("A=1\0B=x=y\0C=\0=nameless\0noequals\0D=1\0D=2"))
    assert.are.same({ A = "1" }, event.parse_environ("A=1\0"))
    assert.are.same({ A = "cut" }, event.parse_environ("A=cut"))
    assert.are.same({}, event.parse_environ(""))
    local t0 = os.clock()
    local env = event.parse_environ(("a\0"):rep(300000) .. ("b"):rep(300000) .. "\0X=1")
    assert.are.same({ X = "1" }, env)
    assert.is_true(os.clock() - t0 < 0.5, ("took %.3f s"):format(os.clock() - t0))
  end)

  it("env_truncated is nil where env is (a recorded line keeps its own)", function()
    assert.is_nil(event.recorded({ type = "exec", pid = MY_PID, tgid = MY_PID }).env_truncated)
    local r = event.recorded { type = "exec", pid = 4242, tgid = 4242, env = { A = "1" }, env_truncated = true }
    assert.is_true(r.env_truncated)
    assert.are.equal("1", r.env.A)
  end)
end)

-- ---- the executable's attributes ------------------------------------------

describe("exe_uid exe_gid exe_mode exe_fs exe_error", function()
  local NAMES = { "exe_uid", "exe_gid", "exe_mode", "exe_fs", "exe_error" }
  -- a host whose process context is a plain table copied into the event
  before_each(function()
    host.ctx_fill = function(ctx, t)
      for k, v in pairs(ctx) do rawset(t, k, v) end
    end
  end)
  after_each(function() host.ctx_fill = nil end)

  local function with_ctx(ctx)
    return event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID, startup = true, _ctx = ctx }
  end

  it("come from the captured context on exec events (start-up scan included)", function()
    local e = with_ctx { exe = "/usr/sbin/cron", exe_uid = 0, exe_gid = 0, exe_mode = 493, exe_fs = "ext4" }
    assert.are.equal(0, e.exe_uid)
    assert.are.equal(0, e.exe_gid)
    assert.are.equal(493, e.exe_mode)
    assert.are.equal("ext4", e.exe_fs)
    assert.is_nil(e.exe_error)
  end)

  it("an exe that could not be read: exe_error says why, nothing is read live instead", function()
    local e = with_ctx { exe_error = "ENAMETOOLONG", ppid = 1 }
    assert.are.equal("ENAMETOOLONG", e.exe_error)
    assert.is_nil(e.exe) -- this process is alive, but its exe is the context's to say
    for _, name in ipairs { "exe_uid", "exe_gid", "exe_mode", "exe_fs" } do assert.is_nil(e[name], name) end
  end)

  it("are nil when nothing captured them, never read from /proc", function()
    local live = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID }
    local ctx = with_ctx { exe = "/usr/bin/true" }
    for _, name in ipairs(NAMES) do
      assert.is_nil(live[name], name)
      assert.is_nil(ctx[name], name)
    end
    assert.is_string(live.exe)
  end)

  it("come from a recorded line that carries them", function()
    local r = event.recorded { type = "exec", pid = 4242, tgid = 4242, exe = "/mnt/x/miner", exe_uid = 1000,
      exe_gid = 100, exe_mode = 3565, exe_fs = "fuse.sshfs" }
    assert.are.equal(1000, r.exe_uid)
    assert.are.equal(100, r.exe_gid)
    assert.are.equal(3565, r.exe_mode)
    assert.are.equal("fuse.sshfs", r.exe_fs)
    assert.is_nil(r.exe_error)
    local long = event.recorded { type = "exec", pid = 4243, tgid = 4243, exe_error = "ENAMETOOLONG" }
    assert.are.equal("ENAMETOOLONG", long.exe_error)
    assert.is_nil(long.exe)
  end)

  it("rules match on them and templates show them", function()
    local testing = require "procwarden.testing"
    local p = testing.load_string([[
rule { name = "from-fuse", on = "exec", match = { exe_fs = "fuse*" }, action = alert "fuse exec {exe} on {exe_fs}" }
rule { name = "not-root-owned", on = "exec", match = { exe_uid = not_(0) }, action = alert "{exe} owned by {exe_uid}" }
rule { name = "unreadable", on = "exec", match = { exe_error = "*" }, action = alert "exe unreadable: {exe_error}" }
]])
    p:feed { type = "exec", pid = 10, startup = true, exe = "/usr/sbin/cron", exe_uid = 0, exe_fs = "ext4" }
    p:feed { type = "exec", pid = 11, exe = "/mnt/x/miner", exe_uid = 1000, exe_fs = "fuse.sshfs" }
    p:feed { type = "exec", pid = 12, exe_error = "ENAMETOOLONG", exe_uid = 1000 }
    local texts = {}
    for _, o in ipairs(p:outputs()) do texts[#texts + 1] = o.text end
    assert.are.same({ "fuse exec /mnt/x/miner on fuse.sshfs", "/mnt/x/miner owned by 1000", "- owned by 1000",
      "exe unreadable: ENAMETOOLONG" }, texts)
  end)
end)

-- ---- read-only -------------------------------------------------------------

describe("event tables are read-only", function()
  local function refuses(e, k, v)
    local ok, err = pcall(function() e[k] = v end)
    assert.is_false(ok, "assigning '" .. k .. "' was allowed")
    assert.is_truthy(tostring(err):find("read-only", 1, true), tostring(err))
  end

  it("a new key cannot be added", function()
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID }
    refuses(e, "newfield", 1)
    refuses(e, "exe", "/tmp/x") -- a lazy field not read yet
    assert.is_nil(rawget(e, "newfield"))
  end)

  it("a kernel field cannot be changed (a rule must not retarget another rule's kill)", function()
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID }
    refuses(e, "pid", 1)
    refuses(e, "type", "exit")
    assert.are.equal(MY_PID, e.pid)
    assert.are.equal("exec", e.type)
  end)

  it("a field already read (and cached) cannot be changed", function()
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID }
    local exe = e.exe
    refuses(e, "exe", "/usr/bin/innocent")
    assert.are.equal(exe, e.exe)
    local r = event.recorded { type = "exec", pid = 4242, tgid = 4242, exe = "/tmp/xmrig" }
    refuses(r, "exe", "/usr/bin/innocent")
    assert.are.equal("/tmp/xmrig", r.exe)
  end)

  it("process objects are read-only too", function()
    local p = event.process(MY_PID)
    refuses(p, "newfield", 1)
    refuses(p, "pid", 1)
  end)

  it("the metatable is protected", function()
    local e = event.wrap { type = "exec", pid = MY_PID, tgid = MY_PID }
    assert.are_not.equal(event.metatable, getmetatable(e))
    assert.has_error(function() setmetatable(e, nil) end)
  end)
end)

-- ---- procwarden.core readers on a gone process -------------------------------

describe("core.proc_* on a pid that is gone", function()
  local pid
  setup(function() pid = gone_pid() end)

  it("every reader returns nil and a message, never raises", function()
    local calls = {
      proc_exe = { pid }, proc_link = { pid, "cwd" }, proc_cmdline = { pid }, proc_comm = { pid },
      proc_status = { pid }, proc_stat = { pid }, proc_read = { pid, "cgroup" },
      proc_start_time = { pid },
    }
    for name, args in pairs(calls) do
      local ok, v, err = pcall(core[name], table.unpack(args))
      assert.is_true(ok, name .. " raised: " .. tostring(v))
      assert.is_nil(v, name)
      assert.is_string(err, name)
    end
  end)

  it("an event table for it reads nil everywhere, valid false", function()
    local e = event.wrap { type = "exit", pid = pid, tgid = pid, exit_code = 0, exit_status = 0 }
    assert.is_false(e.valid)
    for _, name in ipairs { "exe", "argv", "args", "cmdline", "comm", "cwd", "uid", "user", "env", "caps",
      "cgroup", "container_id", "ppid", "start_time", "stdin", "tty", "ns_pid", "parent", "tracer" } do
      local ok, v = pcall(function() return e[name] end)
      assert.is_true(ok, name .. ": " .. tostring(v))
      assert.is_nil(v, name)
    end
    local anc = e.ancestors
    assert.is_true(anc == nil or #anc == 0)
  end)

  it("a bad pid is an argument error", function()
    for _, bad in ipairs { 0, -1, 2 ^ 31 } do
      assert.has_error(function() core.proc_exe(bad) end)
    end
  end)
end)

describe("core.proc_* on this process", function()
  it("agree with /proc", function()
    assert.are.equal(sh("readlink /proc/" .. MY_PID .. "/exe"), core.proc_exe(MY_PID))
    local st = core.proc_stat(MY_PID)
    assert.are.equal(tonumber(stat_fields(MY_PID)[22]), st.start_time)
    assert.are.equal(st.start_time, core.proc_start_time(MY_PID))
    local status = core.proc_status(MY_PID)
    assert.are.equal(tonumber(sh("id -u")), status.euid)
    assert.is_truthy(status.cap_eff:match("^%x+$"), status.cap_eff)
    assert.has_error(function() core.proc_read(MY_PID, "mem") end)
    assert.has_error(function() core.proc_link(MY_PID, "../1/cwd") end)
  end)
end)
