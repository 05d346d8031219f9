#!/usr/bin/env bash
# Before/after: runs one of the side-by-side benchmarks with two applayer
# binaries — one built from BASE (a git revision), one from the working
# tree — alternately (before, after, before, after, ...), so a change's
# effect on the ratio to the reference peer is seen in one run on the same
# machine. Each benchmark already measures its peer (NSD/Knot, Unbound,
# nginx, Varnish/Squid) in the same interleaved sub-run, so the figure to
# compare is the ratio per server-CPU-second, before vs after.
#
# Usage: bench/before-after.sh BASE SCRIPT [PAIRS] [-- SCRIPT-ARGS...]
#   e.g. bench/before-after.sh 877628d bench/dns-authority.sh 2 -- 3 10
#        bench/before-after.sh 877628d bench/web-cache.sh 2 -- 3 5s
# Prints each run's ratio lines prefixed with "before"/"after"; with
# BENCH_LOGS=DIR the full output of every run is kept there as
# before.N.log / after.N.log (by default it goes with the temp dir).
set -euo pipefail
[ $# -ge 2 ] || { sed -n 2,13p "$0" >&2; exit 2; }
BASE=$1 SCRIPT=$2 PAIRS=${3:-2}
shift 2; [ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
HERE=$(cd "$(dirname "$0")/.." && pwd)
export GOTOOLCHAIN=auto
W=$(mktemp -d /tmp/bench-before-after.XXXXXX)
cleanup() { git -C "$HERE" worktree remove --force "$W/base" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
[ -z "${BENCH_LOGS:-}" ] || mkdir -p "$BENCH_LOGS"

git -C "$HERE" worktree add -q --detach "$W/base" "$BASE"
(cd "$W/base" && go build -o "$W/applayer-before" ./cmd/applayer)
(cd "$HERE" && go build -o "$W/applayer-after" ./cmd/applayer)
echo "before: $(git -C "$HERE" rev-parse --short "$BASE")  after: $(git -C "$HERE" rev-parse --short HEAD)$(git -C "$HERE" diff --quiet || echo '+dirty')" >&2

for i in $(seq 1 "$PAIRS"); do
	for which in before after; do
		echo "== pair $i: $which" >&2
		(cd "$HERE" && APPLAYER="$W/applayer-$which" bash "$SCRIPT" "$@" 2>&1) |
			tee "${BENCH_LOGS:-$W}/$which.$i.log" | grep -iE 'ratio|median|per CPU' | sed "s/^/$which $i: /"
	done
done
