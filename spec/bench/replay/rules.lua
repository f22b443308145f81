-- spec/bench/replay/rules.lua: the 10-rule policy of the replay benchmark.
-- Alert/log only (a replay dry-runs actions anyway). gen_fixture.c mirrors
-- every rule below to compute how many times each must fire on its fixture:
-- change one, change the other.

rule {
  name = "miners", on = "exec",
  match = { exe = { "*/xmrig", "*/minerd", "*/cpuminer", "*/ethminer", "*/nbminer" } },
  action = alert "crypto miner {exe} (pid {pid}, user {user})",
  priority = "critical", tags = { "mitre:T1496" },
}

rule {
  name = "web-shell", on = "exec",
  match = {
    ["parent.exe"] = { "*/httpd", "*/nginx", "*/apache2", "*/php-fpm*" },
    exe = { "/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/sh", "/usr/bin/bash", "/usr/bin/dash" },
  },
  action = alert "shell {exe} spawned by web server {parent.exe} (pid {pid})",
  priority = "critical", tags = { "mitre:T1505.003" },
}

rule {
  name = "setuid-root", on = "uid",
  match = { euid = 0 },
  when = function(e) return e.ruid ~= 0 end,
  action = alert "{exe} (pid {pid}) became euid 0 from ruid {ruid}",
  priority = "warning",
}

rule {
  name = "ptrace-attach", on = "ptrace",
  match = { tracer_pid = not_(0) },
  action = alert "pid {pid} ({exe}) traced by {tracer_pid}",
  priority = "warning", tags = { "mitre:T1055.008" },
}

rule {
  name = "http-download", on = "exec",
  match = { exe = { "*/curl", "*/wget" }, argv = prefix "http://" },
  action = alert "plain-http download: {cmdline} by {user}",
  priority = "notice",
}

rule {
  name = "tmp-exec", on = "exec",
  match = { exe = prefix "/tmp/" },
  throttle = { key = "exe", count = 3, per = 86400 },
  action = log("warning", "exec from /tmp: {exe} (pid {pid}, user {user})"),
  priority = "warning",
}

rule {
  name = "shadow-read", on = "exec",
  match = { argv = contains "/etc/shadow" },
  action = alert "{exe} touches /etc/shadow: {cmdline}",
  priority = "error",
}

rule {
  name = "sudo-by-user", on = "exec",
  match = { exe = "/usr/bin/sudo" },
  when = function(e) return e.uid >= 1000 and e.user ~= "admin" end,
  action = alert "sudo by {user}: {cmdline}",
  priority = "notice",
}

rule {
  name = "nsenter-in-container", on = "exec",
  match = { cgroup = prefix "/system.slice/docker-", exe = "*/nsenter" },
  action = alert "nsenter inside container {container_id}: {cmdline}",
  priority = "error",
}

rule {
  name = "segfault", on = "exit",
  match = { term_signal = 11 },
  action = log("notice", "{exe} (pid {pid}) died of SIGSEGV"),
  priority = "notice",
}
