#!/usr/bin/env bash
# Benchmark: applayer's authoritative server against NSD and Knot serving the
# same zone, in interleaved rounds (A B C A B C ...), on loopback.
#
# Each server gets one worker (GOMAXPROCS=1 for applayer, server-count 1 for
# NSD, one UDP worker for Knot) pinned to CPU 0; dnsperf runs on CPU 1. The
# client saturates before the servers on a 2-core machine, so besides
# queries/s the script reports queries answered per second of server CPU
# time (utime+stime of every process of the server, from /proc/PID/stat),
# and the servers' RSS.
#
# Usage: bench/dns-authority.sh [rounds] [seconds] [mix]  (default 3 rounds of 12 s, mix synthetic)
#        RSS1M=1 bench/dns-authority.sh                (also: RSS for a 1M-record zone)
#
# mix "synthetic": the 10,000-name zone below (80% answers, 10% NODATA, 10%
# NXDOMAIN), servers pinned. mix "textbook": a zone like the chapter's
# amazon.com (MX whose targets go in the additional section, CNAMEs to
# in-zone and out-of-zone targets, a wildcard, a delegation with glue, SRV,
# a TXT too big for a 1232-byte datagram, 2,000 hosts with A and AAAA) in
# three copies served side by side: unsigned (amazon.com, queries with EDNS),
# signed with NSEC (amazon.net) and with NSEC3 (amazon.org), both asked with
# DO=1 (all signed by ldns-signzone, so the three servers serve the same
# records). A realistic query mix by type (about a quarter NXDOMAIN for
# random names) is run on each copy with the servers pinned to CPU 0
# (dnsperf on CPU 1) and unpinned (PIN="pinned unpinned" by default); with
# CLASSES=1 each query class is also run alone (CLASS_SECS seconds, default
# 3), pinned, for the per-class table.
set -euo pipefail

ROUNDS=${1:-3}
SECS=${2:-12}
MIX=${3:-synthetic}
case $MIX in synthetic | textbook) ;; *) echo "mix: synthetic or textbook" >&2; exit 2 ;; esac
ADDR=127.0.0.1
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/bench-dns-authority.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

for c in dnsperf nsd knotd taskset go; do
	command -v $c >/dev/null || { echo "missing: $c" >&2; exit 1; }
done

echo "building applayer..." >&2
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$WORK/applayer"; else (cd "$HERE" && GOTOOLCHAIN=auto go build -o "$WORK/applayer" ./cmd/applayer); fi

# The zone: 10,000 hosts with an A record each, some MX/TXT, a wildcard.
N=10000
{
	echo '$ORIGIN bench.test.'
	echo '$TTL 3600'
	echo '@ SOA ns1 hostmaster 1 7200 3600 1209600 300'
	echo '@ NS ns1'
	echo 'ns1 A 192.0.2.1'
	echo '@ MX 10 mail'
	echo 'mail A 192.0.2.25'
	for i in $(seq 1 $N); do echo "h$i A 10.$((i / 65536 % 256)).$((i / 256 % 256)).$((i % 256))"; done
} >"$WORK/bench.test.zone"
# Query mix: 80% existing names, 10% NODATA, 10% NXDOMAIN.
for i in $(seq 1 50000); do
	r=$((RANDOM % 10)); h=$((RANDOM % N + 1))
	case $r in
	8) echo "h$h.bench.test TXT" ;;
	9) echo "nx$h.bench.test A" ;;
	*) echo "h$h.bench.test A" ;;
	esac
done >"$WORK/queries.txt"

