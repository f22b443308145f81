-- privilege_escalation.lua: alert when a process gains root (euid 0) under a
-- parent that is not root, other than through sudo, su, pkexec or doas.
--
-- Catches
--   * uid events (the kernel reports every credential change, from setuid()
--     calls, from a setuid-root exec, and from a kernel exploit that calls
--     commit_creds) where the effective uid becomes 0, the process was not
--     root before (prev_euid), and
--   * its parent is not root (parent euid, or uid when euid is unknown), and
--   * neither the process nor its parent is one of the GATEWAYS (exact
--     paths), and the process is not one of the known SETUID_HELPERS.
--   So: a local root exploit, a setuid-root shell or binary planted or
--   misconfigured (GTFOBins: a setuid find, vim, python ...), a fake `su` in
--   a home directory. On a setuid exec the uid event carries the new
--   program's exe (the kernel commits the credentials after the switch).
--   Alert-only.
--
-- Known false positives
--   * setuid-root programs not in SETUID_HELPERS (distribution specific:
--     Xorg.wrap, pppd, chrome-sandbox, vendor tools). Add their exact paths.
--   * a process whose parent is unknown (exited before the event was read)
--     is not vouched for: it fires.
-- Known false negatives
--   * an exploit that overwrites its credentials in memory without
--     commit_creds (DirtyCred style) produces no uid event.
--   * an escalation whose parent is already root (an exploit re-parented to
--     init, or a root daemon exploited in place) is out of scope here.
--   * abuse of an allowed gateway (sudo with a stolen password, a sudoers
--     rule that is too wide) is sudo's business: read its logs.
--   * matching is by exact path: a gateway binary copied elsewhere is not a
--     gateway (that is the point), but a modified binary at an allowed path
--     is trusted. Combine with forbidden_binaries.lua hashes if needed.
--
-- Tuning
--   * GATEWAYS: the programs through which users are meant to become root.
--   * SETUID_HELPERS: setuid-root programs that briefly run as root for an
--     ordinary user (passwd, mount ...). `find / -perm -4000 -user root`
--     lists yours.
--   * throttle: at most 5 alerts per parent process a minute.

local GATEWAYS = {
  ["/usr/bin/sudo"] = true, ["/bin/sudo"] = true,
  ["/usr/bin/su"] = true, ["/bin/su"] = true,
  ["/usr/bin/pkexec"] = true,
  ["/usr/bin/doas"] = true, ["/usr/local/bin/doas"] = true,
}

local SETUID_HELPERS = {
  ["/usr/bin/passwd"] = true, ["/usr/bin/chsh"] = true, ["/usr/bin/chfn"] = true,
  ["/usr/bin/newgrp"] = true, ["/usr/bin/gpasswd"] = true,
  ["/usr/bin/mount"] = true, ["/usr/bin/umount"] = true,
  ["/bin/mount"] = true, ["/bin/umount"] = true,
  ["/usr/bin/fusermount"] = true, ["/usr/bin/fusermount3"] = true,
  ["/usr/bin/newuidmap"] = true, ["/usr/bin/newgidmap"] = true,
  ["/usr/sbin/unix_chkpwd"] = true,
  ["/usr/lib/openssh/ssh-keysign"] = true, ["/usr/libexec/openssh/ssh-keysign"] = true,
  ["/usr/lib/dbus-1.0/dbus-daemon-launch-helper"] = true,
  ["/usr/lib/polkit-1/polkit-agent-helper-1"] = true, ["/usr/libexec/polkit-agent-helper-1"] = true,
}

local function is_root(p)
  local euid = p.euid
  if euid == nil then euid = p.uid end
  return euid == 0
end

rule {
  name = "privesc-euid-root",
  on = "uid",
  match = { euid = 0 },
  when = function(e)
    if e.prev_euid == 0 then return false end -- it was root already
    local exe = e.exe
    if exe ~= nil and (GATEWAYS[exe] or SETUID_HELPERS[exe]) then return false end
    local parent = e.parent
    if parent ~= nil then
      if is_root(parent) then return false end
      if parent.exe ~= nil and GATEWAYS[parent.exe] then return false end
    end
    return true
  end,
  action = alert("privilege escalation: {exe} (pid {pid}) became euid 0 from euid {prev_euid} (uid {uid}), "
    .. "parent {parent.exe} (pid {ppid}, uid {parent.uid})"),
  priority = "critical",
  tags = { "mitre:T1068", "mitre:T1548.001" },
  throttle = { key = "ppid", count = 5, per = 60 },
}
