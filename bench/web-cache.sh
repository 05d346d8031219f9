#!/usr/bin/env bash
# Cache-hit throughput of the web cache: applayer vs Varnish vs Squid.
#
# All three run as reverse proxies (accelerators) in front of one origin
# (bench/webcache-origin: /1k and /100k, Cache-Control: public,
# max-age=86400) on loopback high ports. After a warm-up request, wrk hits
# the cached object; runs are interleaved A B C A B C ... and the medians
# are reported: requests/s, requests per second of proxy CPU time
# (utime+stime of the proxy and its children from /proc), and ratios.
# Then each proxy is filled with 100,000 distinct 1 KiB objects and its RSS
# is reported.
#
# One worker each: GOMAXPROCS=1 for applayer, thread_pools=1 for Varnish,
# workers 1 (no SMP) for Squid, and every proxy pinned to CPU 0 with
# taskset (Varnish is multi-threaded even with one pool); wrk runs on CPU 1.
#
# Usage: bench/web-cache.sh [ROUNDS] [DURATION]   (defaults 3, 5s)
# Env: CONNS (default 32), SKIP_RSS=1 to skip the 100k-object RSS test.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
ROUNDS=${1:-3}
DUR=${2:-5s}
CONNS=${CONNS:-32}
ORIGIN=127.0.0.1:28180
A=127.0.0.1:28181 V=127.0.0.1:28182 S=127.0.0.1:28183
TMP=$(mktemp -d /tmp/webcache-bench.XXXXXX)
chmod 755 "$TMP"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

for c in wrk varnishd squid curl; do command -v $c >/dev/null || { echo "missing $c" >&2; exit 1; }; done
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$TMP/applayer"; else go build -o "$TMP/applayer" ./cmd/applayer; fi
go build -o "$TMP/origin" ./bench/webcache-origin

"$TMP/origin" -listen $ORIGIN & PIDS+=($!)

GOMAXPROCS=1 taskset -c 0 "$TMP/applayer" http proxy --listen $A --site "*=$ORIGIN" --cache-mem 1024 --admin 127.0.0.1:28191 --log-level warn >/dev/null & APID=$!
PIDS+=($APID)

mkdir -p "$TMP/varnish"
chown vcache "$TMP/varnish" 2>/dev/null || true
taskset -c 0 varnishd -F -n "$TMP/varnish" -a $V -b $ORIGIN -s malloc,1024m \
	-p thread_pools=1 -p thread_pool_min=10 -p thread_pool_max=200 \
	>"$TMP/varnish.log" 2>&1 & VPID=$!
PIDS+=($VPID)

