#!/usr/bin/env bash
# Static files over HTTP/1.1 and HTTP/2: applayer vs nginx, interleaved
# A B A B A B on loopback, one worker each (GOMAXPROCS=1 for ours,
# worker_processes 1 for nginx). Cells: 1 KiB keep-alive, 1 KiB with
# "Connection: close" (non-persistent), 10 MiB keep-alive (throughput), all
# with wrk -t1; h2: 1 KiB over HTTP/2 on TLS (ALPN h2) and h2c: 1 KiB over
# cleartext HTTP/2 with prior knowledge (nginx: "listen ... http2" without
# ssl), both with h2load -t1 -c64 -m10 (H2N requests per round).
# Prints per round and as medians: requests/s, transfer/s, requests per
# second of server CPU (utime+stime from /proc/PID/stat; nginx = master +
# worker), RSS, and the applayer/nginx ratios.
#
# Usage: bench/web-server.sh [rounds] [seconds]
#   env: CONNS (64), CELLS ("1k 1k-close 10m h2 h2c"), APPLAYER (a prebuilt
#   binary), H2N (200000), H2M (10 streams per connection)
# Needs wrk, h2load, openssl and curl; nginx optional (applayer alone without it).
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${CONNS:-64}
CELLS=${CELLS:-"1k 1k-close 10m h2 h2c"}
H2N=${H2N:-200000}
H2M=${H2M:-10}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
command -v h2load >/dev/null || { echo "h2load not installed (nghttp2-client)" >&2; exit 1; }
NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)
TMP=$(mktemp -d); chmod 755 "$TMP" # nginx workers run as nobody
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$TMP"; }
trap cleanup EXIT

mkdir -p "$TMP/root"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$TMP/root/1k.txt"
head -c $((10 << 20)) /dev/urandom > "$TMP/root/10m.bin"
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$TMP/applayer"; else go build -o "$TMP/applayer" ./cmd/applayer; fi

# One self-signed certificate for both servers (h2 over TLS).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1

# applayer: APORT HTTP/1.1 + h2c (sniffed), ATPORT TLS (h1 + h2 by ALPN).
# nginx: NPORT HTTP/1.1, NTPORT TLS h2, NHPORT h2c (prior knowledge).
APORT=${APORT:-18181} NPORT=${NPORT:-18182} ATPORT=${ATPORT:-18183} NTPORT=${NTPORT:-18184} NHPORT=${NHPORT:-18185}
GOMAXPROCS=1 "$TMP/applayer" --log-level error http serve --root "$TMP/root" --listen 127.0.0.1:$APORT \
  --tls-listen 127.0.0.1:$ATPORT --cert "$TMP/cert.pem" --key "$TMP/key.pem" >/dev/null 2>&1 &
PIDS+=($!); APID=$!

NPID=""
if [ -n "$NGINX" ]; then
  mkdir -p "$TMP/nginx/logs"
  cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; open_file_cache max=1000;
  keepalive_requests 1000000;
  types { text/plain txt; application/octet-stream bin; }
  http2_max_concurrent_streams 128;
  ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;
  server { listen 127.0.0.1:$NPORT; root $TMP/root; }
  server { listen 127.0.0.1:$NTPORT ssl http2; root $TMP/root; }
  server { listen 127.0.0.1:$NHPORT http2; root $TMP/root; }
}
CONF
  "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
  PIDS+=($!); NPID=$!
else
  echo "nginx not installed: measuring applayer only" >&2
fi

for p in $APORT ${NPID:+$NPORT}; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$p/1k.txt" && break; sleep 0.1; done
done

HZ=$(getconf CLK_TCK)
# cpu PID... -> summed utime+stime ticks of the processes and their children threads
cpu() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
rss() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $((t / 1024)); }
procs() { if [ "$1" = nginx ]; then echo "$NPID $(pgrep -P "$NPID" | tr '\n' ' ')"; else echo "$APID"; fi; }

