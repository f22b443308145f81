-- luacheck configuration: lua/ is the runtime, rules/ are policies (run in
-- the procwarden environment), spec/ are busted specs.
std = "lua54"
max_line_length = 120

local rule_api = { "on", "log", "alert", "every", "after", "proc", "stats", "procwarden",
  "rule", "kill", "signal", "stop", "exec", "protect", "deny",
  "prefix", "suffix", "contains", "iglob", "oneof", "not_" }

files["rules/"] = { std = "lua54", read_globals = rule_api }
files["spec/"] = { std = "+busted" }
files["spec/fixtures/"] = { read_globals = rule_api }
files["spec/bench/"] = { read_globals = rule_api }
