#!/usr/bin/env bash
# Benchmark: mail access, applayer vs Dovecot (issue 13). Both servers run
# as this script's own processes on loopback, with the same user and the
# same messages (put there by the same client over IMAP APPEND), and the
# same client (bench/mailaccess) measures, interleaved A B A B ...:
#   IMAP APPEND of 1,000 messages (a fresh mailbox each round),
#   IMAP FETCH of 1,000 full messages (BODY.PEEK[]) and of their envelopes,
#   IMAP SEARCH TEXT over 10,000 messages,
#   POP3 RETR of 2,000 messages (kept).
# Messages are ~3.3 KB of text. Server CPU is the time on a CPU of the
# server's processes (Dovecot: the master and its live children, to the
# ns, plus its reaped children in clock ticks), read from /proc before and
# after each operation: the client logs
# in and selects first, says so, and waits, so logins (bcrypt here, a
# plain password for Dovecot) are not counted, neither in time nor CPU.
#
# Usage: bench/mail-access.sh [rounds]   (default 3)
# APPLAYER=PATH runs that binary instead of one built from this tree (an
# older revision's, for a before/after comparison).
set -euo pipefail
ROUNDS=${1:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/bench-mail-access.XXXXXX)
chmod 755 "$WORK"
export GOTOOLCHAIN=auto
APID= DPID=
cleanup() {
	[ -n "$APID" ] && kill -TERM "$APID" 2>/dev/null || true
	[ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null || true
	wait 2>/dev/null || true
	sleep 1
	rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
for c in dovecot go; do
	command -v $c >/dev/null || { echo "missing: $c (apt-get install dovecot-imapd dovecot-pop3d)" >&2; exit 1; }
done
[ -x /usr/lib/dovecot/pop3 ] || { echo "missing: dovecot-pop3d" >&2; exit 1; }

echo "building..." >&2
if [ -n "${APPLAYER:-}" ]; then
	cp "$APPLAYER" "$WORK/applayer"
else
	(cd "$HERE" && go build -o "$WORK/applayer" ./cmd/applayer)
fi
(cd "$HERE" && go build -o "$WORK/client" ./bench/mailaccess)

# applayer
A_IMAP=127.0.0.1:21143 A_POP3=127.0.0.1:21110
"$WORK/applayer" mail users add --db "$WORK/a.db" bob@hamburger.edu --password s3cret >/dev/null
"$WORK/applayer" mail serve --domain hamburger.edu --db "$WORK/a.db" --spool "$WORK/spool" --listen 127.0.0.1:21025 \
	--imap $A_IMAP --pop3 $A_POP3 --insecure-auth-loopback --no-tls --log-level warn >"$WORK/applayer.log" 2>&1 &
APID=$!

# Dovecot, with its own config, a passwd-file and a maildir owned by "mail".
D_IMAP=127.0.0.1:22143 D_POP3=127.0.0.1:22110
mkdir -p "$WORK/dovecot/run" "$WORK/dovecot/state" "$WORK/dovecot/mail"
chown -R mail:mail "$WORK/dovecot/mail"
echo "bob@hamburger.edu:{PLAIN}s3cret" >"$WORK/dovecot/passwd"
cat >"$WORK/dovecot/dovecot.conf" <<CONF
base_dir = $WORK/dovecot/run
state_dir = $WORK/dovecot/state
log_path = $WORK/dovecot/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 8
mail_location = maildir:$WORK/dovecot/mail
mail_uid = mail
mail_gid = mail
passdb {
  driver = passwd-file
  args = $WORK/dovecot/passwd
}
userdb {
  driver = static
  args = uid=mail gid=mail home=$WORK/dovecot/mail
}
service imap-login {
  inet_listener imap {
    port = ${D_IMAP##*:}
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = ${D_POP3##*:}
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
CONF
dovecot -F -c "$WORK/dovecot/dovecot.conf" &
DPID=$!
sleep 2

# CPU seconds of a process and its children: the live ones' threads to
# the nanosecond (/proc/PID/task/*/schedstat, time on a CPU), plus what
# reaped children used (cutime+cstime, in clock ticks). A FETCH of 1,000
# messages takes a few ms of CPU, under /proc/PID/stat's 10 ms tick.
cpu() {
	python3 - "$1" <<'PY'
import os, sys
hz = os.sysconf("SC_CLK_TCK")
root = int(sys.argv[1])
def stat(p):
    with open(f"/proc/{p}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return int(rest[1]), int(rest[13]) + int(rest[14])
def oncpu(p):
    ns = 0
    for t in os.listdir(f"/proc/{p}/task"):
        try:
            with open(f"/proc/{p}/task/{t}/schedstat") as f:
                ns += int(f.read().split()[0])
        except OSError:
            pass
    return ns / 1e9
total = 0.0
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        ppid, reaped = stat(int(d))
        if int(d) == root:
            total += oncpu(d) + reaped / hz
            continue
        # live descendants
        p, seen = ppid, 0
        while p > 1 and seen < 20:
            if p == root:
                total += oncpu(d)
                break
            p = stat(p)[0]
            seen += 1
    except OSError:
        continue
print(total)
PY
}

client() { "$WORK/client" "$@"; }

echo "filling both servers (1,000 + 10,000 + 2,000 messages each)..." >&2
for s in A D; do
	if [ $s = A ]; then IM=$A_IMAP; else IM=$D_IMAP; fi
	for f in "bench1k 1000" "bench10k 10000 97" "INBOX 2000"; do
		client -imap $IM fill $f >/dev/null || { echo "fill $f on $s failed; logs:" >&2; tail -5 "$WORK/applayer.log" "$WORK/dovecot/dovecot.log" >&2; exit 1; }
	done
done

OUT="$WORK/results.txt"
: >"$OUT"
for r in $(seq 1 "$ROUNDS"); do
	for op in append fetch-full fetch-env search retr; do
		for s in A D; do
			if [ $s = A ]; then IM=$A_IMAP PO=$A_POP3 P=$APID N=applayer; else IM=$D_IMAP PO=$D_POP3 P=$DPID N=dovecot; fi
			case $op in
			append) args=(-imap $IM append "round$r" 1000) ;;
			fetch-full) args=(-imap $IM fetch-full bench1k) ;;
			fetch-env) args=(-imap $IM fetch-env bench1k) ;;
			search) args=(-imap $IM search bench10k xylophone) ;;
			retr) args=(-pop3 $PO retr 2000) ;;
			esac
			# The client logs in, says ready, and waits: the CPU is read
			# around the operation alone (logins hash differently).
			coproc CL { "$WORK/client" -sync "${args[@]}" 2>/dev/null; }
			read -r _ <&"${CL[0]}"
			c0=$(cpu $P)
			echo go >&"${CL[1]}"
			read -r line <&"${CL[0]}"
			c1=$(cpu $P)
			echo done >&"${CL[1]}"
			wait "$CL_PID" || true
			echo "$N $line $(python3 -c "print(round($c1-$c0,5))")" | tee -a "$OUT" >&2
		done
	done
done

echo
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)   rounds: $ROUNDS   $(date -u '+%Y-%m-%d %H:%M UTC')"
python3 - "$OUT" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, op, n, secs, cpu = line.split()
    rows.setdefault((op, name), []).append((int(n) / float(secs), int(n) / max(float(cpu), 1e-5)))
print(f"{'operation':<12} {'applayer msg/s':>15} {'dovecot msg/s':>14} {'ratio':>6} {'applayer msg/CPU-s':>19} {'dovecot msg/CPU-s':>18} {'ratio':>6}")
for op in ["append", "fetch-full", "fetch-env", "search", "retr"]:
    a, d = rows.get((op, "applayer")), rows.get((op, "dovecot"))
    if not a or not d:
        continue
    am, dm = statistics.median(x[0] for x in a), statistics.median(x[0] for x in d)
    ac, dc = statistics.median(x[1] for x in a), statistics.median(x[1] for x in d)
    print(f"{op:<12} {am:>15.0f} {dm:>14.0f} {am/dm:>6.2f} {ac:>19.0f} {dc:>18.0f} {ac/dc:>6.2f}")
PY
