-- spec/integration/helpers.lua: shared plumbing for the root-only
-- integration specs. Plain Lua 5.4 plus shell tools (timeout, sh, sleep,
-- kill, grep, mktemp): no luaposix. Loaded with dofile() by the specs; it is
-- not a spec itself.
--
-- Every daemon runs in the background under `timeout`, with stdout, stderr
-- and its exit status in files of a per-test temporary directory, so no test
-- can hang and each one can read what the daemon printed.
local H = {}

-- The daemon, relative to the repo root (busted's working directory).
H.build = os.getenv("PW_BUILD") or "build"
H.bin = H.build .. "/procwarden"

-- Shell-quote one word.
function H.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run a shell command; returns its stdout and exit status.
function H.run(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

-- Run a command line made of words (quoted here); stdout, stderr, status.
function H.exec(words, dir)
  local parts = {}
  for i, w in ipairs(words) do parts[i] = H.q(w) end
  local errf = dir .. "/exec.err"
  local out, code = H.run(table.concat(parts, " ") .. " 2>" .. H.q(errf) .. " </dev/null")
  return out, H.read(errf), code
end

-- Compile the helper programs of a spec into a session directory of their
-- own: progs maps a name to the cc arguments (flags, sources); each is
-- built as DIR/name. Returns { session = that session, name = path, ... };
-- raises an error (the session cleaned up) when one does not build.
function H.build_tools(progs)
  local ts = H.session()
  ts.for_file = true -- cleaned up by H.end_file, not H.end_test
  local t = { session = ts }
  for name, args in pairs(progs) do
    t[name] = ts:path(name)
    local words = { "cc" }
    table.move(args, 1, #args, 2, words)
    words[#words + 1], words[#words + 2] = "-o", t[name]
    local _, err, code = H.exec(words, ts.dir)
    if code ~= 0 then
      ts:cleanup()
      error("cannot build " .. name .. ": " .. err)
    end
  end
  return t
end

-- Is the running kernel at least major.minor?
function H.kernel_at_least(major, minor)
  local a, b = H.run("uname -r"):match("^(%d+)%.(%d+)")
  a, b = tonumber(a), tonumber(b)
  return a ~= nil and (a > major or (a == major and b >= minor))
end

function H.is_root()
  local out = H.run("id -u")
  return out:match("^%s*(%d+)") == "0"
end

-- Seconds since the epoch, sub-second.
function H.now()
  return tonumber((H.run("date +%s.%N"))) or os.time()
end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

function H.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

function H.abspath(path)
  return (H.run("realpath -- " .. H.q(path)):gsub("\n$", ""))
end

-- Wait (in one shell loop) until file matches the extended regex; true if
-- it did within secs.
function H.wait_grep(file, regex, secs)
  local _, code = H.run(("timeout %s sh -c %s sh %s %s"):format(secs,
    H.q('until grep -qE -- "$1" "$2" 2>/dev/null; do sleep 0.05; done'), H.q(regex), H.q(file)))
  return code == 0
end

function H.wait_file(file, secs)
  secs = math.max(tonumber(secs) or 0, 0.01) -- `timeout 0` would wait for ever
  local _, code = H.run(("timeout %s sh -c %s sh %s"):format(secs,
    H.q('until [ -s "$1" ]; do sleep 0.02; done'), H.q(file)))
  return code == 0
end

-- Lines of text containing plain string s.
function H.lines_with(text, s)
  local found = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(s, 1, true) then found[#found + 1] = line end
  end
  return found
end

-- The counters that --stats prints on stderr ("procwarden stats:" then
-- "  name value" lines), as a table; nil when there is no such block.
function H.stats(text)
  local st, seen = {}, false
  for line in text:gmatch("[^\n]+") do
    if line == "procwarden stats:" then
      seen = true
    elseif seen then
      local k, v = line:match("^%s+([%w_]+)%s+(%d+)%s*$")
      if k then st[k] = tonumber(v) end
    end
  end
  return seen and st or nil
end

-- ---- a test session: one temp dir, the daemons it started -------------------

local Session = {}
Session.__index = Session

-- Every session this spec file opened (each file loads its own H), for
-- H.end_test and H.end_file.
local opened = {}

function H.session()
  local dir = H.run("mktemp -d /tmp/pw-integration.XXXXXX"):gsub("%s+$", "")
  assert(dir ~= "" and dir:sub(1, 1) == "/", "mktemp -d failed")
  local ses = setmetatable({ dir = dir, daemons = {}, n = 0 }, Session)
  opened[#opened + 1] = ses
  return ses
end

-- Clean up the sessions opened for tests (an after_each hook): what they
-- started is killed and their dirs removed. Those of H.build_tools stay.
function H.end_test()
  local keep = {}
  for _, ses in ipairs(opened) do
    if ses.for_file then keep[#keep + 1] = ses else ses:cleanup() end
  end
  opened = keep
end

-- Clean up every session still open, the helper programs' too (a
-- teardown hook, once the file's tests are done).
function H.end_file()
  for _, ses in ipairs(opened) do ses:cleanup() end
  opened = {}
end

function Session:path(name)
  return self.dir .. "/" .. name
end

-- Write a rules file into the session dir; returns its path.
function Session:rules(name, text)
  local p = self:path(name)
  H.write(p, text)
  return p
end

-- Hold an exclusive lock (flock(1) on /tmp/<name>.lock) across machine-wide
-- users of the same resource, until cleanup (or `timeout` secs at most).
-- A background `flock` holds it while a ticket file in the session dir
-- exists. True once held, false if not within wait seconds.
function Session:lock(name, wait, secs)
  local ticket = self:path(name .. ".ticket")
  local held = self:path(name .. ".held")
  H.write(ticket, "")
  local script = 'echo held > "$1"; while [ -e "$2" ]; do sleep 0.05; done'
  os.execute(("( timeout %d flock -x -w %d %s sh -c %s sh %s %s ) >/dev/null 2>&1 </dev/null &"):format(
    secs or 60, wait or 20, H.q("/tmp/" .. name .. ".lock"), H.q(script), H.q(held), H.q(ticket)))
  return H.wait_file(held, (wait or 20) + 1)
end

-- Kill what is still running (only the daemons this session started, by
-- pid) and remove the temp dir. Only the first call does anything.
function Session:cleanup()
  if self.cleaned then return end
  self.cleaned = true
  for _, d in ipairs(self.daemons) do
    if not d:done() then
      local pid = d:pid()
      if pid then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
      d:wait(3)
    end
  end
  if self.dir:match("^/tmp/pw%-integration%.") then
    os.execute("rm -rf " .. H.q(self.dir))
  end
end

local Daemon = {}
Daemon.__index = Daemon

-- Start the daemon in the background:
--   opts.args     list of arguments (rules files, options)
--   opts.env      list of "NAME=value"
--   opts.timeout  hard limit in seconds (default 10); `timeout -k 2` kills it
--   opts.cwd      working directory (default: the repo root)
--   opts.bin      the binary (default H.bin)
-- Files: <tag>.out, <tag>.err, <tag>.rc (exit status), <tag>.pid.
function Session:start(opts)
  self.n = self.n + 1
  local tag = self:path("d" .. self.n)
  local d = setmetatable({
    out_file = tag .. ".out", err_file = tag .. ".err",
    rc_file = tag .. ".rc", pid_file = tag .. ".pid",
    started = H.now(),
  }, Daemon)
  local words = {}
  for i, a in ipairs(opts.args or {}) do words[i] = H.q(a) end
  local env = {}
  for i, e in ipairs(opts.env or {}) do env[i] = H.q(e) end
  -- The inner sh records its pid, then execs the daemon: the pid file holds
  -- the daemon's own pid, under timeout.
  local cmd = ("%s env %s timeout -k 2 %s sh -c %s sh %s %s %s >%s 2>%s </dev/null; echo $? >%s.tmp; mv %s.tmp %s")
    :format(opts.cwd and ("cd " .. H.q(opts.cwd) .. " &&") or "",
      table.concat(env, " "), opts.timeout or 10,
      H.q('echo $$ > "$1"; shift; exec "$@"'), H.q(d.pid_file),
      H.q(opts.bin or H.bin), table.concat(words, " "),
      H.q(d.out_file), H.q(d.err_file), H.q(d.rc_file), H.q(d.rc_file), H.q(d.rc_file))
  os.execute("( " .. cmd .. " ) >/dev/null 2>&1 </dev/null &")
  self.daemons[#self.daemons + 1] = d
  assert(H.wait_file(d.pid_file, 5), "the daemon did not start")
  return d
end

function Daemon:pid()
  return tonumber(H.read(self.pid_file):match("%d+"))
end

function Daemon:done()
  return H.read(self.rc_file):match("%d+") ~= nil
end

-- Wait for the exit; returns the exit status, or nil after secs.
function Daemon:wait(secs)
  if not H.wait_file(self.rc_file, secs or 10) then return nil end
  self.ended = self.ended or H.now()
  return tonumber(H.read(self.rc_file):match("%d+"))
end

function Daemon:signal(sig)
  local pid = assert(self:pid(), "no daemon pid")
  return os.execute(("kill -%s %d"):format(sig, pid))
end

-- SIGTERM, then the exit status.
function Daemon:stop(secs)
  self:signal("TERM")
  return self:wait(secs or 5)
end

function Daemon:out() return H.read(self.out_file) end
function Daemon:err() return H.read(self.err_file) end
function Daemon:stats() return H.stats(self:err()) end

-- Has the daemon written a line (JSON log or dump) about an event of pid?
function Daemon:saw_pid(pid)
  return self:out():find('"pid":' .. pid .. '[,}]') ~= nil
end

-- Wait until the daemon is subscribed and handling events: start /bin/true
-- probes until one of them shows up in the daemon's stdout (the rules must
-- log exec events with the event, or --dump must be on). True if within secs.
function Daemon:ready(secs)
  local script = [[
out=$1; pids=
while :; do
  /bin/true & p=$!; wait $p
  pids="${pids:+$pids|}$p"
  sleep 0.1
  grep -qE "\"pid\":($pids)[,}]" "$out" && exit 0
done]]
  local _, code = H.run(("timeout %s sh -c %s sh %s"):format(secs or 5, H.q(script), H.q(self.out_file)))
  return code == 0
end

-- Wait until some stdout line matches the extended regex.
function Daemon:wait_out(regex, secs)
  return H.wait_grep(self.out_file, regex, secs or 5)
end

-- Assert that the daemon is judging execs: with deny_secs, fanotify came up
-- within that many seconds ("deny: covering / (root filesystem)" on
-- stderr, at notice level); and the loop runs (a probe exec was logged
-- within 5 s: decisions need the loop).
function Daemon:assert_ready(deny_secs)
  local luassert = require "luassert"
  if deny_secs then
    luassert.is_true(H.wait_grep(self.err_file, "deny: covering / \\(root filesystem\\)", deny_secs),
      "fanotify never came up:\n" .. self:err())
  end
  luassert.is_true(self:ready(5), "the daemon never handled a probe exec:\n" .. self:err())
end

-- The daemon's stdout without the lines that contain `logged` (plain), e.g.
-- those of H.EXEC_LOGGER: what is left to read in a failure message.
function Daemon:out_without(logged)
  local keep = {}
  for line in self:out():gmatch("[^\n]+") do
    if not line:find(logged, 1, true) then keep[#keep + 1] = line end
  end
  return table.concat(keep, "\n") .. "\n"
end

-- ---- workloads ------------------------------------------------------------

-- Run a shell snippet (under timeout, $D = the session dir); returns its
-- stdout. Its stderr (e.g. the shell's "Killed" notes) goes to $D/sh.err.
function Session:sh(snippet)
  local out = H.run(("D=%s; export D; timeout 10 sh -c %s 2>>%s </dev/null"):format(H.q(self.dir), H.q(snippet),
    H.q(self:path("sh.err"))))
  return out
end

-- Start /bin/true as a forked child of a shell and return its pid: that
-- pid has exactly one exec, /bin/true's.
function Session:spawn_true()
  local out = self:sh('/bin/true & p=$!; wait $p; echo $p')
  return assert(tonumber(out:match("%d+")), "no pid from the workload")
end

-- Run fn; if it fails, show the test as pending with the note (a bug known
-- and described); PW_STRICT=1 makes it fail instead. pending: busted's,
-- from the spec file's environment.
function H.known_bug(pending, note, fn)
  local ok, err = pcall(fn)
  if ok then return end
  if os.getenv("PW_STRICT") then error(err, 0) end
  local first = tostring(type(err) == "table" and err.message or err):match("[^\n]*")
  pending(("known bug: %s (%s)"):format(note, first))
end

-- The key=value words of a log message, as a table (values up to a space).
function H.kv(msg)
  local t = {}
  for k, v in msg:gmatch("([%w_%.]+)=(%S*)") do t[k] = v end
  return t
end

-- The lines of text that match a Lua pattern.
function H.lines_matching(text, pattern)
  local found = {}
  for line in text:gmatch("[^\n]+") do
    if line:find(pattern) then found[#found + 1] = line end
  end
  return found
end

-- A rules file that logs every exec with its pid (Daemon:ready() probes it).
H.EXEC_LOGGER = [[
on("exec", function(e) log("info", "exec pid={pid}", e) end)
]]

-- A pid nobody uses now, well ahead of the kernel's last one (so the
-- machine's own forks are unlikely to reach it during a test).
function H.free_pid()
  local max = tonumber(H.read("/proc/sys/kernel/pid_max"):match("%d+")) or 32768
  local last = tonumber(H.read("/proc/sys/kernel/ns_last_pid"):match("%d+")) or 300
  local pid = last + 3000
  for _ = 1, 1000 do
    if pid >= max - 10 then pid = 1000 + pid % 1000 end
    if not H.read("/proc/" .. pid .. "/stat"):match("%d") then return pid end
    pid = pid + 7
  end
  error("no free pid found")
end

return H
