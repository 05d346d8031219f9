#!/usr/bin/env bash
# Static files over HTTP/1.1 and HTTP/2: applayer vs nginx and h2o,
# interleaved A B C A B C on loopback, one worker each (GOMAXPROCS=1 for
# ours, worker_processes 1 for nginx, num-threads 1 for h2o). Cells:
#   1k        1 KiB keep-alive (wrk -t2 -cCONNS)
#   1k-close  1 KiB with "Connection: close" (non-persistent)
#   100k      100 KiB keep-alive
#   10m       10 MiB keep-alive (throughput)
#   h2, h2c   1 KiB over HTTP/2 on TLS (ALPN h2) / cleartext with prior
#             knowledge (h2load -t1 -cCONNS -mH2M, H2N requests per round)
#   idle      memory per 10,000 idle keep-alive connections (RSS growth
#             after IDLE connections each made one request and stay open);
#             measured first, on the fresh servers, one round (later rounds
#             would reuse memory the first one left allocated)
# Rounds alternate the order (A B C, C B A, ...). Prints per round and
# as medians: requests/s, transfer/s, requests per second of server CPU
# (utime+stime from /proc/PID/stat, all of a server's processes), RSS,
# and the applayer/peer ratios.
#
# Usage: bench/web-server.sh [rounds] [seconds]
#   env: CONNS (64), CELLS ("1k 1k-close 100k 10m h2 h2c idle"), APPLAYER (a
#   prebuilt binary), H2N (200000), H2M (10), IDLE (10000), PEERS ("nginx h2o")
# Needs wrk, h2load, openssl, curl and python3; peers that are not
# installed are left out (with a note).
set -euo pipefail
ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${CONNS:-64}
CELLS=${CELLS:-"1k 1k-close 100k 10m h2 h2c idle"}
H2N=${H2N:-200000}
H2M=${H2M:-10}
IDLE=${IDLE:-10000}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
command -v h2load >/dev/null || { echo "h2load not installed (nghttp2-client)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
TMP=$(mktemp -d); chmod 755 "$TMP" # peers' workers may run as nobody
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$TMP"; }
trap cleanup EXIT

mkdir -p "$TMP/root"; chmod 755 "$TMP/root"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$TMP/root/1k.txt"
head -c $((100 << 10)) /dev/urandom > "$TMP/root/100k.bin"
head -c $((10 << 20)) /dev/urandom > "$TMP/root/10m.bin"
chmod 644 "$TMP/root/"*
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$TMP/applayer"; else go build -o "$TMP/applayer" ./cmd/applayer; fi

# One self-signed certificate for every server (h2 over TLS).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1
chmod 644 "$TMP/key.pem"

# Ports: each server has a cleartext HTTP/1.1 port (h2c too where one port
# does both), a TLS port, and (nginx) a separate h2c port.
declare -A PORT TPORT HPORT PID
PORT[applayer]=18181; TPORT[applayer]=18183; HPORT[applayer]=18181
PORT[nginx]=18182; TPORT[nginx]=18184; HPORT[nginx]=18185
PORT[h2o]=18186; TPORT[h2o]=18187; HPORT[h2o]=18186
GOMAXPROCS=1 "$TMP/applayer" --log-level error http serve --root "$TMP/root" --listen 127.0.0.1:${PORT[applayer]} \
  --tls-listen 127.0.0.1:${TPORT[applayer]} --cert "$TMP/cert.pem" --key "$TMP/key.pem" >/dev/null 2>&1 &
PIDS+=($!); PID[applayer]=$!
SERVERS=(applayer)

for peer in ${PEERS:-nginx h2o}; do
  case $peer in
  nginx)
    NGINX=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)
    [ -n "$NGINX" ] || { echo "nginx not installed: left out" >&2; continue; }
    mkdir -p "$TMP/nginx/logs"
    cat > "$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
events { worker_connections 20000; }
http {
  access_log off;
  sendfile on; tcp_nopush on; open_file_cache max=1000;
  keepalive_requests 1000000; keepalive_timeout 300s;
  types { text/plain txt; application/octet-stream bin; }
  http2_max_concurrent_streams 128;
  ssl_certificate $TMP/cert.pem; ssl_certificate_key $TMP/key.pem;
  server { listen 127.0.0.1:${PORT[nginx]}; root $TMP/root; }
  server { listen 127.0.0.1:${TPORT[nginx]} ssl http2; root $TMP/root; }
  server { listen 127.0.0.1:${HPORT[nginx]} http2; root $TMP/root; }
}
CONF
    "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
    PIDS+=($!); PID[nginx]=$!; SERVERS+=(nginx) ;;
  h2o)
    command -v h2o >/dev/null || { echo "h2o not installed: left out" >&2; continue; }
    mkdir -p "$TMP/h2o"
    cat > "$TMP/h2o/h2o.conf" <<CONF
