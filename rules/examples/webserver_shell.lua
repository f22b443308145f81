-- webserver_shell.lua: alert when a web server or a database starts a shell.
--
-- Catches
--   * an exec of a shell (SHELLS) whose parent is a web server or an
--     application server (WEB_SERVERS): a web shell or a command injection
--     in the application (php-fpm -> sh -c "id"), an exploited server;
--   * an exec of a shell whose parent is a database server (DATABASES):
--     COPY ... FROM PROGRAM in PostgreSQL, a sys_exec UDF in MySQL, Redis
--     module abuse.
--   The parent is the process that forked the shell, so `sh -c` from
--   system()/popen() in the server is seen with the server as its parent.
--   Alert-only.
--
-- Known false positives
--   * CGI scripts written in shell (Apache mod_cgi, fcgiwrap): their exe is
--     the shell. fcgiwrap is not listed; for Apache, allow the scripts.
--   * Apache piped logs (CustomLog "|/usr/bin/rotatelogs ...") start
--     `sh -c COMMAND`: allowed when COMMAND is one simple command (no shell
--     operators) whose program is in ALLOWED_COMMANDS.
--   * PostgreSQL archive_command / restore_command / archive_cleanup_command
--     run `sh -c` from the archiver, startup and checkpointer processes:
--     allowed by their process title ("postgres: 15/main: archiver ...").
--     A database role named like one of those processes would be allowed too.
--   Both exceptions read argv. A command line longer than procwarden keeps
--   (argv_truncated) is never an exception: the part past the cut could
--   hold anything (`sh -c "/usr/bin/logger <4 KB of padding>; curl ...|sh"`
--   shows only the logger part), so a cut command line alerts.
-- Known false negatives
--   * a server that execs a non-shell interpreter or a tool directly
--     (php-fpm -> python3 -c ..., -> curl): only shells are matched here.
--   * a shell started further down (server -> env -> sh is seen, but
--     server -> perl -> sh is not: the shell's parent is perl).
--   * servers under other names (a Java or Node application server: its exe
--     is java / node, which run everything else too), and a shell whose
--     parent has gone before the event is read.
--
-- Tuning
--   * WEB_SERVERS, DATABASES, SHELLS: globs on the full exe path. busybox
--     is a shell on Alpine (its sh is busybox), so every busybox applet counts.
--   * ALLOWED_COMMANDS: exact program paths a server may run through sh -c.
--   * throttle: at most 5 alerts per server binary a minute (an attacker's
--     web shell runs one shell per command, from any worker); the rest are
--     counted and reported when the minute is over.

local SHELLS = {
  "*/sh", "*/bash", "*/rbash", "*/dash", "*/zsh", "*/ksh", "*/ksh93", "*/mksh",
  "*/ash", "*/csh", "*/tcsh", "*/fish", "*/yash", "*/busybox",
}

local WEB_SERVERS = {
  "*/nginx", "*/httpd", "*/apache2", "*/lighttpd", "*/caddy", "*/h2o",
  "*/php-fpm*", "*/php-cgi*", "*/uwsgi", "*/unitd", "*/traefik",
}

local DATABASES = {
  "*/mysqld", "*/mariadbd", "*/postgres", "*/postmaster", "*/mongod",
  "*/redis-server", "*/memcached", "*/clickhouse*", "*/influxd",
}

local ALLOWED_COMMANDS = {
  ["/usr/bin/rotatelogs"] = true, ["/usr/sbin/rotatelogs"] = true,
  ["/usr/bin/cronolog"] = true, ["/usr/sbin/cronolog"] = true,
  ["/usr/bin/logger"] = true,
}

-- The words of s split on spaces. The string functions here take linear
-- time whatever the command line: a pattern with several quantifiers on a
-- long, attacker-chosen argument would be refused by the sandbox (an error
-- in the rule, and a rule that keeps failing is suspended). `+` and `-`
-- are escaped even inside [...], where the sandbox counts them too.
local function words(s)
  local out, i = {}, 1
  while true do
    i = string.find(s, "[^ ]", i)
    if i == nil then return out end
    local j = string.find(s, " ", i, true)
    out[#out + 1] = string.sub(s, i, (j or #s + 1) - 1)
    if j == nil then return out end
    i = j + 1
  end
end

-- `sh -c "/usr/bin/rotatelogs /var/log/x 86400"`: one simple command, no
-- shell operators, a program in ALLOWED_COMMANDS, and the whole of it seen.
local function allowed_command(e)
  local argv = e.argv
  if argv == nil or e.argv_truncated or #argv ~= 3 or argv[2] ~= "-c" then return false end
  local cmd = argv[3]
  if string.find(cmd, "[^%w /._%%=:,%+@%-]") then return false end
  local w = words(cmd)
  if w[1] == "exec" then table.remove(w, 1) end
  return w[1] ~= nil and ALLOWED_COMMANDS[w[1]] == true
end

-- PostgreSQL's own background processes, by their title
-- ("postgres: 15/main: archiver last was ..."; "postgres: archiver" when no
-- cluster_name is set).
local PG_BACKGROUND = { archiver = true, startup = true, checkpointer = true }
local function postgres_background(parent)
  if parent == nil or parent.argv_truncated then return false end -- a real title is short
  local argv = parent.argv
  local title = argv and argv[1]
  if type(title) ~= "string" or string.sub(title, 1, 10) ~= "postgres: " then return false end
  local w = words(string.sub(title, 11))
  if w[1] ~= nil and string.sub(w[1], -1) == ":" then table.remove(w, 1) end -- the cluster name
  return w[1] ~= nil and PG_BACKGROUND[w[1]] == true
end

rule {
  name = "webserver-shell",
  on = "exec",
  match = { exe = SHELLS, ["parent.exe"] = WEB_SERVERS },
  when = function(e) return not allowed_command(e) end,
  action = alert "web server {parent.exe} (pid {ppid}) started a shell: {cmdline} (pid {pid}, user {user})",
  priority = "critical",
  tags = { "mitre:T1505.003", "mitre:T1059.004", "mitre:T1190" },
  throttle = { key = "parent.exe", count = 5, per = 60 },
}

rule {
  name = "database-shell",
  on = "exec",
  match = { exe = SHELLS, ["parent.exe"] = DATABASES },
  when = function(e) return not postgres_background(e.parent) end,
  action = alert "database {parent.exe} (pid {ppid}) started a shell: {cmdline} (pid {pid}, user {user})",
  priority = "critical",
  tags = { "mitre:T1059.004", "mitre:T1190" },
  throttle = { key = "parent.exe", count = 5, per = 60 },
}
