# The "textbook" mix of bench/dns-authority.sh (sourced by it, not run
# alone): a zone like the chapter's amazon.com in three copies (unsigned,
# NSEC, NSEC3) served by applayer, NSD and Knot, and a realistic query mix
# by type on each, interleaved (applayer, NSD, Knot per copy per round),
# pinned and unpinned; with CLASSES=1, every query class alone too.
# VARIANTS (default "unsigned nsec nsec3") picks the copies run.
#
# Uses from the caller: ROUNDS SECS ADDR HERE WORK PIDS and $WORK/applayer.

for c in ldns-keygen ldns-signzone awk dig; do
	command -v $c >/dev/null || { echo "missing: $c" >&2; exit 1; }
done
PIN=${PIN:-pinned unpinned}
CLASS_SECS=${CLASS_SECS:-3}
HOSTS=2000

# mkzone ORIGIN: the zone, like the chapter's amazon.com.
mkzone() {
	cat <<EOF
\$ORIGIN $1.
\$TTL 3600
@ SOA ns1 hostmaster 2026120301 7200 3600 1209600 300
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns1 AAAA 2001:db8::1
ns2 A 192.0.2.2
ns2 AAAA 2001:db8::2
@ A 192.0.2.80
@ MX 10 mail1
@ MX 20 mail2
@ TXT "v=spf1 mx -all"
mail1 A 192.0.2.25
mail1 AAAA 2001:db8::25
mail2 A 192.0.2.26
mail2 AAAA 2001:db8::26
www CNAME www-edge
smile CNAME www
www-edge A 192.0.2.101
www-edge A 192.0.2.102
www-edge A 192.0.2.103
www-edge AAAA 2001:db8::101
images CNAME d1.cloudfront.net.
*.dev A 192.0.2.200
*.dev AAAA 2001:db8::200
_sip._tcp SRV 10 60 5060 sip
sip A 192.0.2.50
aws NS ns1.aws
aws NS ns2.aws
ns1.aws A 192.0.2.53
ns2.aws A 192.0.2.54
EOF
	# A TXT of about 1,450 bytes: over UDP it does not fit 1232 bytes.
	printf 'verify TXT'
	for i in 1 2 3 4 5 6; do printf ' "%s"' "$(printf 'k%d=%0238d' "$i" 0)"; done
	echo
	awk -v n=$HOSTS 'BEGIN{ for (i = 1; i <= n; i++) printf "h%d A 10.1.%d.%d\nh%d AAAA 2001:db8:1::%x\n", i, int(i/256)%256, i%256, i, i }'
}

# The query classes and their weights in the mix (per 100 queries).
CLASSLIST="a aaaa mx cname-in cname-out wildcard referral bigtxt srv nodata nxdomain"
WEIGHTS="a:20 aaaa:10 mx:5 cname-in:10 cname-out:4 wildcard:8 referral:5 bigtxt:3 srv:3 nodata:7 nxdomain:25"

# queries ORIGIN CLASS COUNT SEED: dnsperf query lines ("mix" draws the
# class of each line by WEIGHTS). Random labels make every NXDOMAIN and
# wildcard name distinct.
queries() {
	awk -v o="$1" -v c="$2" -v n="$3" -v seed="$4" -v hosts=$HOSTS -v weights="$WEIGHTS" '
	function rnd() { return sprintf("%x%x", int(rand() * 2147483647), int(rand() * 65536)) }
	function q(c, h) {
		h = int(rand() * hosts) + 1
		if (c == "a") return "h" h "." o " A"
		if (c == "aaaa") return "h" h "." o " AAAA"
		if (c == "mx") return o " MX"
		if (c == "cname-in") return (rand() < 0.8 ? "www." : "smile.") o " A"
		if (c == "cname-out") return "images." o " A"
		if (c == "wildcard") return "w" rnd() ".dev." o " A"
		if (c == "referral") return "h" h ".aws." o " A"
		if (c == "bigtxt") return "verify." o " TXT"
		if (c == "srv") return "_sip._tcp." o " SRV"
		if (c == "nodata") return "h" h "." o " TXT"
		if (c == "nxdomain") return "x" rnd() "." o " A"
	}
	BEGIN {
		srand(seed)
		k = split(weights, ws, " ")
		for (i = 1; i <= k; i++) { split(ws[i], p, ":"); cls[i] = p[1]; cum[i] = (i > 1 ? cum[i-1] : 0) + p[2] }
		for (j = 0; j < n; j++) {
			cc = c
			if (c == "mix") { r = rand() * cum[k]; for (i = 1; i <= k; i++) if (r < cum[i]) { cc = cls[i]; break } }
			print q(cc)
		}
	}'
}

