#!/bin/sh
# replay: events/s of --replay through a 10-rule policy.
#
# gen_fixture.c writes a deterministic JSON-lines fixture (REPLAY_N lines:
# exec/fork/exit/uid/gid/comm/ptrace/sid with exe, argv, uid, user, ppid,
# cgroup, parent objects ...) and, from C mirrors of the rules, how often
# each rule of rules.lua must fire on it. Timed, REPS times each, medians:
#   * procwarden --replay FIXTURE -o json --log /dev/null --stats rules.lua
#   * baseline: the same with an empty rules file (JSON parsing and event
#     tables only: no handler runs)
#   * for scale: jparse (jansson parsing each line and freeing it, the
#     library and flags --replay uses: the JSON library's share), and
#     cat FIXTURE > /dev/null (reading the bytes)
# events/s = lines / wall time of the whole process (start-up included);
# also per CPU second (user+sys). Then one untimed run writes the alerts to
# a file, and the count per rule must equal the expected count (the rules
# were really evaluated); the --stats "fired" counts must agree too.
BENCH_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$BENCH_SRC/lib.sh"
bench_traps

if [ "$BENCH_QUICK" = 1 ]; then N=${REPLAY_N:-100000}; else N=${REPLAY_N:-500000}; fi
REPS=${REPLAY_REPS:-3}
bench_cc gen_fixture "$BENCH_SRC/replay/gen_fixture.c"
bench_cc cpurun "$BENCH_SRC/common/cpurun.c"
JPARSE=""
if bench_try_cc jparse "$BENCH_SRC/replay/jparse.c" $(pkg-config --cflags --libs jansson 2>/dev/null || echo -ljansson) 2>/dev/null; then
	JPARSE=$BENCH_BIN/jparse
fi
bench_tmp
FIX=$BENCH_TMP/fixture.jsonl
"$BENCH_BIN/gen_fixture" "$N" "$FIX" "$BENCH_TMP/expected" || die "gen_fixture failed"
cp "$BENCH_SRC/replay/rules.lua" "$BENCH_TMP/rules.lua"
: >"$BENCH_TMP/empty.lua"
"$PW" --check "$BENCH_TMP/rules.lua" >"$BENCH_TMP/check.out" 2>&1 || die "procwarden --check rules.lua: $(cat "$BENCH_TMP/check.out")"
nrules=$(grep -c '^rule {' "$BENCH_TMP/rules.lua")
size=$(wc -c <"$FIX" | tr -d ' ')

printf '\n== replay: %d events (%s MB), %d-rule policy, %d runs each, median ==\n' "$N" \
	"$(awk -v s="$size" 'BEGIN { printf "%.0f", s / 1e6 }')" "$nrules" "$REPS"
cat "$FIX" >/dev/null # page cache

