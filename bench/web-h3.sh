#!/usr/bin/env bash
# HTTP/3: applayer (quic-go) vs Caddy (quic-go too) and ngtcp2's example
# server (gtlsserver), 1 KiB and 100 KiB files over one client for all,
# bench/h3load (quic-go's HTTP/3 client; Debian's h2load and curl have no
# HTTP/3), interleaved A B C per round on loopback. applayer and Caddy run
# with GOMAXPROCS=1; gtlsserver is single-threaded. Prints per round and
# as medians: requests/s, MB/s, requests per second of server CPU
# (utime+stime from /proc/PID/stat) and the applayer/peer ratios.
#
# Usage: bench/web-h3.sh [rounds]
#   env: N (requests per run, 20000), C (connections, 16), M (in flight
#   per connection, 10), FILES ("1k.txt 100k.bin"), PEERS ("caddy ngtcp2")
# Peers that are not installed are left out (with a note).
set -euo pipefail
ROUNDS=${1:-3}
N=${N:-20000}
C=${C:-16}
M=${M:-10}
FILES=${FILES:-"1k.txt 100k.bin"}
cd "$(dirname "$0")/.."
TMP=$(mktemp -d); chmod 755 "$TMP"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$TMP"; }
trap cleanup EXIT
mkdir -p "$TMP/root"; chmod 755 "$TMP/root"
head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > "$TMP/root/1k.txt"
head -c $((100 << 10)) /dev/urandom > "$TMP/root/100k.bin"
chmod 644 "$TMP/root/"*
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$TMP/applayer"; else go build -o "$TMP/applayer" ./cmd/applayer; fi
go build -o "$TMP/h3load" ./bench/h3load
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1
chmod 644 "$TMP/key.pem"

declare -A PORT PID
PORT[applayer]=18381; PORT[caddy]=18382; PORT[ngtcp2]=18383
GOMAXPROCS=1 "$TMP/applayer" --log-level error http serve --root "$TMP/root" --tls-listen 127.0.0.1:${PORT[applayer]} \
  --http3 --cert "$TMP/cert.pem" --key "$TMP/key.pem" >/dev/null 2>&1 &
PIDS+=($!); PID[applayer]=$!
SERVERS=(applayer)
for peer in ${PEERS:-caddy ngtcp2}; do
  case $peer in
  caddy)
    command -v caddy >/dev/null || { echo "caddy not installed: left out" >&2; continue; }
    mkdir -p "$TMP/caddy"
    cat > "$TMP/caddy/Caddyfile" <<CONF
{
	admin off
	auto_https off
	default_sni 127.0.0.1
	servers {
		protocols h1 h2 h3
	}
}
https://127.0.0.1:${PORT[caddy]} {
	tls $TMP/cert.pem $TMP/key.pem
	root * $TMP/root
	file_server
}
CONF
    HOME=$TMP/caddy XDG_DATA_HOME=$TMP/caddy XDG_CONFIG_HOME=$TMP/caddy GOMAXPROCS=1 \
      caddy run --config "$TMP/caddy/Caddyfile" --adapter caddyfile >"$TMP/caddy/log" 2>&1 &
    PIDS+=($!); PID[caddy]=$!
    ;;
  ngtcp2)
    G=$(command -v gtlsserver || ls /usr/sbin/gtlsserver 2>/dev/null || true)
    [ -n "$G" ] || { echo "gtlsserver (ngtcp2-server) not installed: left out" >&2; continue; }
    "$G" -q -d "$TMP/root" 127.0.0.1 "${PORT[ngtcp2]}" "$TMP/key.pem" "$TMP/cert.pem" >/dev/null 2>&1 &
    PIDS+=($!); PID[ngtcp2]=$!
    ;;
  esac
  SERVERS+=("$peer")
done
for s in "${SERVERS[@]}"; do
  for _ in $(seq 50); do "$TMP/h3load" -k -n 1 -c 1 -m 1 "https://127.0.0.1:${PORT[$s]}/1k.txt" >/dev/null 2>&1 && break; sleep 0.2; done
  "$TMP/h3load" -k -n 1 -c 1 -m 1 "https://127.0.0.1:${PORT[$s]}/1k.txt" >/dev/null || { echo "$s does not answer over HTTP/3" >&2; exit 1; }
done

HZ=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
# run NAME FILE -> "rps MBps rps_per_cpu_s"
run() {
  local before after out
  before=$(cpu "${PID[$1]}")
  out=$("$TMP/h3load" -k -n "$N" -c "$C" -m "$M" "https://127.0.0.1:${PORT[$1]}/$2")
  after=$(cpu "${PID[$1]}")
  echo "$out" | awk -v t="$((after - before))" -v hz="$HZ" \
    '{ ok=$4; rps=$10; mb=$12; c=t/hz; if ($6 > 0) print "h3load: " $6 " failed" > "/dev/stderr"; printf "%.0f %.1f %.0f\n", rps, mb, (c > 0 ? ok/c : 0) }'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { cut -d' ' -f"$2" "$1" | median; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); servers: ${SERVERS[*]}; N=$N C=$C M=$M; $(date -u +%FT%TZ)"
printf '%-9s %-9s %5s %10s %10s %12s\n' file server round req/s MB/s req/CPU-s
for f in $FILES; do
  for s in "${SERVERS[@]}"; do : > "$TMP/r.$s"; done
  for i in $(seq "$ROUNDS"); do
    for s in "${SERVERS[@]}"; do
      r=$(run "$s" "$f"); echo "$r" >> "$TMP/r.$s"
      printf '%-9s %-9s %5s %10s %10s %12s\n' "$f" "$s" "$i" $r
    done
  done
  A=$(col "$TMP/r.applayer" 1); AC=$(col "$TMP/r.applayer" 3)
  echo "== $f applayer median: $A req/s, $AC req per server-CPU-second"
  for s in "${SERVERS[@]:1}"; do
    P=$(col "$TMP/r.$s" 1); PC=$(col "$TMP/r.$s" 3)
    echo "== $f $s median: $P req/s, $PC req per server-CPU-second"
    awk -v f="$f" -v p="$s" -v a="$A" -v n="$P" -v ac="$AC" -v nc="$PC" \
      'BEGIN { printf "== %s ratio applayer/%s: %.2f (req/s), %.2f (per CPU-s)\n", f, p, (n > 0 ? a/n : 0), (nc > 0 ? ac/nc : 0) }'
  done
done
