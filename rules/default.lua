-- The default policy: alert-only. One line per exec, with who ran what.
on("exec", function(e)
  log("info", "exec pid={pid} ppid={ppid} user={user} exe={exe} argv={cmdline}", e)
end)
