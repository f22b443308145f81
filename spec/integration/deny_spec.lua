-- Pre-exec decisions, deny() (procwarden-rules(5) DENY, README "Pre-exec decisions"; issue 8),
-- against the real kernel: fanotify exec permission events answered by the
-- daemon's responder thread. Root only: as any other user every test here
-- is reported pending, never passed.
--
-- Helper programs are C sources in spec/integration/deny/, compiled once
-- into a temp dir with cc (nothing prebuilt):
--   raw.S        the raw victim: static, no libc, no interpreter; _start
--                creat()s the marker named by argv[1], then exits 0
--   driver.c     forks+execve()s a victim RUNS times (CONC at a time) with
--                HOGS spinning processes, reports errno counts and markers
--   memfdexec.c  copies a binary into a memfd and fexecve()s it
--
-- fanotify marks are machine-wide: a deny daemon judges every exec of the
-- host. So every rule here matches only this spec's own paths, tests hold
-- a machine-wide lock (one run of this spec at a time), and spinning rules
-- run as briefly as they can. The --deny-fail-closed test still denies any
-- exec of the host that falls in its short late windows (start-up, the
-- spin): other builds or tests running at that moment may see an EPERM.
--
-- PW_SPEC_SCALE (default 1) scales the storm sizes (200 raw-victim runs
-- per directory at 1); PW_SPEC_VERBOSE=1 prints the measured counts as TAP
-- comments on stderr.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

local SCALE = tonumber(os.getenv("PW_SPEC_SCALE") or "") or 1
local function scaled(n, min) return math.max(min or 1, math.floor(n * SCALE + 0.5)) end
local RUNS = scaled(200, 10)       -- raw victim runs per directory
local STORM = scaled(150, 20)      -- execs per storm loop in the SIGKILL test
local VERBOSE = os.getenv("PW_SPEC_VERBOSE")
local SPIN_DEADLINE_MS = 50         -- --deny-timeout for the spinning `when`
local SPIN = 'while true do local _ = string.rep("x", 4096) end' -- ended by the 250 ms budget
local SPIN_DEADLINE = tostring(SPIN_DEADLINE_MS)

local function note(fmt, ...)
  if VERBOSE then io.stderr:write("# deny_spec: ", fmt:format(...), "\n") end
end

-- Wait without starting any program (a daemon with --deny-fail-closed may
-- deny them): poll pred until true or secs of CPU time, spinning. True if
-- pred held.
local function lua_wait(pred, secs)
  local limit = os.clock() + secs
  repeat
    if pred() then return true end
    for _ = 1, 20000 do end
  until os.clock() >= limit
  return pred() and true or false
end

-- Every rules file logs exec events with the event, so Daemon:ready() can
-- probe (a "pid":N in stdout means the loop is running and deciding).
local EXEC_LOGGER = [[
on("exec", function(e) log("info", "exec pid={pid}", e) end)
]]

-- The rule of the issue, plus this spec's memfd name for the fallback test.
local NO_RAW = [[
rule { name = "no-raw", on = "exec",
  match = { exe = { "/tmp/pwdeny*/raw*", "/dev/shm/pwdeny*/raw*", "/memfd:pwdeny-evil*" } },
  action = { deny(), alert "denied {exe}" } }
]]

-- ---- the helper programs, built once ---------------------------------------

local tools -- { session, raw, driver, memfdexec }: paths in the session dir

local function build_tools()
  tools = tools or H.build_tools {
    raw = { "-nostdlib", "-static", "-no-pie", here .. "deny/raw.S" },
    driver = { "-O1", "-Wall", here .. "deny/driver.c" },
    memfdexec = { "-O1", "-Wall", here .. "deny/memfdexec.c" },
  }
  return tools
end

-- Run the driver: runs, concurrency, hogs, marker dir, victim. Returns the
-- parsed report (runs eperm ran other first_other markers hogs max_ms
-- total_ms) and the raw line.
local function drive(runs, conc, hogs, markers, victim)
  os.execute("mkdir -p " .. H.q(markers))
  local out, code = H.run(("timeout 60 %s %d %d %d %s %s 2>&1"):format(H.q(tools.driver), runs, conc, hogs,
    H.q(markers), H.q(victim)))
  assert.are.equal(0, code, "driver: " .. out)
  local r = {}
  for k, v in out:gmatch("([%w_]+)=(%-?[%d.]+)") do r[k] = tonumber(v) end
  assert.is_number(r.runs, "driver: " .. out)
  return r, (out:gsub("\n$", ""))
end

local function nproc()
  return tonumber((H.run("nproc"))) or 2
end

local function sha256(path)
  local out = H.run("sha256sum " .. H.q(path))
  return assert(out:match("^(%x+)"), "sha256sum " .. path .. ": " .. out)
end

