#!/usr/bin/env bash
# SMTP acceptance: applayer mail serve vs Postfix (Debian's postfix, run
# from its own config dir on loopback, as root), interleaved A B A B A B.
# smtp-source (from the postfix package) sends N messages of 2 KiB from 8
# sessions to bob@hamburger.edu, over reused connections (-d) and over a
# new connection per message. Both servers fsync the queue file before
# 250 and deliver into a mailbox (applayer: its SQLite store; Postfix:
# virtual(8) to a maildir). applayer runs with GOMAXPROCS=1.
# Per cell and round: messages accepted per second (smtp-source's wall
# time), and messages per second of server CPU, counted until the queue
# has drained (acceptance and delivery: applayer's utime+stime; Postfix's
# master with its exited and living children).
#
# Usage: bench/mail-smtp.sh [rounds] [messages]
#   env: APPLAYER (a prebuilt binary), SESSIONS (8), SIZE (2048),
#        CELLS ("reuse new")
set -euo pipefail
ROUNDS=${1:-3}
N=${2:-2000}
SESSIONS=${SESSIONS:-8}
SIZE=${SIZE:-2048}
CELLS=${CELLS:-"reuse new"}
cd "$(dirname "$0")/.."
command -v smtp-source >/dev/null || { echo "smtp-source not installed (postfix package)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "Postfix's master runs as root: run as root" >&2; exit 1; }
TMP=$(mktemp -d); chmod 755 "$TMP"
PIDS=()
PFDIR=$TMP/postfix
cleanup() {
  [ -f "$PFDIR/queue/pid/master.pid" ] && kill "$(tr -d ' ' < "$PFDIR/queue/pid/master.pid")" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5; rm -rf "$TMP"
}
trap cleanup EXIT
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$TMP/applayer"; else go build -o "$TMP/applayer" ./cmd/applayer; fi

APORT=${APORT:-12625} PPORT=${PPORT:-12626}
"$TMP/applayer" mail users add --db "$TMP/mail.db" bob@hamburger.edu --password pw >/dev/null
GOMAXPROCS=1 "$TMP/applayer" --log-level error mail serve --domain hamburger.edu --db "$TMP/mail.db" \
  --spool "$TMP/spool" --listen 127.0.0.1:$APORT --no-tls --max-conns-per-ip 100 >/dev/null 2>&1 &
PIDS+=($!); APID=$!

mkdir -p "$PFDIR/queue" "$PFDIR/data" "$PFDIR/vmail"
chown postfix:postfix "$PFDIR/data" "$PFDIR/vmail"
cat > "$PFDIR/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $PFDIR/queue
data_directory = $PFDIR/data
meta_directory = /etc/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.hamburger.edu
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
maillog_file = $PFDIR/maillog
maillog_file_prefixes = $PFDIR
smtp_dns_support_level = disabled
alias_maps =
alias_database =
virtual_mailbox_domains = hamburger.edu
virtual_mailbox_base = $PFDIR/vmail
virtual_mailbox_maps = inline:{ {bob@hamburger.edu=bob/} }
virtual_uid_maps = static:$(id -u postfix)
virtual_gid_maps = static:$(id -g postfix)
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
biff = no
CONF
sed -E "s/^smtp +inet .*/127.0.0.1:$PPORT inet n - n - - smtpd/" /etc/postfix/master.cf |
  sed -E 's/^([a-z0-9.:]+ +(inet|unix|unix-dgram|fifo|pass) +[-ny] +[-ny] +)y/\1n/' > "$PFDIR/master.cf"
postfix -c "$PFDIR" check
postfix -c "$PFDIR" start-fg >/dev/null 2>&1 &
PIDS+=($!)
for p in $APORT $PPORT; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
for _ in $(seq 50); do [ -s "$PFDIR/queue/pid/master.pid" ] && break; sleep 0.1; done
PPID_=$(tr -d ' ' < "$PFDIR/queue/pid/master.pid")

HZ=$(getconf CLK_TCK)
# cpu NAME -> CPU ticks so far of the server (Postfix: master's own and
# its reaped children's, plus its living children's).
cpu() {
  if [ "$1" = applayer ]; then awk '{print $14+$15}' "/proc/$APID/stat"; return; fi
  local t p
  t=$(awk '{print $14+$15+$16+$17}' "/proc/$PPID_/stat")
  for p in $(pgrep -P "$PPID_"); do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo "$t"
}
queued() {
  if [ "$1" = applayer ]; then find "$TMP/spool" -maxdepth 1 -name '*.msg' | wc -l
  else find "$PFDIR/queue/incoming" "$PFDIR/queue/active" "$PFDIR/queue/deferred" "$PFDIR/queue/maildrop" -type f | wc -l; fi
}
# run NAME CELL -> "msgs_per_s msgs_per_cpu_s"
run() {
  local port=$APORT flags=() before after t0 t1
  [ "$1" = postfix ] && port=$PPORT
  [ "$2" = reuse ] && flags=(-d)
  before=$(cpu "$1")
  t0=$(date +%s.%N)
  smtp-source "${flags[@]}" -s "$SESSIONS" -m "$N" -l "$SIZE" -f alice@crepes.fr -t bob@hamburger.edu 127.0.0.1:$port
  t1=$(date +%s.%N)
  for _ in $(seq 600); do [ "$(queued "$1")" = 0 ] && break; sleep 0.1; done
  after=$(cpu "$1")
  awk -v n="$N" -v t0="$t0" -v t1="$t1" -v c="$((after - before))" -v hz="$HZ" \
    'BEGIN { printf "%.0f %.0f\n", n/(t1-t0), (c > 0 ? n/(c/hz) : 0) }'
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $N messages of $SIZE bytes, $SESSIONS sessions, $ROUNDS rounds"
declare -A R
for cell in $CELLS; do
  for r in $(seq "$ROUNDS"); do
    for s in applayer postfix; do
      out=$(run "$s" "$cell")
      R[$cell,$s]+="$out"$'\n'
      printf '%-6s round %d %-8s %6s msg/s  %6s msg per CPU-second\n' "$cell" "$r" "$s" $out
    done
  done
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo
for cell in $CELLS; do
  am=$(printf '%s' "${R[$cell,applayer]}" | awk '{print $1}' | median)
  ac=$(printf '%s' "${R[$cell,applayer]}" | awk '{print $2}' | median)
  pm=$(printf '%s' "${R[$cell,postfix]}" | awk '{print $1}' | median)
  pc=$(printf '%s' "${R[$cell,postfix]}" | awk '{print $2}' | median)
  printf 'median %-6s applayer %s msg/s, %s per CPU-s; postfix %s msg/s, %s per CPU-s; ratio applayer/postfix %.2f msg/s, %.2f per CPU-s\n' \
    "$cell" "$am" "$ac" "$pm" "$pc" "$(echo "$am $pm" | awk '{print $1/$2}')" "$(echo "$ac $pc" | awk '{print $1/$2}')"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
