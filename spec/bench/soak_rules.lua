-- Ten rules for make soak: a realistic mix on every event type the kernel
-- sends, so the soak exercises matching, lazy fields, throttles and timers.
rule { name = "miners", on = "exec", match = { exe = { "*/xmrig", "*/minerd", "*/cpuminer" } },
  action = { alert "miner {exe}" }, priority = "critical" }
rule { name = "tmp-exec", on = "exec", match = { exe = { "/tmp/*", "/dev/shm/*" } },
  action = { alert "exec from tmp: {exe} {cmdline}" }, throttle = { key = "exe", count = 5, per = 60 } }
rule { name = "web-shell", on = "exec", match = { exe = { "*/sh", "*/bash", "*/dash" },
  ["parent.exe"] = { "*/nginx", "*/httpd", "*/apache2" } }, action = { alert "web shell {pid}" } }
rule { name = "root-shell", on = "exec", match = { exe = "*/bash", euid = 0, ["parent.exe"] = "*/python*" },
  action = { log("notice", "root bash from python {pid}") } }
rule { name = "curl-pipe", on = "exec", match = { argv = contains "|" }, action = { log("info", "pipe arg") } }
rule { name = "setuid", on = "uid", match = { euid = 0 }, when = function(e) return e.ruid ~= 0 end,
  action = { alert "setuid root {pid} {exe}" } }
rule { name = "ptrace", on = "ptrace", action = { alert "ptrace {pid} by {tracer_pid}" } }
rule { name = "coredump", on = "coredump", action = { alert "core dump {pid} {exe}" } }
rule { name = "comm-change", on = "comm", match = { comm = iglob "*miner*" }, action = { alert "renamed {comm}" } }
rule { name = "killed", on = "exit", match = { term_signal = 9 }, action = { log("info", "{pid} killed") },
  throttle = { count = 10, per = 10 } }
every(30, function() log("info", "alive") end)
