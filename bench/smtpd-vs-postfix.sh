#!/bin/bash
# bench/smtpd-vs-postfix.sh -- messages per second through `postroom smtpd`
# next to a private Postfix instance, both on loopback only.
#
# Owns: a temp dir with a throw-away Postfix instance (its own
# config_directory and queue_directory, smtpd on 127.0.0.1:PF_PORT, virtual
# Maildirs, no system users) and a temp copy of examples/etc-mail for
# `postroom smtpd` on 127.0.0.1:PR_PORT.  Never binds port 25, never touches
# /etc/postfix or the system's mail, never runs in CI.
#
# Both sides get the same load from Postfix's smtp-source: SESSIONS
# parallel sessions, MESSAGES messages of SIZE bytes, split evenly over
# USERS (one smtp-source per user, so the totals are those of
# `smtp-source -s 20 -m 5000 -l 10240`).  The rate is messages / (time from
# the first connection until every message is a file in a user's Maildir
# new/ directory).  Peak memory is the largest sum of RSS over the server's
# process tree (postfix master and children; postroom smtpd and its deliver
# children), sampled every SAMPLE seconds.  "SMTP done" is when the last
# smtp-source exited (every message answered 250), to split intake from
# delivery.
#
# Needs: Debian's postfix (for smtp-source and the instance):
#     DEBIAN_FRONTEND=noninteractive apt-get install -y postfix
# (with policy-rc.d denying starts, or `postfix stop` after the install, so
# the system instance does not hold port 25; this script does not need it.)
# Run as root (Postfix's master must start as root), from the worktree.
#
# Knobs (environment): SESSIONS=20 MESSAGES=5000 SIZE=10240 USERS="bob carol"
# PF_PORT=2526 PR_PORT=2527 TIMEOUT=900 (seconds per side) SAMPLE=0.2
# POSTROOM (default target/release/postroom, built if missing) KEEP=1 keeps
# the temp dir.  SIDES="postfix postroom" picks the sides to run.
set -euo pipefail

SESSIONS=${SESSIONS:-20}
MESSAGES=${MESSAGES:-5000}
SIZE=${SIZE:-10240}
USERS=${USERS:-bob carol}
PF_PORT=${PF_PORT:-2526}
PR_PORT=${PR_PORT:-2527}
TIMEOUT=${TIMEOUT:-900}
SAMPLE=${SAMPLE:-0.2}
SIDES=${SIDES:-postfix postroom}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
POSTROOM=${POSTROOM:-$ROOT/target/release/postroom}

die() { echo "smtpd-vs-postfix: $*" >&2; exit 1; }

for tool in smtp-source postfix postconf; do
    command -v "$tool" >/dev/null || die "$tool not found: install Debian's postfix with
    DEBIAN_FRONTEND=noninteractive apt-get install -y postfix
and make sure the system instance is stopped (postfix stop) -- this script runs its own on 127.0.0.1:$PF_PORT"
done
[ "$(id -u)" = 0 ] || die "run as root: the private postfix master must start as root"
if [ ! -x "$POSTROOM" ]; then
    (cd "$ROOT" && cargo build --release --bin postroom --bin deliver) || die "cargo build --release failed"
fi
[ -x "$(dirname "$POSTROOM")/deliver" ] || die "no deliver next to $POSTROOM: cargo build --release --bin deliver"

