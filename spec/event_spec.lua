-- event_spec.lua: the pure proc connector parser (src/event.c) as seen
-- through core.parse (src/core.c). Every message is built byte by byte with
-- string.pack, so the wire layout is spelled out here and not borrowed from
-- the code under test.
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local core = require "procwarden.core"

local pack = string.pack

-- Netlink message types.
local NOOP, ERROR, DONE, OVERRUN = 1, 2, 3, 4

-- proc_event.what per event type, and the bytes of event_data each needs.
local WHAT = {
	ack = 0x00000000, fork = 0x00000001, exec = 0x00000002, uid = 0x00000004,
	gid = 0x00000040, sid = 0x00000080, ptrace = 0x00000100, comm = 0x00000200,
	coredump = 0x40000000, exit = 0x80000000,
}
local PAYLOAD = {
	ack = 4, fork = 16, exec = 8, uid = 16, gid = 16, sid = 8,
	ptrace = 16, comm = 24, coredump = 16, exit = 24,
}
local TYPES = { "ack", "fork", "exec", "uid", "gid", "sid", "ptrace", "comm", "coredump", "exit" }

local NLMSG_HDRLEN, CN_HDRLEN, PE_HDRLEN, PE_LEN = 16, 20, 16, 40
local MSG_LEN = NLMSG_HDRLEN + CN_HDRLEN + PE_LEN -- 76: what the kernel sends

local function align4(n) return (n + 3) & ~3 end

-- proc_event: {u32 what, u32 cpu, u64 timestamp_ns} + union, zero padded to
-- `size` bytes (40, sizeof(struct proc_event), unless told otherwise).
local function proc_event(what, cpu, ts, union, size)
	local pe = pack("=I4I4i8", what, cpu or 0, ts or 0) .. (union or "")
	size = size or PE_LEN
	if #pe < size then pe = pe .. ("\0"):rep(size - #pe) end
	return pe
end