field() { sed -n "s/.*$2=\([0-9]*\).*/\1/p" "$1"; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

i=1
CAT_W="" JP_W="" EMPTY_W="" RULES_W="" EMPTY_C="" RULES_C=""
BAD=""
while [ $i -le "$REPS" ]; do
	"$BENCH_BIN/cpurun" "$BENCH_TMP/t.cat.$i" cat "$FIX" >/dev/null
	if [ -n "$JPARSE" ]; then
		"$BENCH_BIN/cpurun" "$BENCH_TMP/t.jp.$i" "$JPARSE" "$FIX" >"$BENCH_TMP/jp.out"
		JP_W="$JP_W $(field "$BENCH_TMP/t.jp.$i" wall_ns)"
	fi
	"$BENCH_BIN/cpurun" "$BENCH_TMP/t.empty.$i" "$PW" --replay "$FIX" -o json --log /dev/null --stats "$BENCH_TMP/empty.lua" \
		>/dev/null 2>"$BENCH_TMP/err.empty.$i" || BAD="$BAD empty-run-$i-failed"
	"$BENCH_BIN/cpurun" "$BENCH_TMP/t.rules.$i" "$PW" --replay "$FIX" -o json --log /dev/null --stats "$BENCH_TMP/rules.lua" \
		>/dev/null 2>"$BENCH_TMP/err.rules.$i" || BAD="$BAD rules-run-$i-failed"
	CAT_W="$CAT_W $(field "$BENCH_TMP/t.cat.$i" wall_ns)"
	EMPTY_W="$EMPTY_W $(field "$BENCH_TMP/t.empty.$i" wall_ns)"
	RULES_W="$RULES_W $(field "$BENCH_TMP/t.rules.$i" wall_ns)"
	EMPTY_C="$EMPTY_C $(($(field "$BENCH_TMP/t.empty.$i" user_us) + $(field "$BENCH_TMP/t.empty.$i" sys_us)))"
	RULES_C="$RULES_C $(($(field "$BENCH_TMP/t.rules.$i" user_us) + $(field "$BENCH_TMP/t.rules.$i" sys_us)))"
	i=$((i + 1))
done
for k in empty rules; do
	r=$(awk '$1 == "replayed" { print $2 }' "$BENCH_TMP/err.$k.1")
	b=$(awk '$1 == "replay_bad_lines" { print $2 }' "$BENCH_TMP/err.$k.1")
	[ "$r" = "$N" ] || BAD="$BAD $k:replayed=${r:-?}/$N"
	[ "${b:-0}" = 0 ] || BAD="$BAD $k:bad_lines=$b"
done
cw=$(echo "$CAT_W" | median) ew=$(echo "$EMPTY_W" | median) rw=$(echo "$RULES_W" | median)
ec=$(echo "$EMPTY_C" | median) rc=$(echo "$RULES_C" | median)
rate() { awk -v n="$N" -v t="$1" -v div="$2" 'BEGIN { if (t > 0) printf "%.0f", n / (t / div); else print "n/a" }'; }
jw=$(echo "$JP_W" | median)
jp_rate=$(rate "${jw:-0}" 1e9)
cat_rate=$(rate "$cw" 1e9) empty_rate=$(rate "$ew" 1e9) rules_rate=$(rate "$rw" 1e9)
empty_cpu_rate=$(rate "$ec" 1e6) rules_cpu_rate=$(rate "$rc" 1e6)
printf '%-34s %12s %12s %14s %9s\n' run wall_s events/s events/cpu_s x_baseline
printf '%-34s %12s %12s %14s %9s\n' "cat > /dev/null (scale)" "$(awk -v t="$cw" 'BEGIN { printf "%.3f", t / 1e9 }')" "$cat_rate" - \
	"$(ratio "$cat_rate" "$empty_rate")"
[ -n "$JPARSE" ] && printf '%-34s %12s %12s %14s %9s\n' "jansson parse only (scale)" "$(awk -v t="$jw" 'BEGIN { printf "%.3f", t / 1e9 }')" \
	"$jp_rate" - "$(ratio "$jp_rate" "$empty_rate")"
printf '%-34s %12s %12s %14s %9s\n' "procwarden, empty rules (baseline)" "$(awk -v t="$ew" 'BEGIN { printf "%.3f", t / 1e9 }')" \
	"$empty_rate" "$empty_cpu_rate" 1.00
printf '%-34s %12s %12s %14s %9s\n' "procwarden, $nrules rules" "$(awk -v t="$rw" 'BEGIN { printf "%.3f", t / 1e9 }')" \
	"$rules_rate" "$rules_cpu_rate" "$(ratio "$rules_rate" "$empty_rate")"
echo "runs (wall s): cat$(for w in $CAT_W; do awk -v t="$w" 'BEGIN { printf " %.3f", t / 1e9 }'; done);" \
	"jparse$(for w in $JP_W; do awk -v t="$w" 'BEGIN { printf " %.3f", t / 1e9 }'; done);" \
	"empty$(for w in $EMPTY_W; do awk -v t="$w" 'BEGIN { printf " %.3f", t / 1e9 }'; done);" \
	"rules$(for w in $RULES_W; do awk -v t="$w" 'BEGIN { printf " %.3f", t / 1e9 }'; done)"
echo "peak RSS: empty $(field "$BENCH_TMP/t.empty.1" maxrss_kb) kB, rules $(field "$BENCH_TMP/t.rules.1" maxrss_kb) kB"

# Are the rules really evaluated? Untimed run with the alerts kept.
"$PW" --replay "$FIX" -o json --stats "$BENCH_TMP/rules.lua" >"$BENCH_TMP/alerts.json" 2>"$BENCH_TMP/err.check" ||
	BAD="$BAD check-run-failed"
awk '{ if (match($0, /"rule": *"[^"]*"/)) { r = substr($0, RSTART, RLENGTH); sub(/^"rule": *"/, "", r); sub(/"$/, "", r); n[r]++ } }
     END { for (r in n) print r, n[r] }' "$BENCH_TMP/alerts.json" >"$BENCH_TMP/got"
printf '%-22s %9s %9s %9s\n' rule expected output fired
ok=1
total_got=0
while read -r rule want; do
	[ "$rule" = total ] && continue
	got=$(awk -v r="$rule" '$1 == r { print $2 }' "$BENCH_TMP/got")
	got=${got:-0}
	fired=$(awk -v r="$rule" '$1 == r && $3 == "fired" { sub(/,/, "", $4); print $4 }' "$BENCH_TMP/err.rules.1")
	mark=""
	if [ "$got" != "$want" ] || [ "${fired:-?}" != "$want" ]; then mark="  <-- MISMATCH"; ok=0; fi
	printf '%-22s %9s %9s %9s%s\n' "$rule" "$want" "$got" "${fired:-?}" "$mark"
	total_got=$((total_got + got))
done <"$BENCH_TMP/expected"
want_total=$(awk '$1 == "total" { print $2 }' "$BENCH_TMP/expected")
lines=$(wc -l <"$BENCH_TMP/alerts.json" | tr -d ' ')
printf '%-22s %9s %9s   (output lines: %s)\n' total "$want_total" "$total_got" "$lines"
[ "$lines" = "$want_total" ] || { ok=0; echo "output lines $lines != expected $want_total"; }
herr=$(awk '$1 == "handler_errors" { print $2 }' "$BENCH_TMP/err.rules.1")
[ "${herr:-0}" = 0 ] || { ok=0; echo "handler_errors = $herr"; }
[ -n "$BAD" ] && { ok=0; echo "problems:$BAD"; }
[ $ok = 1 ] && check="ok" || check="MISMATCH"
echo "alert check: $check"

result replay.n "$N"
result replay.rules "$nrules"
result replay.cat_rate "$cat_rate"
result replay.jparse_rate "$jp_rate"
result replay.empty_rate "$empty_rate"
result replay.rules_rate "$rules_rate"
result replay.rules_cpu_rate "$rules_cpu_rate"
result replay.x "$(ratio "$rules_rate" "$empty_rate")"
result replay.alerts "$total_got/$want_total $check"
exit 0
