#!/usr/bin/env bash
# The CDN's benchmarks, on loopback, in one interleaved run:
#
# 1. Edge hits: `applayer cdn edge` against Varnish, both in front of one
#    origin (bench/webcache-origin), for a 1 KiB and a 2 MiB object:
#    requests/s and requests per second of edge CPU time (utime+stime
#    from /proc), wrk -t1 -c$CONNS, rounds interleaved A B A B, medians.
#    One worker each (GOMAXPROCS=1; Varnish thread_pools=1), pinned to
#    CPU 0; wrk on CPU 1.
# 2. Routing: `applayer cdn route` (network map of 3 clusters, every
#    query carrying an ECS option, so each answer is a routing decision)
#    against applayer's plain authority (`dns serve`) and Knot serving a
#    zone with the same names: answers per server-CPU-second (dnsperf,
#    the same query file with the same ECS option for all three).
# 3. Origin offload: 3 edges, with and without a shield, each with
#    $CLIENTS clients fetching the same $SEGS segments of 100 KiB in order
#    (staggered playback): bytes from the origin / bytes served to clients.
#
#    Clients ask for the content provider's name (Host:
#    video.netcinema.com), as behind the router, so every edge and the
#    shield key an object alike. With a shield the origin sends each
#    segment once: offload is 1 - 1/(3 x CLIENTS), without one 1 - 1/CLIENTS.
#
# Usage: bench/cdn.sh [ROUNDS] [SECONDS]   (defaults 3 rounds, 6 s)
# Env: CONNS (32), CLIENTS (8 per edge), SEGS (60), APPLAYER (a binary),
#      PARTS (which parts to run, default "1 2 3").
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
ROUNDS=${1:-3}
SECS=${2:-6}
CONNS=${CONNS:-32}
CLIENTS=${CLIENTS:-8}
PARTS=${PARTS:-1 2 3}
part() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
SEGS=${SEGS:-60}
ORIGIN=127.0.0.1:28280
EDGE=127.0.0.1:28281 VARNISH=127.0.0.1:28282
TMP=$(mktemp -d /tmp/cdn-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -9 -- "-$p" 2>/dev/null || kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

for c in wrk varnishd curl dnsperf knotd taskset setsid; do command -v $c >/dev/null || { echo "missing $c" >&2; exit 1; }; done
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$TMP/applayer"; else go build -o "$TMP/applayer" ./cmd/applayer; fi
go build -o "$TMP/origin" ./bench/webcache-origin
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

setsid "$TMP/origin" -listen $ORIGIN & PIDS+=($!)

# cpu: utime+stime in clock ticks of every process of session $SID.
cpu() {
	local total=0 line rest
	for st in /proc/[0-9]*/stat; do
		{ read -r line <"$st"; } 2>/dev/null || continue
		rest=${line##*) }
		set -- $rest
		if [ "${4}" = "$SID" ]; then total=$((total + ${12} + ${13})); fi
	done
	echo $total
}
TICKS=$(getconf CLK_TCK)
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
wait_http() {
	for _ in $(seq 1 100); do curl -s -o /dev/null "http://$1/1k" && return 0; sleep 0.1; done
	echo "no HTTP on $1" >&2; exit 1
}

# ---- 1. edge hits vs Varnish ----
if part 1; then
GOMAXPROCS=1 setsid taskset -c 0 "$TMP/applayer" --log-level warn cdn edge --listen $EDGE --upstream $ORIGIN --name edge --cache-mem 1024 >/dev/null 2>&1 &
SID_EDGE=$!; PIDS+=($SID_EDGE)
mkdir -p "$TMP/varnish"
chown vcache "$TMP/varnish" 2>/dev/null || true
setsid taskset -c 0 varnishd -F -n "$TMP/varnish" -a $VARNISH -b $ORIGIN -s malloc,1024m \
	-p thread_pools=1 -p thread_pool_min=10 -p thread_pool_max=200 >"$TMP/varnish.log" 2>&1 &
SID_VARNISH=$!; PIDS+=($SID_VARNISH)
wait_http $ORIGIN; wait_http $EDGE; wait_http $VARNISH

# hits NAME ADDR SID PATH: "req/s req/cpu-s"
hits() {
	local addr=$2 path=$4 out c0 c1
	SID=$3
	curl -s -o /dev/null "http://$addr$path"; curl -s -o /dev/null "http://$addr$path"
	c0=$(cpu)
	out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${SECS}s" "http://$addr$path")
	c1=$(cpu)
	awk -v r="$(echo "$out" | awk '/Requests\/sec/{print $2}')" -v n="$(echo "$out" | awk '/requests in/{print $1}')" \
		-v c=$((c1 - c0)) -v t="$TICKS" 'BEGIN{ printf "%.0f %.0f\n", r, (c>0 ? n/(c/t) : 0) }'
}
declare -A RPS CPS
for path in /1k /2m; do
	for r in $(seq 1 "$ROUNDS"); do
		for name in edge varnish; do
			case $name in edge) x=$(hits $name $EDGE $SID_EDGE $path) ;; varnish) x=$(hits $name $VARNISH $SID_VARNISH $path) ;; esac
			echo "round $r $path $name: ${x% *} req/s, ${x#* } req/cpu-s" >&2
			RPS[$name$path]+="${x% *} "; CPS[$name$path]+="${x#* } "
		done
	done