read -r -a users <<<"$USERS"
nusers=${#users[@]}
[ "$nusers" -ge 1 ] || die "USERS is empty"
(( SESSIONS % nusers == 0 && MESSAGES % nusers == 0 )) ||
    die "SESSIONS ($SESSIONS) and MESSAGES ($MESSAGES) must split evenly over $nusers users"
per_s=$((SESSIONS / nusers))
per_m=$((MESSAGES / nusers))

T=$(mktemp -d /tmp/smtpd-vs-postfix.XXXXXX)
chmod 755 "$T"
PF_CONF=$T/pf/etc
PF_PID=""
PR_PID=""
SRC_PIDS=()
cleanup() {
    local p
    for p in "${SRC_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "$PF_PID" ]; then postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true; fi
    if [ -n "$PR_PID" ]; then stop_pid "$PR_PID"; fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# stop_pid PID: SIGTERM, up to 30 s for it to exit, then SIGKILL.
stop_pid() {
    local i
    kill -TERM "$1" 2>/dev/null || return 0
    for ((i = 0; i < 300; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

# wait_port PORT: up to 20 s for a listener on PORT.
wait_port() {
    local i
    for ((i = 0; i < 200; i++)); do
        port_free "$1" || return 0
        sleep 0.1
    done
    return 1
}

# tree_mem PID: "RSS PSS" (KiB) summed over PID and all its descendants.
# The RSS sum counts shared pages (libraries, Postfix's shared code) once
# per process; PSS (/proc/PID/smaps_rollup) shares them out.
tree_mem() {
    local pids rss pss
    pids=$(ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
        { parent[$1] = $2; rss[$1] = $3 }
        END {
            for (p in parent) {
                q = p
                for (d = 0; d < 32 && q != "" && q != 0; d++) {
                    if (q == root) { sum += rss[p]; print p; break }
                    q = parent[q]
                }
            }
            print "rss", sum + 0
        }')
    rss=$(awk '$1 == "rss" { print $2 }' <<<"$pids")
    pss=$(for p in $(awk '$1 != "rss"' <<<"$pids"); do cat "/proc/$p/smaps_rollup" 2>/dev/null || true; done |
        awk '/^Pss:/ { s += $2 } END { print s + 0 }')
    echo "$rss $pss"
}

# count_new BASE SUB: files in every BASE/USER/SUB/new/ (Maildir deliveries).
count_new() {
    local n=0 u c d
    for u in "${users[@]}"; do
        d=$1/$u/$2/new
        if [ -d "$d" ]; then
            c=$(find "$d" -maxdepth 1 -type f | wc -l)
            n=$((n + c))
        fi
    done
    echo "$n"
}

# run_load NAME PORT SERVER_PID MAILBASE SUB: send the load, poll until every
# message sits in a Maildir, sample RSS; prints "secs rate peak_kib".
run_load() {
    local name=$1 port=$2 spid=$3 base=$4 sub=$5 u start now peak=0 peakp=0 rss pss n=0 deadline sent="" alive
    SRC_PIDS=()
    start=$(date +%s.%N)
    for u in "${users[@]}"; do
        smtp-source -s "$per_s" -m "$per_m" -l "$SIZE" -f bench@client.test \
            -t "$u@example.test" -M client.test "127.0.0.1:$port" \
            >"$T/$name-source-$u.log" 2>&1 &
        SRC_PIDS+=($!)
    done
    deadline=$(( $(date +%s) + TIMEOUT ))
    while :; do
        read -r rss pss < <(tree_mem "$spid")
        (( rss > peak )) && peak=$rss
        (( pss > peakp )) && peakp=$pss
        if [ -z "$sent" ]; then
            alive=0
            for u in "${SRC_PIDS[@]}"; do kill -0 "$u" 2>/dev/null && alive=1; done
            [ "$alive" = 0 ] && sent=$(date +%s.%N)
        fi
        n=$(count_new "$base" "$sub")
        [ "$n" -ge "$MESSAGES" ] && break
        if (( $(date +%s) > deadline )); then
            echo "$name: timeout after ${TIMEOUT}s with $n of $MESSAGES delivered" >&2
            for u in "${SRC_PIDS[@]}"; do kill "$u" 2>/dev/null || true; done
            break
        fi
        sleep "$SAMPLE"
    done
    now=$(date +%s.%N)
    for u in "${SRC_PIDS[@]}"; do
        wait "$u" || echo "$name: smtp-source exited $? (see $T/$name-source-*.log)" >&2
    done
    SRC_PIDS=()
    [ "$n" -ge "$MESSAGES" ] || return 1
    [ -n "$sent" ] || sent=$now
    awk -v a="$start" -v b="$now" -v m="$MESSAGES" -v p="$peak" -v q="$peakp" -v s="$sent" \
        'BEGIN { printf "%.2f %.1f %d %d %.2f\n", b - a, m / (b - a), p, q, s - a }'
}

# --- Postfix: a private instance -----------------------------------------
start_postfix() {
    port_free "$PF_PORT" || die "127.0.0.1:$PF_PORT is in use"
    mkdir -p "$PF_CONF" "$T/pf/queue" "$T/pf/data" "$T/pf/mail"
    cp /etc/postfix/master.cf "$PF_CONF/master.cf"
    local vuid vgid u
    vuid=$(id -u nobody)
    vgid=$(id -g nobody)
    chown "$vuid:$vgid" "$T/pf/mail"
    chown postfix "$T/pf/data"
    : >"$PF_CONF/vmailbox"
    for u in "${users[@]}"; do echo "$u@example.test $u/" >>"$PF_CONF/vmailbox"; done
    cat >"$PF_CONF/main.cf" <<EOF
# private benchmark instance: loopback only, never port 25
compatibility_level = 3.6
config_directory = $PF_CONF
queue_directory = $T/pf/queue
data_directory = $T/pf/data
myhostname = pf.example.test
mydomain = pf.example.test
myorigin = \$myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
maillog_file_prefixes = $T
maillog_file = $T/pf/maillog
virtual_mailbox_domains = example.test
virtual_mailbox_base = $T/pf/mail
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_uid_maps = static:$vuid
virtual_gid_maps = static:$vgid
virtual_minimum_uid = 1
EOF
    # No chroot (the queue is a temp dir), no smtpd on port 25: only
    # 127.0.0.1:$PF_PORT, no submission/smtps.
    postconf -c "$PF_CONF" -F '*/*/chroot = n'
    postconf -c "$PF_CONF" -MX smtp/inet submission/inet smtps/inet 2>/dev/null || true
    postconf -c "$PF_CONF" -M "127.0.0.1:$PF_PORT/inet = 127.0.0.1:$PF_PORT inet n - n - - smtpd"
    postfix -c "$PF_CONF" check >"$T/pf/check.log" 2>&1 || { cat "$T/pf/check.log" >&2; die "postfix check failed"; }
    postfix -c "$PF_CONF" start >"$T/pf/start.log" 2>&1 || { cat "$T/pf/start.log" >&2; die "postfix start failed"; }
    wait_port "$PF_PORT" || die "postfix did not listen on 127.0.0.1:$PF_PORT (see $T/pf/maillog)"
    local i
    for ((i = 0; i < 50; i++)); do
        PF_PID=$(head -1 "$T/pf/queue/pid/master.pid" 2>/dev/null | tr -d ' ' || true)
        [ -n "$PF_PID" ] && break
        sleep 0.1
    done
    [ -n "$PF_PID" ] || die "no postfix master pid"
}

# --- postroom: a temp copy of examples/etc-mail ---------------------------
start_postroom() {
    port_free "$PR_PORT" || die "127.0.0.1:$PR_PORT is in use"
    mkdir -p "$T/pr"
    cp -r "$ROOT/examples/etc-mail" "$T/pr/etc-mail"
    cp "$ROOT/examples/sendmail-stub" "$T/pr/sendmail-stub"
    # The homes' rcfiles reach $HOME/../../../state/mail/USER: under
    # $T/pr that is $T/pr/state/mail/USER, the conf's mail_root.
    sed -i -e "s/^listen *=.*/listen = 127.0.0.1:$PR_PORT/" \
        -e "s/^queue_interval *=.*/queue_interval = 1/" \
        -e "s/^max_sessions *=.*/max_sessions = $((SESSIONS + 5))/" \
        "$T/pr/etc-mail/postroom.conf"
    "$POSTROOM" check --config "$T/pr/etc-mail" >/dev/null || die "postroom check failed"
    "$POSTROOM" smtpd --config "$T/pr/etc-mail" 2>"$T/pr/smtpd.log" &
    PR_PID=$!
    wait_port "$PR_PORT" || die "postroom did not listen on 127.0.0.1:$PR_PORT (see $T/pr/smtpd.log)"
}

mib() { awk -v k="$1" 'BEGIN { print k / 1024 }'; }

# Where postroom's CPU went, read from /proc before it stops: the server
# process itself (sessions, spool, runner threads) and its children (the
# deliver zygotes: their own time, and in cutime/cstime the deliveries
# they forked and reaped).
cpu_split() {
    local pid=$1 hz self kids=0 forked=0 c
    hz=$(getconf CLK_TCK)
    self=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")
    for c in $(pgrep -P "$pid"); do
        read -r k f < <(awk '{ sub(/^.*\) /, ""); print $12 + $13, $14 + $15 }' "/proc/$c/stat")
        kids=$((kids + k)); forked=$((forked + f))
    done
    awk -v s="$self" -v k="$kids" -v f="$forked" -v hz="$hz" -v n="$MESSAGES" 'BEGIN {
        printf "postroom CPU: server %.2f s, zygotes %.2f s, deliveries %.2f s (%.2f ms per message in all)\n",
            s / hz, k / hz, f / hz, 1000 * (s + k + f) / hz / n }'
}

echo "load: $SESSIONS sessions, $MESSAGES messages of $SIZE bytes, users: $USERS"
pf_rate="" pr_rate=""
for side in $SIDES; do
    case $side in
    postfix)
        start_postfix
        read -r secs pf_rate pf_peak pf_pss sent < <(run_load postfix "$PF_PORT" "$PF_PID" "$T/pf/mail" .) ||
            die "postfix run failed"
        printf 'postfix  (%s): %6.2f s (SMTP done at %6.2f s)  %7.1f msg/s  peak RSS %6.1f MiB  PSS %6.1f MiB\n' \
            "$(postconf -h mail_version)" "$secs" "$sent" "$pf_rate" "$(mib "$pf_peak")" "$(mib "$pf_pss")"
        postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
        PF_PID=""
        ;;
    postroom)
        start_postroom
        read -r secs pr_rate pr_peak pr_pss sent < <(run_load postroom "$PR_PORT" "$PR_PID" "$T/pr/state/mail" inbox) ||
            die "postroom run failed"
        printf 'postroom (smtpd) : %6.2f s (SMTP done at %6.2f s)  %7.1f msg/s  peak RSS %6.1f MiB  PSS %6.1f MiB\n' \
            "$secs" "$sent" "$pr_rate" "$(mib "$pr_peak")" "$(mib "$pr_pss")"
        cpu_split "$PR_PID"
        stop_pid "$PR_PID"
        PR_PID=""
        ;;
    *) die "unknown side $side" ;;
    esac
done
if [ -n "$pf_rate" ] && [ -n "$pr_rate" ]; then
    awk -v a="$pr_rate" -v b="$pf_rate" -v c="$pr_peak" -v d="$pf_peak" -v e="$pr_pss" -v f="$pf_pss" \
        'BEGIN { printf "ratio postroom/postfix: rate %.2f, peak RSS %.2f, peak PSS %.2f\n", a / b, c / d, e / f }'
fi
