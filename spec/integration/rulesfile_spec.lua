-- Rules files are code run as root, opened once (root only): the path is
-- walked from / with no symbolic link followed, each directory and the file
-- are checked on their own fds, and the rules are read from that same open
-- file (src/identity.c), on start, --check and SIGHUP alike. The attacks:
-- a link of another user's in /tmp, a link flipped between the check and
-- the load (many tries, at start and at SIGHUP), /dev/stdin (a pipe, where
-- a path cannot even be resolved), and files or directories others may
-- change. The attacker's file raises "PWNED" when it runs, so any load of
-- it shows. The attacker is nobody.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(here .. "helpers.lua")

local is_root = H.is_root()
local it_root = is_root and it or function(name) pending(name .. " (needs root)") end
local SLOW = H.build:find("asan", 1, true) and 3 or 1
local TRIES = 60

local GOOD = 'rule { name = "good", on = "exec", action = alert "good {pid}" }\n'
local BAD = 'error("PWNED: the attacker\'s rules ran as root")\n'

-- Flip a link between two targets as fast as it can for some seconds:
-- symlink to a temporary name, rename over the link.
local FLIP_C = [[
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
	time_t end = time(NULL) + atoi(argv[4]);
	for (unsigned long n = 0; time(NULL) < end; n++) {
		unlink(tmp);
		if (symlink(argv[2 + n % 2], tmp) < 0 || rename(tmp, argv[1]) < 0)
			return 1;
	}
	return 0;
}
]]

local function sh_ok(cmd)
  local _, code = H.run(cmd .. " >/dev/null 2>&1")
  assert(code == 0, "failed: " .. cmd)
end

local AS_NOBODY = "setpriv --reuid=nobody --regid=nogroup --clear-groups "

local tools

