#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: installs missing system packages, checks
# formatting and lints, builds every binary (the cluster tests drive real processes), then runs
# every unit, integration, crash and chaos test. `.ci/run` calls exactly this.
# Long chaos/soak modes: CHAOS_LONG=1 bash deploy/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins
cargo test --workspace
