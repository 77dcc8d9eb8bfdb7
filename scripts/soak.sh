#!/usr/bin/env bash
# Bounded soak test: N clients doing mixed, verified S3 operations through a sealgate
# process against a real Garage on loopback for M minutes; fails on any error, any
# content mismatch or growing RSS. Usage: scripts/soak.sh [MINUTES=3] [CLIENTS=8]
# (SOAK_PROFILE=release for an optimised build; the default reuses the dev build).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
exec cargo bench --profile "${SOAK_PROFILE:-dev}" --bench soak -- --minutes "${1:-3}" --clients "${2:-8}"
