#!/usr/bin/env bash
# Video streaming QoE: one packaged video (synthetic, 60 s, 1280x720, four
# rungs 240p/300k 360p/800k 480p/1.4M 720p/2.5M, 2 s segments) played
# under the same bandwidth schedules by dash.js (default rules, and BOLA
# only) and Shaka (network information off) in headless Chromium, and by
# each of applayer's ABR algorithms. Every player fetches through its own
# shaping proxy (stream/shape.Proxy: a TCP forwarder holding the
# origin-to-player direction to the schedule, started by the player's first
# connection), so shaping is the same for all. Prints QoE_lin per chunk,
# average bit rate, stalls, switches and startup with the offline optimum,
# and writes JSON and plots to OUT.
#
# Usage: bench/stream-qoe.sh [OUT] [SCHEDULES]
#   SCHEDULES as streamqoe's -schedules (default: step, sawtooth, commute)
#   ROUNDS=N (default 3): every round plays every schedule with every
#   player, rounds one after the other (interleaved), then the medians.
#   SIM=1: applayer's algorithms on the simulated clock only (no browser,
#   seconds instead of minutes), e.g. on held-out cooked traces:
#   SIM=1 bench/stream-qoe.sh OUT "bus=@/path/norway_bus_1;car=@/path/norway_car_2"
# Needs ffmpeg, chromium and npm (Shaka is fetched once with npm pack into
# $BENCH_CACHE, default ~/.cache/applayer-bench).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$HERE/bench-stream-qoe}
CACHE=${BENCH_CACHE:-$HOME/.cache/applayer-bench}
export GOTOOLCHAIN=auto
mkdir -p "$OUT" "$CACHE"
cd "$HERE"
go build -o "$CACHE/applayer" ./cmd/applayer
go build -o "$CACHE/streamqoe" ./bench/streamqoe
VIDEO=$CACHE/stream-qoe-video
if [ ! -f "$VIDEO/manifest.mpd" ]; then
	"$CACHE/applayer" stream package -q --synthetic 60s --size 1280x720 \
		--ladder 240:300k,360:800k,480:1.4M,720:2.5M --segment 2s --preset veryfast -o "$VIDEO"
fi
SHAKA=$CACHE/shaka-player-5.2.12/package/dist/shaka-player.compiled.js
if [ ! -f "$SHAKA" ]; then
	mkdir -p "$CACHE/shaka-player-5.2.12"
	(cd "$CACHE/shaka-player-5.2.12" && npm pack --silent shaka-player@5.2.12 >/dev/null && tar xzf shaka-player-5.2.12.tgz)
fi
echo "date: $(date -u +%FT%TZ)  load: $(cut -d' ' -f1-3 /proc/loadavg)  commit: $(git rev-parse --short HEAD)"
args=(-video "$VIDEO" -dashjs stream/testdata/dashjs/dash.mediaplayer.min.js -shaka "$SHAKA" -out "$OUT" -rounds "${ROUNDS:-3}")
[ -n "${SIM:-}" ] && args+=(-sim)
[ -n "${2:-}" ] && args+=(-schedules "$2")
"$CACHE/streamqoe" "${args[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
