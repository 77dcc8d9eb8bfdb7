#!/usr/bin/env bash
# Runs the whole test suite: set-up (idempotent), then unit and integration tests
# against a real Garage and real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export SEALGATE_TEST_AWS_CLI="$PWD/.venv/bin/aws"
cargo test --all-targets "$@"
