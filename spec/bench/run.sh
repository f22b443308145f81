#!/bin/sh
# spec/bench/run.sh: procwarden's benchmarks (`make bench`); README "Measured performance".
#
#   PW_BUILD=build sh spec/bench/run.sh      # ~3-6 minutes
#   BENCH_QUICK=1 ... run.sh                 # short version, < 2 minutes
#   BENCH_ONLY="kill_latency storm" ...      # a subset
#   BENCH_KEEP=1 ...                         # keep raw data in $PW_BUILD/bench/raw/
#   BENCH_WAIT_QUIET=60 ...                  # before each benchmark, wait up to 60 s for
#                                            # the machine to be quiet: < 15% CPU busy, no
#                                            # other procwarden/forkstat/fanotify user
#
# Every figure is measured in this run, and each benchmark measures its own
# baseline in the same run, side by side: a minimal C proc connector listener
# (spec/bench/common/minlisten.c) for kill latency and storm CPU, an empty
# rules file for replay. Helpers are compiled here into $PW_BUILD/bench/.
# Needs root (the proc connector) and a built daemon ($PW_BUILD/procwarden).
# The summary is also written to $PW_BUILD/bench/summary.txt.
set -u
BENCH_SRC=$(cd "$(dirname "$0")" && pwd)
export PW_BUILD=${PW_BUILD:-build}
export BENCH_QUICK=${BENCH_QUICK:-0}
. "$BENCH_SRC/lib.sh"
export PW_BUILD

[ "$(id -u)" = 0 ] || die "the benchmarks need root (proc connector, SCHED_FIFO): run as root"
[ -x "$PW" ] || die "$PW not found: run make all first"
mkdir -p "$BENCH_BIN"
export BENCH_RESULTS="$BENCH_BIN/results.txt"
: >"$BENCH_RESULTS"
SUMMARY=$BENCH_BIN/summary.txt

ALL="kill_latency storm replay rss exec_cost race lazy_cost"
ONLY=${BENCH_ONLY:-$ALL}
kernel=$(uname -r)
cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
version=$("$PW" --version 2>/dev/null | head -1)
start=$(date +%s)
echo "procwarden benchmarks$([ "$BENCH_QUICK" = 1 ] && echo " (quick)")"
echo "machine: $NPROC cores, $cpu, kernel $kernel; $version"

