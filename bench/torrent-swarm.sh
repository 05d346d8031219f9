#!/usr/bin/env bash
# BitTorrent distribution time: one seed capped at SEED_UP upload, N
# leechers capped at PEER_UP upload (no download cap), every peer on its
# own loopback address, a FILE_MIB file. Measures the time from the
# leechers' start until the last one has the whole file, for an applayer
# swarm, a qBittorrent swarm and an aria2 swarm (each with its own applayer
# tracker, run one after the other, interleaved over rounds), and divides
# it by the
# chapter's lower bound D_p2p >= max{F/u_s, F/d_min, N F/(u_s + N u)}
# (d_min is unlimited here, so the bound is max{F/u_s, N F/(u_s + N u)}).
# Leechers keep seeding once complete, as the bound assumes.
#
# The mixed swarm puts applayer, qBittorrent and aria2 leechers in one
# swarm (leecher i is applayer, qbittorrent, aria2, applayer, ... in
# turn; use an N that is a multiple of 3) behind a MIXED_SEED seed, and
# reports, besides its distribution time, each client's mean completion
# time: which client gets the file first when they compete.
#
# Usage: bench/torrent-swarm.sh [rounds] [N...]
#   e.g. bench/torrent-swarm.sh 3 4 8
#        SWARMS=mixed bench/torrent-swarm.sh 3 9
#   env: FILE_MIB (64), SEED_UP (4, MiB/s), PEER_UP (1, MiB/s),
#        APPLAYER (a prebuilt binary), BLOCK (127.77: the /16 used),
#        SWARMS ("applayer qbittorrent aria2"; add "mixed"),
#        MIXED_SEED (qbittorrent: the mixed swarm's seed, any of the three),
#        TIMEOUT (600 s per swarm)
# Needs aria2c and qbittorrent-nox for their swarms and the mixed one
# (skipped without).
set -euo pipefail
ROUNDS=${1:-3}
shift || true
NS=${*:-"4 8"}
FILE_MIB=${FILE_MIB:-64}
SEED_UP=${SEED_UP:-4}
PEER_UP=${PEER_UP:-1}
BLOCK=${BLOCK:-127.77}
SWARMS=${SWARMS:-"applayer qbittorrent aria2"}
TIMEOUT=${TIMEOUT:-600}
cd "$(dirname "$0")/.."
TMP=$(mktemp -d /tmp/bench-torrent.XXXXXX)
PIDS=()
killall_started() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; PIDS=(); }
cleanup() { killall_started; rm -rf "$TMP"; }
trap cleanup EXIT
if [ -n "${APPLAYER:-}" ]; then cp "$APPLAYER" "$TMP/applayer"; else GOTOOLCHAIN=auto go build -o "$TMP/applayer" ./cmd/applayer; fi
A="$TMP/applayer"
ARIA=$(command -v aria2c || true)
[ -z "$ARIA" ] && SWARMS=${SWARMS//aria2/} && echo "aria2c not installed: no aria2 swarm" >&2
QBT=$(command -v qbittorrent-nox || true)
[ -z "$QBT" ] && SWARMS=${SWARMS//qbittorrent/} && echo "qbittorrent-nox not installed: no qBittorrent swarm" >&2
{ [ -z "$QBT" ] || [ -z "$ARIA" ]; } && SWARMS=${SWARMS//mixed/} && echo "the mixed swarm needs aria2c and qbittorrent-nox" >&2
MIXED_SEED=${MIXED_SEED:-qbittorrent}
MIXED_KINDS=(applayer qbittorrent aria2)

# qbt DIR ADDR UPLIMIT_MIB SAVE HOOK TORRENT: a qbittorrent-nox with its own
# profile (DHT, LSD, PEX, UPnP, uTP, encryption off), bound to ADDR,
# running HOOK when the torrent completes. Its Web UI listens on ADDR
# too (a random port on 127.0.0.1 could be taken: the peer then exits).
qbt() {
  local prof=$1 addr=$2 up=$3 save=$4 hook=$5 torrent=$6
  mkdir -p "$prof/qBittorrent/config" "$save"
  cat > "$prof/qBittorrent/config/qBittorrent.conf" <<CONF
[LegalNotice]
Accepted=true

[AutoRun]
enabled=true
program=$hook

[BitTorrent]
Session\DHTEnabled=false
Session\LSDEnabled=false
Session\PeXEnabled=false
Session\Encryption=2
Session\Port=6881
Session\Interface=lo
Session\InterfaceName=lo
Session\InterfaceAddress=$addr
Session\DefaultSavePath=$save
Session\BTProtocol=TCP
Session\QueueingSystemEnabled=false
Session\GlobalUPSpeedLimit=$((up * 1024))

[Network]
PortForwardingEnabled=false

[Preferences]
Connection\UPnP=false
WebUI\Port=8080
WebUI\Address=$addr
CONF
  HOME="$prof" "$QBT" --profile="$prof" --save-path="$save" --skip-dialog=true "$torrent" >"$prof/out.log" 2>&1 &
  PIDS+=($!)
}

mkdir -p "$TMP/seed"
head -c $((FILE_MIB << 20)) /dev/urandom > "$TMP/seed/file.bin"
ARIA_OPTS=(--no-conf --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
  --disable-ipv6 --summary-interval=0 --console-log-level=error --bt-tracker-interval=5 --seed-ratio=0.0
  --file-allocation=none --bt-max-peers=55)

# bound N: max{F/u_s, N F/(u_s + N u)} in seconds
bound() { awk -v f="$FILE_MIB" -v us="$SEED_UP" -v u="$PEER_UP" -v n="$1" 'BEGIN { a = f/us; b = n*f/(us+n*u); printf "%.3f", (a > b ? a : b) }'; }

# run_swarm KIND N ROUND: prints the distribution time in seconds
run_swarm() {
  local kind=$1 n=$2 r=$3 port=$((6969 + r)) dir="$TMP/$1-$2-$3" seedkind=$1 lk
  [ "$kind" = mixed ] && seedkind=$MIXED_SEED
  mkdir -p "$dir"
  "$A" --log-level error torrent tracker --http "$BLOCK.0.1:$port" --udp "" --interval 10s --min-interval 2s >/dev/null 2>&1 &
  PIDS+=($!)
  "$A" torrent create --no-date -a "http://$BLOCK.0.1:$port/announce" -o "$dir/t.torrent" "$TMP/seed/file.bin" >/dev/null
  case $seedkind in
  applayer)
    "$A" --log-level error torrent seed --dir "$TMP/seed" --listen "$BLOCK.0.2:6881" --upload-limit "${SEED_UP}M" \
      --announce-interval 2s --status-interval 1h "$dir/t.torrent" >"$dir/seed.log" 2>&1 &
    PIDS+=($!) ;;
  qbittorrent)
    qbt "$dir/seedprof" "$BLOCK.0.2" "$SEED_UP" "$TMP/seed" /bin/true "$dir/t.torrent" ;;
  aria2)
    "$ARIA" "${ARIA_OPTS[@]}" --interface="$BLOCK.0.2" --listen-port=6881 --dir="$TMP/seed" --check-integrity \
      --bt-seed-unverified=false --max-overall-upload-limit="${SEED_UP}M" "$dir/t.torrent" >"$dir/seed.log" 2>&1 &
    PIDS+=($!) ;;
  esac
  sleep 3 # the seed has checked its data and announced
  local start; start=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    mkdir -p "$dir/l$i"
    lk=$kind
    [ "$kind" = mixed ] && lk=${MIXED_KINDS[$(((i - 1) % 3))]}
    echo "$lk" > "$dir/l$i.kind"
    case $lk in
    applayer)
      "$A" --log-level error torrent get --seed --dir "$dir/l$i" --listen "$BLOCK.0.$((10 + i)):6881" \
        --upload-limit "${PEER_UP}M" --announce-interval 2s --status-interval 1h "$dir/t.torrent" >"$dir/l$i.log" 2>&1 &
      PIDS+=($!) ;;
    qbittorrent)
      printf '#!/bin/sh\ndate +%%s.%%N > %s\n' "$dir/l$i.done" > "$dir/l$i.hook"; chmod +x "$dir/l$i.hook"
      qbt "$dir/p$i" "$BLOCK.0.$((10 + i))" "$PEER_UP" "$dir/l$i" "$dir/l$i.hook" "$dir/t.torrent" ;;
    aria2)
      printf '#!/bin/sh\ndate +%%s.%%N > %s\n' "$dir/l$i.done" > "$dir/l$i.hook"; chmod +x "$dir/l$i.hook"
      "$ARIA" "${ARIA_OPTS[@]}" --interface="$BLOCK.0.$((10 + i))" --listen-port=6881 --dir="$dir/l$i" \
        --max-overall-upload-limit="${PEER_UP}M" --on-bt-download-complete="$dir/l$i.hook" "$dir/t.torrent" >"$dir/l$i.log" 2>&1 &
      PIDS+=($!) ;;
    esac
  done
  local deadline=$(( $(date +%s) + TIMEOUT )) done=0
  while [ "$done" -lt "$n" ]; do
    [ "$(date +%s)" -gt "$deadline" ] && { echo "$kind N=$n: timed out" >&2; killall_started; echo "nan"; return; }
    sleep 0.2
    done=0
    for i in $(seq 1 "$n"); do
      if [ "$(cat "$dir/l$i.kind")" = applayer ]; then
        [ -s "$dir/l$i.done" ] || { grep -q "download complete after" "$dir/l$i.log" && date +%s.%N > "$dir/l$i.done"; }
      fi
      [ -s "$dir/l$i.done" ] && done=$((done + 1))
    done
  done
  local end; end=$(date +%s.%N)
  # each leecher's completion time: "KIND SECONDS" lines
  for i in $(seq 1 "$n"); do
    echo "$(cat "$dir/l$i.kind") $(awk -v a="$start" -v b="$(cat "$dir/l$i.done")" 'BEGIN { printf "%.3f", b - a }')"
  done > "$TMP/each-$kind-$n-$r"
  for i in $(seq 1 "$n"); do cmp -s "$TMP/seed/file.bin" "$dir/l$i/file.bin" || echo "$kind N=$n leecher $i: file differs" >&2; done
  killall_started
  rm -rf "$dir"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "file ${FILE_MIB} MiB, seed ${SEED_UP} MiB/s up, leechers ${PEER_UP} MiB/s up; $(date -u +%FT%TZ)"
