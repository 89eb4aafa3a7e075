#!/usr/bin/env bash
# bench/deliver-vs-procmail.sh -- time `deliver` against the real procmail.
#
# Owns: the end-to-end delivery benchmark.  The same N messages (default
# 2,000, 1 KB-200 KB, generated from a fixed seed by gen_msgs.py into
# bench/.cache/) go through the same 50-recipe rcfile (bench/procmailrc),
# one process per message as an MTA runs it (driver.py: a python loop, the
# same spawn cost for both sides).  Pass 1 delivers into fresh folders,
# pass 2 into the folders pass 1 left.  Prints each side's time per pass and
# the ratio deliver/procmail, and the same for `floor` (bench/floor.c, built
# with gcc: read the message, append it to one mbox, fsync -- the least any
# one-exec-per-message agent does), then checks with strace which fsync calls each
# side makes, and compares the folders both sides wrote.
# Never: touches anything outside bench/.cache/ (and target/ when it builds
# the default deliver), or runs as part of `cargo test`.
#
# Environment:
#   DELIVER   deliver binary (default target/release/deliver, built with
#             `cargo build --release --bin deliver` if missing)
#   PROCMAIL  reference binary (default /usr/bin/procmail)
#   N, SEED   corpus size and seed (default 2000, 20261126)
#   PYTHON    python 3 interpreter (default: first python3 on PATH)
#
# Try it without a deliver: DELIVER=/usr/bin/procmail bench/deliver-vs-procmail.sh
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cd "$root"

die() { echo "deliver-vs-procmail: $*" >&2; exit 1; }

N=${N:-2000}
SEED=${SEED:-20261126}
. "$here/common.sh"

cache=$here/.cache
msgs=$cache/msgs-$SEED-$N
stamp=$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$here/gen_msgs.py")
if [ "$(cat "$msgs/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$msgs"
    "$PY" "$here/gen_msgs.py" "$msgs" "$N" "$SEED"
    echo "$stamp" > "$msgs/.stamp"
fi
recipes=$(grep -c '^[[:space:]]*:0' "$here/procmailrc")
corpus=$("$PY" - "$msgs" <<'EOF'
import os, sys
d = sys.argv[1]
s = [os.path.getsize(os.path.join(d, n)) for n in os.listdir(d) if n.endswith(".eml")]
print("%d messages, %.1f MB, %.1f-%.1f KB" % (len(s), sum(s) / 1e6, min(s) / 1024, max(s) / 1024))
EOF
)

# field LINE KEY -> the value of KEY=... in a driver output line.
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

echo "corpus:   $corpus ($msgs)"
echo "rcfile:   bench/procmailrc ($recipes recipes), one process per message"
echo "procmail: $PROCMAIL"
echo "deliver:  $DELIVER"

floor=$cache/floor
if command -v gcc >/dev/null; then
    gcc -O2 -static -o "$floor" "$here/floor.c" 2>/dev/null || gcc -O2 -o "$floor" "$here/floor.c"
else
    die "gcc is needed to build bench/floor.c (Debian package gcc)"
fi
for side in procmail deliver zygote floor; do
    rm -rf "$cache/run/$side"
    mkdir -p "$cache/run/$side"
    cp "$here/procmailrc" "$cache/run/$side/procmailrc"
done
mkdir -p "$cache/run/baseline"
base=$("$PY" "$here/driver.py" "$msgs" --side true /bin/true "$cache/run/baseline")
echo "spawn baseline: the same loop running /bin/true takes $(field "$base" seconds) s"
echo "(the sides are interleaved message by message; wall = spawn to reap, cpu = user+sys)"
echo "(zygote: the same deliver forked per message from a warm process, as postroom's queue"
echo " runner runs it -- not one exec per message; shown against procmail's one exec each)"
echo
printf '%-24s %12s %12s %18s\n' pass procmail deliver deliver/procmail
notes=()
for pass in "1 fresh folders" "2 existing folders"; do
    sync
    out=$("$PY" "$here/driver.py" "$msgs" --side procmail "$PROCMAIL" "$cache/run/procmail" \
        --side deliver "$DELIVER" "$cache/run/deliver" \
        --zygote zygote "$DELIVER" "$cache/run/zygote" --side floor "$floor" "$cache/run/floor")
    lp=$(grep '^side=procmail ' <<<"$out"); ld=$(grep '^side=deliver ' <<<"$out")
    lz=$(grep '^side=zygote ' <<<"$out"); lf=$(grep '^side=floor ' <<<"$out")
    for l in "$lp" "$ld" "$lz" "$lf"; do
        if [ "$(field "$l" failed)" != 0 ]; then
            notes+=("pass ${pass%% *}: $(field "$l" side): $(field "$l" failed) of $N deliveries exited non-zero (first: $(field "$l" first_failure))")
        fi
    done
    awk -v name="$pass" -v pw="$(field "$lp" seconds)" -v dw="$(field "$ld" seconds)" \
        -v pc="$(field "$lp" cpu)" -v dc="$(field "$ld" cpu)" -v n="$N" 'BEGIN {
        printf "%-24s %10.3f s %10.3f s %18.2f\n", name " (wall)", pw, dw, dw / pw
        printf "%-24s %10.3f s %10.3f s %18.2f\n", "  cpu (user+sys)", pc, dc, (pc > 0 ? dc / pc : 0)
        printf "%-24s %9.2f ms %9.2f ms\n", "  wall per message", 1000 * pw / n, 1000 * dw / n }'
    awk -v pw="$(field "$lp" seconds)" -v zw="$(field "$lz" seconds)" \
        -v pc="$(field "$lp" cpu)" -v zc="$(field "$lz" cpu)" 'BEGIN {
        printf "%-24s %10.3f s %10.3f s %18.2f\n", "  zygote (wall)", pw, zw, zw / pw
        printf "%-24s %10.3f s %10.3f s %18.2f\n", "  zygote cpu", pc, zc, (pc > 0 ? zc / pc : 0) }'
    awk -v pw="$(field "$lp" seconds)" -v fw="$(field "$lf" seconds)" \
        -v pc="$(field "$lp" cpu)" -v fc="$(field "$lf" cpu)" 'BEGIN {
        printf "%-24s %10.3f s %10.3f s %18.2f\n", "  floor (wall)", pw, fw, fw / pw
        printf "%-24s %10.3f s %10.3f s %18.2f\n", "  floor cpu", pc, fc, (pc > 0 ? fc / pc : 0) }'
    if [ "${pass%% *}" = 1 ]; then
        # shellcheck disable=SC2012
        nmbox=$(ls "$cache/run/procmail" | grep -c '\.mbox$' || true)
    fi