mkdir -p "$TMP/squid"
chown proxy "$TMP/squid" 2>/dev/null || true
cat >"$TMP/squid/squid.conf" <<EOF
http_port $S accel defaultsite=bench vhost
cache_peer ${ORIGIN%:*} parent ${ORIGIN#*:} 0 no-query originserver name=origin
cache_peer_access origin allow all
http_access allow all
cache_mem 1024 MB
maximum_object_size_in_memory 1 MB
memory_cache_shared off
workers 1
cache_dir null /tmp
access_log none
cache_store_log none
cache_log $TMP/squid/cache.log
pid_filename $TMP/squid/squid.pid
coredump_dir $TMP/squid
shutdown_lifetime 1 seconds
EOF
taskset -c 0 squid -N -f "$TMP/squid/squid.conf" >"$TMP/squid.log" 2>&1 & SPID=$!
PIDS+=($SPID)
disown -a

wait_up() {
	for _ in $(seq 1 100); do
		curl -s -o /dev/null "http://$1/1k" && return 0
		sleep 0.1
	done
	echo "proxy on $1 did not come up" >&2
	cat "$TMP"/*.log >&2 || true
	exit 1
}
for p in $A $V $S; do wait_up $p; done

# cpu PID: utime+stime in clock ticks of PID and all its descendants.
cpu() {
	local total=0 pid
	for pid in $(descendants "$1"); do
		[ -r /proc/$pid/stat ] || continue
		total=$((total + $(awk '{print $14+$15}' /proc/$pid/stat)))
	done
	echo $total
}
descendants() {
	echo "$1"
	local k
	for k in $(pgrep -P "$1" 2>/dev/null); do descendants "$k"; done
}
rss_kib() {
	local total=0 pid
	for pid in $(descendants "$1"); do
		[ -r /proc/$pid/status ] || continue
		total=$((total + $(awk '/^VmRSS/{print $2}' /proc/$pid/status)))
	done
	echo $total
}
TICKS=$(getconf CLK_TCK)

# run NAME ADDR PID PATH: prints "reqs_per_s reqs_per_cpu_s"
run() {
	local addr=$2 pid=$3 path=$4
	curl -s -o /dev/null "http://$addr$path"
	curl -s -o /dev/null "http://$addr$path"
	local c0 c1 out rps
	c0=$(cpu "$pid")
	out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DUR" "http://$addr$path")
	c1=$(cpu "$pid")
	rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
	local reqs
	reqs=$(echo "$out" | awk '/requests in/{print $1}')
	awk -v r="$rps" -v n="$reqs" -v c=$((c1 - c0)) -v t="$TICKS" 'BEGIN{ printf "%.0f %.0f\n", r, (c>0 ? n/(c/t) : 0) }'
}

median() { sort -n | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.0f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

declare -A RPS CPS
for path in /1k /100k; do
	for name in applayer varnish squid; do RPS[$name$path]=""; CPS[$name$path]=""; done
	for _ in $(seq 1 "$ROUNDS"); do
		for name in applayer varnish squid; do
			case $name in
			applayer) r=$(run $name $A $APID $path) ;;
			varnish) r=$(run $name $V $VPID $path) ;;
			squid) r=$(run $name $S $SPID $path) ;;
			esac
			RPS[$name$path]+="${r% *} "
			CPS[$name$path]+="${r#* } "
		done
	done
done

echo "cache hits, wrk -t1 -c$CONNS -d$DUR, $ROUNDS interleaved rounds, medians"
printf "%-7s %-9s %12s %16s\n" object proxy "req/s" "req/cpu-s"
for path in /1k /100k; do
	for name in applayer varnish squid; do
		r=$(echo ${RPS[$name$path]} | tr ' ' '\n' | median)
		c=$(echo ${CPS[$name$path]} | tr ' ' '\n' | median)
		eval "M_${name}_${path#/}=$r C_${name}_${path#/}=$c"
		printf "%-7s %-9s %12s %16s\n" "${path#/}" $name "$r" "$c"
	done
	a=$(eval echo \$M_applayer_${path#/}) v=$(eval echo \$M_varnish_${path#/}) s=$(eval echo \$M_squid_${path#/})
	ac=$(eval echo \$C_applayer_${path#/}) vc=$(eval echo \$C_varnish_${path#/}) sc=$(eval echo \$C_squid_${path#/})
	awk -v a="$a" -v v="$v" -v s="$s" -v ac="$ac" -v vc="$vc" -v sc="$sc" -v o="${path#/}" 'BEGIN{
		printf "%-7s ratio applayer/varnish %.2f (cpu %.2f), applayer/squid %.2f (cpu %.2f)\n", o, a/v, ac/vc, a/s, ac/sc }'
done

if [ "${SKIP_RSS:-}" != "1" ]; then
	for i in $(seq 1 100000); do echo "/1k?o=$i"; done >"$TMP/paths.txt"
	echo
	echo "RSS after storing 100,000 distinct 1 KiB objects (h2load --h1 -n 100000 -c 1)"
	for name in applayer varnish squid; do
		case $name in applayer) addr=$A pid=$APID ;; varnish) addr=$V pid=$VPID ;; squid) addr=$S pid=$SPID ;; esac
		before=$(rss_kib $pid)
		sed "s|^|http://$addr|" "$TMP/paths.txt" >"$TMP/urls.txt"
		taskset -c 1 h2load --h1 -n 100000 -c 1 -i "$TMP/urls.txt" >"$TMP/fill.out" 2>&1 || true
		ok=$(awk '/^requests:/{print $8}' "$TMP/fill.out")
		after=$(rss_kib $pid)
		printf "%-9s RSS %8d KiB  (%s KiB before; %s requests succeeded)\n" $name "$after" "$before" "$ok"
		if [ $name = applayer ]; then
			"$TMP/applayer" http proxy --stats --admin 127.0.0.1:28191 | grep stored
		fi
	done
fi
