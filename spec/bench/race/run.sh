#!/bin/sh
# race: the kill-after-exec table for procwarden itself (issue 8.7; the
# minimal killer's figures are in spec/bench/README.md).
#
# Three victims, each proving that it ran by creating a marker file, then
# sleeping 1 s so that a kill can land:
#   * dynamic: glibc, dynamically linked (victim.c): marker first thing in main;
#   * static:  the same source built with -static (no ELF interpreter);
#   * raw:     static, no libc (raw.S): its first system call is the marker.
# procwarden runs one rule, exe glob -> kill() (--duration 900 -o json --log
# /dev/null --stats, plus --realtime for the realtime columns), and
# race_driver (driver.c) execs the three victims in turn, RACE_N rounds
# (200; quick 50), under {idle, busy (one CPU hog per core)} x {normal,
# --realtime}. "ran" = the victim created its marker (reached main; for raw,
# ran its first instruction) before the kill; "killed" = it died of SIGKILL.
# Then the same with the rule's kill() replaced by deny() (fanotify, decided
# before the exec; idle and busy, normal scheduling): expected 0 ran and
# every execve failing with EPERM. Timing starts once the daemon has killed
# (or denied) a warm-up victim; for deny, after its stderr said
# "deny: covering /".
BENCH_SRC=$(cd "$(dirname "$0")/.." && pwd)
. "$BENCH_SRC/lib.sh"
bench_traps

if [ "$BENCH_QUICK" = 1 ]; then N=${RACE_N:-50}; else N=${RACE_N:-200}; fi
RT_PRIO=10
VICTIMS="dynamic static raw"

bench_cc hog "$BENCH_SRC/common/hog.c"
bench_cc race_driver "$BENCH_SRC/race/driver.c" "$BENCH_SRC/common/victim_wait.c"
bench_cc race_victim_dynamic "$BENCH_SRC/race/victim.c"
bench_cc race_victim_static -static "$BENCH_SRC/race/victim.c"
$CC -nostdlib -static -no-pie -o "$BENCH_BIN/race_victim_raw" "$BENCH_SRC/race/raw.S" || die "compiling raw.S failed"
bench_tmp
for v in $VICTIMS; do cp "$BENCH_BIN/race_victim_$v" "$BENCH_TMP/victim-$v" || die "cp victim-$v"; done
readelf -l "$BENCH_TMP/victim-dynamic" 2>/dev/null | grep -q 'program interpreter' || die "victim-dynamic is not dynamically linked"
for v in static raw; do
	readelf -l "$BENCH_TMP/victim-$v" 2>/dev/null | grep -q 'program interpreter' && die "victim-$v is dynamically linked"
done
mkdir "$BENCH_TMP/markers"
for a in kill deny; do
	cat >"$BENCH_TMP/$a.lua" <<EOF
rule { name = "forbidden", on = "exec", match = { exe = "$BENCH_TMP/victim-*" }, action = { $a() } }
EOF
	chmod 600 "$BENCH_TMP/$a.lua"
	"$PW" --check "$BENCH_TMP/$a.lua" >/dev/null 2>"$BENCH_TMP/check.err" ||
		die "procwarden --check rejects the $a rule: $(cat "$BENCH_TMP/check.err")"
done

