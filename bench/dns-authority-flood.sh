#!/usr/bin/env bash
# Benchmark: the authoritative server's memory under a random-name flood
# (issue 10 item 4). dnsperf sends RATE queries/s for SECS seconds, every
# query a distinct random name under the zone (NXDOMAIN answers, each
# cacheable), to `applayer dns serve` with its default settings (one UDP
# socket per core). The server's RSS is sampled every 5 s during the flood
# and after IDLE seconds without queries.
#
# With BASE set (a git revision), the same run is made first with a binary
# built from BASE in a temporary git worktree ("before"), then with the
# working tree ("after").
#
# Usage: bench/dns-authority-flood.sh [seconds] [rate] [idle]   (default 60 20000 150)
#        BASE=877628d bench/dns-authority-flood.sh
set -euo pipefail

SECS=${1:-60}
RATE=${2:-20000}
IDLE=${3:-150}
ADDR=127.0.0.1
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/bench-dns-flood.XXXXXX)
export GOTOOLCHAIN=auto
PID=
cleanup() {
	[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null || true
	wait 2>/dev/null || true
	[ -d "$WORK/base" ] && git -C "$HERE" worktree remove --force "$WORK/base" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

for c in dnsperf dig go python3; do
	command -v $c >/dev/null || { echo "missing: $c" >&2; exit 1; }
done

echo "building..." >&2
(cd "$HERE" && go build -o "$WORK/applayer-after" ./cmd/applayer)
RUNS=(after)
if [ -n "${BASE:-}" ]; then
	git -C "$HERE" worktree add -q --detach "$WORK/base" "$BASE"
	(cd "$WORK/base" && go build -o "$WORK/applayer-before" ./cmd/applayer)
	RUNS=(before after)
fi

{
	echo '$ORIGIN flood.test.'
	echo '$TTL 3600'
	echo '@ SOA ns1 hostmaster 1 7200 3600 1209600 300'
	echo '@ NS ns1'
	echo 'ns1 A 192.0.2.1'
	echo 'www A 192.0.2.80'
} >"$WORK/flood.test.zone"
# One distinct random name per query of the run (dnsperf would loop the file).
python3 - "$WORK/queries.txt" $((SECS * RATE + RATE)) <<'EOF'
import random, sys
n = int(sys.argv[2])
r = random.Random(1)
with open(sys.argv[1], "w") as f:
    for i in range(n):
        f.write("%016x.flood.test A\n" % r.getrandbits(64))
EOF

rsskb() { awk '/VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  flood: ${RATE} q/s of random names for ${SECS} s, then ${IDLE} s idle; $(nproc) cores"
printf "%-8s %10s %10s %10s %12s %10s\n" binary "start KiB" "peak KiB" "end KiB" "idle KiB" "answered"
for which in "${RUNS[@]}"; do
	P=$(freeport)
	"$WORK/applayer-$which" --log-level warn dns serve --listen "$ADDR:$P" --zone "flood.test=$WORK/flood.test.zone" >/dev/null &
	PID=$!
	for _ in $(seq 1 100); do
		dig +time=1 +tries=1 @$ADDR -p "$P" flood.test SOA +short 2>/dev/null | grep -q hostmaster && break
		sleep 0.1
	done
	START=$(rsskb $PID)
	dnsperf -s $ADDR -p "$P" -d "$WORK/queries.txt" -l "$SECS" -Q "$RATE" -c 4 -q 500 >"$WORK/dnsperf.$which" 2>&1 &
	DP=$!
	PEAK=$START
	while kill -0 $DP 2>/dev/null; do
		sleep 5
		r=$(rsskb $PID); [ "${r:-0}" -gt "$PEAK" ] && PEAK=$r
		echo "  $which t+5s: RSS $r KiB" >&2
	done
	wait $DP || true
	END=$(rsskb $PID)
	sleep "$IDLE"
	IDLEKB=$(rsskb $PID)
	DONE=$(awk '/Queries completed/{print $3}' "$WORK/dnsperf.$which")
	printf "%-8s %10s %10s %10s %12s %10s\n" "$which" "$START" "$PEAK" "$END" "$IDLEKB" "$DONE"
	kill -TERM $PID; wait $PID 2>/dev/null || true
	PID=
done
