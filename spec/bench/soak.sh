#!/bin/sh
# make soak: SOAK_SECONDS (default 600) of thread and exec storms against
# the default policy plus ten rules. RSS and open fds are sampled every
# 10 s; at the end: growth after warm-up (60 s) must be <= 1 MB of RSS and
# 0 fds, and no event may be lost at the default receive buffer.
set -u
B=${PW_BUILD:-build}
SECS=${SOAK_SECONDS:-600}
WARM=${SOAK_WARMUP:-60}
[ "$(id -u)" = 0 ] || { echo "make soak needs root (proc connector)"; exit 1; }
dir=$(mktemp -d /tmp/pw-soak.XXXXXX)
cleanup() { kill $storm_pids 2>/dev/null; [ -n "${pw:-}" ] && kill "$pw" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT INT TERM
storm_pids=""
cc -O2 -pthread -o "$dir/storm" spec/bench/soak_storm.c || exit 1
cp spec/bench/soak_rules.lua "$dir/rules.lua" && chmod 600 "$dir/rules.lua"
"$B/procwarden" --stats -o json --log /dev/null rules/default.lua "$dir/rules.lua" \
	>"$dir/out" 2>"$dir/err" &
pw=$!
sleep 2
"$dir/storm" "$SECS" 1 >"$dir/threads" &
storm_pids="$!"
( end=$(( $(date +%s) + SECS )); while [ "$(date +%s)" -lt "$end" ]; do /bin/true; sh -c 'exit 0'; done ) &
storm_pids="$storm_pids $!"
echo "t_s rss_kb fds"
t=0
first_rss=""; first_fds=""
while [ "$t" -le "$SECS" ]; do
	rss=$(awk '/^VmRSS/ {print $2}' /proc/$pw/status 2>/dev/null)
	fds=$(ls /proc/$pw/fd 2>/dev/null | wc -l)
	[ -n "$rss" ] || { echo "procwarden died"; cat "$dir/err"; exit 1; }
	echo "$t $rss $fds"
	if [ "$t" -ge "$WARM" ] && [ -z "$first_rss" ]; then first_rss=$rss; first_fds=$fds; fi
	last_rss=$rss; last_fds=$fds
	sleep 10
	t=$((t + 10))
done
wait $storm_pids 2>/dev/null
kill -TERM "$pw"; wait "$pw"; rc=$?; pw=""
threads=$(cat "$dir/threads" 2>/dev/null || echo "?")
enobufs=$(awk '$1 == "enobufs" {print $2}' "$dir/err")
seqlost=$(awk '$1 == "lost_by_sequence" {print $2}' "$dir/err")
parsed=$(awk '$1 == "parsed" {print $2}' "$dir/err")
errors=$(awk '$1 == "handler_errors" {print $2}' "$dir/err")
echo "threads created: $threads; events parsed: $parsed; enobufs: $enobufs; lost by sequence: $seqlost; handler errors: $errors; exit $rc"
growth=$(( ${last_rss:-0} - ${first_rss:-0} ))
fdgrowth=$(( ${last_fds:-0} - ${first_fds:-0} ))
echo "after warm-up (${WARM} s): RSS growth ${growth} kB, fd growth ${fdgrowth}"
st=0
[ "$growth" -le 1024 ] || { echo "FAIL: RSS grew by more than 1 MB"; st=1; }
[ "$fdgrowth" -le 0 ] || { echo "FAIL: open fds grew"; st=1; }
[ "${enobufs:-1}" = 0 ] || { echo "FAIL: the kernel dropped events (enobufs $enobufs)"; st=1; }
[ "$rc" = 0 ] || { echo "FAIL: procwarden exited $rc"; st=1; }
[ $st = 0 ] && echo "soak: ok" || echo "soak: FAILED"
exit $st