-- cn_msg: {u32 idx, u32 val, u32 seq, u32 ack, u16 len, u16 flags} + data.
-- opts.len overrides the length field (default: #payload).
local function cnmsg(payload, opts)
	opts = opts or {}
	return pack("=I4I4I4I4I2I2", opts.idx or 1, opts.val or 1, opts.seq or 0, opts.ack or 0,
		opts.len or #payload, opts.flags or 0) .. payload
end

-- nlmsghdr: {u32 len, u16 type, u16 flags, u32 seq, u32 pid} + payload, then
-- padding to the next 4-byte boundary (opts.pad = false for none, opts.padbyte
-- to fill it with something else than NUL). opts.len overrides nlmsg_len.
local function nlmsg(typ, payload, opts)
	opts = opts or {}
	payload = payload or ""
	local len = opts.len or (NLMSG_HDRLEN + #payload)
	local m = pack("=I4I2I2I4I4", len, typ, opts.flags or 0, opts.seq or 0, opts.pid or 0) .. payload
	if opts.pad ~= false then
		m = m .. (opts.padbyte or "\0"):rep(align4(#m) - #m)
	end
	return m
end

-- A whole NLMSG_DONE message carrying one proc_event. o: cpu, ts, seq, and
-- the cn_msg / nlmsghdr overrides (idx, val, cnlen, nllen, pesize).
local function event_msg(what, union, o)
	o = o or {}
	local pe = proc_event(what, o.cpu, o.ts, union, o.pesize)
	local cn = cnmsg(pe, { idx = o.idx, val = o.val, seq = o.seq, ack = o.ack, len = o.cnlen, flags = o.cnflags })
	return nlmsg(o.nltype or DONE, cn, { len = o.nllen, seq = o.nlseq, pid = o.nlpid, flags = o.nlflags,
		pad = o.pad })
end

-- event_data unions.
local U = {}
function U.ack(err) return pack("=I4", err) end
function U.fork(ppid, ptgid, cpid, ctgid) return pack("=i4i4i4i4", ppid, ptgid, cpid, ctgid) end
function U.exec(pid, tgid) return pack("=i4i4", pid, tgid) end
function U.sid(pid, tgid) return pack("=i4i4", pid, tgid) end
function U.uid(pid, tgid, r, e) return pack("=i4i4I4I4", pid, tgid, r, e) end
U.gid = U.uid
function U.ptrace(pid, tgid, tpid, ttgid) return pack("=i4i4i4i4", pid, tgid, tpid, ttgid) end
function U.comm(pid, tgid, name) return pack("=i4i4", pid, tgid) .. name .. ("\0"):rep(16 - #name) end
function U.coredump(pid, tgid, ppid, ptgid) return pack("=i4i4i4i4", pid, tgid, ppid, ptgid) end
function U.exit(pid, tgid, code, sig, ppid, ptgid)
	return pack("=i4i4I4i4i4i4", pid, tgid, code, sig, ppid, ptgid)
end

-- A plausible event of each type (pid 1000+i), for buffers of many events.
local function sample(name, i)
	i = i or 0
	local p = 1000 + i
	local unions = {
		ack = U.ack(0), fork = U.fork(p - 1, p - 1, p, p), exec = U.exec(p, p), uid = U.uid(p, p, 1, 2),
		gid = U.gid(p, p, 3, 4), sid = U.sid(p, p), ptrace = U.ptrace(p, p, 1, 1),
		comm = U.comm(p, p, "c" .. i), coredump = U.coredump(p, p, 1, 1), exit = U.exit(p, p, 0, 17, 1, 1),
	}
	return event_msg(WHAT[name], unions[name], { seq = i, cpu = i % 7, ts = 1000000 + i })
end

-- core.parse expecting success; returns the list.
local function parse_ok(bytes, max)
	local evs, err, off = core.parse(bytes, max)
	assert.is_table(evs, ("expected events, got %s at %s"):format(tostring(err), tostring(off)))
	assert.is_nil(err)
	return evs
end

-- core.parse expecting exactly one event; returns it.
local function parse1(bytes)
	local evs = parse_ok(bytes)
	assert.are.equal(1, #evs)
	return evs[1]
end

-- core.parse expecting failure with this name at this offset.
local function expect_error(bytes, name, off, max, msg)
	local evs, err, at = core.parse(bytes, max)
	assert.is_nil(evs, msg)
	assert.are.equal(name, err, msg)
	assert.are.equal(off, at, msg)
end

-- The event without its `time` (which depends on the clock), so that the
-- rest can be compared with assert.same: every field, and no extra field.
local function fields(ev)
	local t = {}
	for k, v in pairs(ev) do
		if k ~= "time" then t[k] = v end
	end
	return t
end

local function common(typ, pid, tgid, cpu, ts, seq)
	return { type = typ, pid = pid, tgid = tgid, thread = pid ~= tgid, cpu = cpu, ktime_ns = ts, seq = seq,
		startup = false }
end

local function with(t, extra)
	for k, v in pairs(extra) do t[k] = v end
	return t
end

local function concat(...) return table.concat({ ... }) end

-------------------------------------------------------------------------------

describe("the message builders", function()
	it("produce a 76-byte message laid out as the kernel sends it", function()
		local m = event_msg(WHAT.exec, U.exec(7, 7), { seq = 9, cpu = 3, ts = 5 })
		assert.are.equal(MSG_LEN, #m)
		assert.are.equal(76, string.unpack("=I4", m, 1))            -- nlmsg_len
		assert.are.equal(DONE, string.unpack("=I2", m, 5))          -- nlmsg_type
		assert.are.equal(1, string.unpack("=I4", m, 17))            -- cn idx
		assert.are.equal(1, string.unpack("=I4", m, 21))            -- cn val
		assert.are.equal(9, string.unpack("=I4", m, 25))            -- cn seq
		assert.are.equal(40, string.unpack("=I2", m, 33))           -- cn len
		assert.are.equal(WHAT.exec, string.unpack("=I4", m, 37))    -- what
		assert.are.equal(3, string.unpack("=I4", m, 41))            -- cpu
		assert.are.equal(5, string.unpack("=i8", m, 45))            -- timestamp
		assert.are.equal(7, string.unpack("=i4", m, 53))            -- pid
	end)
end)

describe("core.parse on trivial input", function()
	it("returns an empty list for an empty string", function()
		local evs = parse_ok("")
		assert.are.same({}, evs)
		assert.are.equal(0, #evs)
	end)

	it("returns an empty list for an empty string with max_events = 0", function()
		assert.are.same({}, parse_ok("", 0))
	end)

	it("returns an empty list for only skipped messages with max_events = 0", function()
		assert.are.same({}, parse_ok(nlmsg(NOOP) .. nlmsg(ERROR, pack("=i4", 0)), 0))
	end)

	it("raises on a missing argument", function()
		assert.has_error(function() core.parse() end)
	end)

	it("raises on max_events out of range", function()
		assert.has_error(function() core.parse("", -1) end)
		assert.has_error(function() core.parse("", 65537) end)
	end)

	it("accepts max_events at its upper bound", function()
		assert.are.equal(1, #parse_ok(sample("exec"), 65536))
	end)
end)

describe("event fields", function()
	local TS = 0x0123456789ABCDEF

	it("ack: subscription acknowledgement with err 0", function()
		local ev = parse1(event_msg(WHAT.ack, U.ack(0), { cpu = 0xFFFFFFFF, ts = 0, seq = 0 }))
		assert.are.same(with(common("ack", 0, 0, 0xFFFFFFFF, 0, 0), { err = 0, ack = 0 }), fields(ev))
		assert.is_false(ev.thread)
	end)

	it("ack: carries a nonzero err value", function()
		local ev = parse1(event_msg(WHAT.ack, U.ack(22), { cpu = 2, ts = TS, seq = 77 }))
		assert.are.same(with(common("ack", 0, 0, 2, TS, 77), { err = 22, ack = 0 }), fields(ev))
	end)

	it("ack: carries the cn_msg ack field (the kernel's answer is request ack + 1)", function()
		local ev = parse1(nlmsg(3, cnmsg(proc_event(WHAT.ack, 1, TS, U.ack(0)), { seq = 5, ack = 0xABCDEF01 })))
		assert.are.equal(0xABCDEF01, ev.ack)
		assert.are.equal(5, ev.seq)
	end)

	it("ack: err is unsigned 32-bit", function()
		local ev = parse1(event_msg(WHAT.ack, U.ack(0xFFFFFFFF)))
		assert.are.equal(4294967295, ev.err)
	end)

	it("fork: every field, pid/tgid are the child's", function()
		local ev = parse1(event_msg(WHAT.fork, U.fork(4242, 4241, 5353, 5353), { cpu = 13, ts = TS, seq = 0xDEADBEEF }))
		assert.are.same(with(common("fork", 5353, 5353, 13, TS, 0xDEADBEEF), {
			parent_pid = 4242, parent_tgid = 4241, child_pid = 5353, child_tgid = 5353,
		}), fields(ev))
		assert.is_false(ev.thread)
	end)

	it("fork: a new thread (child pid ~= child tgid) is flagged thread", function()
		local ev = parse1(event_msg(WHAT.fork, U.fork(100, 100, 205, 100)))
		assert.are.equal(205, ev.pid)
		assert.are.equal(100, ev.tgid)
		assert.is_true(ev.thread)
	end)

	it("fork: pids are signed 32-bit", function()
		local ev = parse1(event_msg(WHAT.fork, U.fork(-1, -2, -2147483648, 2147483647)))
		assert.are.equal(-1, ev.parent_pid)
		assert.are.equal(-2, ev.parent_tgid)
		assert.are.equal(-2147483648, ev.child_pid)
		assert.are.equal(2147483647, ev.child_tgid)
		assert.are.equal(-2147483648, ev.pid)
		assert.are.equal(2147483647, ev.tgid)
		assert.is_true(ev.thread)
	end)

	it("exec: every field", function()
		local ev = parse1(event_msg(WHAT.exec, U.exec(31337, 31336), { cpu = 255, ts = TS, seq = 4 }))
		assert.are.same(common("exec", 31337, 31336, 255, TS, 4), fields(ev))
		assert.is_true(ev.thread)
	end)

	it("exec: negative pid and tgid", function()
		local ev = parse1(event_msg(WHAT.exec, U.exec(-7, -7)))
		assert.are.equal(-7, ev.pid)
		assert.are.equal(-7, ev.tgid)
		assert.is_false(ev.thread)
	end)

	it("uid: every field", function()
		local ev = parse1(event_msg(WHAT.uid, U.uid(812, 812, 1000, 0), { cpu = 6, ts = TS, seq = 11 }))
		assert.are.same(with(common("uid", 812, 812, 6, TS, 11), { ruid = 1000, euid = 0 }), fields(ev))
	end)

	it("uid: ids are unsigned 32-bit (0xFFFFFFFF is not -1)", function()
		local ev = parse1(event_msg(WHAT.uid, U.uid(-3, 9, 0xFFFFFFFF, 0xFFFFFFFE)))
		assert.are.equal(4294967295, ev.ruid)
		assert.are.equal(4294967294, ev.euid)
		assert.are.equal(-3, ev.pid)
		assert.are.equal(9, ev.tgid)
	end)

	it("gid: every field", function()
		local ev = parse1(event_msg(WHAT.gid, U.gid(900, 901, 0xFFFFFFFF, 65534), { cpu = 1, ts = TS, seq = 12 }))
		assert.are.same(with(common("gid", 900, 901, 1, TS, 12), { rgid = 4294967295, egid = 65534 }), fields(ev))
		assert.is_nil(ev.ruid)
	end)

	it("sid: every field", function()
		local ev = parse1(event_msg(WHAT.sid, U.sid(-44, 55), { cpu = 0, ts = TS, seq = 13 }))
		assert.are.same(common("sid", -44, 55, 0, TS, 13), fields(ev))
	end)

	it("ptrace: every field (attach)", function()
		local ev = parse1(event_msg(WHAT.ptrace, U.ptrace(600, 601, 77, 78), { cpu = 9, ts = TS, seq = 14 }))
		assert.are.same(with(common("ptrace", 600, 601, 9, TS, 14), { tracer_pid = 77, tracer_tgid = 78 }),
			fields(ev))
	end)

	it("ptrace: detach (tracer 0) and negative tracer", function()
		local ev = parse1(event_msg(WHAT.ptrace, U.ptrace(600, 600, 0, -5)))
		assert.are.equal(0, ev.tracer_pid)
		assert.are.equal(-5, ev.tracer_tgid)
	end)

	it("comm: every field", function()
		local ev = parse1(event_msg(WHAT.comm, U.comm(321, 320, "kworker/u8:2"), { cpu = 3, ts = TS, seq = 15 }))
		assert.are.same(with(common("comm", 321, 320, 3, TS, 15), { comm = "kworker/u8:2" }), fields(ev))
	end)

	it("comm: exactly 16 bytes without a NUL is kept whole", function()
		local ev = parse1(event_msg(WHAT.comm, U.comm(1, 1, "0123456789abcdef")))
		assert.are.equal("0123456789abcdef", ev.comm)
		assert.are.equal(16, #ev.comm)
	end)

	it("comm: 16 bytes without NUL does not run into the following bytes", function()
		-- cn len 40 ends right after comm; the nl message carries more bytes.
		local pe = proc_event(WHAT.comm, 0, 0, U.comm(1, 1, "ABCDEFGHIJKLMNOP")) .. "XYZ\0"
		local m = nlmsg(DONE, cnmsg(pe, { len = 40 }))
		assert.are.equal("ABCDEFGHIJKLMNOP", parse1(m).comm)
	end)

	it("comm: stops at an embedded NUL", function()
		local ev = parse1(event_msg(WHAT.comm, U.comm(1, 1, "ab\0cdefgh")))
		assert.are.equal("ab", ev.comm)
	end)

	it("comm: NUL at the last byte gives 15 characters", function()
		local ev = parse1(event_msg(WHAT.comm, U.comm(1, 1, "0123456789abcde\0")))
		assert.are.equal("0123456789abcde", ev.comm)
	end)

	it("comm: empty name", function()
		assert.are.equal("", parse1(event_msg(WHAT.comm, U.comm(1, 1, ""))).comm)
	end)

	it("comm: non-ASCII bytes are passed through", function()
		local ev = parse1(event_msg(WHAT.comm, U.comm(1, 1, "\xc3\xa9t\xe9\xff")))
		assert.are.equal("\xc3\xa9t\xe9\xff", ev.comm)
	end)

	it("coredump: every field", function()
		local ev = parse1(event_msg(WHAT.coredump, U.coredump(7001, 7000, 1, -1), { cpu = 31, ts = TS, seq = 16 }))
		assert.are.same(with(common("coredump", 7001, 7000, 31, TS, 16), { parent_pid = 1, parent_tgid = -1 }),
			fields(ev))
		assert.is_true(ev.thread)
	end)

	it("exit: normal exit(1)", function()
		local ev = parse1(event_msg(WHAT.exit, U.exit(4000, 4000, 256, 17, 3999, 3998), { cpu = 2, ts = TS, seq = 17 }))
		assert.are.same(with(common("exit", 4000, 4000, 2, TS, 17), {
			exit_code = 256, exit_signal = 17, parent_pid = 3999, parent_tgid = 3998,
			core_dumped = false, exit_status = 1,
		}), fields(ev))
		assert.is_nil(ev.term_signal)
	end)

	it("exit: exit(0)", function()
		local ev = parse1(event_msg(WHAT.exit, U.exit(5, 5, 0, 17, 1, 1)))
		assert.are.equal(0, ev.exit_code)
		assert.are.equal(0, ev.exit_status)
		assert.is_nil(ev.term_signal)
		assert.is_false(ev.core_dumped)
	end)

	it("exit: exit(255)", function()
		local ev = parse1(event_msg(WHAT.exit, U.exit(5, 5, 0xFF00, 17, 1, 1)))
		assert.are.equal(0xFF00, ev.exit_code)
		assert.are.equal(255, ev.exit_status)
	end)

	it("exit: killed by SIGKILL", function()
		local ev = parse1(event_msg(WHAT.exit, U.exit(4001, 4001, 9, 17, 1, 1), { cpu = 0, ts = 1, seq = 2 }))
		assert.are.same(with(common("exit", 4001, 4001, 0, 1, 2), {
			exit_code = 9, exit_signal = 17, parent_pid = 1, parent_tgid = 1,
			core_dumped = false, term_signal = 9,
		}), fields(ev))
		assert.is_nil(ev.exit_status)
	end)

	it("exit: SIGSEGV with core dump", function()
		local ev = parse1(event_msg(WHAT.exit, U.exit(4002, 4002, 0x80 | 11, 17, 1, 1)))
		assert.are.equal(0x8B, ev.exit_code)
		assert.are.equal(11, ev.term_signal)
		assert.is_true(ev.core_dumped)
		assert.is_nil(ev.exit_status)
	end)

	it("exit: 'exited' is decided on the low 7 bits only, as WIFEXITED does", function()
		-- 0x80 with no signal: WIFEXITED is true, WEXITSTATUS 0. (core_dumped
		-- is then also true, as glibc's WCOREDUMP would say; see the report.)
		local ev = parse1(event_msg(WHAT.exit, U.exit(5, 5, 0x80, 17, 1, 1)))
		assert.are.equal(0, ev.exit_status)
		assert.is_nil(ev.term_signal)
		-- 0x17F: low 7 bits 0x7f, not an exit.
		ev = parse1(event_msg(WHAT.exit, U.exit(5, 5, 0x17F, 17, 1, 1)))
		assert.is_nil(ev.exit_status)
		assert.are.equal(127, ev.term_signal)
	end)

	it("exit: a thread (exit_signal -1, pid ~= tgid)", function()
		local ev = parse1(event_msg(WHAT.exit, U.exit(4010, 4000, 0, -1, 3999, 3999)))
		assert.are.equal(-1, ev.exit_signal)
		assert.are.equal(4010, ev.pid)
		assert.are.equal(4000, ev.tgid)
		assert.is_true(ev.thread)
		assert.are.equal(3999, ev.parent_pid)
		assert.are.equal(3999, ev.parent_tgid)
	end)

	it("exit: exit_code is unsigned and the status uses bits 8..15 only", function()
		local ev = parse1(event_msg(WHAT.exit, U.exit(1, 1, 0xFFFFFF00, -2147483648, -1, -2)))
		assert.are.equal(4294967040, ev.exit_code)
		assert.are.equal(255, ev.exit_status)
		assert.is_false(ev.core_dumped)
		assert.are.equal(-2147483648, ev.exit_signal)
		assert.are.equal(-1, ev.parent_pid)
		assert.are.equal(-2, ev.parent_tgid)
	end)

	it("seq is the cn_msg seq, not the netlink header's", function()
		local ev = parse1(event_msg(WHAT.exec, U.exec(1, 1), { seq = 0xFFFFFFFF, nlseq = 5, nlpid = 6, ack = 7 }))
		assert.are.equal(4294967295, ev.seq)
	end)

	it("netlink flags, seq, pid and cn ack/flags do not affect the event", function()
		local a = parse1(event_msg(WHAT.exec, U.exec(1, 2), { seq = 3 }))
		local b = parse1(event_msg(WHAT.exec, U.exec(1, 2), {
			seq = 3, nlseq = 0xFFFFFFFF, nlpid = 0xFFFFFFFF, nlflags = 0xFFFF, ack = 0xFFFFFFFF, cnflags = 0xFFFF,
		}))
		assert.are.same(fields(a), fields(b))
	end)

	it("cpu is unsigned 32-bit", function()
		assert.are.equal(4294967295, parse1(event_msg(WHAT.sid, U.sid(1, 1), { cpu = 0xFFFFFFFF })).cpu)
	end)

	it("ktime_ns keeps a large 64-bit timestamp exactly", function()
		local ts = 0x7FFFFFFFFFFFFFFE
		assert.are.equal(ts, parse1(event_msg(WHAT.exec, U.exec(1, 1), { ts = ts })).ktime_ns)
	end)

	it("ktime_ns above 2^63 keeps its 64 bits (Lua's wrapped unsigned convention)", function()
		local ev = parse1(event_msg(WHAT.exec, U.exec(1, 1), { ts = math.mininteger | 0x1234 }))
		assert.are.equal(pack("=i8", math.mininteger | 0x1234), pack("=i8", ev.ktime_ns))
		assert.is_true(math.ult(0x7FFFFFFFFFFFFFFF, ev.ktime_ns))
	end)

	it("every event has startup = false and a float time", function()
		for _, name in ipairs(TYPES) do
			local ev = parse1(sample(name, 1))
			assert.are.equal(name, ev.type)
			assert.is_false(ev.startup)
			assert.are.equal("float", math.type(ev.time))
		end
	end)

	it("time is the wall clock at boot (ktime 0) plus ktime_ns in seconds", function()
		local evs = parse_ok(concat(
			event_msg(WHAT.exec, U.exec(1, 1), { ts = 0 }),
			event_msg(WHAT.exec, U.exec(1, 1), { ts = 5000000000 }),
			event_msg(WHAT.exec, U.exec(1, 1), { ts = 86400 * 1000000000 + 500000000 })))
		local boot = evs[1].time
		assert.is_true(boot > 1e9 and boot <= os.time() + 1, "boot time " .. boot)
		assert.is_true(math.abs(evs[2].time - boot - 5) < 1e-3)
		assert.is_true(math.abs(evs[3].time - boot - 86400.5) < 1e-3)
	end)
end)

describe("exact minimum sizes", function()
	for _, name in ipairs(TYPES) do
		local need = PE_HDRLEN + PAYLOAD[name]

		it(name .. ": cn_msg.len = 16 + " .. PAYLOAD[name] .. " is enough", function()
			local full = sample(name, 2)
			local ev = parse1(full:sub(1, 32) .. pack("=I2", need) .. full:sub(35)) -- cn len shrunk
			assert.are.same(fields(parse1(full)), fields(ev))
			assert.are.equal(name, ev.type)
		end)

		it(name .. ": a message cut right after its payload (nlmsg_len " .. (36 + need) .. ") parses", function()
			local full = sample(name, 3)
			local pe = proc_event(WHAT[name], 3, 1000003, full:sub(53, 52 + PAYLOAD[name]), need)
			local m = nlmsg(DONE, cnmsg(pe, { seq = 3 }), { pad = false })
			assert.are.equal(36 + need, #m)
			assert.are.same(fields(parse1(full)), fields(parse1(m)))
		end)

		it(name .. ": cn_msg.len one byte short of its payload -> short_event", function()
			expect_error(event_msg(WHAT[name], nil, { cnlen = need - 1 }), "short_event", 0)
		end)
	end

	it("exit parsed from a minimal message keeps every field", function()
		local pe = proc_event(WHAT.exit, 8, 12345, U.exit(10, 11, 0x8B, -1, 12, 13), 40)
		local ev = parse1(nlmsg(DONE, cnmsg(pe, { seq = 1, len = 40 })))
		assert.are.same(with(common("exit", 10, 11, 8, 12345, 1), {
			exit_code = 0x8B, exit_signal = -1, parent_pid = 12, parent_tgid = 13, core_dumped = true, term_signal = 11,
		}), fields(ev))
	end)

	it("comm read from a minimal 24-byte payload", function()
		local pe = proc_event(WHAT.comm, 0, 0, U.comm(5, 6, "exactly16bytes!!"), 40)
		local ev = parse1(nlmsg(DONE, cnmsg(pe, { len = 40 }), { pad = false }))
		assert.are.equal("exactly16bytes!!", ev.comm)
		assert.are.equal(5, ev.pid)
		assert.are.equal(6, ev.tgid)
	end)
end)

describe("cn_msg.len", function()
	local good = event_msg(WHAT.exec, U.exec(1, 1))

	it("0 -> short_event", function()
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { cnlen = 0 }), "short_event", 0)
	end)

	it("15 (less than a proc_event header) -> short_event", function()
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { cnlen = 15 }), "short_event", 0)
	end)

	it("less than a proc_event header -> short_event even for an unknown what", function()
		expect_error(event_msg(0x12345678, nil, { cnlen = 15 }), "short_event", 0)
	end)

	it("exactly a proc_event header with an unknown what -> unknown_event", function()
		expect_error(event_msg(0x12345678, nil, { cnlen = 16 }), "unknown_event", 0)
	end)

	it("exactly a proc_event header with a known what -> short_event", function()
		for _, name in ipairs(TYPES) do
			expect_error(event_msg(WHAT[name], nil, { cnlen = 16 }), "short_event", 0, nil, name)
		end
	end)

	it("one more than the bytes after the cn_msg header -> bad_length", function()
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { cnlen = 41 }), "bad_length", 0)
	end)

	it("65535 -> bad_length", function()
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { cnlen = 0xFFFF }), "bad_length", 0)
	end)

	it("larger than the message but within the buffer -> bad_length", function()
		-- cn len 80 would reach into the next message: it must not.
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { cnlen = 80 }) .. good, "bad_length", 0)
	end)

	it("smaller than the data present is fine: extra bytes are ignored", function()
		local pe = proc_event(WHAT.exec, 0, 0, U.exec(3, 4)) .. ("\xff"):rep(20)
		local ev = parse1(nlmsg(DONE, cnmsg(pe, { len = 40 })))
		assert.are.equal(3, ev.pid)
		assert.are.equal(4, ev.tgid)
	end)

	it("larger than 40 when the data is there is fine", function()
		local ev = parse1(event_msg(WHAT.exec, U.exec(3, 4), { pesize = 41 }))
		assert.are.equal("exec", ev.type)
		assert.are.equal(3, ev.pid)
	end)

	it("too large is reported at the failing message's offset", function()
		expect_error(good .. good .. event_msg(WHAT.exec, U.exec(1, 1), { cnlen = 41 }), "bad_length", 152)
	end)
end)

describe("connector id", function()
	local function with_id(idx, val)
		return event_msg(WHAT.exec, U.exec(1, 1), { idx = idx, val = val })
	end

	it("idx 0 -> bad_connector_id", function()
		expect_error(with_id(0, 1), "bad_connector_id", 0)
	end)

	it("idx 2 (not CN_IDX_PROC) -> bad_connector_id", function()
		expect_error(with_id(2, 1), "bad_connector_id", 0)
	end)

	it("val 0 -> bad_connector_id", function()
		expect_error(with_id(1, 0), "bad_connector_id", 0)
	end)

	it("val 2 -> bad_connector_id", function()
		expect_error(with_id(1, 2), "bad_connector_id", 0)
	end)

	it("all 32 bits of idx and val are compared", function()
		expect_error(with_id(0x10001, 1), "bad_connector_id", 0)
		expect_error(with_id(1, 0x80000001), "bad_connector_id", 0)
		expect_error(with_id(0xFFFFFFFF, 0xFFFFFFFF), "bad_connector_id", 0)
	end)

	it("is checked before cn_msg.len", function()
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { idx = 7, cnlen = 0xFFFF }), "bad_connector_id", 0)
	end)

	it("is reported at the failing message's offset", function()
		expect_error(sample("fork") .. with_id(1, 9), "bad_connector_id", 76)
	end)
end)

describe("netlink message types", function()
	it("NOOP alone gives no event", function()
		assert.are.same({}, parse_ok(nlmsg(NOOP)))
	end)

	it("NOOP with an arbitrary payload is skipped, even a bogus cn_msg", function()
		local bogus = cnmsg(proc_event(0xFFFFFFFF), { idx = 9, len = 0xFFFF })
		assert.are.same({}, parse_ok(nlmsg(NOOP, bogus)))
	end)

	it("NOOP between events is skipped and order is kept", function()
		local evs = parse_ok(sample("fork", 1) .. nlmsg(NOOP, "xyz") .. sample("exec", 2))
		assert.are.equal(2, #evs)
		assert.are.equal("fork", evs[1].type)
		assert.are.equal("exec", evs[2].type)
		assert.are.equal(1002, evs[2].pid)
	end)

	it("ERROR with error 0 (an ACK) is skipped", function()
		local ack = nlmsg(ERROR, pack("=i4", 0) .. pack("=I4I2I2I4I4", 16, 0x10, 5, 1, 0))
		local evs = parse_ok(ack .. sample("exec", 4))
		assert.are.equal(1, #evs)
		assert.are.equal(1004, evs[1].pid)
	end)

	it("ERROR with just a 4-byte 0 error is skipped", function()
		assert.are.same({}, parse_ok(nlmsg(ERROR, pack("=i4", 0))))
	end)

	it("ERROR with a negative errno -> netlink_error", function()
		expect_error(nlmsg(ERROR, pack("=i4", -1) .. ("\0"):rep(16)), "netlink_error", 0)
	end)

	it("ERROR with -ENOBUFS -> netlink_error", function()
		expect_error(nlmsg(ERROR, pack("=i4", -105)), "netlink_error", 0)
	end)

	it("ERROR with a positive error -> netlink_error", function()
		expect_error(nlmsg(ERROR, pack("=i4", 1)), "netlink_error", 0)
	end)

	it("ERROR too short to hold an error code -> netlink_error", function()
		expect_error(nlmsg(ERROR), "netlink_error", 0)
		expect_error(nlmsg(ERROR, "\0\0\0", { pad = false }), "netlink_error", 0)
	end)

	it("ERROR nonzero after events -> netlink_error at its offset, events dropped", function()
		expect_error(sample("exec") .. sample("exit") .. nlmsg(ERROR, pack("=i4", -22)), "netlink_error", 152)
	end)

	it("OVERRUN -> overrun", function()
		expect_error(nlmsg(OVERRUN), "overrun", 0)
	end)

	it("OVERRUN after an event -> overrun at its offset", function()
		expect_error(sample("fork") .. nlmsg(OVERRUN, pack("=I4", 0)), "overrun", 76)
	end)

	it("OVERRUN carrying what looks like a valid event is still overrun", function()
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { nltype = OVERRUN }), "overrun", 0)
	end)

	it("type 0 -> bad_netlink_type", function()
		expect_error(event_msg(WHAT.exec, U.exec(1, 1), { nltype = 0 }), "bad_netlink_type", 0)
	end)

	it("types 5, 0x10 (NLMSG_MIN_TYPE), 0x103 and 0xFFFF -> bad_netlink_type", function()
		for _, t in ipairs({ 5, 0x10, 0x103, 0xFFFF }) do
			expect_error(event_msg(WHAT.exec, U.exec(1, 1), { nltype = t }), "bad_netlink_type", 0, nil, "type " .. t)
		end
	end)

	it("unknown type is reported at its offset", function()
		expect_error(sample("uid") .. nlmsg(0x20, "abcd"), "bad_netlink_type", 76)
	end)

	it("DONE with no room for a cn_msg header -> truncated", function()
		expect_error(nlmsg(DONE), "truncated", 0)
		expect_error(nlmsg(DONE, ("\0"):rep(19)), "truncated", 0)
	end)

	it("DONE with a bare cn_msg header (len 0) -> short_event", function()
		expect_error(nlmsg(DONE, cnmsg("")), "short_event", 0)
	end)
end)

describe("unknown proc_event.what", function()
	local cases = {
		{ 0x20000000, "PROC_EVENT_NONZERO_EXIT (a filter bit only)" },
		{ 3, "3" }, { 8, "8" }, { 0x400, "0x400" }, { 0x10000000, "0x10000000" },
		{ 0x80000001, "exit|fork" }, { 0xFFFFFFFF, "all bits" },
	}
	for _, c in ipairs(cases) do
		it(c[2] .. " -> unknown_event", function()
			expect_error(event_msg(c[1], U.exec(1, 1)), "unknown_event", 0)
		end)
	end

	it("is reported at the failing message's offset", function()
		expect_error(sample("exec") .. sample("sid") .. event_msg(0x20000000, U.exit(1, 1, 256, 17, 1, 1)),
			"unknown_event", 152)
	end)
end)

describe("netlink header and truncation", function()
	local msg = event_msg(WHAT.exit, U.exit(4000, 4000, 256, 17, 3999, 3999), { cpu = 1, ts = 2, seq = 3 })

	it("the reference message parses", function()
		assert.are.equal(MSG_LEN, #msg)
		assert.are.equal(1, parse1(msg).exit_status)
	end)

	it("every prefix 1..75 of a 76-byte message -> truncated at offset 0", function()
		for n = 1, MSG_LEN - 1 do
			expect_error(msg:sub(1, n), "truncated", 0, nil, "prefix of " .. n .. " bytes")
		end
	end)

	it("every prefix 77..151 of two messages -> truncated at offset 76", function()
		local two = sample("fork") .. msg
		for n = MSG_LEN + 1, 2 * MSG_LEN - 1 do
			expect_error(two:sub(1, n), "truncated", MSG_LEN, nil, "prefix of " .. n .. " bytes")
		end
		assert.are.equal(1, #parse_ok(two:sub(1, MSG_LEN)))
		assert.are.equal(2, #parse_ok(two))
	end)

	it("every prefix with nlmsg_len set to match: truncated below 36 bytes, bad_length from 36", function()
		for n = NLMSG_HDRLEN, MSG_LEN - 1 do
			local m = pack("=I4", n) .. msg:sub(5, n)
			local want = n < NLMSG_HDRLEN + CN_HDRLEN and "truncated" or "bad_length"
			expect_error(m, want, 0, nil, "nlmsg_len " .. n)
		end
	end)

	it("every prefix with nlmsg_len and cn_msg.len set to match: short_event until the payload fits", function()
		local need = NLMSG_HDRLEN + CN_HDRLEN + PE_HDRLEN + PAYLOAD.exit -- 76
		for n = NLMSG_HDRLEN + CN_HDRLEN, need - 1 do
			local m = pack("=I4", n) .. msg:sub(5, 32) .. pack("=I2", n - 36) .. msg:sub(35, n)
			expect_error(m, "short_event", 0, nil, "length " .. n)
		end
	end)

	it("exec prefixes with consistent lengths parse from 60 bytes on", function()
		local ex = event_msg(WHAT.exec, U.exec(61, 62), { seq = 63 })
		for n = 36, MSG_LEN do
			local m = pack("=I4", n) .. ex:sub(5, 32) .. pack("=I2", n - 36) .. ex:sub(35, n)
			if n < 60 then
				expect_error(m, "short_event", 0, nil, "length " .. n)
			else
				local ev = parse1(m)
				assert.are.same(common("exec", 61, 62, 0, 0, 63), fields(ev))
			end
		end
	end)

	it("nlmsg_len 0..15 -> bad_header", function()
		for n = 0, NLMSG_HDRLEN - 1 do
			local m = pack("=I4", n) .. msg:sub(5)
			expect_error(m, "bad_header", 0, nil, "nlmsg_len " .. n)
		end
	end)

	it("nlmsg_len 0 in a bare 16-byte header -> bad_header (no endless loop)", function()
		expect_error(("\0"):rep(16), "bad_header", 0)
	end)

	it("bad_header in a later message is reported at its offset", function()
		expect_error(msg .. msg .. pack("=I4I2I2I4I4", 8, DONE, 0, 0, 0), "bad_header", 152)
	end)

	it("nlmsg_len one larger than the buffer -> truncated", function()
		expect_error(pack("=I4", 77) .. msg:sub(5), "truncated", 0)
	end)

	it("nlmsg_len 0xFFFFFFFF -> truncated", function()
		expect_error(pack("=I4", 0xFFFFFFFF) .. msg:sub(5), "truncated", 0)
	end)

	it("nlmsg_len lying larger than the buffer in the 2nd message -> truncated at its offset", function()
		expect_error(msg .. pack("=I4", 200) .. msg:sub(5), "truncated", 76)
	end)

	it("nlmsg_len is the message boundary: a message swallowing the next hides it", function()
		local evs = parse_ok(pack("=I4", 2 * MSG_LEN) .. msg:sub(5) .. sample("exec", 9))
		assert.are.equal(1, #evs)
		assert.are.equal("exit", evs[1].type)
	end)

	it("nlmsg_len smaller than the cn_msg data -> bad_length", function()
		expect_error(pack("=I4", 60) .. msg:sub(5), "bad_length", 0)
	end)

	it("nlmsg_len 35 (cn_msg header cut) inside a longer buffer -> truncated", function()
		expect_error(pack("=I4", 35) .. msg:sub(5), "truncated", 0)
	end)

	it("trailing garbage shorter than a header -> truncated at its offset", function()
		for n = 1, NLMSG_HDRLEN - 1 do
			expect_error(msg .. ("\xAA"):rep(n), "truncated", MSG_LEN, nil, n .. " trailing bytes")
		end
	end)

	it("trailing 16 zero bytes -> bad_header at their offset", function()
		expect_error(msg .. ("\0"):rep(16), "bad_header", MSG_LEN)
	end)
end)

describe("alignment and padding", function()
	-- A DONE message of nlmsg_len 76 + extra (cn_msg.len grows with it).
	local function odd(extra, i)
		local pe = proc_event(WHAT.exec, 0, 0, U.exec(500 + i, 500 + i), PE_LEN + extra)
		return nlmsg(DONE, cnmsg(pe, { seq = i }), { pad = false })
	end

	for extra = 1, 3 do
		local len = MSG_LEN + extra
		it("nlmsg_len " .. len .. " + padding to " .. align4(len) .. " then another message", function()
			local first = odd(extra, 1)
			assert.are.equal(len, #first)
			local buf = first .. ("\0"):rep(align4(len) - len) .. sample("fork", 2)
			local evs = parse_ok(buf)
			assert.are.equal(2, #evs)
			assert.are.equal(501, evs[1].pid)
			assert.are.equal("fork", evs[2].type)
			assert.are.equal(1002, evs[2].pid)
		end)

		it("nlmsg_len " .. len .. " as the last message needs no padding", function()
			assert.are.equal(501, parse1(odd(extra, 1)).pid)
		end)

		it("nlmsg_len " .. len .. " with partial padding at the end of the buffer", function()
			for p = 0, align4(len) - len do
				assert.are.equal(501, parse1(odd(extra, 1) .. ("\0"):rep(p)).pid)
			end
		end)
	end

	it("padding bytes are not inspected", function()
		local buf = odd(1, 1) .. "\xff\xff\xff" .. sample("exec", 3)
		assert.are.equal(2, #parse_ok(buf))
	end)

	it("the next message is read at the aligned offset, not right after nlmsg_len", function()
		-- No padding: the 2nd message starts at 77, the parser reads at 80.
		local evs, err, off = core.parse(odd(1, 1) .. sample("exec", 3))
		assert.is_nil(evs)
		assert.is_string(err)
		assert.are.equal(80, off)
	end)

	it("an error after an odd-length message is reported at the aligned offset", function()
		expect_error(odd(2, 1) .. "\0\0" .. nlmsg(OVERRUN), "overrun", 80)
	end)

	it("trailing garbage after a padded odd message -> truncated at the aligned offset", function()
		expect_error(odd(1, 1) .. "\0\0\0" .. "garbage", "truncated", 80)
	end)

	it("one byte past the padding -> truncated at the aligned offset", function()
		expect_error(odd(3, 1) .. "\0" .. "x", "truncated", 80)
	end)

	it("odd-length NOOP and ERROR messages are skipped with their padding", function()
		local buf = nlmsg(NOOP, "abcde") .. nlmsg(ERROR, pack("=i4", 0) .. "z") .. sample("exec", 5)
		assert.are.equal(24, #nlmsg(NOOP, "abcde"))
		local evs = parse_ok(buf)
		assert.are.equal(1, #evs)
		assert.are.equal(1005, evs[1].pid)
	end)
end)

describe("several messages in one buffer", function()
	it("all event types, order preserved, each with its own seq", function()
		local parts = {}
		for i, name in ipairs(TYPES) do parts[i] = sample(name, i) end
		local evs = parse_ok(table.concat(parts))
		assert.are.equal(#TYPES, #evs)
		for i, name in ipairs(TYPES) do
			assert.are.equal(name, evs[i].type)
			assert.are.equal(i, evs[i].seq)
			assert.are.equal(i % 7, evs[i].cpu)
			assert.are.equal(1000000 + i, evs[i].ktime_ns)
			if name ~= "ack" then assert.are.equal(1000 + i, evs[i].pid) end
		end
		assert.are.equal("c8", evs[8].comm)
		assert.are.equal(1, evs[4].ruid)
		assert.are.equal(4, evs[5].egid)
		assert.are.equal(0, evs[10].exit_status)
		assert.are.equal(1009, evs[9].pid)
		assert.are.equal(1002, evs[2].child_pid)
		assert.are.equal(1001, evs[2].parent_pid)
	end)

	it("mixed NOOP, ERROR 0 and events in a full 1024-event buffer", function()
		local parts = { nlmsg(NOOP) }
		for i = 1, 1024 do
			parts[#parts + 1] = sample(TYPES[(i - 1) % #TYPES + 1], i)
			if i % 100 == 0 then parts[#parts + 1] = nlmsg(ERROR, pack("=i4", 0)) end
		end
		local evs = parse_ok(table.concat(parts))
		assert.are.equal(1024, #evs)
		assert.are.equal(1024, evs[1024].seq)
		assert.are.equal(500, evs[500].seq)
	end)

	it("an error in the 3rd message is reported at its byte offset", function()
		local m1 = sample("fork", 1)
		local m2 = event_msg(WHAT.exec, U.exec(2, 2), { pesize = 48 }) -- 84 bytes
		assert.are.equal(84, #m2)
		expect_error(m1 .. m2 .. event_msg(WHAT.exec, U.exec(3, 3), { idx = 0 }) .. sample("exec", 4),
			"bad_connector_id", 160)
	end)

	it("the 3rd message's offset counts skipped messages too", function()
		local buf = nlmsg(NOOP, "123456") .. sample("exec", 1) .. event_msg(0x20000000, U.exec(1, 1))
		expect_error(buf, "unknown_event", 24 + 76)
	end)
end)

describe("max_events", function()
	local three = sample("fork", 1) .. sample("exec", 2) .. sample("exit", 3)

	it("fewer than the events -> buffer_too_small at the first event that does not fit", function()
		expect_error(three, "buffer_too_small", 152, 2)
	end)

	it("1 with three events -> buffer_too_small at offset 76", function()
		expect_error(three, "buffer_too_small", 76, 1)
	end)

	it("0 with one event -> buffer_too_small at offset 0", function()
		expect_error(sample("exec"), "buffer_too_small", 0, 0)
	end)

	it("0 with an event after skipped messages -> buffer_too_small at the event", function()
		expect_error(nlmsg(NOOP) .. sample("exec"), "buffer_too_small", 16, 0)
	end)

	it("equal to the number of events is enough", function()
		local evs = parse_ok(three, 3)
		assert.are.equal(3, #evs)
		assert.are.equal("exit", evs[3].type)
	end)

	it("skipped messages do not count", function()
		local evs = parse_ok(nlmsg(NOOP) .. sample("exec", 1) .. nlmsg(ERROR, pack("=i4", 0)) .. nlmsg(NOOP), 1)
		assert.are.equal(1, #evs)
	end)

	it("a message error before the limit is hit wins", function()
		expect_error(sample("exec") .. nlmsg(OVERRUN), "overrun", 76, 1)
	end)

	it("the limit is hit before a later message error is seen", function()
		expect_error(sample("exec") .. sample("exec") .. nlmsg(OVERRUN), "buffer_too_small", 76, 1)
	end)

	it("defaults to 1024", function()
		local one = sample("exec", 1)
		assert.are.equal(1024, #parse_ok(one:rep(1024)))
		expect_error(one:rep(1025), "buffer_too_small", 1024 * MSG_LEN)
	end)
end)
