#!/bin/sh
# rss: idle memory. procwarden with the embedded default policy (no rules
# file, -o json --log /dev/null) runs for 3 s on an otherwise idle system;
# then VmRSS (and VmHWM, the peak) from /proc/PID/status, against the
# 8 MB target (taken as 8 MiB = 8192 kB). For scale, in the same run: the
# minimal C listener (minlisten count), and procwarden --realtime, which
# locks all its memory (mlockall), so its RSS is everything it mapped.
BENCH_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$BENCH_SRC/lib.sh"
bench_traps
IDLE_S=${RSS_IDLE_S:-3}
TARGET_KB=8192
bench_cc minlisten "$BENCH_SRC/common/minlisten.c"
bench_tmp

status_kb() { awk -v k="$2:" '$1 == k { print $2 }' /proc/"$1"/status 2>/dev/null; }

"$PW" --duration 300 -o json --log /dev/null >"$BENCH_TMP/pw.out" 2>"$BENCH_TMP/pw.err" &
p1=$!
bg_add $p1
"$PW" --duration 300 --realtime -o json --log /dev/null >"$BENCH_TMP/pwrt.out" 2>"$BENCH_TMP/pwrt.err" &
p2=$!
bg_add $p2
"$BENCH_BIN/minlisten" count 2>"$BENCH_TMP/ml.err" &
p3=$!
bg_add $p3
sleep "$IDLE_S"
for p in $p1 $p2 $p3; do
	kill -0 $p 2>/dev/null || die "a process exited early: $(cat "$BENCH_TMP"/*.err)"
done
pw_rss=$(status_kb $p1 VmRSS) pw_hwm=$(status_kb $p1 VmHWM)
rt_rss=$(status_kb $p2 VmRSS) rt_hwm=$(status_kb $p2 VmHWM)
ml_rss=$(status_kb $p3 VmRSS) ml_hwm=$(status_kb $p3 VmHWM)
pw_anon=$(status_kb $p1 RssAnon) pw_file=$(status_kb $p1 RssFile)
for p in $p1 $p2 $p3; do bg_stop $p; done

printf '\n== rss: idle %s s, default policy ==\n' "$IDLE_S"
printf '%-36s %10s %10s %10s\n' process VmRSS_kB VmHWM_kB x_target
printf '%-36s %10s %10s %10s\n' "procwarden (default policy)" "$pw_rss" "$pw_hwm" "$(ratio "$pw_rss" $TARGET_KB)"
printf '%-36s %10s %10s %10s\n' "procwarden --realtime (mlockall)" "$rt_rss" "$rt_hwm" "$(ratio "$rt_rss" $TARGET_KB)"
printf '%-36s %10s %10s %10s\n' "minimal C listener (scale)" "$ml_rss" "$ml_hwm" "$(ratio "$ml_rss" $TARGET_KB)"
echo "procwarden RSS = $pw_anon kB anonymous + $pw_file kB file-backed; target 8 MB = $TARGET_KB kB; x_target = VmRSS / target"
result rss.pw "$pw_rss"
result rss.pw_rt "$rt_rss"
result rss.min "$ml_rss"
exit 0