describe("rules files opened once (root)", function()
  local s

  before_each(function()
    if not is_root then return end
    s = H.session()
    sh_ok("chmod 755 " .. H.q(s.dir))
  end)

  after_each(H.end_test)
  lazy_teardown(H.end_file)

  local function flipper()
    if not tools then
      local src = os.tmpname()
      H.write(src .. ".c", FLIP_C)
      local ok, t = pcall(H.build_tools, { flip = { "-O1", "-Wall", src .. ".c" } })
      os.remove(src .. ".c")
      os.remove(src)
      assert(ok, t)
      tools = t
      sh_ok("chmod 755 " .. H.q(tools.session.dir))
    end
    return tools.flip
  end

  -- good.lua (root's, in root's directory), and the attacker's directory
  -- holding bad.lua and the link the attacker flips.
  local function setup()
    local good = s:rules("good.lua", GOOD)
    local evil = s:path("evil")
    sh_ok(("mkdir -m 755 %s && chown nobody:nogroup %s"):format(H.q(evil), H.q(evil)))
    H.write(evil .. "/bad.lua", BAD)
    sh_ok(("chown nobody:nogroup %s/bad.lua && chmod 644 %s/bad.lua"):format(H.q(evil), H.q(evil)))
    sh_ok(AS_NOBODY .. ("ln -s %s %s/link.lua"):format(H.q(good), H.q(evil)))
    return good, evil, evil .. "/link.lua"
  end

  local function check(path)
    return H.exec({ "timeout", "20", H.bin, "--check", path }, s.dir)
  end

  it_root("refuses another user's link in /tmp to a good file (--check)", function()
    local good = s:rules("good.lua", GOOD)
    local link = H.run("mktemp -u /tmp/pw-rulesfile-link.XXXXXX"):gsub("%s+$", "")
    sh_ok(AS_NOBODY .. ("ln -s %s %s"):format(H.q(good), H.q(link)))
    local out, err, code = check(link)
    os.remove(link)
    assert.are.equal(2, code, "an attacker's link was accepted:\n" .. out .. err)
    assert.matches("refusing rules file " .. link .. ": " .. link .. " is a symbolic link", err, 1, true)
    assert.not_matches("rules ok", out, 1, true)
  end)

  it_root(("never loads the attacker's file through a link flipped during --check (%d tries)"):format(TRIES), function()
    local good, evil, link = setup()
    local flip = flipper()
    os.execute(("%s %s %s %s %s 60 >/dev/null 2>&1 & echo $! > %s"):format(AS_NOBODY, H.q(flip), H.q(link),
      H.q(good), H.q(evil .. "/bad.lua"), H.q(s:path("flip.pid"))))
    local ran, accepted = 0, 0
    for _ = 1, TRIES do
      local out, err, code = check(link)
      if err:find("PWNED", 1, true) then ran = ran + 1 end
      if code == 0 and out:find("rules ok", 1, true) then accepted = accepted + 1 end
    end
    os.execute("kill " .. (H.read(s:path("flip.pid")):match("%d+") or "0") .. " 2>/dev/null")
    assert.are.equal(0, ran, ("the attacker's rules ran as root in %d of %d loads"):format(ran, TRIES))
    assert.are.equal(0, accepted, ("a flipped link was accepted in %d of %d loads"):format(accepted, TRIES))
  end)

  it_root("never loads the attacker's file on SIGHUP, whose path now goes through a flipped link", function()
    local good, evil, link = setup()
    local path = s:rules("rules.lua", H.EXEC_LOGGER .. GOOD)
    local d = s:start { args = { "-o", "json", "--duration", "60", path }, timeout = 70 }
    assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
    -- the rules path becomes a link to the one the attacker flips
    sh_ok(("ln -sfn %s %s"):format(H.q(link), H.q(path)))
    local flip = flipper()
    os.execute(("%s %s %s %s %s 60 >/dev/null 2>&1 & echo $! > %s"):format(AS_NOBODY, H.q(flip), H.q(link),
      H.q(good), H.q(evil .. "/bad.lua"), H.q(s:path("flip.pid"))))
    local hups = 20
    for n = 1, hups do
      d:signal("HUP")
      assert.is_true(H.wait_grep(d.err_file, "(rules reloaded|reload failed)", 5 * SLOW), "no verdict on a HUP")
      local _, code = H.run(("timeout 5 sh -c %s"):format(H.q(('until [ "$(grep -cE "rules reloaded|reload failed" %s)"'
        .. ' -ge %d ]; do sleep 0.02; done'):format(H.q(d.err_file), n))))
      assert.are.equal(0, code, "no verdict on HUP " .. n)
    end
    os.execute("kill " .. (H.read(s:path("flip.pid")):match("%d+") or "0") .. " 2>/dev/null")
    local st = s:spawn_true() -- the first rules still run
    assert.is_true(d:wait_out('"msg":"good ' .. st .. '"', 5 * SLOW), "the old rules no longer run")
    assert.are.equal(0, d:stop(10 * SLOW), d:err())
    local err = d:err()
    assert.are.equal(0, #H.lines_with(err, "PWNED"), "the attacker's rules ran as root:\n" .. err:sub(-2000))
    assert.are.equal(0, #H.lines_with(err, "rules reloaded"), err:sub(-2000))
    assert.are.equal(hups, #H.lines_with(err, "is a symbolic link"), err:sub(-2000))
  end)

  it_root("refuses /dev/stdin, a pipe anyone may feed (no path to check)", function()
    local out, code = H.run(("printf '%%s' %s | timeout 20 %s --check /dev/stdin 2>&1"):format(H.q(BAD),
      H.q(H.bin)))
    assert.are.equal(2, code, out)
    assert.not_matches("PWNED", out, 1, true)
    assert.matches("refusing rules file /dev/stdin: /dev/stdin is a symbolic link", out, 1, true)
  end)

  describe("a rules file others may change", function()
    it_root("refuses one another user owns", function()
      local path = s:rules("theirs.lua", GOOD)
      sh_ok("chown nobody " .. H.q(path))
      local _, err, code = check(path)
      assert.are.equal(2, code, err)
      assert.matches(path .. ": owned by uid 65534, neither root nor the daemon's user", err, 1, true)
    end)

    it_root("refuses one others may write", function()
      local path = s:rules("open.lua", GOOD)
      sh_ok("chmod 666 " .. H.q(path))
      local _, err, code = check(path)
      assert.are.equal(2, code, err)
      assert.matches(path .. ": writable by others (chmod go-w)", err, 1, true)
    end)

    it_root("refuses one in a directory another user owns (who could swap it)", function()
      local dir = s:path("theirs")
      sh_ok(("mkdir -m 755 %s && chown nobody %s"):format(H.q(dir), H.q(dir)))
      local path = dir .. "/rules.lua"
      H.write(path, GOOD)
      local _, err, code = check(path)
      assert.are.equal(2, code, err)
      assert.matches(dir .. ": directory of " .. path .. " owned by uid 65534", err, 1, true)
    end)

    it_root("refuses one in a directory others may write (not sticky)", function()
      local dir = s:path("open")
      sh_ok(("mkdir -m 777 %s"):format(H.q(dir)))
      local path = dir .. "/rules.lua"
      H.write(path, GOOD)
      local _, err, code = check(path)
      assert.are.equal(2, code, err)
      assert.matches(dir .. ": directory of " .. path .. " is writable by others", err, 1, true)
    end)

    it_root("refuses it on SIGHUP once it became group-writable: the old rules stay", function()
      local path = s:rules("rules.lua", H.EXEC_LOGGER .. GOOD)
      local d = s:start { args = { "-o", "json", "--duration", "60", path }, timeout = 70 }
      assert.is_true(d:ready(5 * SLOW), "the daemon never handled a probe exec:\n" .. d:err())
      H.write(path, H.EXEC_LOGGER .. BAD)
      sh_ok("chmod 664 " .. H.q(path))
      d:signal("HUP")
      assert.is_true(H.wait_grep(d.err_file, "(rules reloaded|reload failed)", 5 * SLOW), "no verdict on the HUP")
      local st = s:spawn_true()
      assert.is_true(d:wait_out('"msg":"good ' .. st .. '"', 5 * SLOW), "the old rules no longer run")
      assert.are.equal(0, d:stop(10 * SLOW), d:err())
      local err = d:err()
      assert.are.equal(0, #H.lines_with(err, "PWNED"), err)
      assert.are.equal(1, #H.lines_with(err, "reload failed, the old rules stay: procwarden: refusing rules file "
        .. path .. ": writable by its group"), err)
    end)
  end)
end)
