#!/usr/bin/env bash
# bench/profile.sh -- where does one delivery spend its time?
#
# Owns: profiling a single `PROG -m ./procmailrc < MSG` with the benchmark's
# rcfile, into folders that already exist (one warm-up delivery first).
# Uses `perf stat` when the machine has hardware counters (`perf stat -e
# instructions true` tells; in a VM it often has not), else valgrind's
# callgrind, whose instruction counts per function are the breakdown.
# Never: writes outside bench/.cache/profile/.
#
# Usage: bench/profile.sh [MSG]
#   PROG      binary to profile (default $DELIVER, else target/release/deliver)
#   TOOL      force `perf` or `callgrind`
#   MSG       a message file (default: message 0007 of the benchmark corpus)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
die() { echo "profile: $*" >&2; exit 1; }

PROG=${PROG:-${DELIVER:-target/release/deliver}}
[ -x "$PROG" ] || die "no binary at $PROG (build it: cargo build --release --bin deliver, or set PROG=/usr/bin/procmail)"
PROG=$(cd "$(dirname "$PROG")" && pwd)/$(basename "$PROG")

msg=${1:-}
if [ -z "$msg" ]; then
    small=$here/.cache/msgs-profile
    [ -f "$small/0007.eml" ] || "${PYTHON:-python3}" "$here/gen_msgs.py" "$small" 8 20261126 >/dev/null
    msg=$small/0007.eml
fi
[ -r "$msg" ] || die "cannot read message $msg"
msg=$(cd "$(dirname "$msg")" && pwd)/$(basename "$msg")

work=$here/.cache/profile
rm -rf "$work"; mkdir -p "$work"
cp "$here/procmailrc" "$work/procmailrc"
if [ -u "$PROG" ] || [ -g "$PROG" ]; then
    # Neither valgrind nor perf follows a set-id exec (Debian's procmail is
    # setuid root); a plain copy behaves the same for -m when run as root.
    cp "$PROG" "$work/$(basename "$PROG").copy"
    echo "profile: $PROG is set-id; profiling a plain copy $work/$(basename "$PROG").copy"
    PROG=$work/$(basename "$PROG").copy
fi
cd "$work"
"$PROG" -m ./procmailrc < "$msg" || echo "profile: warm-up delivery exited $?"

tool=${TOOL:-}
if [ -z "$tool" ]; then
    if command -v perf >/dev/null && perf stat -x, -e instructions true 2>&1 | grep -q '^[0-9]'; then
        tool=perf
    elif command -v valgrind >/dev/null; then
        tool=callgrind
    else
        die "neither perf with hardware counters nor valgrind is available"
    fi
fi
echo "profile: $PROG -m ./procmailrc < $msg ($(wc -c < "$msg") bytes), tool $tool"
case $tool in
perf)
    perf stat -e task-clock,instructions,cycles,page-faults,context-switches \
        -- "$PROG" -m ./procmailrc < "$msg"
    echo "breakdown: perf record -g -- $PROG -m ./procmailrc < MSG; perf report"
    ;;
callgrind)
    if command -v perf >/dev/null; then  # software counters still work in a VM
        perf stat -e task-clock,page-faults,context-switches -- "$PROG" -m ./procmailrc < "$msg" 2>&1 |
            grep -E 'task-clock|page-faults|context-switches|elapsed'
    fi
    out=$work/callgrind.out
    valgrind --tool=callgrind --callgrind-out-file="$out" -q "$PROG" -m ./procmailrc < "$msg"
    callgrind_annotate "$out" 2>/dev/null | sed -n '/Ir/,$p' | head -25
    echo "breakdown: callgrind_annotate --inclusive=yes $out | less   (or kcachegrind $out)"
    ;;
*) die "unknown TOOL $tool (perf or callgrind)" ;;
esac
