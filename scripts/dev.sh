#!/usr/bin/env bash
# Brings up a local Garage store and sealgate in front of it, and prints how to point
# aws-cli at sealgate. Ctrl-C stops both. State lives in .sealgate-dev/ (delete it to start over).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
DEV="$PWD/.sealgate-dev"
mkdir -p "$DEV"
S3_PORT=${GARAGE_PORT:-3900}
RPC_PORT=$((S3_PORT + 1))
SG_PORT=${SEALGATE_PORT:-8014}
[ -f "$DEV/rpc_secret" ] || python3 -c "import secrets; print(secrets.token_hex(32))" > "$DEV/rpc_secret"
[ -f "$DEV/garage_secret" ] || python3 -c "import secrets; print(secrets.token_hex(32))" > "$DEV/garage_secret"
[ -f "$DEV/client_secret" ] || python3 -c "import secrets; print(secrets.token_hex(20))" > "$DEV/client_secret"
[ -f "$DEV/kms-root.key" ] || (umask 077; python3 -c "import secrets; print(secrets.token_hex(32))" > "$DEV/kms-root.key")
umask 077
cat > "$DEV/garage.toml" <<TOML
metadata_dir = "$DEV/garage/meta"
data_dir = "$DEV/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(cat "$DEV/rpc_secret")"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
TOML
cat > "$DEV/sealgate.toml" <<TOML
listen = "127.0.0.1:$SG_PORT"
[upstream]
endpoint = "http://127.0.0.1:$S3_PORT"
region = "garage"
access_key_id = "GKsealgatedev0001"
secret_access_key_file = "$DEV/garage_secret"
[[access_keys]]
access_key_id = "AKIDSEALGATEDEV"
secret_access_key_file = "$DEV/client_secret"
principal = "dev"
root = true
[kms]
db_path = "$DEV/kms.redb"
root_key_file = "$DEV/kms-root.key"
TOML
cargo build --release --quiet
GARAGE_DEFAULT_ACCESS_KEY=GKsealgatedev0001 GARAGE_DEFAULT_SECRET_KEY="$(cat "$DEV/garage_secret")" \
  GARAGE_DEFAULT_BUCKET=demo RUST_LOG=warn \
  garage -c "$DEV/garage.toml" server --single-node --default-bucket > "$DEV/garage.log" 2>&1 &
GARAGE_PID=$!
trap 'kill $GARAGE_PID 2>/dev/null; wait $GARAGE_PID 2>/dev/null' EXIT
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$S3_PORT) 2>/dev/null && break
  sleep 0.1
done
cat <<MSG

sealgate is starting on http://127.0.0.1:$SG_PORT (store: Garage on 127.0.0.1:$S3_PORT, bucket "demo").
Point aws-cli at it from another shell:

  export AWS_ACCESS_KEY_ID=AKIDSEALGATEDEV
  export AWS_SECRET_ACCESS_KEY=$(cat "$DEV/client_secret")
  export AWS_DEFAULT_REGION=us-east-1
  $PWD/.venv/bin/aws --endpoint-url http://127.0.0.1:$SG_PORT s3 ls s3://demo/

Ctrl-C stops sealgate and Garage.
MSG
./target/release/sealgate serve --config "$DEV/sealgate.toml"
