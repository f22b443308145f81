-- lazy_cost B: a handler on every exec that reads exe, argv and the parent's exe.
on("exec", function(e) local _, _, _ = e.exe, e.argv, e.parent and e.parent.exe end)