# config ACTION LOAD SCHED: one daemon, N rounds of the three victims.
# Results in $BENCH_TMP/ACTION-LOAD-SCHED/driver.out.
config() {
	action=$1 load=$2 sched=$3
	d=$BENCH_TMP/$action-$load-$sched
	mkdir -p "$d"
	[ "$load" = busy ] && hogs_start
	sleep 0.2
	rt=""
	[ "$sched" = realtime ] && rt="--realtime=$RT_PRIO"
	"$PW" --duration 900 -o json --log /dev/null --stats $rt "$BENCH_TMP/$action.lua" >"$d/out" 2>"$d/err" &
	lp=$!
	bg_add $lp
	ok=1
	if [ "$action" = deny ]; then
		wait_for "$d/err" 'deny: covering /' 15 || ok=0
	fi
	if [ $ok = 1 ] && "$BENCH_BIN/race_driver" ready "$action" "$BENCH_TMP/victim-dynamic" "$BENCH_TMP/markers" 15; then
		set --
		for v in $VICTIMS; do set -- "$@" "$BENCH_TMP/victim-$v"; done
		"$BENCH_BIN/race_driver" run "$N" "$d/driver.out" "$BENCH_TMP/markers" 300 "$@" >"$d/driver.sum"
	else
		echo "   note: procwarden ($action $load/$sched) not ready (never ${action}ed a warm-up victim): $(head -c 300 "$d/err")"
		: >"$d/driver.out"
	fi
	bg_stop $lp
	[ "$load" = busy ] && hogs_stop
	for c in enobufs handler_errors deny_timeouts deny_rule_errors; do
		v=$(awk -v c="$c" '$1 == c { x = $2 } END { print x }' "$d/err")
		[ -n "$v" ] && [ "$v" != 0 ] && echo "   note: procwarden $c = $v ($action $load/$sched)"
	done
	return 0
}

# cell ACTION LOAD SCHED VICTIM -> C_n C_ran C_killed C_eperm C_timeouts
cell() {
	f=$BENCH_TMP/$1-$2-$3/driver.out
	touch "$f"
	eval "$(awk -v v="$4" -v idx="$(echo "$VICTIMS" | tr ' ' '\n' | grep -nx "$4" | cut -d: -f1)" \
		'$1 == idx - 1 { n++; k += $3; m += $4; t += $5; if ($6 == 1) e++ }
		END { printf "C_n=%d C_ran=%d C_killed=%d C_timeouts=%d C_eperm=%d\n", n, m, k, t, e }' "$f")"
}

printf '\n== race: kill-after-exec vs deny(), %d execs per victim and configuration, %d cores ==\n' "$N" "$NPROC"
CONFIGS="kill-idle-normal kill-idle-realtime kill-busy-normal kill-busy-realtime deny-idle-normal deny-busy-normal"
for c in $CONFIGS; do
	IFS=- read -r a l s <<EOF
$c
EOF
	config "$a" "$l" "$s"
done

printf '%-8s %-20s %6s %6s %7s %6s %9s\n' victim configuration execs ran killed EPERM timeouts
for v in $VICTIMS; do
	for c in $CONFIGS; do
		IFS=- read -r a l s <<EOF
$c
EOF
		cell "$a" "$l" "$s" "$v"
		label="$a $l/$s"
		[ "$a" = deny ] && label="deny $l"
		printf '%-8s %-20s %6s %6s %7s %6s %9s\n' "$v" "$label" "$C_n" "$C_ran" "$C_killed" "$C_eperm" "$C_timeouts"
		result "race.$c.$v" "$C_ran/$C_n $C_killed $C_eperm $C_timeouts"
	done
done

echo
echo "ran (reached main; raw: its first instruction) / execs:"
printf '%-8s %-12s %-14s %-12s %-14s %-12s %-12s\n' victim idle/normal idle/realtime busy/normal busy/realtime "deny idle" "deny busy"
for v in $VICTIMS; do
	cells=""
	for c in $CONFIGS; do
		IFS=- read -r a l s <<EOF
$c
EOF
		cell "$a" "$l" "$s" "$v"
		cells="$cells $C_ran/$C_n"
	done
	# shellcheck disable=SC2086
	printf '%-8s %-12s %-14s %-12s %-14s %-12s %-12s\n' "$v" $cells
done
cat <<EOF
ran     = victims that created their marker (reached main; raw: its first system call)
killed  = died of SIGKILL; EPERM = execve failed with EPERM (deny: never ran an instruction)
timeouts = still alive after 300 ms (the driver SIGTERMed them)
kill rows: procwarden kill() after exec (a race); deny rows: deny(), decided before the exec
EOF
exit 0