done
echo
echo "1. edge cache hits, wrk -t1 -c$CONNS -d${SECS}s, $ROUNDS interleaved rounds, medians"
printf "%-6s %-9s %12s %14s\n" object server "req/s" "req/cpu-s"
for path in /1k /2m; do
	for name in edge varnish; do
		printf "%-6s %-9s %12s %14s\n" "${path#/}" $name "$(echo "${RPS[$name$path]}" | median)" "$(echo "${CPS[$name$path]}" | median)"
	done
	awk -v a="$(echo "${RPS[edge$path]}" | median)" -v v="$(echo "${RPS[varnish$path]}" | median)" \
		-v ac="$(echo "${CPS[edge$path]}" | median)" -v vc="$(echo "${CPS[varnish$path]}" | median)" -v o="${path#/}" \
		'BEGIN{ printf "%-6s edge/varnish %.2f per second, %.2f per CPU-second\n", o, a/v, ac/vc }'
done
kill -TERM -- "-$SID_EDGE" "-$SID_VARNISH" 2>/dev/null || true
fi

# ---- 2. routing vs plain authority vs Knot ----
if part 2; then
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_ROUTE=$(freeport); P_AUTH=$(freeport); P_KNOT=$(freeport)
N=10000
{
	echo '$ORIGIN kingcdn.com.'
	echo '$TTL 20'
	echo '@ SOA ns hostmaster 1 3600 600 86400 20'
	echo '@ NS ns'
	echo 'ns A 192.0.2.1'
	for i in $(seq 1 $N); do echo "obj$i A 192.0.2.$((i % 3 + 11))"; done
} >"$TMP/kingcdn.zone"
for i in $(seq 1 50000); do echo "obj$((RANDOM % N + 1)).kingcdn.com A"; done >"$TMP/queries.txt"
cat >"$TMP/map.yaml" <<EOF
clusters:
  - {name: umass, edges: [{name: e1, addr: 192.0.2.11}, {name: e2, addr: 192.0.2.12}]}
  - {name: nyu, edges: [{name: e1, addr: 192.0.2.21}]}
  - {name: crepes, edges: [{name: e1, addr: 192.0.2.31}]}
networks:
  - {name: umass.edu, prefixes: [10.1.0.0/16], distances: {umass: 1, nyu: 4, crepes: 60}}
  - {name: nyu.edu, prefixes: [10.2.0.0/16], distances: {nyu: 1, umass: 4, crepes: 60}}
  - {name: crepes.fr, prefixes: [10.3.0.0/16], distances: {crepes: 1, nyu: 50, umass: 55}}
origin: [192.0.2.1]
EOF
GOMAXPROCS=1 setsid taskset -c 0 "$TMP/applayer" --log-level warn cdn route --listen 127.0.0.1:$P_ROUTE --domain kingcdn.com --map "$TMP/map.yaml" >/dev/null 2>&1 &
SID_ROUTE=$!; PIDS+=($SID_ROUTE)
GOMAXPROCS=1 setsid taskset -c 0 "$TMP/applayer" --log-level warn dns serve --listen 127.0.0.1:$P_AUTH --zone "kingcdn.com=$TMP/kingcdn.zone" >/dev/null 2>&1 &
SID_AUTH=$!; PIDS+=($SID_AUTH)
mkdir -p "$TMP/knot"
cat >"$TMP/knot/knot.conf" <<EOF
server:
  listen: 127.0.0.1@$P_KNOT
  rundir: "$TMP/knot"
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
database:
  storage: "$TMP/knot"
log:
  - target: stderr
    any: error
zone:
  - domain: kingcdn.com
    file: "$TMP/kingcdn.zone"
    journal-content: none
    zonefile-sync: -1
EOF
setsid taskset -c 0 knotd -c "$TMP/knot/knot.conf" >/dev/null 2>&1 &
SID_KNOT=$!; PIDS+=($SID_KNOT)
for p in $P_ROUTE $P_AUTH $P_KNOT; do
	for _ in $(seq 1 100); do dig +time=1 +tries=1 @127.0.0.1 -p $p obj1.kingcdn.com +short 2>/dev/null | grep -q 192.0.2 && break; sleep 0.1; done
