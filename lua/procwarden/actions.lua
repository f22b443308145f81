-- procwarden.actions: kill, signal, stop, exec and protect. In a rule's
-- action list (at load) each call builds an action value that runs when the
-- rule fires, against the event's process; called from a handler it acts at
-- once on the target it is given. Every action is logged with its result;
-- failures return nil and a message, they do not raise.
local host = require "procwarden.host"
local rules = require "procwarden.rules"
local match = require "procwarden.match"
local event = require "procwarden.event"

local M = {}

M.SIGNALS = {
  HUP = 1, INT = 2, QUIT = 3, ILL = 4, TRAP = 5, ABRT = 6, BUS = 7, FPE = 8, KILL = 9,
  USR1 = 10, SEGV = 11, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15, CHLD = 17, CONT = 18,
  STOP = 19, TSTP = 20, TTIN = 21, TTOU = 22, URG = 23, XCPU = 24, XFSZ = 25, VTALRM = 26,
  PROF = 27, WINCH = 28, IO = 29, PWR = 30, SYS = 31,
}
local NAMES = {}
for name, n in pairs(M.SIGNALS) do NAMES[n] = "SIG" .. name end

-- Signal number of "KILL", "SIGKILL", "sigkill" or 9; nil if none.
function M.signal_number(sig)
  if math.type(sig) == "integer" then
    return (sig >= 0 and sig <= 64) and sig or nil
  end
  if type(sig) ~= "string" then return nil end
  local name = string.upper(sig)
  if string.sub(name, 1, 3) == "SIG" then name = string.sub(name, 4) end
  return M.SIGNALS[name]
end
function M.signal_name(n) return NAMES[n] or ("signal " .. tostring(n)) end

-- protect{}: no action signals a process whose executable is one of the
-- root-owned files an entry names. The daemon (engine.c, identity.c)
-- resolves each entry to inodes at load and checks the target's exe inode
-- where the signal is sent, after the process is pinned: a copy of a
-- binary, a user's file of the same name or a path in another mount
-- namespace is not protected; an upgraded binary still running (exe
-- " (deleted)") still is. Where no process is pinned (a dry run, a
-- replay, procwarden.testing) the entries are judged by name instead, as
-- the inode check judges a root-owned file at that path.
M.protected = {} -- per entry: the test by name
M.protected_globs = {}

-- Directories a glob starting with '*' is expanded over (the only places
-- such a glob names anything), and how deep below an entry's directory.
M.SYSTEM_DIRS = {
  "/usr/bin", "/usr/sbin", "/usr/libexec", "/usr/lib", "/usr/lib64", "/usr/local/bin", "/usr/local/sbin",
  "/usr/local/libexec", "/bin", "/sbin", "/lib", "/lib64", "/opt",
}
M.PROTECT_DEPTH = 4 -- identity.h PW_PROTECT_DEPTH

-- The directory part of a glob's literal start ("" for /).
local function fixed_dir(g)
  local lit = g:match("^[^%*%?%[\\]*")
  return lit:match("^(.*)/") or ""
end