for n in $NS; do
  b=$(bound "$n")
  for r in $(seq 1 "$ROUNDS"); do
    for kind in $SWARMS; do
      t=$(run_swarm "$kind" "$n" "$r")
      echo "$kind $n $t" >> "$TMP/results"
      echo "round $r N=$n $kind: ${t}s = $(awk -v t="$t" -v b="$b" 'BEGIN { printf "%.2f", t/b }')x the bound (${b}s)"
      if [ "$kind" = mixed ] && [ -s "$TMP/each-mixed-$n-$r" ]; then
        for lk in "${MIXED_KINDS[@]}"; do
          mean=$(awk -v k="$lk" '$1 == k { s += $2; c++ } END { if (c) printf "%.3f", s / c; else print "nan" }' "$TMP/each-mixed-$n-$r")
          echo "mixed-$lk $n $mean" >> "$TMP/results"
          echo "  mixed swarm (seed $MIXED_SEED), $lk leechers' mean completion: ${mean}s"
        done
      fi
    done
  done
  for kind in $SWARMS; do
    m=$(awk -v k="$kind" -v n="$n" '$1 == k && $2 == n { print $3 }' "$TMP/results" | median)
    echo "median N=$n $kind: ${m}s, ratio to the bound $(awk -v t="$m" -v b="$b" 'BEGIN { printf "%.2f", t/b }')"
    if [ "$kind" = mixed ]; then
      for lk in "${MIXED_KINDS[@]}"; do
        m=$(awk -v k="mixed-$lk" -v n="$n" '$1 == k && $2 == n { print $3 }' "$TMP/results" | median)
        echo "median N=$n mixed swarm, $lk leechers' mean completion: ${m}s"
      done
    fi
  done
done
