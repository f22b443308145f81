-- exec_cost: ten deny() rules of the kinds a real policy holds (exe globs,
-- a sha256 list, owner and mode checks, the calling process's parent,
-- ancestors and ids). None matches the benchmark's /bin/true, so every exec
-- is allowed, but each one is decided by these rules: with a deny() rule
-- loaded, every filesystem carries a fanotify exec-permission mark. The
-- sha256 rule matches on nothing else, so the file of every exec is hashed
-- (once: the cache answers afterwards). Paths live under
-- /tmp/pwbench-nonexistent/, which does not exist.
local NX = "/tmp/pwbench-nonexistent/"

rule { name = "scanners", on = "exec",
  match = { exe = { NX .. "*/nmap", NX .. "*/masscan", NX .. "*/zmap", NX .. "*/hydra" } },
  action = { deny(), alert "scanner {exe}" }, priority = "critical" }

rule { name = "miners", on = "exec",
  match = { exe = { iglob(NX .. "*xmrig*"), iglob(NX .. "*minerd*"), iglob(NX .. "*cpuminer*") } },
  action = { deny(), alert "miner {exe}" }, priority = "critical" }

rule { name = "bad-hashes", on = "exec",
  match = { sha256 = oneof {
    "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f",
    "925a4824094732d1055208382d9ab103e7eb9f8f9a8ce8914263e97cb9437d3a",
    "c9e20a22c594d30ef03e5d061a4e23d40cf104991b67f3fa971f746ff70b065b",
    "b8810c4f395c72c3a9e84e2d0be09abe8d9ec35e7e88b7a5b3cc2ffb83ba1cfb",
    "8f8c54553088173e7d061734df92b64e608a90ebbf169bf4e4fa9b6f3a11e6c7",
    "89129ed1e0433d635be2d351d99631a92dfeb98cb87e4ad53967f82b0631258d",
    "79fe367e6e0b9bca31146c1622ba17f124a04ad9820d3bf09c6f20e3876455a7",
    "1b54a9b46bb2a3937f7d7836b2cb7a2ec38965637cebe658ca1e21b777706a4b",
  } },
  action = { deny(), alert "known-bad binary {exe} sha256 {sha256}" }, priority = "critical" }

rule { name = "foreign-owner", on = "exec",
  match = { exe = NX .. "*", exe_uid = not_(0) },
  action = { deny(), alert "{exe} not owned by root" } }

rule { name = "setuid-in-tmp", on = "exec",
  match = { exe = prefix(NX), exe_mode = function(m) return m & 2048 ~= 0 end },
  action = { deny(), alert "setuid {exe}" }, priority = "error" }

rule { name = "world-writable", on = "exec",
  match = { exe = NX .. "*", exe_mode = function(m) return m & 2 ~= 0 end },
  action = { deny(), alert "world-writable {exe}" } }

rule { name = "dropper-child", on = "exec",
  match = { ["parent.exe"] = { NX .. "*", NX .. ".*/*" } },
  action = { deny(), alert "exec by a dropper {parent.exe}" }, priority = "critical" }

rule { name = "service-account", on = "exec",
  match = { uid = 54321 },
  action = { deny(), alert "exec by the service account: {exe}" } }

rule { name = "tunnels-over-ssh", on = "exec",
  match = { exe = { NX .. "*/chisel", NX .. "*/ngrok", NX .. "*/frpc" }, ["ancestors.comm"] = "sshd" },
  action = { deny(), alert "tunnel {exe}" }, priority = "critical" }

rule { name = "foreign-group", on = "exec",
  match = { exe_gid = 54321 },
  action = { deny(), alert "exec of a {exe} of group 54321" } }
