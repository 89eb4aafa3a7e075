# bench/common.sh -- sourced by the benchmark scripts: finds python3, the
# procmail binary and the deliver binary (building a release deliver when
# DELIVER is not given), and makes both paths absolute. Expects `die`.

PY=${PYTHON:-$(command -v python3 || true)}
[ -n "$PY" ] || die "python3 not found on PATH (set PYTHON)"
PROCMAIL=${PROCMAIL:-/usr/bin/procmail}
if [ -z "${DELIVER:-}" ]; then
    DELIVER=target/release/deliver
    if [ ! -x "$DELIVER" ]; then
        echo "building $DELIVER (cargo build --release --bin deliver) ..."
        cargo build --release --bin deliver
    fi
fi
[ -x "$PROCMAIL" ] || die "procmail binary not found: $PROCMAIL"
[ -x "$DELIVER" ] || die "deliver binary not found: $DELIVER"
PROCMAIL=$(cd "$(dirname "$PROCMAIL")" && pwd)/$(basename "$PROCMAIL")
DELIVER=$(cd "$(dirname "$DELIVER")" && pwd)/$(basename "$DELIVER")
