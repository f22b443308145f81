-- procwarden.container: container id from a cgroup path, for the runtime
-- layouts we recognise (docker, containerd/cri-o under kubepods, podman).
-- Anything else (the host, systemd units, an unknown layout) is nil: a
-- hex-looking path segment alone is never taken for a container id, and
-- conmon (the runtime's monitor, on the host side: crio-conmon-<id>,
-- libpod-conmon-<id>) is not the container.
local M = {}

local HEX64 = string.rep("[0-9a-f]", 64) -- lowercase, exactly 64 (see the anchors below)

-- Patterns over the whole cgroup path; the capture is the id.
local layouts = {
  "/docker/(" .. HEX64 .. ")$",                          -- cgroup v1 docker
  "/docker/(" .. HEX64 .. ")/",
  "/docker%-(" .. HEX64 .. ")%.scope$",                  -- systemd driver, docker
  "/docker%-(" .. HEX64 .. ")%.scope/",
  "/cri%-containerd%-(" .. HEX64 .. ")%.scope$",         -- containerd (kubepods, systemd)
  "/crio%-(" .. HEX64 .. ")%.scope$",                    -- cri-o (kubepods, systemd)
  "/libpod%-(" .. HEX64 .. ")%.scope$",                  -- podman (systemd)
  "/libpod%-(" .. HEX64 .. ")%.scope/",
  "/machine%.slice/libpod%-(" .. HEX64 .. ")%.scope",
  "/libpod_parent/libpod%-(" .. HEX64 .. ")$",          -- podman, cgroupfs driver
  "/libpod_parent/libpod%-(" .. HEX64 .. ")/",
  "^/kubepods[%w%-_%./]*/pod[%w%-_]+/(" .. HEX64 .. ")$", -- kubepods, cgroupfs driver
}

function M.id(cgroup)
  if type(cgroup) ~= "string" then return nil end
  for _, pattern in ipairs(layouts) do
    local id = string.match(cgroup, pattern)
    if id then return id end
  end
  return nil
end

return M