done
# ECS 10.1.2.0/24: family 1, source 24, scope 0, address 10.1.2
ECS="8:00011800" ECS="${ECS}0a0102"
declare -A QPS QCPU
dnsrun() {
	local name=$1 port=$2 out c0 c1
	SID=$3
	c0=$(cpu)
	out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$TMP/queries.txt" -l "$SECS" -c 8 -T 1 -q 100 -E "$ECS" 2>&1)
	c1=$(cpu)
	local qps done
	qps=$(echo "$out" | awk '/Queries per second/{print $4}')
	done=$(echo "$out" | awk '/Queries completed/{print $3}')
	local pc; pc=$(awk -v q="$done" -v t=$((c1 - c0)) -v hz="$TICKS" 'BEGIN{ if (t>0) printf "%.0f", q/(t/hz); else print 0 }')
	echo "round $r $name: $qps q/s, $pc answers per server-CPU-second" >&2
	QPS[$name]+="$qps "; QCPU[$name]+="$pc "
}
for r in $(seq 1 "$ROUNDS"); do
	dnsrun router $P_ROUTE $SID_ROUTE
	dnsrun authority $P_AUTH $SID_AUTH
	dnsrun knot $P_KNOT $SID_KNOT
done
echo
echo "2. answers for obj<N>.kingcdn.com A with ECS 10.1.2.0/24, dnsperf -c 8 -l $SECS, $ROUNDS interleaved rounds, medians"
printf "%-10s %12s %22s\n" server "queries/s" "answers/server-CPU-s"
for name in router authority knot; do
	printf "%-10s %12s %22s\n" $name "$(echo "${QPS[$name]}" | median)" "$(echo "${QCPU[$name]}" | median)"
done
awk -v r="$(echo "${QCPU[router]}" | median)" -v a="$(echo "${QCPU[authority]}" | median)" -v k="$(echo "${QCPU[knot]}" | median)" \
	'BEGIN{ printf "routing cost per answer: %.0f%% over applayer'"'"'s authority (router/authority %.2f per CPU-second), router/knot %.2f\n", (a/r-1)*100, r/a, r/k }'
kill -TERM -- "-$SID_ROUTE" "-$SID_AUTH" "-$SID_KNOT" 2>/dev/null || true
fi

# ---- 3. origin offload ----
offload() { # with_shield(0/1): prints "origin_bytes served_bytes"
	local base=28300 ups=$ORIGIN sids=() admins=()
	if [ "$1" = 1 ]; then
		setsid "$TMP/applayer" --log-level warn cdn edge --listen 127.0.0.1:$base --control 127.0.0.1:$((base + 50)) --upstream $ORIGIN --shield --name shield >/dev/null 2>&1 &
		sids+=($!); PIDS+=($!); ups=127.0.0.1:$base
		wait_http 127.0.0.1:$base
	fi
	local e
	for e in 1 2 3; do
		setsid "$TMP/applayer" --log-level warn cdn edge --listen 127.0.0.1:$((base + e)) --control 127.0.0.1:$((base + 50 + e)) --upstream $ups --name edge$e >/dev/null 2>&1 &
		sids+=($!); PIDS+=($!)
		wait_http 127.0.0.1:$((base + e))
	done
	local jobs=()
	for e in 1 2 3; do
		for c in $(seq 1 "$CLIENTS"); do
			(
				sleep "0.$((RANDOM % 9))"
				for s in $(seq 1 "$SEGS"); do echo "url = \"http://127.0.0.1:$((base + e))/100k?seg=$s\""; echo "output = /dev/null"; done >"$TMP/curl-$e-$c.cfg"
				curl -s -H "Host: video.netcinema.com" -K "$TMP/curl-$e-$c.cfg" -w '%{size_download}\n' >"$TMP/served-$e-$c.txt"
			) &
			jobs+=($!)
		done
	done
	wait "${jobs[@]}"
	local served origin
	served=$(cat "$TMP"/served-*.txt | awk '{s+=$1} END{print s}')
	if [ "$1" = 1 ]; then
		origin=$(curl -s 127.0.0.1:$((base + 50))/cache/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_from_origin"])')
	else
		origin=0
		for e in 1 2 3; do
			origin=$((origin + $(curl -s 127.0.0.1:$((base + 50 + e))/cache/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_from_origin"])')))
		done
	fi
	for s in "${sids[@]}"; do kill -TERM -- "-$s" 2>/dev/null || true; done
	sleep 0.5
	rm -f "$TMP"/served-*.txt
	echo "$origin $served"
}
if part 3; then
echo
echo "3. origin offload: 3 edges x $CLIENTS clients, $SEGS segments of 100 KiB each, staggered starts"
for shield in 0 1; do
	read -r o s < <(offload $shield)
	awk -v o="$o" -v s="$s" -v sh="$shield" 'BEGIN{ printf "%-14s origin %9d B, served %10d B: origin/served %.4f, offload %.1f%%\n", (sh ? "with shield" : "without shield"), o, s, o/s, (1-o/s)*100 }'
done
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