-- Is path below dir, at most PROTECT_DEPTH directories down?
local function below(path, dir)
  if path:sub(1, #dir + 1) ~= dir .. "/" then return false end
  local _, slashes = path:sub(#dir + 2):gsub("/", "")
  return slashes <= M.PROTECT_DEPTH
end

local function name_test(g)
  local m = match.compile(g)
  local dirs = g:sub(1, 1) == "*" and M.SYSTEM_DIRS or { fixed_dir(g) }
  return function(exe)
    exe = exe:gsub(" %(deleted%)$", "")
    for _, d in ipairs(dirs) do
      if below(exe, d) and m(exe) then return true end
    end
    return false
  end
end

-- protect { "/usr/sbin/sshd", "*/systemd" }: entries are absolute paths or
-- globs, or globs starting with '*' (a warning: those name files below
-- M.SYSTEM_DIRS only).
function M.protect(globs)
  if type(globs) == "string" then globs = { globs } end
  if type(globs) ~= "table" or #globs == 0 then error("protect: expects a list of exe globs", 2) end
  for _, g in ipairs(globs) do
    if type(g) ~= "string" then error("protect: expects a list of exe globs", 2) end
    local c = g:sub(1, 1)
    if c ~= "/" and c ~= "*" then
      error(("protect: '%s' is neither an absolute path nor a glob starting with '*'"):format(g), 2)
    end
  end
  for _, g in ipairs(globs) do
    if host.protect then -- called here, not through pcall: its messages name the caller's line
      local ok, why = host.protect(g, M.SYSTEM_DIRS)
      if not ok then error("protect: " .. tostring(why), 2) end
    end
    M.protected[#M.protected + 1] = name_test(g)
    M.protected_globs[#M.protected_globs + 1] = g
  end
  if host.prekill_off then host.prekill_off() end -- C's early kill does not judge protect{}
  return true
end

local function protected_by_name(exe)
  if exe == nil then return false end
  for _, test in ipairs(M.protected) do
    if test(exe) then return true end
  end
  return false
end

-- The process a target names: an event or process object, or a pid.
local function resolve(target)
  if type(target) == "table" then return target end
  if math.type(target) == "integer" and target > 0 then return event.process(target) end
  return nil
end

local function output(level, msg, e, name, ok, err, extra, r)
  local result = { name = name, ok = ok, error = err }
  for k, v in pairs(extra or {}) do result[k] = v end
  host.emit(level, msg, "action", e, r and r.tags, { result }, r and r.name)
end

-- Signal one process: identity-checked, protect{}-checked (by the daemon
-- where it sends the signal), dry-run aware.
-- Returns ok, err, done ("killed" / "would kill" ...).
local function send(p, sig, verb, state, e, r)
  local pid = p.tgid or p.pid
  local exe = p.exe
  local what = ("pid %d (%s)"):format(pid, exe or "?")
  if (state.dry_run or not host.protect) and protected_by_name(exe) then -- nothing pinned: by name
    local why = "refused: protected (" .. exe .. ")"
    if host.refused then host.refused() end
    output("warning", ("%s %s %s"):format(verb, what, why), e, verb, false, why, nil, r)
    return nil, why, verb
  end
  if state.dry_run then
    output("notice", ("would %s %s with %s"):format(verb, what, M.signal_name(sig)), e, verb, true, nil, nil, r)
    return true, nil, "would " .. verb
  end
  -- The captured start time only: the hot path must not read /proc. A
  -- process of this batch is pinned by its pidfd already; any other is
  -- checked against the start time in C.
  event.fill(p)
  local start, approx = event.raw(p, "start_time"), false
  if start == nil then start, approx = event.raw(p, "_start_est"), true end
  local ok, why, sent_ns = host.signal(pid, start, sig, approx, r and r.name, event.raw(p, "_pid_ino"))
  if ok then
    local lat, extra = "", { pid = pid, signal = sig }
    local kt = e and event.raw(e, "ktime_ns")
    if sent_ns and kt then
      extra.latency_ns = sent_ns - kt -- both CLOCK_MONOTONIC
      lat = (" %d us after the event"):format(extra.latency_ns // 1000)
    end
    output("notice", ("%s %s with %s%s"):format(verb == "kill" and "killed" or "signalled", what,
      M.signal_name(sig), lat), e, verb, true, nil, extra, r)
    return true, nil, verb == "kill" and "killed" or "signalled"
  end
  local refusal = type(why) == "string" and why:find("^refused: protected") -- by the exe's inode, in C
  output("warning", ("%s %s %s%s"):format(verb, what, refusal and "" or "failed: ", why), e, verb, false, why, nil, r)
  return nil, why, verb
end

-- Descendants of pid known to the process table, nearest first (bounded).
local function descendants(p, e)
  local out = {}
  if not host.children then return out end
  local queue, seen = { p.tgid or p.pid }, {}
  while #queue > 0 and #out < 4096 do
    local pid = table.remove(queue, 1)
    for _, child in ipairs(host.children(pid) or {}) do
      if not seen[child] then
        seen[child] = true
        out[#out + 1] = event.process(child)
        queue[#queue + 1] = child
      end
    end
  end
  local _ = e
  return out
end

-- A rule that acted without knowing what the process runs (its exe could
-- not be read: the rule failed closed) says why in its result.
local function unknown_note(e)
  local why = type(e) == "table" and rawget(e, "_unknown")
  return why and (" (" .. why .. ")") or ""
end

local function do_kill(target, sig, opts, state, e, verb, r)
  local p = resolve(target)
  if p == nil then return nil, "no such target", verb end
  local tree = opts and opts.tree
  local kids = tree and descendants(p, e) or {}
  local ok, err, done = send(p, sig, verb, state, e, r)
  for _, child in ipairs(kids) do send(child, sig, verb, state, e, r) end
  local note = unknown_note(e)
  if note ~= "" then
    done = done .. note
    if err then err = err .. note end
  end
  return ok, err, done
end

local function check_sig(sig, default, level)
  if sig == nil then return default end
  local n = M.signal_number(sig)
  if n == nil then error(("unknown signal '%s'"):format(tostring(sig)), level + 1) end
  return n
end

-- kill(target?, sig?, opts?)
function M.make(state)
  local api = {}

  function api.kill(target, sig, opts)
    if type(target) == "string" or (math.type(target) == "integer" and state.loading and sig == nil) then
      -- kill "TERM" (or kill("TERM", {tree = true})) in an action list reads as a signal
      target, sig, opts = nil, target, sig
    end
    local n = check_sig(sig, 9, 2)
    if state.loading and (target == nil or type(target) ~= "table") then
      return rules.action("kill", "effect", function(e, r) return do_kill(e, n, opts, state, e, "kill", r) end,
        { signal = n })
    end
    if target == nil then error("kill: no target: pass the event, a process or a pid", 2) end
    return do_kill(target, n, opts, state, type(target) == "table" and target or nil, "kill")
  end

  function api.signal(sig, target)
    local n = check_sig(sig, nil, 2)
    if n == nil then error("signal: needs a signal", 2) end
    if state.loading and target == nil then
      return rules.action("signal", "effect", function(e, r) return do_kill(e, n, nil, state, e, "signal", r) end,
        { signal = n })
    end
    if target == nil then error("signal: no target: pass the event, a process or a pid", 2) end
    return do_kill(target, n, nil, state, type(target) == "table" and target or nil, "signal")
  end

  function api.stop(target)
    if state.loading and target == nil then
      return rules.action("stop", "effect", function(e, r) return do_kill(e, 19, nil, state, e, "signal", r) end,
        { signal = 19 })
    end
    if target == nil then error("stop: no target: pass the event, a process or a pid", 2) end
    return do_kill(target, 19, nil, state, type(target) == "table" and target or nil, "signal")
  end

  -- exec(argv, opts?): argv entries may be templates ("{pid}") expanded
  -- from the event when run as an action.
  function api.exec(argv, opts)
    if type(argv) ~= "table" or #argv == 0 then error("exec: argv must be a non-empty list", 2) end
    for i, a in ipairs(argv) do
      if type(a) ~= "string" then error(("exec: argv[%d] must be a string"):format(i), 2) end
    end
    if string.sub(argv[1], 1, 1) ~= "/" then error("exec: argv[1] must be an absolute path (no shell)", 2) end
    opts = opts or {}
    if type(opts) ~= "table" then error("exec: opts must be a table", 2) end
    for k in pairs(opts) do
      if k ~= "timeout" and k ~= "env" and k ~= "user" and k ~= "on_exit" and k ~= "stdout_cap" then
        error(("exec: unknown option '%s'"):format(tostring(k)), 2)
      end
    end
    local template = require "procwarden.template"
    local function run(e)
      local expanded = {}
      for i, a in ipairs(argv) do expanded[i] = e and template.expand(a, e, false) or a end -- arguments whole
      local text = table.concat(expanded, " ")
      if state.dry_run then
        output("notice", "would exec " .. text, e, "exec", true)
        return true, nil, "would exec"
      end
      local env -- a plain copy: opts.env may be an event's read-only view (e.env), which C cannot walk
      if type(opts.env) == "table" then
        env = {}
        for k, v in pairs(opts.env) do env[k] = v end
      end
      local o = { timeout = opts.timeout, env = env or opts.env, user = opts.user, stdout_cap = opts.stdout_cap,
        on_exit = opts.on_exit, name = "exec " .. expanded[1] }
      local ok, why = host.exec(expanded, o)
      output(ok and "info" or "warning", ok and ("started " .. text) or ("exec " .. text .. " failed: " .. why),
        e, "exec", ok == true, why)
      return ok, why, ok and "exec started" or "exec"
    end
    if state.loading then return rules.action("exec", "effect", run) end
    return run(nil)
  end

  -- deny(): in an exec rule's action list. The decision itself is made
  -- before the program runs (fanotify, see procwarden.decide); on the exec
  -- event the same rule acts only where that did not happen (memfd, an
  -- unmarked filesystem, no fanotify, a late decision): kill after exec.
  function api.deny()
    if not state.loading then error("deny: only in a rule's action list", 2) end
    return rules.action("deny", "effect", function(e, r)
      if state.dry_run then
        output("notice", ("would deny exec of %s by pid %s"):format(tostring(e.exe), tostring(e.pid)), e, "deny",
          true, nil, nil, r)
        return true, nil, "would deny"
      end
      -- why fanotify did not decide it before it ran, and why the rule
      -- held if it could not read the exe
      local how = "uncovered" .. (e.uncovered and (": " .. e.uncovered) or "")
      local ok, err = do_kill(e, 9, nil, state, e, "kill", r)
      return ok, err and (err .. "; " .. how),
        (ok and "killed after exec (" or "kill after exec (") .. how .. ")" .. unknown_note(e)
    end)
  end

  -- protect{} at the top level of a rules file only: the daemon resolves
  -- the entries to files once the files are loaded. (A tail call: the
  -- entry's messages name the caller's line.)
  function api.protect(globs)
    if not state.loading then error("protect: only at the top level of a rules file (resolved at load)", 2) end
    return M.protect(globs)
  end
  return api
end

return M
