-- Rules files are code run as root: refused when others may change them
-- (as sshd's StrictModes), unless --insecure-rules (src/main.c).
local bin = (os.getenv("PW_BUILD") or "build") .. "/procwarden"

local function run(args)
  local p = io.popen(bin .. " " .. args .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

describe("rules file permissions", function()
  local dir
  before_each(function()
    local p = io.popen("mktemp -d /tmp/pw-strict.XXXXXX")
    dir = p:read("l")
    p:close()
    os.execute("chmod 700 " .. dir)
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  local function write(name, mode)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "w"))
    f:write('on("exec", function() end)\n')
    f:close()
    os.execute(("chmod %s %s"):format(mode, path))
    return path
  end

  it("accepts a file only its owner can write", function()
    local rc, out = run("--check " .. write("ok.lua", "644"))
    assert.equal(0, rc, out)
  end)

  it("refuses a file others can write, saying why and what to do", function()
    local path = write("w.lua", "666")
    local rc, out = run("--check " .. path)
    assert.equal(2, rc, out)
    assert.matches("refusing rules file " .. path:gsub("%p", "%%%0") .. ": writable by others %(chmod go%-w%)", out)
    assert.matches("--insecure-rules", out, 1, true)
  end)

  it("refuses a file its group can write", function()
    local rc, out = run("--check " .. write("g.lua", "664"))
    assert.equal(2, rc, out)
    assert.matches("writable by its group", out, 1, true)
  end)

  it("refuses a file in a directory others can write (not sticky)", function()
    os.execute("chmod 777 " .. dir)
    local rc, out = run("--check " .. write("d.lua", "644"))
    assert.equal(2, rc, out)
    assert.matches("directory of .* is writable by others", out)
  end)

  it("accepts a file in a sticky directory owned by root, such as /tmp", function()
    if io.popen("id -u"):read("l") ~= "0" then return pending("needs root (a root-owned file)") end
    os.execute("chmod 1777 " .. dir)
    local rc, out = run("--check " .. write("s.lua", "644"))
    assert.equal(0, rc, out)
  end)

  it("loads it anyway with --insecure-rules, with a loud warning", function()
    local path = write("w.lua", "666")
    local rc, out = run("--check --insecure-rules " .. path)
    assert.equal(0, rc, out)
    assert.matches("warning: %-%-insecure%-rules: loading " .. path:gsub("%p", "%%%0"), out)
  end)
end)
