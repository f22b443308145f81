-- fork_bomb.lua: alert when one user forks processes faster than anyone
-- should (a fork bomb, or a runaway respawn loop).
--
-- Catches
--   * more than LIMIT new processes (fork events that are not thread
--     creations) by one uid within WINDOW seconds. `:(){ :|:& };:` passes
--     that within a fraction of a second. One alert per uid a minute; the
--     firings in between are counted and summed up when the window closes.
--   Time is the event's own `time`, not the clock of the machine running the
--   rule, so a replay (--replay, procwarden.testing) gives the same answer.
--   Alert-only.
--
-- How it counts
--   A sliding window per uid, kept as BUCKETS counters of WINDOW/BUCKETS
--   seconds each: the count covers the last WINDOW seconds give or take one
--   bucket. Memory is bounded: at most MAX_UIDS uids are tracked; when a new
--   uid would pass that, the uids idle for a whole window are forgotten, and
--   if none is, everything is (a burst of new uids cannot grow the table).
--
-- Known false positives
--   * parallel builds (make -j64, configure scripts), test suites and CI
--     runners fork a lot: raise LIMIT or add their uids to EXEMPT_UIDS.
--   * root and system daemons: uid 0 is counted like anyone else.
-- Known false negatives
--   * a bomb spread over many uids, or slower than LIMIT/WINDOW per second,
--     which RLIMIT_NPROC / systemd TasksMax= would still stop.
--   * a thread bomb (pthread_create in a loop): threads are not counted.
--   * fork events whose uid cannot be read (the child already gone).
--
-- Tuning
--   * LIMIT and WINDOW (forks per uid per window), EXEMPT_UIDS.
--   * to stop a bomb rather than report it, add a rule with no throttle
--     (a throttled firing skips its actions) that stops every new child:
--       rule { name = "fork-bomb-stop", on = "fork", match = { thread = false },
--              when = <the same test>, action = stop() }
--     then clean up by hand (kill -KILL -1 as that user). Stopping is
--     blunt: a big build over the limit is frozen too.

local WINDOW = 5      -- seconds
local LIMIT = 1000    -- forks per uid within WINDOW
local BUCKETS = 10    -- counters per window (resolution WINDOW/BUCKETS s)
local MAX_UIDS = 4096 -- uids tracked at most
local EXEMPT_UIDS = { -- [uid] = true
}

local WIDTH = WINDOW / BUCKETS
local windows, nwindows = {}, 0 -- uid -> { slot = newest slot, total = n, [0..BUCKETS-1] = counts }

-- Forget the uids that forked nothing within the last window; all of them
-- if that is not enough.
local function forget(slot)
  for uid, w in pairs(windows) do
    if slot - w.slot >= BUCKETS then
      windows[uid] = nil
      nwindows = nwindows - 1
    end
  end
  if nwindows >= MAX_UIDS then windows, nwindows = {}, 0 end
end

-- Count one fork of uid at time t; returns the forks in the window.
local function count(uid, t)
  local slot = math.floor(t / WIDTH)
  local w = windows[uid]
  if w == nil then
    if nwindows >= MAX_UIDS then forget(slot) end
    w = { slot = slot, total = 0 }
    for i = 0, BUCKETS - 1 do w[i] = 0 end
    windows[uid] = w
    nwindows = nwindows + 1
  elseif slot > w.slot then -- clear the buckets that left the window
    for i = 1, math.min(slot - w.slot, BUCKETS) do
      local b = (w.slot + i) % BUCKETS
      w.total = w.total - w[b]
      w[b] = 0
    end
    w.slot = slot
  end -- an event older than the newest one counts in the newest bucket
  local b = w.slot % BUCKETS
  w[b] = w[b] + 1
  w.total = w.total + 1
  return w.total
end

rule {
  name = "fork-bomb",
  on = "fork",
  match = { thread = false },
  when = function(e)
    local uid, t = e.uid, e.time
    if uid == nil or t == nil or EXEMPT_UIDS[uid] then return false end
    return count(uid, t) > LIMIT
  end,
  action = alert(("fork bomb? uid {uid} ({user}) started more than %d processes in %g s "
    .. "(latest: pid {pid} {exe}, parent {parent_pid})"):format(LIMIT, WINDOW)),
  priority = "critical",
  tags = { "mitre:T1499.001" },
  throttle = { key = "uid", count = 1, per = 60 },
}
