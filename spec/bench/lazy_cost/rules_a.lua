-- lazy_cost A: a handler on every exec that reads no lazy field.
on("exec", function(e) end) -- luacheck: ignore 212
