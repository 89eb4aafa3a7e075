#!/usr/bin/env bash
# bench/rss.sh -- peak resident memory of one large delivery.
#
# Owns: measuring, with `/usr/bin/time -f %M`, the peak RSS of one delivery
# (a) of a generated 100 MB message through bench/rss-mbox.rc into an mbox,
# (b) of a 32 MiB message routed by header conditions only
# (bench/rss-headers.rc) into a Maildir, (c) of the 100 MB message through a
# `:0 fw` + `| cat` filter (bench/rss-filter.rc), for procmail and for
# deliver, and the ratio of each peak to the message size.
# Never: installs anything (it says what is missing), or writes outside
# bench/.cache/rss/ (and target/ when it builds the default deliver).
#
# Environment: DELIVER (default target/release/deliver, built if missing),
# PROCMAIL (default /usr/bin/procmail), PYTHON (default python3).
# Try it without a deliver: DELIVER=/usr/bin/procmail bench/rss.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$(dirname "$here")"
die() { echo "rss: $*" >&2; exit 1; }

[ -x /usr/bin/time ] || die "/usr/bin/time is missing (Debian package \`time\`); nothing measured"
. "$here/common.sh"

cache=$here/.cache
mkdir -p "$cache"
# name size: 100 MB = 10^8 bytes, 32 MiB = 2^25 bytes.
for spec in "big-100MB.eml 100000000" "big-32MiB.eml 33554432"; do
    set -- $spec
    if [ "$(stat -c %s "$cache/$1" 2>/dev/null)" != "$2" ]; then
        echo "generating $cache/$1 ($2 bytes) ..."
        "$PY" "$here/gen_msgs.py" --big "$cache/$1" "$2"
    fi
done

# measure SIDE PROG MSG RC -> prints one table row
measure() {
    local side=$1 prog=$2 msg=$cache/$3 rc=$4 dir=$cache/rss/$1-${4%.rc}
    rm -rf "$dir"; mkdir -p "$dir"
    cp "$here/$rc" "$dir/$rc"
    local code=0
    (cd "$dir" && /usr/bin/time -f %M -o "$dir/peak-kb" "$prog" -m "./$rc" < "$msg") || code=$?
    local kb size
    kb=$(tail -1 "$dir/peak-kb")
    size=$(stat -c %s "$msg")
    local where
    where=$(cd "$dir" && find . -type f ! -name "$rc" ! -name peak-kb ! -name procmail.log \
        ! -name '*.lock' -size +1M | sed 's|^\./||' | head -1)
    # Nothing big written (e.g. /dev/null): the folder the log abstract names.
    [ -n "$where" ] || where=$(sed -n 's/^  Folder: \([^[:space:]]*\).*/\1/p' "$dir/procmail.log" 2>/dev/null | tail -1)
    awk -v s="$side" -v m="$3" -v r="${4%.rc}" -v kb="$kb" -v size="$size" -v c="$code" -v w="${where:-nothing}" \
        'BEGIN { printf "%-9s %-15s %-12s %10.1f MiB %9.2f x   exit %-3s -> %s\n",
                 s, m, r, kb / 1024, kb * 1024 / size, c, w }'
}

echo "peak RSS (/usr/bin/time -f %M) of one delivery; ratio = peak RSS / message size"
printf '%-9s %-15s %-12s %14s %11s\n' side message rcfile "peak RSS" ratio
for side in procmail deliver; do
    prog=$PROCMAIL; [ "$side" = procmail ] || prog=$DELIVER
    measure "$side" "$prog" big-100MB.eml rss-mbox.rc
    measure "$side" "$prog" big-32MiB.eml rss-headers.rc
    measure "$side" "$prog" big-100MB.eml rss-filter.rc
done