num-threads: 1
max-connections: 20000
http1-request-timeout: 300
http2-idle-timeout: 300
error-log: $TMP/h2o/error.log
listen:
  host: 127.0.0.1
  port: ${PORT[h2o]}
listen:
  host: 127.0.0.1
  port: ${TPORT[h2o]}
  ssl:
    certificate-file: $TMP/cert.pem
    key-file: $TMP/key.pem
    ocsp-update-interval: 0
hosts:
  default:
    paths:
      /:
        file.dir: $TMP/root
CONF
    h2o -c "$TMP/h2o/h2o.conf" >"$TMP/h2o/out.log" 2>&1 &
    PIDS+=($!); PID[h2o]=$!; SERVERS+=(h2o) ;;
  esac
done

for s in "${SERVERS[@]}"; do
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:${PORT[$s]}/1k.txt" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:${PORT[$s]}/1k.txt" || { echo "$s does not answer" >&2; cat "$TMP/$s/"*.log "$TMP/$s/logs/"*.log 2>/dev/null | tail -5 >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
# procs NAME -> the server's PIDs (master and workers)
procs() { echo "${PID[$1]} $(pgrep -P "${PID[$1]}" | tr '\n' ' ')"; }
# cpu PID... -> summed utime+stime ticks
cpu() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
# rss PID... -> summed RSS in KiB
rssk() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
rss() { echo $(($(rssk "$@") / 1024)); }

# h2run NAME CELL -> "rps MBps rps_per_cpu_s rss_MiB" (h2load, H2N requests)
h2run() {
  local ps before after out rps mbps ok url
  ps=$(procs "$1")
  if [ "$2" = h2 ]; then url=https://127.0.0.1:${TPORT[$1]}/1k.txt; else url=http://127.0.0.1:${HPORT[$1]}/1k.txt; fi
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

# idlerun NAME -> "conns 0 0 MiB_per_10k": RSS growth while IDLE connections
# that each made one request stay open.
idlerun() {
  local ps before after held
  ps=$(procs "$1")
  # shellcheck disable=SC2086
  before=$(rssk $ps)
  python3 - "${PORT[$1]}" "$IDLE" "$TMP/idle.$1" <<'PY' &
import socket, sys, time, os
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
req = b"GET /1k.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    conns.append(s)
ok = 0
for s in conns:
    s.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got or len(got) < got.index(b"\r\n\r\n") + 4 + 1024:
        b = s.recv(65536)
        if not b:
            break
        got += b
    ok += got.startswith(b"HTTP/1.1 200")
open(flag, "w").write(str(ok))
time.sleep(600)
PY
  local py=$!
  for _ in $(seq 600); do [ -s "$TMP/idle.$1" ] && break; sleep 0.2; done
  sleep 2
  # shellcheck disable=SC2086
  after=$(rssk $ps)
  held=$(cat "$TMP/idle.$1" 2>/dev/null || echo 0)
  kill "$py" 2>/dev/null || true; wait "$py" 2>/dev/null || true
  rm -f "$TMP/idle.$1"
  sleep 1
  awk -v h="$held" -v d="$((after - before))" 'BEGIN { printf "%d 0 0 %.1f\n", h, (h > 0 ? d/1024*10000/h : 0) }'
}

# run NAME CELL -> "rps MBps rps_per_cpu_s rss_MiB"
run() {
  local ps before after out rps mbps hdr=() path=1k.txt
  case $2 in h2|h2c) h2run "$1" "$2"; return ;; idle) idlerun "$1"; return ;; esac
  ps=$(procs "$1")
  case $2 in
    1k-close) hdr=(-H "Connection: close") ;;
    100k) path=100k.bin ;;
    10m) path=10m.bin ;;
  esac
  # shellcheck disable=SC2086
  before=$(cpu $ps)
  out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "${hdr[@]}" "http://127.0.0.1:${PORT[$1]}/$path")
  # shellcheck disable=SC2086
  after=$(cpu $ps)
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  mbps=$(echo "$out" | awk '/Transfer\/sec/ {v=$2; if (v ~ /GB/) {v+=0; v*=1024} else if (v ~ /KB/) {v+=0; v/=1024} else {v+=0}; print v}')
  # Requests per CPU-second count the requests wrk completed ("N requests
  # in T", T can exceed SECS when responses are long), and for 10m the
  # bytes read in 10 MiB units: a run ends with up to CONNS responses
  # part-sent, whose CPU is in the figure (a 5 s run completes only ~100).
  # shellcheck disable=SC2086
  awk -v r="$rps" -v m="$mbps" -v t="$((after - before))" -v hz="$HZ" -v cell="$2" -v rss="$(rss $ps)" \
    -v n="$(echo "$out" | awk '/requests in/ {print $1}')" \
    -v rd="$(echo "$out" | awk '/requests in/ {v=$(NF-1); if (v ~ /GB/) {v+=0; v*=1024} else if (v ~ /KB/) {v+=0; v/=1024} else {v+=0}; print v}')" \
    'BEGIN { c = t/hz; if (cell == "10m") n = rd/10; printf "%.0f %.1f %.0f %d\n", r, m, (c > 0 ? n/c : 0), rss }'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { cut -d' ' -f"$2" "$1" | median; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); servers: ${SERVERS[*]}; $(date -u +%FT%TZ)"
