-- container_spec.lua: procwarden.container.id(cgroup) -> container id, for
-- the cgroup paths each container runtime really creates (procwarden-rules(5):
-- "container id only for a recognised runtime layout (docker,
-- containerd/cri-o, podman), nil on the host, never any hex-looking
-- segment"). The paths below are what /proc/PID/cgroup shows from the host
-- for a process inside such a container (the path after "0::" on cgroup v2,
-- after "N:controller:" on v1).
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("PW_BUILD") or "build") .. "/lua/?.so;" .. package.cpath
local container = require "procwarden.container"

-- Container ids are 64 lowercase hex digits (sha256 of the config).
local ID1 = "2db659d3bdf828da39d1bd4cdf024346c7eb286b701c8167335b48b62af0d85f"
local ID2 = "599307530666e6fdc174ae93962b2fb54d1268cc6f678158b1f77924956c0637"
local ID3 = "628756ab78d249498d651b3e064ed214c11f8c5184ea600de12eeddd88b8ccf9"
local ID4 = "d2e04ef60d9b92ce5938f80d20e28bb035d216f35b7bfc184677b2fc75c68d58"
-- Kubernetes pod UIDs: dashes in cgroupfs paths, underscores in systemd slices.
local POD = "72ed8e44-9d40-43d8-b88a-213cf7e4e87e"
local POD_ = "72ed8e44_9d40_43d8_b88a_213cf7e4e87e"

local function cases(list)
  for _, c in ipairs(list) do
    it(c[1], function()
      assert.are.equal(c[3], container.id(c[2]), c[2])
    end)
  end
end

describe("container.id: docker", function()
  cases {
    { "cgroup v1, cgroupfs driver: /docker/<id>", "/docker/" .. ID1, ID1 },
    { "cgroup v2, cgroupfs driver (no cgroupns from the host's view)", "/docker/" .. ID2, ID2 },
    { "a sub-cgroup below the container (systemd inside docker)", "/docker/" .. ID1 .. "/init.scope", ID1 },
    { "systemd driver: /system.slice/docker-<id>.scope", "/system.slice/docker-" .. ID1 .. ".scope", ID1 },
    { "systemd driver, sub-cgroup below the scope", "/system.slice/docker-" .. ID3 .. ".scope/init.scope", ID3 },
    { "docker in docker: the innermost container", "/docker/" .. ID1 .. "/docker/" .. ID2, ID2 },
    { "rootless docker (user systemd)",
      "/user.slice/user-1000.slice/user@1000.service/user.slice/docker-" .. ID4 .. ".scope", ID4 },
    { "dockershim under kubepods, systemd driver",
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" .. POD_ .. ".slice/docker-"
        .. ID2 .. ".scope", ID2 },
  }
end)

describe("container.id: containerd (kubepods)", function()
  cases {
    { "systemd driver, besteffort",
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" .. POD_
        .. ".slice/cri-containerd-" .. ID1 .. ".scope", ID1 },
    { "systemd driver, burstable",
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" .. POD_
        .. ".slice/cri-containerd-" .. ID2 .. ".scope", ID2 },
    { "systemd driver, guaranteed (no QoS slice)",
      "/kubepods.slice/kubepods-pod" .. POD_ .. ".slice/cri-containerd-" .. ID3 .. ".scope", ID3 },
    { "cgroupfs driver, besteffort", "/kubepods/besteffort/pod" .. POD .. "/" .. ID1, ID1 },
    { "cgroupfs driver, burstable", "/kubepods/burstable/pod" .. POD .. "/" .. ID4, ID4 },
    { "cgroupfs driver, guaranteed (no QoS level)", "/kubepods/pod" .. POD .. "/" .. ID2, ID2 },
  }
end)

describe("container.id: cri-o", function()
  cases {
    { "systemd driver, burstable",
      "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" .. POD_
        .. ".slice/crio-" .. ID1 .. ".scope", ID1 },
    { "systemd driver, besteffort",
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" .. POD_
        .. ".slice/crio-" .. ID3 .. ".scope", ID3 },
  }
end)

describe("container.id: podman", function()
  cases {
    { "rootful, systemd driver: /machine.slice/libpod-<id>.scope",
      "/machine.slice/libpod-" .. ID1 .. ".scope", ID1 },
    { "rootful, in a pod slice",
      "/machine.slice/machine-libpod_pod_" .. ID4 .. ".slice/libpod-" .. ID2 .. ".scope", ID2 },
    { "rootless: user.slice/.../libpod-<id>.scope",
      "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" .. ID3 .. ".scope", ID3 },
    { "rootless, crun's 'container' sub-cgroup",
      "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" .. ID3 .. ".scope/container", ID3 },
    { "rootful, 'container' sub-cgroup", "/machine.slice/libpod-" .. ID1 .. ".scope/container", ID1 },
    { "cgroupfs driver: /libpod_parent/libpod-<id>", "/libpod_parent/libpod-" .. ID4, ID4 },
  }
end)

