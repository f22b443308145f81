-- Forged proc connector messages (procwarden(8); doc/threat-model.md): root can send proc connector
-- messages from a userspace socket, unicast to procwarden's port id or
-- multicast to the CN_IDX_PROC group. procwarden must drop every message
-- whose sender port id (the recvmsg source address) is not 0, count it
-- (dropped_forged) and warn once, naming the sender's port id.
-- spec/integration/forge.c sends one forged exec event for pid 424242.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end

local FORGED_PID = "424242"

-- The port id of pid's NETLINK_CONNECTOR socket: match the inodes of its
-- socket fds against /proc/net/netlink (columns: sk Eth Pid Groups ...
-- Inode; Eth 11 = NETLINK_CONNECTOR, Pid = port id).
local function connector_portid(pid)
  local inodes = {}
  local links = H.run(("for f in /proc/%d/fd/*; do readlink \"$f\"; done 2>/dev/null"):format(pid))
  for ino in links:gmatch("socket:%[(%d+)%]") do inodes[ino] = true end
  local table_text = H.read("/proc/net/netlink")
  for line in table_text:gmatch("[^\n]+") do
    local f = {}
    for w in line:gmatch("%S+") do f[#f + 1] = w end
    if f[2] == "11" and inodes[f[#f]] then return tonumber(f[3]) end
  end
  return nil
end

describe("forged proc connector messages (root)", function()
  local s
  before_each(function()
    if is_root then s = H.session() end
  end)
  after_each(function()
    if s then s:cleanup() end
    s = nil
  end)

  it_root("are dropped, counted (dropped_forged 2) and reported once with the sender's port id", function()
    local forge = s:path("forge")
    local _, cc_err, cc_code = H.exec({ "cc", "-O1", "-o", forge, here .. "forge.c" }, s.dir)
    assert.are.equal(0, cc_code, "cannot build forge.c: " .. cc_err)

    -- forged multicasts reach every proc connector listener on the host:
    -- one forging run at a time (other runs of this spec, by other users
    -- of the machine, would add to the count).
    assert.is_true(s:lock("procwarden-forged-spec", 20, 40), "could not take the forging lock")

    local rules = s:rules("exec.lua", [[
on("exec", function(e) log("info", "exec pid={pid}", e) end)
]])
    local d = s:start { args = { "--stats", "--duration", "8", rules }, timeout = 12 }
    assert.is_true(d:ready(5), "the daemon never handled a probe exec:\n" .. d:err())
    local port = connector_portid(d:pid())
    assert.is_number(port, "no NETLINK_CONNECTOR socket found for pid " .. tostring(d:pid()))

    -- Multicast to the group, then unicast to the daemon's port id.
    local out1, err1, code1 = H.exec({ forge, "multicast" }, s.dir)
    assert.are.equal(0, code1, "forge multicast: " .. err1)
    local sender1 = assert(tonumber(out1:match("portid (%d+)")), out1)
    local out2, err2, code2 = H.exec({ forge, "unicast", tostring(port) }, s.dir)
    assert.are.equal(0, code2, "forge unicast: " .. err2)
    local sender2 = assert(tonumber(out2:match("portid (%d+)")), out2)
    assert.are_not.equal(0, sender1)
    assert.are_not.equal(sender1, sender2)

    -- A real exec after the forged ones: once it is seen, the forged
    -- messages (queued before it) have been read.
    local pid = s:spawn_true()
    assert.is_true(d:wait_out('"msg":"exec pid=' .. pid .. '"', 5), "exec " .. pid .. " unseen:\n" .. d:err())
    assert.are.equal(0, d:stop(), d:err())

    local out, err = d:out(), d:err()
    assert.is_falsy(out:find('"pid":' .. FORGED_PID .. '[,}]'), "a rule saw a forged event:\n" .. out)
    assert.are.same({}, H.lines_with(out, "exec pid=" .. FORGED_PID), "a rule saw a forged event")
    local st = assert(d:stats(), "no --stats block:\n" .. err)
    assert.are.equal(2, st.dropped_forged, err)
    assert.is_true(st.dropped >= 2, err)
    assert.are.equal(0, st.handler_errors, err)
    -- One warning, naming the first sender's port id; the second is only counted.
    local warnings = H.lines_with(err, "port id")
    assert.are.equal(1, #warnings, err)
    assert.is_truthy(warnings[1]:find("warning", 1, true), warnings[1])
    assert.is_truthy(warnings[1]:find("%f[%d]" .. sender1 .. "%f[%D]"), warnings[1])
    assert.is_falsy(warnings[1]:find("%f[%d]" .. sender2 .. "%f[%D]"), warnings[1])
  end)
end)