done
echo "floor: bench/floor.c, one exec per message that only reads it, appends it to one"
echo "  mbox under fcntl and fsyncs: no rcfile, no recipes -- a lower bound for any agent"
echo "pass 1 includes procmail's 1 s sleep on the first write into each new mbox"
echo "  (mtime == atime, spec 10.3; checked with strace): $nmbox mbox files -> about $nmbox s"
for n in "${notes[@]+"${notes[@]}"}"; do echo "WARNING: $n (timings not comparable)"; done

# Do both sides write the same folders?  Counts per folder (Maildir new/
# entries, MH/directory entries, mbox bytes); names and logs differ anyway.
echo
for other in deliver zygote; do
"$PY" - "$cache/run/procmail" "$cache/run/$other" <<'EOF'
import os, sys
def summary(d):
    out = {}
    for n in sorted(os.listdir(d)):
        p = os.path.join(d, n)
        if n in ("procmailrc", "procmail.log", "driver-stderr.log"):
            continue
        if os.path.isdir(os.path.join(p, "new")):
            out[n + "/"] = "%d msgs" % len(os.listdir(os.path.join(p, "new")))
        elif os.path.isdir(p):
            out[n + "/."] = "%d msgs" % len([e for e in os.listdir(p) if e.isdigit()])
        else:
            out[n] = "%d bytes" % os.path.getsize(p)
    return out
a, b = summary(sys.argv[1]), summary(sys.argv[2])
diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
if not diff:
    print("folders: procmail and %s wrote the same %d folders with the same counts/sizes"
          % (os.path.basename(sys.argv[2]), len(a)))
else:
    print("folders: %d of %d differ (procmail vs %s):"
          % (len(diff), len(set(a) | set(b)), os.path.basename(sys.argv[2])))
    for k in diff[:12]:
        print("  %-28s %-14s %s" % (k, a.get(k, "missing"), b.get(k, "missing")))
EOF
done

# Durability: which fsync-type calls does each side make?  Traced on the
# first 40 messages delivered into fresh folders (strace -f -y names the
# file behind each descriptor).
echo
if ! command -v strace >/dev/null; then
    echo "fsync check: strace is not installed (Debian package strace); skipped"
    exit 0
fi
trace_side() {
    local side=$1 prog=$2 dir=$cache/fsync/$side
    rm -rf "$dir"; mkdir -p "$dir/msgs"
    cp "$here/procmailrc" "$dir/procmailrc"
    # The first 40 by name (a glob sorts; `ls | head` would die of SIGPIPE
    # under pipefail and end the script here).
    local m n=0
    for m in "$msgs"/*.eml; do
        [ "$n" -lt 40 ] || break
        ln -s "$m" "$dir/msgs/$(basename "$m")"
        n=$((n + 1))
    done
    strace -f -y -qq -o "$dir/strace.out" -e trace=fsync,fdatasync,sync_file_range,syncfs,sync,msync \
        "$PY" "$here/driver.py" "$dir/msgs" --side "$side" "$prog" "$dir" >/dev/null
    "$PY" - "$dir/strace.out" "$side" "$dir" <<'EOF'
import os, re, sys
calls, files, dirs, kinds = 0, 0, 0, {}
for line in open(sys.argv[1]):
    m = re.search(r"\b(fsync|fdatasync|sync_file_range|syncfs|sync|msync)\((\d+<([^>]*)>)?", line)
    if not m or "= -1" in line:
        continue
    calls += 1
    path = m.group(3) or ""
    if path and os.path.isdir(path):
        dirs += 1
        kind = "directory"
    else:
        files += 1
        rel = "/" + os.path.relpath(path, sys.argv[3])
        kind = ("maildir" if "/tmp/" in rel or "/new/" in rel else
                "mbox" if rel.endswith(".mbox") else
                "mh" if os.path.basename(rel).isdigit() else "other file")
    kinds[kind] = kinds.get(kind, 0) + 1
detail = ", ".join("%s %d" % kv for kv in sorted(kinds.items())) or "none"
print("fsync check, %-8s 40 deliveries: %d sync calls: %d on files, %d on directories (%s)"
      % (sys.argv[2] + ":", calls, files, dirs, detail))
EOF
}
trace_side procmail "$PROCMAIL"
trace_side deliver "$DELIVER"
echo "note: procmail (Debian 3.23pre, checked with strace) fsyncs every file it writes -- mbox,"
echo "      the Maildir tmp/ file, MH and directory messages -- before closing it, but never"
echo "      fsyncs a directory, so the link() of a Maildir/MH message into its folder is not"
echo "      itself made durable.  /dev/null and pipe deliveries sync nothing."
