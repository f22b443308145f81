-- protect{} against a local user (root only): an entry names root-owned
-- executables by inode (src/identity.c), checked where the signal is sent
-- (src/api.c) on the target's /proc/PID/exe once the process is pinned.
-- The attacks: a miner named like a protected program (the README's
-- "*/systemd"), and a protected path bind-mounted over in a mount
-- namespace of the attacker's, are killed; a protected daemon whose binary
-- is upgraded on disk while it runs (exe " (deleted)") stays protected, as
-- does the upgraded binary started afterwards.
--
-- Every rule matches only files in this spec's own temp directory (and
-- only an exe it could read), so no other process on the machine is
-- touched. The attacker's files belong to
-- nobody and run as nobody.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end
local SLOW = H.build:find("asan", 1, true) and 3 or 1

local function lit(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

local function sh_ok(cmd)
  local _, code = H.run(cmd .. " >/dev/null 2>&1")
  assert(code == 0, "failed: " .. cmd)
end

-- Is pid alive (not a zombie)?
local function alive(pid)
  local state = H.read("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

local function exe_of(pid) return (H.run("readlink /proc/" .. pid .. "/exe 2>/dev/null"):gsub("\n$", "")) end

-- A handler that, on the exec of TRIGGER-PID (a hard link to a copy of
-- sleep, alive long enough for its exe to be read), kills PID: kill(pid)
-- from a handler goes through the same check as kill() in an action list,
-- without a rule on exe matching the protected file itself.
local TRIGGER_RULE = [[
local PREFIX = %q
on("exec", function(e)
  local exe = e.exe
  if type(exe) == "string" and exe:sub(1, #PREFIX) == PREFIX then
    local pid = tonumber(exe:sub(#PREFIX + 1))
    local ok, err = kill(pid)
    log("info", ("trigger %%s -> %%s %%s"):format(pid, tostring(ok), tostring(err)))
  end
end)
]]

describe("protect{} by identity (root)", function()
  local s

  before_each(function()
    if not is_root then return end
    s = H.session()
    sh_ok("chmod 755 " .. H.q(s.dir)) -- nobody runs files below it
  end)

  after_each(function()
    if s then s:cleanup() end
    s = nil
  end)

  -- Start d on rules; wait until it handles events.
  local function start(rules)
    local d = s:start { args = { "-o", "json", "--duration", "60", s:rules("rules.lua", H.EXEC_LOGGER .. rules) },
      timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    return d
  end

  local function trigger_prefix()
    sh_ok(("cp /bin/sleep %s && chmod 755 %s"):format(H.q(s:path("trigger")), H.q(s:path("trigger"))))
    return s:path("trigger-")
  end

  -- Have the handler kill pid (see TRIGGER_RULE).
  local function trigger(pid)
    local link = s:path("trigger-" .. pid)
    sh_ok(("ln -f %s %s && %s 0.3"):format(H.q(s:path("trigger")), H.q(link), H.q(link)))
  end

  -- A copy of /bin/sleep that belongs to nobody: the attacker's own file.
  local function attacker_copy(dir, name)
    sh_ok(("mkdir -p %s && cp /bin/sleep %s/%s && chown -R nobody:nogroup %s && chmod 755 %s/%s"):format(
      H.q(dir), H.q(dir), name, H.q(dir), H.q(dir), name))
    return dir .. "/" .. name
  end

  it_root("kills a user's ~/.cache/systemd despite protect { \"*/systemd\" }", function()
    local home = s:path("home-eve")
    local fake = attacker_copy(home .. "/.cache", "systemd")
    sh_ok("chown nobody:nogroup " .. H.q(home))
    local d = start(([[
protect { "/usr/sbin/sshd", "*/systemd" }
rule { name = "miner", on = "exec", match = { exe = %q }, when = function(e) return e.exe ~= nil end,
  action = { kill(), alert "miner {pid}" } }
]]):format(s.dir .. "/*/systemd"))
    local out = s:sh(("setpriv --reuid=nobody --regid=nogroup --clear-groups %s 5; echo \"status=$?\""):format(
      H.q(fake)))
    assert.are.equal("137", out:match("status=(%d+)"), "the fake systemd was not killed:\n" .. d:out():sub(-3000))
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    assert.are.equal(0, #H.lines_matching(d:out(), "refused: protected"), d:out():sub(-2000))
    assert.are.equal(1, #H.lines_matching(d:out(), '"msg":"miner %d+ %[killed%]"'), d:out():sub(-2000))
    -- the load says what such a glob covers
    assert.are.equal(1, #H.lines_with(d:err(), "protect: '*/systemd' starts with '*'"), d:err())
  end)

  it_root("kills a process whose exe is a protected path only in the attacker's mount namespace", function()
    local real = s:path("sbin-daemon")
    sh_ok(("cp /bin/sleep %s && chmod 755 %s"):format(H.q(real), H.q(real)))
    local fake = attacker_copy(s:path("eve"), "payload")
    local d = start(("protect { %q }\n"):format(real) .. TRIGGER_RULE:format(trigger_prefix()))
    -- In a mount namespace of its own, the attacker's file is bind-mounted
    -- over the protected path: /proc/PID/exe reads as that path.
    local pid = tonumber(s:sh(("unshare -m --propagation private sh -c %s >/dev/null 2>&1 & echo $!"):format(
      H.q(("mount --bind %s %s && exec setpriv --reuid=nobody --regid=nogroup --clear-groups %s 30"):format(
        H.q(fake), H.q(real), H.q(real))))):match("%d+"))
    assert(pid, "no attacker pid")
    local named = false
    for _ = 1, 50 do
      named = exe_of(pid) == real
      if named then break end
      H.run("sleep 0.05")
    end
    assert.is_true(named, "the attacker's process does not show the protected path: " .. exe_of(pid))
    trigger(pid)
    assert.is_true(d:wait_out("trigger " .. pid .. " -> ", 5 * SLOW), d:out():sub(-2000))
    H.run("sleep 0.2")
    local was_alive = alive(pid)
    if was_alive then os.execute("kill -KILL " .. pid) end
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    assert.is_false(was_alive, "the process in the other mount namespace was protected:\n" .. d:out():sub(-2000))
    assert.are.equal(1, #H.lines_matching(d:out(), '"msg":"trigger ' .. pid .. ' %-> true nil"'))
  end)

  it_root("keeps protecting a daemon whose binary was upgraded on disk, before or after the load", function()
    local bin = s:path("daemon")
    local function install() -- the package manager's upgrade: a new file renamed over the old one
      sh_ok(("cp /bin/sleep %s.new && chmod 755 %s.new && mv -f %s.new %s"):format(H.q(bin), H.q(bin), H.q(bin),
        H.q(bin)))
    end
    local function run(path)
      return assert(tonumber(s:sh(H.q(path) .. " 30 >/dev/null 2>&1 & echo $!"):match("%d+")))
    end
    local plain = s:path("plain")
    sh_ok(("cp /bin/sleep %s && chmod 755 %s"):format(H.q(plain), H.q(plain)))
    install()
    local before = run(bin) -- running before the load, upgraded before it too: seen " (deleted)" only
    install()
    local d = start(("protect { %q }\n"):format(bin) .. TRIGGER_RULE:format(trigger_prefix()))
    local loaded = run(bin) -- the file resolved at load, upgraded since
    install()
    local after = run(bin) -- the upgraded binary, installed after the load
    local other = run(plain)
    H.run("sleep 0.2")
    assert.are.equal(bin .. " (deleted)", exe_of(before))
    assert.are.equal(bin .. " (deleted)", exe_of(loaded))
    assert.are.equal(bin, exe_of(after))
    local pids = { before = before, loaded = loaded, after = after, other = other }
    for _, name in ipairs { "before", "loaded", "after", "other" } do
      trigger(pids[name])
      assert.is_true(d:wait_out("trigger " .. pids[name] .. " -> ", 5 * SLOW), "no kill of " .. name .. ":\n"
        .. d:out():sub(-2000))
    end
    H.run("sleep 0.2")
    local state = {}
    for name, pid in pairs(pids) do state[name] = alive(pid) end
    for _, pid in pairs(pids) do os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local out = d:out()
    for _, name in ipairs { "before", "loaded" } do
      assert.is_true(state[name], ("the %s process lost its protection with its binary upgraded:\n%s"):format(name,
        out:sub(-2000)))
      assert.are.equal(1, #H.lines_matching(out, '"msg":"trigger ' .. pids[name] .. ' %-> nil refused: protected %('
        .. lit(bin) .. ' %(deleted%)%)"'), out:sub(-2000))
    end
    assert.is_true(state.after, "the upgraded binary, installed after the load, is not protected")
    assert.are.equal(1, #H.lines_matching(out, '"msg":"trigger ' .. after .. ' %-> nil refused: protected'))
    assert.is_false(state.other, "the control process was not killed: the trigger does not work")
  end)
end)
