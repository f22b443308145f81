-- Integration specs for the procwarden daemon against the real kernel proc
-- connector. They need root (CAP_NET_ADMIN): as any other user every test
-- here is reported pending, never passed.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

-- An exec logger: one JSON line per exec, message "exec pid=N", with the
-- event (so "pid":N is in the line and Daemon:ready() can probe).
local EXEC_LOGGER = [[
on("exec", function(e) log("info", "exec pid={pid}", e) end)
]]

describe("procwarden daemon (root)", function()
  local s
  before_each(function()
    if is_root then s = H.session() end
  end)
  after_each(function()
    if s then s:cleanup() end
    s = nil
  end)

  it_root("the binary under test exists", function()
    assert.is_true(os.execute("test -x " .. H.q(H.bin)) == true,
      H.bin .. " is missing: run `make all` (or set PW_BUILD)")
  end)

  it_root("a rule sees the exec of /bin/true with its pid within 5 s", function()
    local rules = s:rules("exec.lua", EXEC_LOGGER)
    local d = s:start { args = { "--duration", "8", rules }, timeout = 12 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:\n" .. d:err())
    local t0 = H.now()
    local pid = s:spawn_true()
    assert.is_true(d:wait_out('"msg":"exec pid=' .. pid .. '"', 5),
      "no exec event for /bin/true pid " .. pid .. " within 5 s:\n" .. d:out() .. d:err())
    assert.is_true(H.now() - t0 < 5)
    -- The line carries the kernel's fields of that exec.
    local line = H.lines_with(d:out(), '"msg":"exec pid=' .. pid .. '"')[1]
    assert.is_truthy(line:find('"type":"exec"', 1, true), line)
    assert.is_truthy(line:find('"tgid":' .. pid .. '[,}]'), line)
    assert.is_falsy(line:find('"startup":true', 1, true), line)
    assert.are.equal(0, d:stop())
  end)

  it_root("fork and exit events carry the right parent/child ids and exit codes", function()
    local rules = s:rules("forkexit.lua", EXEC_LOGGER .. [[
on("fork", function(e)
  log("info", "fork parent={parent_pid}/{parent_tgid} child={child_pid}/{child_tgid} pid={pid}", e)
end)
on("exit", function(e)
  -- exit_status is nil when killed, term_signal nil when it exited: both
  -- are known fields, so reading the absent one is nil, not an error.
  log("info", string.format("exit pid={pid} code={exit_code} status=%s signal=%s parent={parent_pid}",
    tostring(e.exit_status), tostring(e.term_signal)), e)
end)
]])
    local d = s:start { args = { "--duration", "8", rules }, timeout = 12 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:\n" .. d:err())
    -- A shell (pid P) forks a child (pid C) that exits 3.
    local ids = s:sh('sh -c "exit 3" & c=$!; wait $c; echo "$$ $c"')
    local p, c = ids:match("(%d+) (%d+)")
    assert.is_truthy(p, "workload ids: " .. ids)
    -- A shell (pid Q) forks a sleep (pid K) and kills it with SIGKILL.
    local ids2 = s:sh('sleep 30 & k=$!; kill -9 $k; wait $k; echo "$$ $k"')
    local q, k = ids2:match("(%d+) (%d+)")
    assert.is_truthy(q, "workload ids: " .. ids2)

    local fork1 = ("fork parent=%s/%s child=%s/%s pid=%s"):format(p, p, c, c, c)
    local exit1 = ("exit pid=%s code=768 status=3 signal=nil parent=%s"):format(c, p)
    local fork2 = ("fork parent=%s/%s child=%s/%s pid=%s"):format(q, q, k, k, k)
    local exit2 = ("exit pid=%s code=9 status=nil signal=9 parent=%s"):format(k, q)
    for _, want in ipairs { fork1, exit1, fork2, exit2 } do
      assert.is_true(d:wait_out('"msg":"' .. want .. '"', 5),
        "missing '" .. want .. "' in:\n" .. d:out() .. d:err())
    end
    -- The event tables hold the decoded fields too.
    local line = H.lines_with(d:out(), '"msg":"' .. exit1 .. '"')[1]
    assert.is_truthy(line:find('"exit_status":3[,}]'), line)
    assert.is_falsy(line:find('"term_signal"', 1, true), line)
    line = H.lines_with(d:out(), '"msg":"' .. exit2 .. '"')[1]
    assert.is_truthy(line:find('"term_signal":9[,}]'), line)
    assert.is_falsy(line:find('"exit_status"', 1, true), line)
    assert.are.equal(0, d:stop())
    assert.is_falsy(d:err():find("procwarden: error", 1, true), d:err())
  end)

  it_root("subscribes, unsubscribes and subscribes again: two runs in a row", function()
    local rules = s:rules("exec.lua", EXEC_LOGGER)
    for run = 1, 2 do
      local d = s:start { args = { "--stats", "--duration", "8", rules }, timeout = 12 }
      assert.is_true(d:ready(5), "run " .. run .. ": never handled a probe exec:\n" .. d:err())
      local pid = s:spawn_true()
      assert.is_true(d:wait_out('"msg":"exec pid=' .. pid .. '"', 5), "run " .. run .. ": exec " .. pid .. " unseen")
      assert.are.equal(0, d:stop(), "run " .. run .. " exit status:\n" .. d:err())
      assert.is_falsy(d:err():find("procwarden: error", 1, true), d:err())
      assert.is_true(d:stats().acks >= 1, d:err())
    end
  end)

  it_root("two daemons at the same time both see the same exec", function()
    local rules = s:rules("exec.lua", EXEC_LOGGER)
    local a = s:start { args = { "--duration", "8", rules }, timeout = 12 }
    local b = s:start { args = { "--duration", "8", rules }, timeout = 12 }
    assert.is_true(a:ready(5), "first daemon not ready:\n" .. a:err())
    assert.is_true(b:ready(5), "second daemon not ready:\n" .. b:err())
    local pid = s:spawn_true()
    assert.is_true(a:wait_out('"msg":"exec pid=' .. pid .. '"', 5), "first daemon missed exec " .. pid)
    assert.is_true(b:wait_out('"msg":"exec pid=' .. pid .. '"', 5), "second daemon missed exec " .. pid)
    -- One stopping (unsubscribing) does not stop the other's events.
    assert.are.equal(0, a:stop())
    local pid2 = s:spawn_true()
    assert.is_true(b:wait_out('"msg":"exec pid=' .. pid2 .. '"', 5), "second daemon missed exec " .. pid2)
    assert.are.equal(0, b:stop())
  end)

  it_root("a handler that raises does not stop later events", function()
    local rules = s:rules("raise.lua", [[
local n = 0
on("exec", function(e)
  n = n + 1
  if n == 1 then error("boom on the first event") end
  log("info", "exec pid={pid}", e)
end)
]])
    local d = s:start { args = { "--stats", "--duration", "8", rules }, timeout = 12 }
    assert.is_true(d:ready(5), "never handled an exec after the failing one:\n" .. d:err())
    local pid = s:spawn_true()
    assert.is_true(d:wait_out('"msg":"exec pid=' .. pid .. '"', 5), "exec " .. pid .. " unseen after the error")
    assert.are.equal(0, d:stop())
    local err = d:err()
    assert.is_truthy(err:find("raise.lua:4: boom on the first event", 1, true), err)
    local st = assert(d:stats(), "no --stats block:\n" .. err)
    assert.is_true(st.handler_errors >= 1, err)
    assert.is_true(st.handler_calls > st.handler_errors, err)
  end)

  it_root("--dump=json prints the exec of /bin/true with its pid (no core.so, no rules)", function()
    -- Another cwd, an absolute binary path and a Lua search path leading
    -- nowhere: the daemon needs nothing from the build tree but itself.
    local bin = H.abspath(H.bin)
    local d = s:start { args = { "--dump=json", "--duration", "3" }, bin = bin, cwd = s.dir, timeout = 8,
      env = { "LUA_PATH=/nonexistent/?.lua", "LUA_CPATH=/nonexistent/?.so",
        "LUA_PATH_5_4=/nonexistent/?.lua", "LUA_CPATH_5_4=/nonexistent/?.so" } }
    assert.is_true(d:ready(2.5), "no dump line for a probe exec:\n" .. d:err())
    local pid = s:spawn_true()
    assert.are.equal(0, d:wait(6), d:err())
    local found
    for line in d:out():gmatch("[^\n]+") do
      -- a dump line starts with its type (log lines start with "time"; a
      -- dump line may quote anything in its ancestors' argv)
      if line:find('^{"type":"exec","pid":' .. pid .. '[,}]') then
        found = line
      end
    end
    assert.is_truthy(found, "no dumped exec for pid " .. pid .. ":\n" .. d:out())
    assert.is_truthy(found:match("^{.*}$"), found)
    assert.is_truthy(found:find('"tgid":' .. pid .. '[,}]'), found)
    -- Other event types are dumped too (the dump subscribes to everything).
    assert.is_truthy(d:out():find('"type":"fork"', 1, true), "no fork event dumped")
  end)

  it_root("a rules file with a syntax error exits 2 with file:line", function()
    local rules = s:rules("syntax.lua", 'on("exec", function(e)\n  log("info", "x" e)\nend)\n')
    for _, check in ipairs { false, true } do
      local args = { "timeout", "5", H.bin, rules }
      if check then table.insert(args, 4, "--check") end
      local out, err, code = H.exec(args, s.dir)
      assert.are.equal(2, code, "exit status (check=" .. tostring(check) .. "): " .. err)
      assert.is_truthy(err:find(rules .. ":2:", 1, true), err)
      assert.is_falsy(out:find('"kind"', 1, true), out)
    end
  end)

  it_root("an unknown event type in on() exits 2, naming it, with a suggestion", function()
    local rules = s:rules("typo.lua", '-- a typo\non("exex", function(e) end)\n')
    local _, err, code = H.exec({ "timeout", "5", H.bin, rules }, s.dir)
    assert.are.equal(2, code, err)
    assert.is_truthy(err:find(rules .. ":2:", 1, true), err)
    assert.is_truthy(err:find("exex", 1, true), err)
    assert.is_truthy(err:find("did you mean 'exec'", 1, true), err)
  end)

  it_root("--stats shows received >= parsed > 0 and the drop counters", function()
    local rules = s:rules("exec.lua", EXEC_LOGGER)
    local d = s:start { args = { "--stats", "--duration", "8", rules }, timeout = 12 }
    assert.is_true(d:ready(5), d:err())
    local pid = s:spawn_true()
    assert.is_true(d:wait_out('"msg":"exec pid=' .. pid .. '"', 5))
    assert.are.equal(0, d:stop())
    local st = assert(d:stats(), "no stats block:\n" .. d:err())
    for _, k in ipairs { "received", "parsed", "dropped", "dropped_forged", "acks", "enobufs",
      "handler_calls", "handler_errors", "events_exec" } do
      assert.is_number(st[k], "missing counter " .. k .. ":\n" .. d:err())
    end
    assert.is_true(st.parsed > 0, d:err())
    assert.is_true(st.received >= st.parsed, d:err())
    assert.is_true(st.events_exec >= 2, d:err()) -- at least a probe and the workload
    assert.is_true(st.handler_calls >= st.events_exec, d:err())
    assert.are.equal(0, st.handler_errors)
  end)

  it_root("the legacy subscription (PROCWARDEN_SUBSCRIBE=legacy) delivers the exec", function()
    local rules = s:rules("exec.lua", EXEC_LOGGER)
    local d = s:start { args = { "--stats", "--duration", "8", rules }, timeout = 12,
      env = { "PROCWARDEN_SUBSCRIBE=legacy" } }
    assert.is_true(d:ready(5), d:err())
    -- setsid(1) in a shell without job control calls setsid() at once,
    -- then execs /bin/true: a sid event and an exec of the same pid.
    local pid = tonumber(s:sh('setsid /bin/true & p=$!; wait $p; echo $p'):match("%d+"))
    assert.is_number(pid)
    assert.is_true(d:wait_out('"msg":"exec pid=' .. pid .. '"', 5), "exec " .. pid .. " unseen:\n" .. d:err())
    assert.are.equal(0, d:stop())
    -- The 4-byte op cannot filter: the sid event arrived too, although
    -- neither the rules nor the process table ask for sid events.
    local st = assert(d:stats(), d:err())
    assert.is_true(st.events_sid >= 1, "legacy path not taken? events_sid = " .. tostring(st.events_sid))
    assert.are.equal(0, st.handler_errors)
  end)

  it_root("SIGTERM makes it exit 0 promptly, stats printed", function()
    local rules = s:rules("exec.lua", EXEC_LOGGER)
    local d = s:start { args = { "--stats", "--duration", "30", rules }, timeout = 35 }
    assert.is_true(d:ready(5), d:err())
    local t0 = H.now()
    d:signal("TERM")
    local rc = d:wait(3)
    assert.are.equal(0, rc, "exit status after SIGTERM:\n" .. d:err())
    assert.is_true(H.now() - t0 < 2, "took " .. (H.now() - t0) .. " s")
    assert.is_truthy(d:stats(), "no stats at exit:\n" .. d:err())
  end)

  it_root("--max-events 1 stops after one event", function()
    local rules = s:rules("exec.lua", EXEC_LOGGER)
    local t0 = H.now()
    local d = s:start { args = { "--stats", "--max-events", "1", "--duration", "6", rules }, timeout = 10 }
    -- Keep execs coming until the daemon stops.
    s:sh(('for i in $(seq 40); do [ -s %s ] && exit 0; /bin/true; sleep 0.1; done'):format(H.q(d.rc_file)))
    local rc = d:wait(5)
    local elapsed = H.now() - t0
    assert.are.equal(0, rc, d:err())
    assert.is_true(elapsed < 5, "ran for " .. elapsed .. " s: --max-events did not stop it")
    local st = assert(d:stats(), d:err())
    -- Only events a rule takes count (the process table's own fork/exit/...
    -- events do not): exactly one exec.
    assert.are.equal(1, st.events_exec, "events delivered:\n" .. d:err())
    -- At most that one event reached the rules (start-up exec events, for
    -- the processes already running, are synthetic and not counted).
    local handled = 0
    for _, line in ipairs(H.lines_with(d:out(), '"kind"')) do
      if not line:find('"startup":true', 1, true) then handled = handled + 1 end
    end
    assert.is_true(handled <= 1, d:out())
  end)

  it_root("--check on a good file exits 0 and prints a summary", function()
    local rules = s:rules("good.lua", EXEC_LOGGER .. [[
on("exit", function(e) log("info", "exit {pid}", e) end)
every(60, function() log("info", "alive") end)
]])
    local out, err, code = H.exec({ "timeout", "5", H.bin, "--check", rules }, s.dir)
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find(rules, 1, true), out)
    assert.is_truthy(out:find("2 handler", 1, true), out)
    assert.is_truthy(out:find("exec", 1, true), out)
    assert.is_truthy(out:find("exit", 1, true), out)
    assert.is_falsy(out:find('"kind"', 1, true), "--check ran rules:\n" .. out)
  end)

  it_root("without CAP_NET_ADMIN (as nobody) it exits 1 and says to run it as root", function()
    local _, _, has = H.exec({ "sh", "-c", "command -v setpriv" }, s.dir)
    if has ~= 0 then
      pending("setpriv is not installed")
      return
    end
    -- No rules file (nobody cannot read the session dir): the embedded policy.
    local out, err, code = H.exec({ "timeout", "5", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
      H.bin, "--duration", "1" }, s.dir)
    assert.are.equal(1, code, err)
    assert.is_truthy(err:find("CAP_NET_ADMIN", 1, true), err)
    assert.is_truthy(err:find("root", 1, true), err)
    assert.are.equal("", out)
  end)

  it_root("a missing rules file exits 2 and names it", function()
    local missing = s:path("no-such-rules.lua")
    local _, err, code = H.exec({ "timeout", "5", H.bin, missing }, s.dir)
    assert.are.equal(2, code, err)
    assert.is_truthy(err:find(missing, 1, true), err)
  end)
end)