local function copy(from, to, mode)
  assert(os.execute(("cp %s %s && chmod %s %s"):format(H.q(from), H.q(to), mode or "755", H.q(to))),
    "cp " .. from .. " " .. to)
end

-- Wait until the daemon is judging execs (fanotify up within 5 s).
local function ready(d) d:assert_ready(5) end

-- The daemon's stdout without the exec logger's lines (for messages).
local function out_of(d) return d:out_without('"msg":"exec pid=') end

local lines_matching = H.lines_matching

-- Escape a literal for a Lua pattern / for a grep -E regex (wait_out).
local function lit(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end
local function ere(s) return (s:gsub("[%^%$%(%)%.%[%]%*%+%?{}|\\]", "\\%0")) end

-- stdout lines of kind "action" saying `verb exec of EXE by pid`.
local function decision_lines(out, verb, exe)
  return lines_matching(out, '"kind":"action".*"msg":"' .. lit(verb .. " exec of " .. exe .. " by pid "))
end

describe("deny(): pre-exec decisions (root)", function()
  local s, vdirs

  -- A victim directory under /tmp and one under /dev/shm, both matched
  -- by NO_RAW's exe globs.
  local function victim_dirs()
    vdirs = {}
    for _, base in ipairs { "/tmp", "/dev/shm" } do
      local dir = H.run("mktemp -d " .. base .. "/pwdeny.XXXXXX"):gsub("%s+$", "")
      assert(dir:match("^" .. base .. "/pwdeny%."), "mktemp in " .. base .. " failed")
      vdirs[#vdirs + 1] = dir
    end
    return vdirs
  end

  before_each(function()
    if not is_root then return end
    build_tools()
    s = H.session()
    -- One run of this spec at a time on the machine: fanotify decisions
    -- are global, and NO_RAW's globs would judge another run's victims.
    assert.is_true(s:lock("procwarden-deny-spec", 100, 120), "could not take the deny spec lock")
  end)

  local mounts = {} -- mount points in the daemon's namespace to undo

  after_each(function()
    for _, m in ipairs(mounts) do os.execute("umount -l " .. H.q(m) .. " 2>/dev/null") end
    mounts = {}
    for _, dir in ipairs(vdirs or {}) do
      if dir:match("^/tmp/pwdeny%.") or dir:match("^/dev/shm/pwdeny%.") then
        os.execute("rm -rf " .. H.q(dir))
      end
    end
    vdirs = nil
    H.end_test()
    s = nil
  end)

  lazy_teardown(H.end_file)

  it_root("the raw static victim, run many times from /tmp and /dev/shm with every core busy: "
    .. "EPERM every time, no marker", function()
    local dirs = victim_dirs()
    local victims = {}
    for i, dir in ipairs(dirs) do
      victims[i] = dir .. "/raw"
      copy(tools.raw, victims[i])
      -- Control, before the daemon: the victim runs and leaves its marker.
      local r, line = drive(1, 1, 0, s:path("control" .. i), victims[i])
      assert.are.equal(1, r.ran, "the victim does not run without the daemon: " .. line)
      assert.are.equal(1, r.markers, "the victim left no marker without the daemon: " .. line)
    end

    local rules = s:rules("deny.lua", EXEC_LOGGER .. NO_RAW)
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    local hogs = nproc()
    for i, victim in ipairs(victims) do
      local r, line = drive(RUNS, 4, hogs, s:path("markers" .. i), victim)
      note("%s: %s", victim, line)
      assert.are.equal(RUNS, r.runs, line)
      assert.are.equal(RUNS, r.eperm, "execve did not fail with EPERM every time: " .. line .. "\n" .. d:err())
      assert.are.equal(0, r.ran, line)
      assert.are.equal(0, r.other, line)
      assert.are.equal(0, r.markers, "the victim ran: " .. line)
      assert.are.equal(hogs, r.hogs, line)
    end
    -- A script the rule names is denied too (the kernel asks for the
    -- script before its interpreter).
    for i, dir in ipairs(dirs) do
      local script = dir .. "/raw-script"
      H.write(script, '#!/bin/sh\n: > "$1"\n')
      os.execute("chmod 755 " .. H.q(script))
      local r, line = drive(5, 1, 0, s:path("markers-script" .. i), script)
      assert.are.equal(5, r.eperm, "script " .. script .. ": " .. line)
      assert.are.equal(0, r.markers, line)
    end
    -- Every denial is reported, with the deciding rule's alert.
    assert.is_true(d:wait_out('"msg":"denied ' .. ere(dirs[2]) .. '/raw-script \\[denied\\]"', 5), out_of(d))
    assert.are.equal(0, d:stop(), d:err())
    local out, err = d:out(), d:err()
    for _, victim in ipairs(victims) do
      assert.are.equal(RUNS, #decision_lines(out, "denied", victim), "denial lines for " .. victim)
      assert.are.equal(RUNS, #H.lines_with(out, '"msg":"denied ' .. victim .. ' [denied]"'), "alerts for " .. victim)
      assert.are.equal(5, #decision_lines(out, "denied", victim .. "-script"), "denial lines for the script")
    end
    -- Nothing ran, so the kill-after-exec fallback never fired.
    assert.are.same({}, H.lines_with(out, "killed after exec"))
    local st = assert(d:stats(), "no --stats block:\n" .. err)
    note("stats: deny_requests %d deny_decisions %d deny_denied %d deny_timeouts %d deny_filesystems %d",
      st.deny_requests, st.deny_decisions, st.deny_denied, st.deny_timeouts, st.deny_filesystems)
    assert.is_true(st.deny_denied >= 2 * RUNS + 10, err)
    assert.is_true(st.deny_decisions >= 2 * RUNS + 10, err)
    assert.is_true(st.deny_requests >= st.deny_decisions, err)
    assert.are.equal(0, st.deny_hash_late, err)
    assert.is_true(st.deny_filesystems >= 2, err) -- / and /dev/shm
    assert.is_truthy(err:find("deny: covering /dev/shm (tmpfs)", 1, true), err)
    assert.is_truthy(err:find("  no%-raw%s+exec%s+fired " .. 2 * RUNS + 10 .. ","), err)
  end)

  it_root("a binary denied by sha256 is denied under a new name elsewhere; a copy edited by one byte runs",
    function()
    local dirs = victim_dirs()
    local banned = s:path("banned")
    copy(tools.raw, banned)
    local hash = sha256(banned)
    -- The same bytes under other names, in directories no exe glob names.
    os.execute("mkdir -p " .. H.q(s:path("elsewhere")))
    local renamed = s:path("elsewhere/innocent-name")
    copy(banned, renamed)
    local renamed_shm = dirs[2] .. "/also-innocent"
    copy(banned, renamed_shm)
    -- One byte flipped inside the .rodata tag: still runs, other hash.
    local bytes = H.read(banned)
    local at = assert(bytes:find("PWDENY-TAG-", 1, true), "no tag in the raw victim")
    local edited = s:path("elsewhere/edited")
    H.write(edited, bytes:sub(1, at - 1) .. "Q" .. bytes:sub(at + 1))
    os.execute("chmod 755 " .. H.q(edited))
    assert.are_not.equal(hash, sha256(edited))
    assert.are.equal(#bytes, #H.read(edited))

    local rules = s:rules("sha.lua", EXEC_LOGGER .. NO_RAW .. ([[
rule { name = "no-hash", on = "exec", match = { sha256 = oneof { %q } },
  action = { deny(), alert "denied by hash {exe}" } }
]]):format(hash))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    for i, victim in ipairs { banned, renamed, renamed_shm } do
      local r, line = drive(3, 1, 0, s:path("m-banned" .. i), victim)
      note("sha256 %s: %s", victim, line)
      assert.are.equal(3, r.eperm, victim .. ": " .. line .. "\n" .. d:err())
      assert.are.equal(0, r.markers, victim .. ": " .. line)
    end
    local r, line = drive(3, 1, 0, s:path("m-edited"), edited)
    note("sha256 edited: %s", line)
    assert.are.equal(3, r.ran, "the one-byte edit was denied: " .. line .. "\n" .. out_of(d))
    assert.are.equal(3, r.markers, line)

    assert.are.equal(0, d:stop(), d:err())
    local out, err = d:out(), d:err()
    for _, victim in ipairs { banned, renamed, renamed_shm } do
      local found = decision_lines(out, "denied", victim)
      assert.are.equal(3, #found, "denial lines for " .. victim .. ":\n" .. out)
      assert.is_truthy(found[1]:find('"rule":"no-hash"', 1, true), found[1])
      assert.is_truthy(found[1]:find('"sha256":"' .. hash .. '"', 1, true), found[1])
    end
    assert.are.same({}, decision_lines(out, "denied", edited))
    local st = assert(d:stats(), err)
    assert.are.equal(9, st.deny_denied, err)
    assert.are.equal(0, st.deny_hash_late, err)
    assert.is_truthy(err:find("  no%-hash%s+exec%s+fired 9,"), err)
  end)

  it_root("an allowed binary keeps running while deny rules are loaded", function()
    local rules = s:rules("deny.lua", EXEC_LOGGER .. NO_RAW)
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    local t0 = H.now()
    local out = s:sh('/bin/sleep 0.2; echo "sleep=$?"; sh -c "exit 3"; echo "sh=$?"')
    local elapsed = H.now() - t0
    note("/bin/sleep 0.2 and sh -c 'exit 3' under the daemon: %.3f s", elapsed)
    assert.is_truthy(out:find("sleep=0", 1, true), out)
    assert.is_truthy(out:find("sh=3", 1, true), out)
    assert.is_true(elapsed < 2, ("took %.2f s"):format(elapsed))
    -- The raw victim itself, from a directory no rule names, runs too.
    local r, line = drive(5, 1, 0, s:path("m"), tools.raw)
    assert.are.equal(5, r.ran, line)
    assert.are.equal(5, r.markers, line)
    assert.are.equal(0, d:stop(), d:err())
    local st = assert(d:stats(), d:err())
    assert.are.equal(0, st.deny_denied, d:err())
    assert.is_true(st.deny_decisions >= 7, d:err())
    assert.are.same({}, H.lines_with(d:out(), "killed after exec"))
  end)

  -- A `when` that never returns: the responder answers at the deadline,
  -- whatever the loop is doing. The deadline must be shorter than the
  -- budget that ends the spin, or the call fails first and counts as
  -- decided in time. SPIN copies 4 KiB a turn, so the 250 ms time budget
  -- ends it, not the 10M instructions: a bare `while true do end` spent
  -- those in 78-88 ms here, yet two runs of this suite saw its budget error
  -- decide a request before the 50 ms deadline. The victim is static: one
  -- request per exec.
  local function spin_rules(dir)
    return EXEC_LOGGER .. ([[
rule { name = "spin", on = "exec", match = { exe = %q },
  when = function(e) ]] .. SPIN .. [[ end,
  action = { deny(), alert "spun {exe}" } }
]]):format(dir .. "/spin*")
  end

  it_root("an exec answered late is killed after exec, even after a denial of the same file to the same process",
    function()
    -- One bash process (execfail: a failed exec returns) execs one file
    -- twice, by two hard links: first as banned-a, denied at once in C by
    -- "banned-a"; then as banned-b, where "slow" (before "banned-b") spins
    -- past the deadline at every pre-exec decision (however many there
    -- were before), so the answer is late and allows. That exec was
    -- decided by nobody: its exec event must run "banned-b", which kills
    -- it. (The denial of the same file to the same process must not stand
    -- for it.)
    local a, b = s:path("banned-a"), s:path("banned-b")
    copy("/bin/sleep", a)
    assert(os.execute(("ln %s %s"):format(H.q(a), H.q(b))))
    local rules = s:rules("late.lua", EXEC_LOGGER .. ([[
rule { name = "banned-a", on = "exec", match = { exe = %q }, action = { deny() } }
rule { name = "slow", on = "exec", match = { exe = %q },
  -- spins before the exec (the new argv is not known yet), never after it
  when = function(e)
    if e.argv == nil then ]] .. SPIN .. [[ end
    return false
  end,
  action = { deny() } }
rule { name = "banned-b", on = "exec", match = { exe = %q }, action = { deny(), alert "banned {pid}" } }
]]):format(a, b, b))
    local d = s:start { args = { "-o", "json", "--stats", "--deny-timeout", SPIN_DEADLINE, "--duration", "40", rules },
      timeout = 45 }
    ready(d)
    local out = s:sh(("bash -c 'shopt -s execfail; exec %s 5; echo \"denied=$?\"; exec %s 5'; echo \"status=$?\"")
      :format(H.q(a), H.q(b)))
    assert.truthy(out:find("denied=126", 1, true), "the first exec was not denied: " .. out .. out_of(d))
    assert.truthy(out:find("status=137", 1, true), "the late-allowed exec was not killed after exec: " .. out
      .. out_of(d) .. d:err())
    -- the alert says why it was not decided before it ran
    assert.is_true(d:wait_out("banned [0-9]+ \\[killed after exec \\(uncovered: not decided by the deadline\\)\\]", 5),
      out_of(d))
    assert.are.equal(0, d:stop(), d:err())
    local st = assert(d:stats(), d:err())
    assert.is_true(st.deny_timeouts >= 1, d:err())
  end)

  it_root("a spinning `when` is answered at the deadline: allowed by default", function()
    local spin = s:path("spin")
    copy(tools.raw, spin)
    local rules = s:rules("spin.lua", spin_rules(s.dir))
    local d = s:start { args = { "-o", "json", "--stats", "--deny-timeout", SPIN_DEADLINE, "--duration", "40", rules },
      timeout = 45 }
    ready(d)
    -- Should the loop be busy elsewhere past the deadline (the start-up
    -- scan on a loaded machine), the answer is late without the `when`
    -- ever running (the round is closed when the loop gets to it): then
    -- once more, the loop idle.
    local r, line
    for attempt = 1, 3 do
      r, line = drive(1, 1, 0, s:path("m" .. attempt), spin)
      if H.wait_grep(d.err_file, "budget exceeded", 2) then break end
    end
    note("spinning when, --deny-timeout %d: %s", SPIN_DEADLINE_MS, line)
    assert.are.equal(1, r.ran, "not allowed by default: " .. line .. "\n" .. d:err())
    assert.are.equal(1, r.markers, line)
    assert.is_true(r.max_ms >= SPIN_DEADLINE_MS - 5, "answered before the deadline? " .. line)
    assert.is_true(r.max_ms < 1000, "not answered at the deadline: " .. line)
    -- The daemon goes on deciding: the default policy's execs still run.
    assert.is_true(d:ready(5), d:err())
    assert.is_true(d:wait_out("no decision in time for exec of " .. ere(spin) .. " by pid [0-9]+: allowed by default",
      5), out_of(d) .. d:err())
    assert.are.equal(0, d:stop(), d:err())
    local st = assert(d:stats(), d:err())
    assert.is_true(st.deny_timeouts >= 1, d:err())
    assert.are.equal(0, st.deny_denied, d:err())
    assert.is_true(st.budget_exceeded >= 1, d:err())
    assert.is_truthy(d:err():find("budget exceeded", 1, true), d:err())
  end)

  it_root("a spinning `when` with --deny-fail-closed is denied at the deadline", function()
    -- Fail-closed denies every exec of the host that is not decided in
    -- time: while the loop spins (up to its budget), while it is not
    -- running yet (the start-up scan) and while it stops. So this test
    -- starts no program in those windows: it polls files from Lua, and
    -- knows the loop runs when a timer of the rules file has fired.
    local spin = s:path("spin")
    copy(tools.raw, spin)
    local rules = s:rules("spin.lua", spin_rules(s.dir) .. [[
after(0.01, function() log("notice", "deny-spec: the loop runs") end)
]])
    local d = s:start { args = { "-o", "json", "--stats", "--deny-timeout", SPIN_DEADLINE, "--deny-fail-closed",
      "--duration", "40", rules }, timeout = 45 }
    assert.is_true(lua_wait(function() return d:out():find("deny-spec: the loop runs", 1, true) end, 5),
      "the loop never ran:\n" .. d:err())
    assert.is_truthy(d:err():find("deny: covering / (root filesystem)", 1, true), d:err())
    local r, line = drive(1, 1, 0, s:path("m"), spin)
    lua_wait(function() return false end, 0.4) -- the spin ends (budget)
    note("spinning when, --deny-timeout %d --deny-fail-closed: %s", SPIN_DEADLINE_MS, line)
    assert.are.equal(1, r.eperm, "not denied by default: " .. line .. "\n" .. d:err())
    assert.are.equal(0, r.markers, line)
    assert.is_true(r.max_ms >= SPIN_DEADLINE_MS - 5, "answered before the deadline? " .. line)
    assert.is_true(r.max_ms < 1000, "not answered at the deadline: " .. line)
    local late = "no decision in time for exec of " .. spin .. " by pid "
    assert.is_true(lua_wait(function() return d:out():find(late, 1, true) end, 5), out_of(d) .. d:err())
    assert.is_truthy(H.lines_with(d:out(), late)[1]:find(": denied by default", 1, true), out_of(d))
    d:signal("TERM")
    assert.is_true(lua_wait(function() return d:done() end, 5), "the daemon did not stop:\n" .. d:err())
    assert.are.equal(0, d:wait(1), d:err())
    local st = assert(d:stats(), d:err())
    assert.is_true(st.deny_timeouts >= 1, d:err())
    assert.is_true(st.deny_denied >= 1, d:err())
  end)

  it_root("padding buys no bypass: an allow-list sha256 rule denies a binary too big to hash by the deadline",
    function()
    -- Allow-list: in this directory only the binary of a known hash runs.
    -- "padded" is the raw victim followed by a 400 MiB hole (sparse: no
    -- disk, but hashing it takes longer than the default 200 ms
    -- deadline); "huge" is past the hashing cap (512 MiB), never hashed.
    local dir = s:path("allow")
    os.execute("mkdir -p " .. H.q(dir))
    local good, padded, huge = dir .. "/good", dir .. "/padded", dir .. "/huge"
    copy(tools.raw, good)
    for _, f in ipairs { { padded, "400M" }, { huge, "600M" } } do
      copy(tools.raw, f[1])
      assert(os.execute(("truncate -s %s %s"):format(f[2], H.q(f[1]))))
      local r, line = drive(1, 1, 0, s:path("control"), f[1])
      assert.are.equal(1, r.ran, "a padded binary does not run without the daemon: " .. line)
    end
    local rules = s:rules("allow.lua", EXEC_LOGGER .. ([[
rule { name = "allow-list", on = "exec", match = { exe = %q, sha256 = not_(oneof { %q }) },
  action = { deny(), alert "not allow-listed: {exe}" } }
]]):format(dir .. "/*", sha256(good)))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    local r, line = drive(1, 1, 0, s:path("m-good"), good)
    assert.are.equal(1, r.ran, "the allow-listed binary was denied: " .. line .. "\n" .. out_of(d) .. d:err())
    -- The padded one three times, hashed afresh each time (touch: a new
    -- mtime): whether the loop still decides after a late hash is a race.
    for i, victim in ipairs { huge, padded, padded, padded } do
      if i > 2 then assert(os.execute("touch " .. H.q(victim))) end
      r, line = drive(1, 1, 0, s:path("m" .. i), victim)
      note("allow-list, %s: %s", victim, line)
      assert.are.equal(1, r.eperm, victim .. " ran (a bypass by padding): " .. line .. "\n" .. out_of(d) .. d:err())
      assert.are.equal(0, r.markers, line)
    end
    assert.are.equal(0, d:stop(), d:err())
    assert.are.same({}, H.lines_with(d:out(), "exec of " .. padded .. " by pid %d+: allowed by default"))
    local st = assert(d:stats(), d:err())
    assert.is_true(st.deny_denied >= 4, d:err())
  end)

  it_root("a filesystem mounted after start is covered: in the daemon's mount namespace and in another one", function()
    local rules = s:rules("mnt.lua", EXEC_LOGGER .. ([[
rule { name = "no-raw-mnt", on = "exec", match = { exe = { %q, %q } },
  action = { deny(), alert "denied {exe}" } }
]]):format(s:path("mnt") .. "/raw*", s:path("nsmnt") .. "/raw*"))
    os.execute("mkdir -p " .. H.q(s:path("mnt")) .. " " .. H.q(s:path("nsmnt")))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)

    -- Here: the mount table changes, the new tmpfs is marked.
    local mnt = s:path("mnt")
    assert(os.execute("mount -t tmpfs pwdeny-spec " .. H.q(mnt)), "mount")
    mounts[#mounts + 1] = mnt
    copy(tools.raw, mnt .. "/raw")
    assert.is_true(H.wait_grep(d.err_file, "deny: covering " .. ere(mnt) .. " \\(tmpfs\\)", 5), d:err())
    local r, line = drive(3, 1, 0, s:path("m-here"), mnt .. "/raw")
    assert.are.equal(3, r.eperm, "a new mount of the daemon's namespace: " .. line .. "\n" .. d:err())
    os.execute("umount " .. H.q(mnt))
    mounts = {}

    -- Another mount namespace, seen by the daemon's periodic scan (every
    -- 2 s) before a tmpfs is mounted in it: within a few seconds, or after
    -- one exec from it ("marks it for next time"), its execs are denied.
    local script = [[
sleep 4.5
mount -t tmpfs pwdeny-spec "$1" && cp "$2" "$1/raw" && mkdir -p "$4" || exit 1
i=0
while [ $i -lt 10 ]; do
  "$3" 1 1 0 "$4" "$1/raw" | tee -a "$4.log" | grep -q "eperm=1" && exit 0
  sleep 0.5; i=$((i+1))
done
exit 3]]
    local t0 = H.now()
    local _, code = H.run(("timeout 20 unshare -m --propagation private sh -c %s sh %s %s %s %s 2>&1"):format(
      H.q(script), H.q(s:path("nsmnt")), H.q(tools.raw), H.q(tools.driver), H.q(s:path("m-ns"))))
    local log = H.read(s:path("m-ns.log"))
    local tries = select(2, log:gsub("runs=", ""))
    note("a tmpfs mounted in another namespace: %d exec(s) before one was denied (%.1f s); %s", tries,
      H.now() - t0, code == 0 and "denied" or "never denied")
    assert.are.equal(0, code, "execs from a tmpfs mounted in another mount namespace were never denied:\n"
      .. log .. out_of(d) .. d:err())
    assert.are.equal(0, d:stop(), d:err())
  end)

  it_root("SIGKILL of the daemon during an exec storm leaves no exec hanging", function()
    -- Two loops exec a static binary STORM times each; a `when` on it that
    -- spins every other time makes those requests wait on the loop (250 ms
    -- budget, deadline 5 s), so when the daemon dies execs are waiting on
    -- it. (Every other time: failures in a row would suspend the rule.)
    local storm = s:path("storm")
    copy(tools.raw, storm)
    local rules = s:rules("storm.lua", EXEC_LOGGER .. ([[
local calls = 0
rule { name = "slow", on = "exec", match = { exe = %q },
  when = function(e)
    calls = calls + 1
    if calls %% 2 == 0 then return false end
    while true do end
  end,
  action = { deny(), alert "slow {exe}" } }
]]):format(storm))
    local d = s:start { args = { "-o", "json", "--deny-timeout", "5000", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    local loop = [[
k=$1; n=$2; i=0; ok=0
while [ $i -lt $n ]; do
  "$D/storm" "$D/storm-marker" && ok=$((ok+1))
  i=$((i+1)); echo $i > "$D/storm$k.n"
done
echo $ok > "$D/storm$k.done"]]
    for k = 1, 2 do
      os.execute(("D=%s timeout 60 sh -c %s sh %d %d >/dev/null 2>&1 </dev/null &"):format(H.q(s.dir), H.q(loop),
        k, STORM))
    end
    assert.is_true(H.wait_file(s:path("storm1.n"), 5), "the storm did not start")
    os.execute("sleep 0.6")
    local before = {}
    for k = 1, 2 do before[k] = tonumber(H.read(s:path("storm" .. k .. ".n")):match("%d+")) or 0 end
    assert.is_true(before[1] < STORM and before[2] < STORM, "the storm was not held by the decisions")
    local t0 = H.now()
    d:signal("KILL")
    for k = 1, 2 do
      assert.is_true(H.wait_file(s:path("storm" .. k .. ".done"), 10),
        ("storm loop %d hangs after SIGKILL of the daemon (at %s of %d)"):format(k,
          H.read(s:path("storm" .. k .. ".n")):gsub("%s+$", ""), STORM))
    end
    local after = H.now() - t0
    note("exec storm: %d+%d of %d each done before SIGKILL, the rest in %.2f s after", before[1], before[2], STORM,
      after)
    for k = 1, 2 do
      assert.are.equal(tostring(STORM), (H.read(s:path("storm" .. k .. ".done")):gsub("%s+$", "")),
        "storm loop " .. k .. ": some execs failed")
    end
    assert.is_true(after < 5, ("the storm took %.2f s to finish after the kill"):format(after))
    assert.are.equal(137, d:wait(5))
  end)

  it_root("a memfd exec of a forbidden binary is killed by the fallback (exe glob, and sha256)", function()
    -- /bin/sleep with one byte appended: its own hash, so the sha256 rule
    -- judges no other sleep of the machine.
    local marked_sleep = s:path("sleep-banned")
    copy("/bin/sleep", marked_sleep)
    assert(os.execute("printf x >> " .. H.q(marked_sleep)))
    local hash = sha256(marked_sleep)
    local rules = s:rules("memfd.lua", EXEC_LOGGER .. NO_RAW .. ([[
rule { name = "no-hash", on = "exec", match = { sha256 = oneof { %q } },
  action = { deny(), alert "denied by hash {exe}" } }
]]):format(hash))
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    local cases = {
      { name = "pwdeny-evil", src = "/bin/sleep", rule = "no-raw" },
      { name = "pwdeny-hashed", src = marked_sleep, rule = "no-hash" },
    }
    for _, c in ipairs(cases) do
      local t0 = H.now()
      local out = s:sh(("%s %s %s 5; echo \"status=$?\""):format(H.q(tools.memfdexec), c.name, H.q(c.src)))
      local elapsed = H.now() - t0
      note("memfd exec of %s (%s): %s in %.3f s", c.src, c.name, out:gsub("%s+$", ""), elapsed)
      assert.is_truthy(out:find("status=137", 1, true), c.name .. ": not killed: " .. out .. H.read(s:path("sh.err")))
      assert.is_true(elapsed < 4, ("%s: took %.2f s"):format(c.name, elapsed))
      local exe = "/memfd:" .. c.name .. " (deleted)"
      assert.is_true(d:wait_out('"msg":"killed pid [0-9]+ \\(' .. ere(exe) .. '\\) with SIGKILL', 5),
        c.name .. ":\n" .. out_of(d) .. d:err())
      local kills = lines_matching(d:out(), '"msg":"killed pid %d+ %(' .. lit(exe) .. '%) with SIGKILL')
      assert.are.equal(1, #kills, out_of(d))
      assert.is_truthy(kills[1]:find('"rule":"' .. c.rule .. '"', 1, true), kills[1])
      assert.is_truthy(kills[1]:find('"actions":[{', 1, true) and kills[1]:find('"name":"kill"', 1, true), kills[1])
      assert.is_truthy(kills[1]:find('"signal":9', 1, true), kills[1])
      assert.is_true(d:wait_out(ere(exe) .. ' \\[killed after exec \\(uncovered: memfd[^]]*\\)\\]"', 5), out_of(d))
    end
    assert.are.equal(0, d:stop(), d:err())
    local st = assert(d:stats(), d:err())
    assert.are.equal(0, st.deny_denied, d:err()) -- fanotify never saw the memfds
    assert.are.equal(2, st.signals_sent, d:err())
  end)

  it_root("--dry-run denies nothing and says \"would deny\"", function()
    local dirs = victim_dirs()
    local victim = dirs[1] .. "/raw"
    copy(tools.raw, victim)
    local rules = s:rules("deny.lua", EXEC_LOGGER .. NO_RAW)
    local d = s:start { args = { "-o", "json", "--stats", "--dry-run", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    local r, line = drive(5, 1, 0, s:path("m"), victim)
    note("--dry-run: %s", line)
    assert.are.equal(5, r.ran, line .. "\n" .. out_of(d))
    assert.are.equal(5, r.markers, line)
    assert.is_true(d:wait_out('"msg":"denied ' .. ere(victim) .. ' \\[would deny\\]"', 5), out_of(d))
    assert.are.equal(0, d:stop(), d:err())
    local out = d:out()
    assert.is_true(#decision_lines(out, "would deny", victim) >= 5, out)
    assert.are.same({}, decision_lines(out, "denied", victim))
    assert.are.same({}, H.lines_with(out, '"msg":"killed pid'))
    local st = assert(d:stats(), d:err())
    assert.are.equal(0, st.deny_denied, d:err())
    assert.are.equal(0, st.signals_sent, d:err())
    assert.is_true(st.deny_decisions >= 5, d:err())
  end)

  it_root("a deny() rule matching on argv is a load error (exit 2) that says why", function()
    local rules = s:rules("argv.lua", EXEC_LOGGER .. [[
-- argv is not known before the program runs
rule { name = "no-eval", on = "exec", match = { exe = "*/perl", argv = "-e" },
  action = { deny() } }
]])
    for _, check in ipairs { true, false } do
      local args = { "timeout", "10", H.bin, "-o", "json", "--duration", "3", rules }
      if check then args = { "timeout", "10", H.bin, "--check", rules } end
      local out, err, code = H.exec(args, s.dir)
      assert.are.equal(2, code, "exit status (check=" .. tostring(check) .. "):\n" .. out .. err)
      assert.is_truthy(err:find(rules .. ":3:", 1, true), err)
      assert.is_truthy(err:find("rule no-eval: deny() decides before the program runs, when its argv is not known yet",
        1, true), err)
      assert.is_truthy(err:find("match on exe, sha256", 1, true), err)
      assert.is_falsy(err:find("deny: covering", 1, true), err)
    end
  end)

  it_root("the default policy (no deny rule) creates no fanotify group and no marks", function()
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40" }, timeout = 45 }
    assert.is_true(d:ready(5), "the default policy never logged a probe exec:\n" .. d:err())
    local fds = H.run(("for f in /proc/%d/fd/*; do readlink \"$f\"; done 2>/dev/null"):format(d:pid()))
    assert.is_falsy(fds:find("fanotify", 1, true), fds)
    local r, line = drive(3, 1, 0, s:path("m"), tools.raw)
    assert.are.equal(3, r.ran, line)
    assert.are.equal(0, d:stop(), d:err())
    local err = d:err()
    assert.is_falsy(err:find("deny:", 1, true), err)
    local st = assert(d:stats(), err)
    assert.is_true(st.deny_filesystems == nil or st.deny_filesystems == 0, err)
    assert.is_true(st.deny_requests == nil or st.deny_requests == 0, err)
  end)

  it_root("a reload (SIGHUP) that drops the deny rules closes fanotify; one that brings them back denies again",
    function()
    local dirs = victim_dirs()
    local victim = dirs[1] .. "/raw"
    copy(tools.raw, victim)
    local function fanotify_fds(d)
      local fds = H.run(("for f in /proc/%d/fd/*; do readlink \"$f\"; done 2>/dev/null"):format(d:pid()))
      return #H.lines_with(fds, "fanotify")
    end
    local rules = s:rules("deny.lua", EXEC_LOGGER .. NO_RAW)
    local d = s:start { args = { "-o", "json", "--stats", "--duration", "40", rules }, timeout = 45 }
    ready(d)
    -- the deny group, and the mount-namespace group where the kernel has
    -- them (6.14+: mount events); none once the deny rules are gone
    local groups = fanotify_fds(d)
    assert.is_true(groups == 1 or groups == 2, tostring(groups))
    local r, line = drive(2, 1, 0, s:path("m1"), victim)
    assert.are.equal(2, r.eperm, line)
    -- Rewrite the rules, SIGHUP, wait for the n-th "rules reloaded".
    local function reload(text, n)
      H.write(rules, text)
      d:signal("HUP")
      assert.is_true(lua_wait(function() return select(2, d:err():gsub("rules reloaded", "")) >= n end, 5),
        "no reload:\n" .. d:err())
      assert.is_true(d:ready(5), d:err())
    end
    reload(EXEC_LOGGER, 1)
    assert.are.equal(0, fanotify_fds(d), "fanotify still open without deny rules")
    r, line = drive(2, 1, 0, s:path("m2"), victim)
    assert.are.equal(2, r.ran, "denied without a deny rule: " .. line)
    reload(EXEC_LOGGER .. NO_RAW, 2)
    assert.are.equal(groups, fanotify_fds(d))
    r, line = drive(2, 1, 0, s:path("m3"), victim)
    assert.are.equal(2, r.eperm, "not denied after the deny rule came back: " .. line .. "\n" .. d:err())
    assert.are.equal(0, d:stop(), d:err())
    assert.are.equal(2, #H.lines_with(d:err(), "deny: covering / (root filesystem)"), d:err())
  end)
end)