printf '%-9s %-9s %5s %10s %10s %12s %8s\n' cell server round req/s MB/s req/CPU-s RSS-MiB
ORDER=$CELLS
case " $CELLS " in *" idle "*) ORDER="idle $(echo " $CELLS " | sed 's/ idle / /')" ;; esac
for cell in $ORDER; do
  for s in "${SERVERS[@]}"; do : > "$TMP/r.$s"; done
  R=$ROUNDS
  [ "$cell" = idle ] && R=1
  for i in $(seq "$R"); do
    # Odd rounds A B C, even rounds C B A: no server always runs right
    # after the same other one (the kernel's leftover work of a run, and
    # the load's drift within a round, fall on each in turn).
    RORDER=("${SERVERS[@]}")
    [ $((i % 2)) -eq 0 ] && RORDER=($(printf '%s\n' "${SERVERS[@]}" | tac))
    for s in "${RORDER[@]}"; do
      r=$(run "$s" "$cell"); echo "$r" >> "$TMP/r.$s"
      if [ "$cell" = idle ]; then
        printf '%-9s %-9s %5s %10s conns, %6s MiB per 10k idle\n' "$cell" "$s" "$i" "$(echo "$r" | cut -d' ' -f1)" "$(echo "$r" | cut -d' ' -f4)"
      else
        printf '%-9s %-9s %5s %10s %10s %12s %8s\n' "$cell" "$s" "$i" $r
      fi
    done
  done
  if [ "$cell" = idle ]; then
    A=$(col "$TMP/r.applayer" 4)
    echo "== idle applayer median: $A MiB per 10k idle connections"
    for s in "${SERVERS[@]:1}"; do
      N=$(col "$TMP/r.$s" 4)
      awk -v c="$s" -v a="$A" -v n="$N" 'BEGIN { printf "== idle %-8s median: %s MiB per 10k; ratio applayer/%s: %.2f (lower is better)\n", c, n, c, (n > 0 ? a/n : 0) }'
    done
    continue
  fi
  A=$(col "$TMP/r.applayer" 1); AM=$(col "$TMP/r.applayer" 2); AC=$(col "$TMP/r.applayer" 3)
  echo "== $cell applayer median: $A req/s, $AM MB/s, $AC req per server-CPU-second"
  for s in "${SERVERS[@]:1}"; do
    N=$(col "$TMP/r.$s" 1); NM=$(col "$TMP/r.$s" 2); NC=$(col "$TMP/r.$s" 3)
    echo "== $cell $s median: $N req/s, $NM MB/s, $NC req per server-CPU-second"
    awk -v c="$cell" -v p="$s" -v a="$A" -v n="$N" -v ac="$AC" -v nc="$NC" \
      'BEGIN { printf "== %s ratio applayer/%s: %.2f (req/s), %.2f (per CPU-s)\n", c, p, (n > 0 ? a/n : 0), (nc > 0 ? ac/nc : 0) }'
  done
done