VARIANTS=${VARIANTS:-unsigned nsec nsec3}
declare -A ORIGIN=([unsigned]=amazon.com [nsec]=amazon.net [nsec3]=amazon.org)
declare -A DNSPERF_FLAGS=([unsigned]=-e [nsec]=-D [nsec3]=-D)
mkdir -p "$WORK/keys"
for v in $VARIANTS; do
	o=${ORIGIN[$v]}
	mkzone "$o" >"$WORK/$o.zone"
	queries "$o" mix 50000 1 >"$WORK/q.$v.mix"
	for c in $CLASSLIST; do queries "$o" "$c" 20000 2 >"$WORK/q.$v.$c"; done
	[ "$v" = unsigned ] && continue
	ksk=$(cd "$WORK/keys" && ldns-keygen -a ECDSAP256SHA256 -k "$o")
	zsk=$(cd "$WORK/keys" && ldns-keygen -a ECDSAP256SHA256 "$o")
	nsec3=()
	[ "$v" = nsec3 ] && nsec3=(-n -t 0)
	ldns-signzone "${nsec3[@]}" -o "$o" -f "$WORK/$o.zone.signed" "$WORK/$o.zone" "$WORK/keys/$zsk" "$WORK/keys/$ksk"
	mv "$WORK/$o.zone.signed" "$WORK/$o.zone"
done

P_APP=$(freeport); P_NSD=$(freeport); P_KNOT=$(freeport)
declare -A PORT=([applayer]=$P_APP [nsd]=$P_NSD [knot]=$P_KNOT)
SERVERS="applayer nsd knot"

zoneflags=()
for v in $VARIANTS; do zoneflags+=(--zone "${ORIGIN[$v]}=$WORK/${ORIGIN[$v]}.zone"); done
GOMAXPROCS=1 setsid taskset -c 0 "$WORK/applayer" --log-level warn dns serve --listen "$ADDR:$P_APP" "${zoneflags[@]}" &
PIDS+=($!); SID_APP=$!

origins=()
for v in $VARIANTS; do origins+=("${ORIGIN[$v]}"); done
start_nsd "${origins[@]}"
start_knot "${origins[@]}"
declare -A SIDOF=([applayer]=$SID_APP [nsd]=$SID_NSD [knot]=$SID_KNOT)

waitzone() { # port origin
	for _ in $(seq 1 200); do
		if dig +time=1 +tries=1 @"$ADDR" -p "$1" "$2" SOA +short 2>/dev/null | grep -q hostmaster; then return 0; fi
		sleep 0.1
	done
	echo "server on port $1 does not serve $2" >&2; return 1
}
for s in $SERVERS; do for v in $VARIANTS; do waitzone "${PORT[$s]}" "${ORIGIN[$v]}"; done; done

# The same answer sizes from the three servers, as a sanity check: one
# query of each class, DO as the mix asks, without dig's EDNS cookie
# (dnsperf sends none; applayer answers a cookie with its own, 28 bytes
# that NSD and Knot, without cookies configured, leave off).
echo "one query per class; per server (applayer nsd knot): bytes/rcode/flags/answer-authority-additional counts:" >&2
for v in $VARIANTS; do
	do=()
	[ "$v" = unsigned ] || do=(+dnssec)
	for c in $CLASSLIST; do
		line=$(head -1 "$WORK/q.$v.$c")
		sizes=""
		for s in $SERVERS; do
			sz=$(dig +nocookie +time=2 +tries=1 +bufsize=4096 +ignore "${do[@]}" @"$ADDR" -p "${PORT[$s]}" $line |
				awk '/->>HEADER<<-/{st=$6; sub(/,/,"",st)} /^;; flags:/{split($0, p, ";"); f=p[3]; sub(/ flags: /,"",f); gsub(/ /,",",f); n=$0; sub(/.*ANSWER: /,"",n); a=n+0; sub(/.*AUTHORITY: /,"",n); u=n+0; sub(/.*ADDITIONAL: /,"",n); x=n+0} /MSG SIZE/{sz=$NF} END{printf "%s/%s/%s/%d-%d-%d", sz, st, f, a, u, x}')
			sizes+="$sz "
		done
		printf '  %-9s %-9s %s\n' "$v" "$c" "$sizes" >&2
	done
done

