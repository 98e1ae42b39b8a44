#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs missing system packages, checks
# formatting and lints, builds every binary (the cluster tests drive real processes), then runs
# every unit, integration, crash and chaos test. `.ci/run` calls exactly this.
# Long chaos/soak modes: CHAOS_LONG=1 bash deploy/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
export CARGO_TERM_COLOR=never
# A clean CI build gains nothing from incremental state, which doubled target/'s size on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Disk is shared and has run out during a run before: say how much there was, at start and end.
df -h . /tmp | sed 's/^/disk: /'
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
# The deliberately broken node the checkers' self-tests run (chaos-tests/tests/seeded_bugs.rs);
# its own binary name, so target/debug/zsnode stays the clean one.
cargo clippy -p node --features seeded-bugs --all-targets -- -D warnings
cargo build -p node --features seeded-bugs --bin zsnode-seeded

log=$(mktemp)
trap 'rm -f "$log"' EXIT
reports="${CARGO_TARGET_DIR:-target}/chaos-reports"
rm -f "$reports/summary.txt"
set +e
# --no-fail-fast: one failing test binary must not hide the verdict of the others.
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# The chaos runs' figures (their test output is captured): one line per run and a total.
if [ -f "$reports/summary.txt" ]; then cat "$reports/summary.txt"; fi
# One closing line for the whole run (cargo prints one per test binary, the last being doc tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "summary: %d passed, %d failed\n", p, f }' "$log"
df -h "${CARGO_TARGET_DIR:-target}" /tmp | sed 's/^/disk: /'
du -sh "${CARGO_TARGET_DIR:-target}" | sed 's/^/disk: target /'
exit "$status"