# Other proc connector / fanotify users on the machine perturb every figure
# (a fanotify exec-permission listener delays every exec): say so.
activity() {
	npw=$(pgrep -x procwarden 2>/dev/null | wc -l | tr -d ' ')
	nfk=$(pgrep -x forkstat 2>/dev/null | wc -l | tr -d ' ')
	nfan=$(for f in /proc/[0-9]*/fd/*; do readlink "$f" 2>/dev/null; done | grep -c 'anon_inode:\[fanotify\]')
	# CPU busy over one second, all cores (none of ours runs at this point).
	busy=$({ head -1 /proc/stat; sleep 1; head -1 /proc/stat; } | awk '{ t = 0; for (i = 2; i <= NF; i++) t += $i;
		idle = $5 + $6; if (NR == 1) { t0 = t; i0 = idle } else printf "%.0f", 100 * ((t - t0) - (idle - i0)) / (t - t0) }')
	ACT="CPU busy ${busy}% (other processes), other procwarden=$npw forkstat=$nfk fanotify-fds=$nfan, load $(cut -d' ' -f1-3 /proc/loadavg)"
}
quiet() { [ "$npw" = 0 ] && [ "$nfk" = 0 ] && [ "$nfan" = 0 ] && [ "$busy" -lt 15 ]; }
wait_quiet() {
	activity
	_end=$(($(date +%s) + ${BENCH_WAIT_QUIET:-0}))
	while ! quiet && [ "$(date +%s)" -lt $_end ]; do
		sleep 1
		activity
	done
	quiet || NOISY="$NOISY $1"
	echo "machine activity before $1: $ACT"
}
NOISY=""
CHILD=""
stop_child() { [ -n "$CHILD" ] && kill -TERM "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null; }
trap 'stop_child; exit 130' INT
trap 'stop_child; exit 143' TERM

status=0
for b in $ONLY; do
	[ -f "$BENCH_SRC/$b/run.sh" ] || die "no benchmark $b (known: $ALL)"
	wait_quiet "$b"
	t0=$(date +%s)
	# In the background, so that a TERM/INT to this script reaches it at once.
	sh "$BENCH_SRC/$b/run.sh" &
	CHILD=$!
	wait $CHILD
	rc=$?
	CHILD=""
	[ $rc = 0 ] || { echo "bench: $b FAILED (exit $rc)"; status=1; }
	echo "($b: $(($(date +%s) - t0)) s)"
done

get() { awk -v k="$1" '$1 == k { $1 = ""; sub(/^ /, ""); print; found = 1; exit } END { if (!found) print "" }' "$BENCH_RESULTS"; }
word() { echo "$1" | awk -v i="$2" '{ print $i }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "n/a") print "n/a"; else if (a + 0 <= b + 0) print "ok"; else print "MISS" }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "n/a") print "n/a"; else if (a + 0 < b + 0) print "ok"; else print "MISS" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || a == "n/a") print "n/a"; else if (a + 0 >= b + 0) print "ok"; else print "MISS" }'; }

{
	echo
	echo "== summary: $NPROC cores, $cpu, kernel $kernel$([ "$BENCH_QUICK" = 1 ] && echo ", QUICK") =="
	line() { printf '%-30s %-24s %-24s %-9s %-22s %s\n' "$@"; }
	line measure procwarden "baseline (same run)" ratio "target" status
	case " $ONLY " in *" kill_latency "*)
		for load in idle busy; do
			for sched in normal realtime; do
				p=$(get "kill.$load.$sched.procwarden") m=$(get "kill.$load.$sched.minimal")
				[ -n "$p" ] || continue
				kt=$(word "$p" 1) reached=$(word "$p" 2)
				if [ "$sched" = realtime ]; then
					tk="100% killed, 0 in main"
					st=$( [ "${kt%/*}" = "${kt#*/}" ] && [ "$reached" = 0 ] && echo ok || echo MISS)
					t50="<= 150 us" s50=$(le "$(word "$p" 3)" 150)
					t99="<= 1000 us" s99=$(le "$(word "$p" 4)" 1000)
				else
					tk="-" st="" t50="-" s50="" t99="-" s99=""
				fi
				line "kill $load/$sched killed,main" "$kt, $reached in main" "$(word "$m" 1), $(word "$m" 2) in main" "" "$tk" "$st"
				line "kill $load/$sched p50 us" "$(word "$p" 3)" "$(word "$m" 3)" "$(word "$p" 6)x" "$t50" "$s50"
				line "kill $load/$sched p99 us" "$(word "$p" 4)" "$(word "$m" 4)" "$(word "$p" 7)x" "$t99" "$s99"
				line "kill $load/$sched max us" "$(word "$p" 5)" "$(word "$m" 5)" "" "" ""
			done
		done
		;;
	esac
	case " $ONLY " in *" storm "*)
		line "storm threads/s (no listener)" "$(get storm.alone_rate)" "" "" "" ""
		line "storm threads/s (listening)" "$(get storm.pw_rate)" "$(get storm.base_rate)" "" "" ""
		line "storm CPU us/event" "$(get storm.pw_us)" "$(get storm.base_us)" "$(get storm.pw_x)x" "< 1.00x baseline" "$(lt "$(get storm.pw_x)" 1)"
		pl=$(get storm.pw_loss)
		line "storm lost events" "$pl" "$(get storm.base_loss)" "" "none lost" \
			"$( [ "$pl" = "enobufs=0 missing=0" ] && echo ok || echo MISS)"
		if [ -n "$(get storm.fk_us)" ]; then
			line "forkstat CPU us/event" "(forkstat) $(get storm.fk_us)" "$(get storm.base_us)" "$(get storm.fk_x)x" "procwarden far below" ""
			line "forkstat lost events" "(forkstat) $(get storm.fk_loss)" "" "" "" ""
		else
			line "forkstat" "$(get storm.fk)" "" "" "" ""
		fi
		;;
	esac
	case " $ONLY " in *" replay "*)
		rr=$(get replay.rules_rate)
		line "replay events/s, $(get replay.rules) rules" "$rr" "$(get replay.empty_rate) (empty)" "$(get replay.x)x" ">= 1000000" "$(ge "$rr" 1000000)"
		line "replay events/CPU-s" "$(get replay.rules_cpu_rate)" "" "" "" ""
		line "replay jansson-only lines/s" "" "$(get replay.jparse_rate)" "" "" ""
		line "replay cat > /dev/null lines/s" "" "$(get replay.cat_rate)" "" "" ""
		line "replay alerts vs expected" "$(get replay.alerts)" "" "" "all as expected" \
			"$(case "$(get replay.alerts)" in *" ok") echo ok ;; *) echo MISS ;; esac)"
		;;
	esac
	case " $ONLY " in *" rss "*)
		r=$(get rss.pw)
		line "idle RSS kB (default policy)" "$r" "$(get rss.min) (minimal)" "$(ratio "$r" 8192)x of 8 MiB" "<= 8192 kB" "$(le "$r" 8192)"
		line "idle RSS kB, --realtime" "$(get rss.pw_rt)" "" "" "" ""
		;;
	esac
	case " $ONLY " in *" exec_cost "*)
		b=$(get exec.none)
		for c in default allowall floor deny10; do
			p=$(get "exec.$c")
			[ -n "$p" ] || continue
			if [ "$c" = deny10 ]; then
				t50="<= 1.10x (+10%)" s50=$(le "$(word "$p" 7)" 1.10) t99="<= 100 us" s99=$(le "$(word "$p" 5)" 100)
			else
				t50="-" s50="" t99="-" s99=""
			fi
			line "exec $c p50 us" "$(word "$p" 1) ($(word "$p" 4))" "$(word "$b" 1) (no procwarden)" "$(word "$p" 7)x" "$t50" "$s50"
			line "exec $c p99 us" "$(word "$p" 2) ($(word "$p" 5))" "$(word "$b" 2) (no procwarden)" "$(word "$p" 8)x" "$t99" "$s99"
			line "exec $c mean us" "$(word "$p" 3) ($(word "$p" 6))" "$(word "$b" 3) (no procwarden)" "$(word "$p" 9)x" "" ""
		done
		fl=$(get exec.deny10.floor)
		[ -n "$fl" ] && line "exec deny10 / floor p50, p99" "$(word "$fl" 1)x ($(word "$fl" 3)), $(word "$fl" 2)x ($(word "$fl" 4))" \
			"floor: minimal listener + responder" "" "" ""
		f=$(get exec.default.fanotify)
		line "exec default fanotify fds" "$f" "" "" "0 (no mark)" "$( [ "$f" = 0 ] && echo ok || echo MISS)"
		dc=$(get exec.deny10.counters)
		kv() { echo "$dc" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
		line "exec deny10 decided/asked" "$(kv decisions)/$(kv requests), $(kv timeouts) late" "" "" "0 late (timeouts)" \
			"$( [ "$(kv timeouts)" = 0 ] && echo ok || echo MISS)"
		line "exec deny10 sha256 hashed" "$(kv sha256_computed), $(kv cache_hits) cached" "" "" "" ""
		;;
	esac
	case " $ONLY " in *" race "*)
		for v in dynamic static raw; do
			for load in idle busy; do
				n=$(get "race.kill-$load-normal.$v") r=$(get "race.kill-$load-realtime.$v")
				[ -n "$n$r" ] || continue
				line "race $v ran, $load" "$(word "$n" 1), rt $(word "$r" 1)" "" "" "-" ""
			done
		done
		for load in idle busy; do
			all=0 ran=0 eperm=0
			for v in dynamic static raw; do
				d=$(get "race.deny-$load-normal.$v")
				[ -n "$d" ] || continue
				c=$(word "$d" 1)
				ran=$((ran + ${c%/*})) all=$((all + ${c#*/})) eperm=$((eperm + $(word "$d" 3)))
			done
			[ "$all" -gt 0 ] || continue
			line "race deny() ran, EPERM, $load" "$ran/$all, $eperm/$all EPERM" "" "" "0 ran, all EPERM" \
				"$( [ "$ran" = 0 ] && [ "$eperm" = "$all" ] && echo ok || echo MISS)"
		done
		;;
	esac
	case " $ONLY " in *" lazy_cost "*)
		a=$(get lazy.a) b=$(get lazy.b)
		line "lazy exec events/s (storm)" "$(word "$b" 1) (B)" "$(word "$a" 1) (A)" "" "" ""
		line "lazy CPU us/event" "$(word "$b" 2) (B: exe+argv+parent)" "$(word "$a" 2) (A: none read)" "$(get lazy.x)x" "" ""
		;;
	esac
	activity
	echo "at end: $ACT; total $(($(date +%s) - start)) s"
	[ -z "$NOISY" ] || echo "WARNING: the machine was not quiet (other CPU load, procwarden, forkstat or fanotify users) before:$NOISY; those figures are perturbed"
} | tee "$SUMMARY"
exit $status