setaff() { # cpus sid: every thread of every process of the session
	for st in /proc/[0-9]*/stat; do
		{ read -r line <"$st"; } 2>/dev/null || continue
		rest=${line##*) }
		set -- $rest
		if [ "${4}" = "$2" ]; then
			p=${st#/proc/}; p=${p%/stat}
			taskset -a -p -c "$1" "$p" >/dev/null 2>&1 || true
		fi
	done
}

declare -A QPS CPU
HZ=$(getconf CLK_TCK)
# bench KEY SERVER QUERYFILE DNSPERF-FLAG SECONDS PINNED
bench() {
	local key=$1 s=$2 qf=$3 flag=$4 secs=$5 pinned=$6
	SID=${SIDOF[$s]}
	local gen=(dnsperf)
	[ "$pinned" = pinned ] && gen=(taskset -c 1 dnsperf)
	local c0; c0=$(cputicks)
	local out; out=$("${gen[@]}" -s $ADDR -p "${PORT[$s]}" -d "$qf" $flag -l "$secs" -c 8 -T 1 -q 100 2>&1)
	local c1; c1=$(cputicks)
	local qps; qps=$(echo "$out" | awk '/Queries per second/{printf "%.0f", $4}')
	local completed; completed=$(echo "$out" | awk '/Queries completed/{print $3}')
	local cpu; cpu=$(awk -v q="$completed" -v t=$((c1 - c0)) -v hz="$HZ" 'BEGIN{ if (t>0) printf "%.0f", q/(t/hz); else print 0 }')
	echo "round $r $key $s: $qps q/s, $cpu answers per server-CPU-second" >&2
	QPS[$key/$s]+="$qps "
	CPU[$key/$s]+="$cpu "
}

report() { # title keys...
	local title=$1; shift
	echo
	echo "$title"
	printf "%-28s %9s %9s %9s | %9s %9s %9s | %7s %7s\n" "" "app q/s" "nsd q/s" "knot q/s" "app /CPU" "nsd /CPU" "knot /CPU" "vs nsd" "vs knot"
	for key in "$@"; do
		local q=() c=()
		for s in $SERVERS; do
			q+=("$(echo "${QPS[$key/$s]}" | median)")
			c+=("$(echo "${CPU[$key/$s]}" | median)")
		done
		printf "%-28s %9s %9s %9s | %9s %9s %9s | %7s %7s\n" "$key" "${q[@]}" "${c[@]}" \
			"$(awk -v a="${c[0]}" -v b="${c[1]}" 'BEGIN{ if (b>0) printf "%.2f", a/b }')" \
			"$(awk -v a="${c[0]}" -v b="${c[2]}" 'BEGIN{ if (b>0) printf "%.2f", a/b }')"
	done
}

keys=()
for pin in $PIN; do
	cpus=0
	[ "$pin" = unpinned ] && cpus=0-$(($(nproc) - 1))
	for s in $SERVERS; do setaff "$cpus" "${SIDOF[$s]}"; done
	for r in $(seq 1 "$ROUNDS"); do
		for v in $VARIANTS; do
			for s in $SERVERS; do bench "$pin/$v/mix" "$s" "$WORK/q.$v.mix" "${DNSPERF_FLAGS[$v]}" "$SECS" "$pin"; done
		done
	done
	for v in $VARIANTS; do keys+=("$pin/$v/mix"); done
done
ckeys=()
if [ -n "${CLASSES:-}" ]; then
	for s in $SERVERS; do setaff 0 "${SIDOF[$s]}"; done
	for r in $(seq 1 "$ROUNDS"); do
		for v in $VARIANTS; do
			for c in $CLASSLIST; do
				for s in $SERVERS; do bench "pinned/$v/$c" "$s" "$WORK/q.$v.$c" "${DNSPERF_FLAGS[$v]}" "$CLASS_SECS" pinned; done
			done
		done
	done
	for v in $VARIANTS; do for c in $CLASSLIST; do ckeys+=("pinned/$v/$c"); done; done
fi

report "medians of $ROUNDS rounds of $SECS s, textbook zone ($HOSTS hosts), mix $WEIGHTS; unsigned with EDNS, nsec/nsec3 with DO=1" "${keys[@]}"
[ ${#ckeys[@]} -eq 0 ] || report "per query class, pinned, medians of $ROUNDS rounds of $CLASS_SECS s" "${ckeys[@]}"
RSS=""
for s in $SERVERS; do SID=${SIDOF[$s]}; RSS+="$s $(rsskb) KiB  "; done
echo "RSS: $RSS"
