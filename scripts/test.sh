#!/usr/bin/env bash
# Runs the whole test suite: set-up (idempotent), then unit and integration tests
# against a real Garage and real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
export SEALGATE_TEST_AWS_CLI="$PWD/.venv/bin/aws"
cargo test --all-targets "$@"
# The KMS suites again with every KMS in PostgreSQL (kms.store = "postgres"), and the S3
# front's suites that keep state in the KMS (bucket default encryption).
SEALGATE_TEST_KMS_STORE=postgres cargo test "$@" \
  --test kms_api --test kms_access --test kms_audit --test kms_cli --test kms_import \
  --test kms_keytypes --test kms_modern_specs --test kms_multi_region --test bucket_rules
