#!/usr/bin/env bash
# Longer fuzzing runs of every parser and decoder (tests/fuzz.rs: the object decryptor,
# format parsers, upload tokens, the XML rewriter, the KMS JSON API, KMS ciphertext blobs,
# key policies). Property-based (proptest) on stable Rust, so CI runs the same targets at a
# small case count on every build; this runs them for longer. Bounded: N cases per target.
#   ./scripts/fuzz.sh [CASES_PER_TARGET]        (default 5000)
# A failure prints the minimal failing input; proptest also records it under
# tests/fuzz.proptest-regressions so it is replayed first on every later run — commit it.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES="${1:-5000}"
export PATH="$HOME/.cargo/bin:$PATH"
start=$(date +%s)
SEALGATE_FUZZ_CASES="$CASES" cargo test --release --test fuzz -- --test-threads 2
echo "fuzz: $CASES cases per target, $(( $(date +%s) - start )) s"
