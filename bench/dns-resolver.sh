#!/usr/bin/env bash
# Cache-hit load against applayer's resolver and Unbound, interleaved.
#
# NSD serves a small root zone on 127.53.0.1:53; both resolvers use it as
# their root hint, are warmed with the query list, then dnsperf (one
# thread, on the other core) sends cache hits to each in turn, A B A B A B.
# Reports QPS, queries answered per second of server CPU (utime+stime from
# /proc/PID/stat), RSS, and applayer's memory per 100,000 cached records.
# Needs root (port 53), nsd, unbound, dnsperf.
#
#   bench/dns-resolver.sh [seconds-per-round] [rounds]
set -euo pipefail
DUR=${1:-10}
ROUNDS=${2:-3}
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
W=$(mktemp -d /tmp/bench-dns-resolver.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

ROOT=127.53.0.1 OURS=127.53.0.2 UB=127.53.0.3
go build -o "$W/applayer" ./cmd/applayer

# The root zone: 100 names for the hit load, a wildcard for the fill.
{
  echo ". 86400 IN SOA a.root. admin. 1 3600 600 86400 300"
  echo ". 86400 IN NS a.root."
  echo "a.root. 86400 IN A $ROOT"
  for i in $(seq 1 100); do echo "host$i.bench. 86400 IN A 192.0.2.$((i % 250 + 1))"; done
  echo "*.fill.bench. 86400 IN A 192.0.2.200"
} > "$W/root.zone"
for i in $(seq 1 100); do echo "host$i.bench A"; done > "$W/hits.txt"
cat > "$W/nsd.conf" <<EOC
server:
  ip-address: $ROOT
  port: 53
  username: ""
  chroot: ""
  zonesdir: "$W"
  database: ""
  pidfile: "$W/nsd.pid"
  xfrdfile: "$W/xfrd.state"
  zonelistfile: "$W/zone.list"
  server-count: 1
  rrl-ratelimit: 0
  verbosity: 0
remote-control:
  control-enable: no
zone:
  name: "."
  zonefile: "root.zone"
EOC
nsd -d -c "$W/nsd.conf" >"$W/nsd.log" 2>&1 & PIDS+=($!)
echo ". 3600000 NS a.root." > "$W/root.hints"; echo "a.root. 3600000 A $ROOT" >> "$W/root.hints"

cat > "$W/unbound.conf" <<EOC
server:
  interface: $UB
  port: 53
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$W"
  pidfile: "$W/unbound.pid"
  use-syslog: no
  root-hints: "$W/root.hints"
  do-not-query-localhost: no
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  num-threads: 1
  do-ip6: no
  verbosity: 0
  msg-cache-size: 256m
  rrset-cache-size: 256m
remote-control:
  control-enable: no
EOC
unbound -d -c "$W/unbound.conf" >"$W/unbound.log" 2>&1 & PIDS+=($!); UBPID=$!
GOMAXPROCS=1 "$W/applayer" --log-level warn dns resolver --listen $OURS:53 --root-hints-file "$W/root.hints" \
  --cache-size 1000000 >"$W/applayer.log" 2>&1 & PIDS+=($!); OURPID=$!
for _ in $(seq 50); do
  dig +short +time=1 +tries=1 @$OURS host1.bench >/dev/null 2>&1 && dig +short +time=1 +tries=1 @$UB host1.bench >/dev/null 2>&1 && break
  sleep 0.2
done
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
# Warm both caches.
for s in $OURS $UB; do dnsperf -s $s -d "$W/hits.txt" -n 2 -T 1 >/dev/null 2>&1; done
run() { # addr pid -> "qps qps_per_cpu_s"
  local c0 c1 out qps
  c0=$(cpu "$2")
  out=$(taskset -c 1 dnsperf -s "$1" -d "$W/hits.txt" -l "$DUR" -c 8 -T 1 -q 100 2>&1)
  c1=$(cpu "$2")
  qps=$(echo "$out" | awk '/Queries per second/{print $4}')
  echo "$qps $(awk -v q="$qps" -v d="$DUR" -v c=$((c1 - c0)) -v hz="$hz" 'BEGIN{ if (c==0) c=1; printf "%.0f", q*d/(c/hz) }')"
}
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
: > "$W/ours" ; : > "$W/ub"
for r in $(seq "$ROUNDS"); do
  run $OURS $OURPID >> "$W/ours"; run $UB $UBPID >> "$W/ub"
  echo "round $r: applayer $(tail -1 "$W/ours")  unbound $(tail -1 "$W/ub")  (qps qps/cpu-s)"
done
oq=$(cut -d' ' -f1 "$W/ours" | median); oc=$(cut -d' ' -f2 "$W/ours" | median)
uq=$(cut -d' ' -f1 "$W/ub" | median); uc=$(cut -d' ' -f2 "$W/ub" | median)
echo "cache hits  QPS:         applayer $oq  unbound $uq  ratio $(awk -v a="$oq" -v b="$uq" 'BEGIN{printf "%.2f", a/b}')"
echo "cache hits  per CPU-s:   applayer $oc  unbound $uc  ratio $(awk -v a="$oc" -v b="$uc" 'BEGIN{printf "%.2f", a/b}')"
echo "RSS (KiB):               applayer $(rss $OURPID)  unbound $(rss $UBPID)"

# Memory per 100,000 cached records: 100k distinct names resolved once.
seq 1 100000 | awk '{print "n" $1 ".fill.bench A"}' > "$W/fill.txt"
for s in "$OURS:$OURPID" "$UB:$UBPID"; do
  a=${s%%:*} p=${s##*:}
  r0=$(rss "$p")
  dnsperf -s "$a" -d "$W/fill.txt" -n 1 -T 1 -c 20 -q 200 -l 120 2>&1 | grep -E "Queries (completed|lost)" || true
  r1=$(rss "$p")
  echo "memory per 100k cached records ($a): $(( (r1 - r0) / 1024 )) MiB (RSS $r0 -> $r1 KiB)"
done
