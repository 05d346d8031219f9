#!/usr/bin/env bash
# Cache-hit load against applayer's resolver and Unbound, interleaved.
#
# NSD serves a small root zone on 127.53.0.1:53; both resolvers use it as
# their root hint, are warmed with the query list, then dnsperf (one
# thread, on the other core) sends cache hits to each in turn, A B A B A B.
# Reports QPS, queries answered per second of server CPU (utime+stime from
# /proc/PID/stat), RSS, and the memory per 100,000 cached records (RSS
# growth while 100,000 names are resolved once) with the server CPU time
# per resolved name. GOGC in the environment sets applayer's GC target
# (the binary's default otherwise).
# Needs root (port 53), nsd, unbound, dnsperf.
#
# Second part, cold cache: the lab's DNS hierarchy (root, edu, com, net, fr,
# umass.edu, cs.umass.edu, nyu.edu, ... from lab/default.yaml, root, edu and
# umass.edu signed) served by applayer's dns/authority through `applayer lab
# up` on port 53 of 127.54.0.0/16; each round starts a fresh applayer
# resolver and a fresh Unbound (validating, the lab root's DS as trust
# anchor), resolves a list of names one after the other with kdig (whose
# "in X ms" is the resolution time), then stops both, A B A B A B. Reports
# the median per name and the median of the per-round totals.
#
#   bench/dns-resolver.sh [seconds-per-round] [rounds]
#   PART=hits bench/dns-resolver.sh ...   (only the cache-hit part)
#   PART=cold bench/dns-resolver.sh ...   (only the cold-cache part)
set -euo pipefail
DUR=${1:-10}
ROUNDS=${2:-3}
PART=${PART:-all}
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=auto
W=$(mktemp -d /tmp/bench-dns-resolver.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

ROOT=127.53.0.1 OURS=127.53.0.2 UB=127.53.0.3
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$W/applayer"; else go build -o "$W/applayer" ./cmd/applayer; fi
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

cold() {
  local LW=$W/cold RES=127.54.200.1 UBC=127.54.200.2
  mkdir -p "$LW"
  # The DNS hosts of lab/default.yaml (same zones, signing and records) in
  # their own block; hosts without services still get their A records.
  cat > "$LW/topo.yaml" <<EOT
lab: {block: 127.54.0.0/16, admin: "off", port_offset: 0, state_dir: "$LW/state"}
hosts:
  - {name: a.root-servers.net, addr: 127.54.0.1, services: [{kind: dns-authority, config: {zones: [{origin: ".", sign: true}]}}]}
  - {name: a.edu-servers.net, services: [{kind: dns-authority, config: {zones: [{origin: edu, sign: true}]}}]}
  - {name: a.gtld-servers.net, services: [{kind: dns-authority, config: {zones: [{origin: com}, {origin: net}]}}]}
  - {name: d.nic.fr, services: [{kind: dns-authority, config: {zones: [{origin: fr}]}}]}
  - {name: dns.umass.edu, services: [{kind: dns-authority, config: {zones: [{origin: umass.edu, sign: true}]}}]}
  - {name: gaia.cs.umass.edu, services: [{kind: dns-authority, config: {zones: [{origin: cs.umass.edu}]}}]}
  - {name: dns.nyu.edu, services: [{kind: dns-authority, config: {zones: [{origin: nyu.edu}]}}]}
  - {name: dns.hamburger.edu, services: [{kind: dns-authority, config: {zones: [{origin: hamburger.edu}]}}]}
  - {name: dns.crepes.fr, services: [{kind: dns-authority, config: {zones: [{origin: crepes.fr}]}}]}
  - name: dns.amazon.com
    services:
      - kind: dns-authority
        config: {zones: [{origin: amazon.com, records: ["www CNAME www-edge.amazon.com.", "www-edge A 127.54.250.1", "www-edge A 127.54.250.2", "www-edge A 127.54.250.3"]}]}
  - {name: shop.amazon.com, services: []}
  - {name: cache.nyu.edu, services: []}
  - {name: resolver.nyu.edu, services: []}
EOT
  "$W/applayer" --log-level warn lab up -f "$LW/topo.yaml" >"$LW/lab.log" 2>&1 & PIDS+=($!); local LABPID=$!
  local ROOTIP=127.54.0.1
  for _ in $(seq 100); do [ -s "$LW/state/dns/root.ds" ] && dig +short +time=1 +tries=1 @$ROOTIP . SOA >/dev/null 2>&1 && break; sleep 0.1; done
  echo ". 3600000 NS a.root-servers.net." > "$LW/root.hints"; echo "a.root-servers.net. 3600000 A $ROOTIP" >> "$LW/root.hints"
  cat > "$LW/unbound.conf" <<EOC
server:
  interface: $UBC
  port: 53
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "$LW"
  pidfile: "$LW/unbound.pid"
  use-syslog: no
  root-hints: "$LW/root.hints"
  trust-anchor-file: "$LW/state/dns/root.ds"
  do-not-query-localhost: no
  module-config: "validator iterator"
  access-control: 127.0.0.0/8 allow
  num-threads: 1
  do-ip6: no
  verbosity: 0
  qname-minimisation: yes
  harden-referral-path: no
  prefetch: no
remote-control:
  control-enable: no
EOC
  local NAMES="gaia.cs.umass.edu/A www.amazon.com/A dns.nyu.edu/A cache.nyu.edu/A resolver.nyu.edu/A dns.umass.edu/A nope.umass.edu/A gaia.cs.umass.edu/AAAA dns.hamburger.edu/A dns.crepes.fr/A shop.amazon.com/A amazon.com/MX"
  timed() { # addr -> one line per name: "name ms", then "total ms"
    local tot=0 n t ms out st
    for n in $NAMES; do
      out=$(kdig +timeout=5 +retry=0 +dnssec @"$1" "${n%/*}" "${n#*/}" 2>&1)
      t=$(echo "$out" | sed -n 's/.*) in \([0-9.]*\) ms/\1/p')
      st=$(echo "$out" | sed -n 's/.*status: \([A-Z]*\).*/\1/p')$(echo "$out" | { grep -q 'Flags:.* ad' && echo +AD; } || true)
      ms=${t:-5000}
      echo "$n $ms ${st:-timeout}"; tot=$(awk -v a="$tot" -v b="$ms" 'BEGIN{print a+b}')
    done
    echo "total $tot"
  }
  wait53() { for _ in $(seq 100); do dig +short +time=1 +tries=1 @"$1" . NS >/dev/null 2>&1 && return 0; sleep 0.05; done; }
  : > "$LW/ours"; : > "$LW/ub"
  for r in $(seq "$ROUNDS"); do
    GOMAXPROCS=1 "$W/applayer" --log-level warn dns resolver --listen $RES:53 --root-hints-file "$LW/root.hints" \
      --trust-anchor "$LW/state/dns/root.ds" >"$LW/ours.log" 2>&1 & local p=$!; PIDS+=($p)
    wait53 $RES; timed $RES | sed "s/^/$r /" >> "$LW/ours"; kill $p 2>/dev/null || true; wait $p 2>/dev/null || true
    unbound -d -c "$LW/unbound.conf" >"$LW/ub.log" 2>&1 & p=$!; PIDS+=($p)
    wait53 $UBC; timed $UBC | sed "s/^/$r /" >> "$LW/ub"; kill $p 2>/dev/null || true; wait $p 2>/dev/null || true
    echo "cold round $r: applayer $(awk '$2=="total"{print $3}' "$LW/ours" | tail -1) ms  unbound $(awk '$2=="total"{print $3}' "$LW/ub" | tail -1) ms"
  done
  printf "%-24s %10s %10s   %s\n" "cold cache (median ms)" applayer unbound "answers (applayer / unbound, last round)"
  for n in $NAMES total; do
    local a b
    a=$(awk -v n="$n" '$2==n{print $3}' "$LW/ours" | median); b=$(awk -v n="$n" '$2==n{print $3}' "$LW/ub" | median)
    if [ "$n" = total ]; then printf "%-24s %10s %10s   ratio %s\n" "$n" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.2f", a/b}')"; continue; fi
    printf "%-24s %10s %10s   %s / %s\n" "$n" "$a" "$b" "$(awk -v n="$n" '$2==n{print $4}' "$LW/ours" | tail -1)" "$(awk -v n="$n" '$2==n{print $4}' "$LW/ub" | tail -1)"
  done
  kill $LABPID; wait $LABPID 2>/dev/null || true
}
if [ "$PART" = cold ]; then cold; exit 0; fi

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
  r0=$(rss "$p") f0=$(cpu "$p")
  dnsperf -s "$a" -d "$W/fill.txt" -n 1 -T 1 -c 20 -q 200 -l 120 2>&1 | grep -E "Queries (completed|lost)" || true
  r1=$(rss "$p") f1=$(cpu "$p")
  echo "memory per 100k cached records ($a): $(( (r1 - r0) / 1024 )) MiB (RSS $r0 -> $r1 KiB); server CPU per miss $(awk -v c=$((f1 - f0)) -v hz="$hz" 'BEGIN{printf "%.1f", c/hz*1e6/100000}') us"
done
if [ "$PART" = all ]; then cold; fi
