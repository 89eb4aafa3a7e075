#!/usr/bin/env bash
# examples/run-deliver.sh -- run the example messages through the example
# rcfile and show where each one landed.
#
# Owns: a fresh examples/state/ (git-ignored) used as MAILDIR, one
# delivery per examples/msgs/*.eml in name order, as
#     PROG -m MAILDIR=examples/state SENDMAIL=examples/sendmail-stub \
#         examples/procmailrc < msg
# (absolute paths), then a listing of what each delivery wrote, the
# outbox of the sendmail stub and the log.
# Never: needs root, or reads or writes system files (no /var/mail, no
# real sendmail); everything it writes is under examples/state/.
#
# PROG = ${DELIVER:-target/debug/deliver}; try DELIVER=/usr/bin/procmail.
set -euo pipefail

ex=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$ex")
if [ -z "${DELIVER:-}" ]; then
    (cd "$root" && cargo build --quiet --bin deliver)
fi
PROG=${DELIVER:-$root/target/debug/deliver}
case $PROG in /*) ;; *) PROG=$(cd "$(dirname "$PROG")" && pwd)/$(basename "$PROG") ;; esac
if [ ! -x "$PROG" ]; then
    echo "run-deliver: no binary at $PROG (cargo build --bin deliver, or DELIVER=/usr/bin/procmail)" >&2
    exit 1
fi
command -v formail >/dev/null || echo "run-deliver: formail is not installed (Debian package procmail): the vacation reply will fail" >&2

state=$ex/state
rm -rf "$state"
mkdir -p "$state/outbox"

# Files under state/ that hold mail (not the log or the cache), each with
# its size: a delivery shows up as a new line or a changed size (mbox).
mail_files() {
    (cd "$state" && find . -type f ! -name procmail.log ! -name vacation.cache -printf '%P %s\n' | sort)
}

echo "$(basename "$PROG") -m MAILDIR=examples/state SENDMAIL=examples/sendmail-stub examples/procmailrc"
status=0
for msg in "$ex"/msgs/*.eml; do
    before=$(mail_files)
    code=0
    "$PROG" -m MAILDIR="$state" SENDMAIL="$ex/sendmail-stub" "$ex/procmailrc" < "$msg" || code=$?
    [ "$code" = 0 ] || status=1
    landed=$(comm -13 <(echo "$before") <(mail_files) | cut -d' ' -f1 | tr '\n' ' ')
    printf '%-30s exit %-3s -> %s\n' "$(basename "$msg")" "$code" "${landed:-(nothing written)}"
done
echo
echo "state folder (examples/state):"
(cd "$state" && find . -type f | sed 's|^\./||' | sort | while read -r f; do
    printf '  %-58s %6s bytes\n' "$f" "$(stat -c %s "$f")"
done)
for f in "$state"/outbox/*.eml; do
    [ -e "$f" ] || continue
    echo
    echo "outbox/$(basename "$f"): $(head -1 "$f")"
    grep -m3 -E '^(To|Subject|X-Loop):' "$f" | sed 's/^/  /'
done
exit $status