cputicks() { # sum utime+stime of every process in session $1
	local total=0
	for st in /proc/[0-9]*/stat; do
		{ read -r line <"$st"; } 2>/dev/null || continue
		rest=${line##*) }
		set -- $rest
		# fields after "comm": state(3) ppid(4) pgrp(5) session(6) ... utime(14) stime(15)
		if [ "${4}" = "$SID" ]; then total=$((total + ${12} + ${13})); fi
	done
	echo $total
}
rsskb() {
	local total=0
	for d in /proc/[0-9]*; do
		[ -r "$d/stat" ] || continue
		{ read -r line <"$d/stat"; } 2>/dev/null || continue
		rest=${line##*) }; set -- $rest
		if [ "${4}" = "$SID" ]; then
			r=$(awk '/VmRSS/{print $2}' "$d/status" 2>/dev/null || echo 0)
			total=$((total + ${r:-0}))
		fi
	done
	echo $total
}
waitport() {
	for _ in $(seq 1 100); do
		if dig +time=1 +tries=1 @"$ADDR" -p "$1" bench.test SOA +short 2>/dev/null | grep -q hostmaster; then return 0; fi
		sleep 0.1
	done
	echo "server on port $1 did not come up" >&2; return 1
}
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

# start_nsd and start_knot ORIGIN...: the peer on $ADDR:$P_NSD / $P_KNOT,
# one worker pinned to CPU 0, serving $WORK/ORIGIN.zone for each origin;
# its session id in SID_NSD / SID_KNOT.
start_nsd() {
	mkdir -p "$WORK/nsd"
	{
		cat <<EOF
server:
  ip-address: $ADDR@$P_NSD
  username: ""
  chroot: ""
  zonesdir: "$WORK"
  database: ""
  pidfile: "$WORK/nsd/nsd.pid"
  xfrdfile: "$WORK/nsd/xfrd.state"
  zonelistfile: "$WORK/nsd/zone.list"
  logfile: "$WORK/nsd/nsd.log"
  server-count: 1
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
EOF
		for o in "$@"; do printf 'zone:\n  name: %s\n  zonefile: %s.zone\n' "$o" "$o"; done
	} >"$WORK/nsd/nsd.conf"
	setsid taskset -c 0 nsd -d -c "$WORK/nsd/nsd.conf" &
	PIDS+=($!); SID_NSD=$!
}
start_knot() {
	mkdir -p "$WORK/knot"
	{
		cat <<EOF
server:
  listen: $ADDR@$P_KNOT
  rundir: "$WORK/knot"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$WORK/knot"
log:
  - target: stderr
    any: error
zone:
EOF
		for o in "$@"; do
			printf '  - domain: %s\n    file: "%s"\n    journal-content: none\n    zonefile-sync: -1\n' "$o" "$WORK/$o.zone"
		done
	} >"$WORK/knot/knot.conf"
	setsid taskset -c 0 knotd -c "$WORK/knot/knot.conf" &
	PIDS+=($!); SID_KNOT=$!
}

if [ "$MIX" = textbook ]; then
	# shellcheck source=bench/dns-authority-textbook.sh
	. "$HERE/bench/dns-authority-textbook.sh"
	exit 0
fi

P_APP=$(freeport); P_NSD=$(freeport); P_KNOT=$(freeport)

# applayer
GOMAXPROCS=1 setsid taskset -c 0 "$WORK/applayer" --log-level warn dns serve --listen "$ADDR:$P_APP" --zone "bench.test=$WORK/bench.test.zone" &
PIDS+=($!); SID_APP=$!

start_nsd bench.test
start_knot bench.test

waitport $P_APP; waitport $P_NSD; waitport $P_KNOT

declare -A QPS CPU
run() { # name port sid
	local name=$1 port=$2
	SID=$3
	local c0; c0=$(cputicks)
	local out; out=$(taskset -c 1 dnsperf -s $ADDR -p "$port" -d "$WORK/queries.txt" -l "$SECS" -c 8 -T 1 -q 100 2>&1)
	local c1; c1=$(cputicks)
	local qps; qps=$(echo "$out" | awk '/Queries per second/{print $4}')
	local completed; completed=$(echo "$out" | awk '/Queries completed/{print $3}')
	local hz; hz=$(getconf CLK_TCK)
	local cpu; cpu=$(awk -v q="$completed" -v t=$((c1 - c0)) -v hz="$hz" 'BEGIN{ if (t>0) printf "%.0f", q/(t/hz); else print "inf" }')
	echo "round $r $name: $qps q/s, $cpu answers per server-CPU-second" >&2
	QPS[$name]+="$qps "
	CPU[$name]+="$cpu "
}
for r in $(seq 1 "$ROUNDS"); do
	run applayer $P_APP $SID_APP
	run nsd $P_NSD $SID_NSD
	run knot $P_KNOT $SID_KNOT
done

SID=$SID_APP; RSS_APP=$(rsskb)
SID=$SID_NSD; RSS_NSD=$(rsskb)
SID=$SID_KNOT; RSS_KNOT=$(rsskb)
A_Q=$(echo "${QPS[applayer]}" | median); N_Q=$(echo "${QPS[nsd]}" | median); K_Q=$(echo "${QPS[knot]}" | median)
A_C=$(echo "${CPU[applayer]}" | median); N_C=$(echo "${CPU[nsd]}" | median); K_C=$(echo "${CPU[knot]}" | median)
echo
echo "medians of $ROUNDS rounds, zone of $N names, mix 80% answer / 10% NODATA / 10% NXDOMAIN"
printf "%-10s %12s %22s %10s\n" server "queries/s" "answers/server-CPU-s" "RSS KiB"
printf "%-10s %12s %22s %10s\n" applayer "$A_Q" "$A_C" "$RSS_APP"
printf "%-10s %12s %22s %10s\n" nsd "$N_Q" "$N_C" "$RSS_NSD"
printf "%-10s %12s %22s %10s\n" knot "$K_Q" "$K_C" "$RSS_KNOT"
awk -v a="$A_C" -v n="$N_C" -v k="$K_C" 'BEGIN{ printf "ratio per CPU-second: applayer/nsd %.2f, applayer/knot %.2f\n", a/n, a/k }'

if [ "${RSS1M:-}" != "" ]; then
	M=1000000
	{
		echo '$ORIGIN big.test.'
		echo '$TTL 3600'
		echo '@ SOA ns1 hostmaster 1 7200 3600 1209600 300'
		echo '@ NS ns1'
		echo 'ns1 A 192.0.2.1'
		awk -v m=$((M - 3)) 'BEGIN{ for (i = 1; i <= m; i++) printf "h%d A 10.%d.%d.%d\n", i, int(i/65536)%256, int(i/256)%256, i%256 }'
	} >"$WORK/big.test.zone"
	waitbig() { for _ in $(seq 1 600); do dig +time=1 +tries=1 @$ADDR -p "$1" big.test SOA +short 2>/dev/null | grep -q hostmaster && return 0; sleep 0.2; done; return 1; }
	P_BIG=$(freeport)
	GOMAXPROCS=1 setsid "$WORK/applayer" --log-level warn dns serve --listen "$ADDR:$P_BIG" --zone "big.test=$WORK/big.test.zone" &
	PIDS+=($!); SID=$!
	waitbig $P_BIG
	echo "applayer RSS with a 1,000,000-record zone: $(rsskb) KiB"
	kill -TERM -- "-$SID"
	P_BIG=$(freeport)
	sed -e "s/@$P_NSD/@$P_BIG/" -e "s/bench.test/big.test/g" -e "s|$WORK/nsd/|$WORK/nsd/big-|g" "$WORK/nsd/nsd.conf" >"$WORK/nsd/big.conf"
	setsid nsd -d -c "$WORK/nsd/big.conf" &
	PIDS+=($!); SID=$!
	waitbig $P_BIG
	echo "NSD RSS (all processes) with the same zone: $(rsskb) KiB"
fi