# h2run NAME CELL -> "rps MBps rps_per_cpu_s rss_MiB" (h2load, H2N requests)
h2run() {
  local ps before after out rps mbps ok url t0 t1
  ps=$(procs "$1")
  if [ "$2" = h2 ]; then
    if [ "$1" = nginx ]; then url=https://127.0.0.1:$NTPORT/1k.txt; else url=https://127.0.0.1:$ATPORT/1k.txt; fi
  else
    if [ "$1" = nginx ]; then url=http://127.0.0.1:$NHPORT/1k.txt; else url=http://127.0.0.1:$APORT/1k.txt; fi
  fi
  # shellcheck disable=SC2086
  before=$(cpu $ps)
  out=$(h2load -n"$H2N" -c"$CONNS" -m"$H2M" -t1 "$url")
  # shellcheck disable=SC2086
  after=$(cpu $ps)
  ok=$(echo "$out" | awk '/^requests:/ {print $8}')
  [ "$ok" = "$H2N" ] || echo "h2load: $1 $2: only $ok of $H2N succeeded" >&2
  rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
  mbps=$(echo "$out" | awk '/^finished in/ {v=$6; if (v ~ /GB/) {v+=0; v*=1024} else if (v ~ /KB/) {v+=0; v/=1024} else {v+=0}; print v}')
  # shellcheck disable=SC2086
  awk -v r="$rps" -v m="$mbps" -v t="$((after - before))" -v hz="$HZ" -v n="$ok" -v rss="$(rss $ps)" \
    'BEGIN { c = t/hz; printf "%.0f %.1f %.0f %d\n", r, m, (c > 0 ? n/c : 0), rss }'
}

# run NAME PORT CELL -> "rps MBps rps_per_cpu_s rss_MiB"
run() {
  local ps before after out rps mbps hdr=() path=1k.txt
  case $3 in h2|h2c) h2run "$1" "$3"; return ;; esac
  ps=$(procs "$1")
  case $3 in
    1k-close) hdr=(-H "Connection: close") ;;
    10m) path=10m.bin ;;
  esac
  # shellcheck disable=SC2086
  before=$(cpu $ps)
  out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" "${hdr[@]}" "http://127.0.0.1:$2/$path")
  # shellcheck disable=SC2086
  after=$(cpu $ps)
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  mbps=$(echo "$out" | awk '/Transfer\/sec/ {v=$2; if (v ~ /GB/) {v+=0; v*=1024} else if (v ~ /KB/) {v+=0; v/=1024} else {v+=0}; print v}')
  # shellcheck disable=SC2086
  awk -v r="$rps" -v m="$mbps" -v t="$((after - before))" -v hz="$HZ" -v s="$SECS" -v rss="$(rss $ps)" \
    'BEGIN { c = t/hz; printf "%.0f %.1f %.0f %d\n", r, m, (c > 0 ? r*s/c : 0), rss }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { cut -d' ' -f"$2" "$1" | median; }
printf '%-9s %-9s %5s %10s %10s %12s %8s\n' cell server round req/s MB/s req/CPU-s RSS-MiB
for cell in $CELLS; do
  : > "$TMP/a"; : > "$TMP/n"
  for i in $(seq "$ROUNDS"); do
    r=$(run applayer $APORT "$cell"); echo "$r" >> "$TMP/a"
    printf '%-9s %-9s %5s %10s %10s %12s %8s\n' "$cell" applayer "$i" $r
    if [ -n "$NPID" ]; then
      r=$(run nginx $NPORT "$cell"); echo "$r" >> "$TMP/n"
      printf '%-9s %-9s %5s %10s %10s %12s %8s\n' "$cell" nginx "$i" $r
    fi
  done
  A=$(col "$TMP/a" 1); AM=$(col "$TMP/a" 2); AC=$(col "$TMP/a" 3)
  echo "== $cell applayer median: $A req/s, $AM MB/s, $AC req per server-CPU-second"
  if [ -n "$NPID" ]; then
    N=$(col "$TMP/n" 1); NM=$(col "$TMP/n" 2); NC=$(col "$TMP/n" 3)
    echo "== $cell nginx    median: $N req/s, $NM MB/s, $NC req per server-CPU-second"
    awk -v c="$cell" -v a="$A" -v n="$N" -v ac="$AC" -v nc="$NC" \
      'BEGIN { printf "== %s ratio applayer/nginx: %.2f (req/s), %.2f (per CPU-s)\n", c, a/n, (nc > 0 ? ac/nc : 0) }'
  fi
done