describe("container.id: the host and other systemd units are not containers", function()
  cases {
    { "the root cgroup", "/", nil },
    { "the empty string", "", nil },
    { "a login session", "/user.slice/user-1000.slice/session-3.scope", nil },
    { "a system service", "/system.slice/sshd.service", nil },
    { "init", "/init.scope", nil },
    { "the docker daemon itself", "/system.slice/docker.service", nil },
    { "containerd itself", "/system.slice/containerd.service", nil },
    { "a user service", "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-foo-1234.scope", nil },
    { "a kubepods pod slice (not a container)",
      "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" .. POD_ .. ".slice", nil },
    { "a kubepods pod cgroup, cgroupfs (not a container)", "/kubepods/besteffort/pod" .. POD, nil },
    { "the podman machine slice", "/machine.slice", nil },
  }
end)

describe("container.id: a hex-looking segment alone is never an id", function()
  cases {
    { "a systemd service named by 64 hex digits", "/system.slice/" .. ID1 .. ".service", nil },
    { "a scope named by 64 hex digits", "/system.slice/" .. ID1 .. ".scope", nil },
    { "an unknown parent: /foo/<64 hex>", "/foo/" .. ID1, nil },
    { "64 hex digits right under the root", "/" .. ID1, nil },
    { "under a user session", "/user.slice/user-1000.slice/session-3.scope/" .. ID2, nil },
    { "hex named like a runtime, under another word", "/system.slice/mydocker-" .. ID1 .. ".service", nil },
  }
end)

describe("container.id: ids of the wrong shape", function()
  local short = ID1:sub(1, 12)
  local long = ID1 .. "a" -- 65 digits
  cases {
    { "docker short id (12)", "/docker/" .. short, nil },
    { "docker, 63 digits", "/docker/" .. ID1:sub(1, 63), nil },
    { "docker, 65 digits", "/docker/" .. long, nil },
    { "systemd docker scope, short id", "/system.slice/docker-" .. short .. ".scope", nil },
    { "systemd docker scope, 65 digits", "/system.slice/docker-" .. long .. ".scope", nil },
    { "containerd scope, 65 digits",
      "/kubepods.slice/kubepods-pod" .. POD_ .. ".slice/cri-containerd-" .. long .. ".scope", nil },
    { "kubepods cgroupfs, short id", "/kubepods/besteffort/pod" .. POD .. "/" .. short, nil },
    { "cri-o scope, short id", "/kubepods.slice/crio-" .. short .. ".scope", nil },
    { "podman machine.slice, 65 digits", "/machine.slice/libpod-" .. long .. ".scope", nil },
    { "podman libpod_parent, 65 digits", "/libpod_parent/libpod-" .. long, nil },
    { "podman machine.slice, short id", "/machine.slice/libpod-" .. short .. ".scope", nil },
    { "a non-hex letter inside", "/docker/" .. ID1:sub(1, 63) .. "g", nil },
    -- Runtimes write ids in lowercase only: uppercase is not their layout.
    { "docker, uppercase hex", "/docker/" .. ID1:upper(), nil },
    { "systemd docker scope, uppercase hex", "/system.slice/docker-" .. ID2:upper() .. ".scope", nil },
    { "podman scope, uppercase hex", "/machine.slice/libpod-" .. ID3:upper() .. ".scope", nil },
    { "kubepods cgroupfs, uppercase hex", "/kubepods/besteffort/pod" .. POD .. "/" .. ID4:upper(), nil },
  }
end)

describe("container.id: not a string", function()
  it("nil, numbers, tables and booleans give nil without raising", function()
    for _, v in ipairs { 42, 0, {}, { "/docker/" .. ID1 }, true, false } do
      local ok, id = pcall(container.id, v)
      assert.is_true(ok, tostring(id))
      assert.is_nil(id, tostring(v))
    end
    local ok, id = pcall(container.id, nil)
    assert.is_true(ok, tostring(id))
    assert.is_nil(id)
    ok, id = pcall(container.id)
    assert.is_true(ok, tostring(id))
    assert.is_nil(id)
  end)

  it("returns the id as a string of 64 lowercase hex digits", function()
    local id = container.id("/system.slice/docker-" .. ID1 .. ".scope")
    assert.is_string(id)
    assert.are.equal(64, #id)
    assert.is_truthy(id:match("^[0-9a-f]+$"))
  end)

  it("a very long path is answered fast (no backtracking blow-up)", function()
    local path = ("/a"):rep(2000) .. "/" .. ("0"):rep(5000)
    local t0 = os.clock()
    assert.is_nil(container.id(path))
    assert.is_nil(container.id("/kubepods" .. ("/pod-x"):rep(700) .. "/" .. ("f"):rep(63)))
    assert.is_true(os.clock() - t0 < 0.5, "took " .. (os.clock() - t0) .. " s")
  end)
end)
