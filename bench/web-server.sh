#!/usr/bin/env bash
# Static 1 KiB file over HTTP/1.1 keep-alive: applayer vs nginx, interleaved
# A B A B A B on loopback with wrk, one worker each (GOMAXPROCS=1 for ours,
# worker_processes 1 for nginx). Prints requests/s, requests per second of
# server CPU (utime+stime from /proc/PID/stat), medians and the ratio.
# Usage: bench/web-server.sh [rounds] [seconds]   (needs wrk; nginx optional)
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${CONNS:-64}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

mkdir -p "$TMP/root"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$TMP/root/1k.txt"
go build -o "$TMP/applayer" ./cmd/applayer

APORT=18181 NPORT=18182
GOMAXPROCS=1 "$TMP/applayer" --log-level error http serve --root "$TMP/root" --listen 127.0.0.1:$APORT >/dev/null 2>&1 &
PIDS+=($!); APID=$!

NPID=""
if command -v nginx >/dev/null; then
  mkdir -p "$TMP/nginx/logs"
  cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$NPORT; root $TMP/root; }
}
CONF
  nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
  PIDS+=($!); NPID=$!
else
  echo "nginx not installed: measuring applayer only" >&2
fi

# wait for listeners
for p in $APORT ${NPID:+$NPORT}; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$p/1k.txt" && break; sleep 0.1; done
done

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
# worker pid for nginx (child of master)
worker() { local c; c=$(pgrep -P "$1" | head -1 || true); echo "${c:-$1}"; }

run() { # name port pid -> "rps cpu_rps"
  local pid=$3 before after out rps ticks
  before=$(cpu "$pid")
  out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$2/1k.txt")
  after=$(cpu "$pid")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  ticks=$((after - before))
  local hz; hz=$(getconf CLK_TCK)
  awk -v r="$rps" -v t="$ticks" -v hz="$hz" -v s="$SECS" 'BEGIN { c = t/hz; printf "%.0f %.0f\n", r, (c > 0 ? r*s/c : 0) }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$TMP/a"; : > "$TMP/n"
for i in $(seq "$ROUNDS"); do
  run applayer $APORT "$APID" | tee -a "$TMP/a" | sed 's/^/applayer round '"$i"': req\/s, req per CPU-s: /'
  if [ -n "$NPID" ]; then
    run nginx $NPORT "$(worker "$NPID")" | tee -a "$TMP/n" | sed 's/^/nginx    round '"$i"': req\/s, req per CPU-s: /'
  fi
done
A=$(cut -d' ' -f1 "$TMP/a" | median); AC=$(cut -d' ' -f2 "$TMP/a" | median)
echo "applayer median: $A req/s, $AC req per server-CPU-second"
if [ -n "$NPID" ]; then
  N=$(cut -d' ' -f1 "$TMP/n" | median); NC=$(cut -d' ' -f2 "$TMP/n" | median)
  echo "nginx    median: $N req/s, $NC req per server-CPU-second"
  awk -v a="$A" -v n="$N" -v ac="$AC" -v nc="$NC" 'BEGIN { printf "ratio applayer/nginx: %.2f (req/s), %.2f (per CPU-s)\n", a/n, ac/nc }'
fi
