#!/usr/bin/env bash
# KMS API throughput over HTTP: starts a release sealgate (its KMS needs no store), signs
# one GenerateDataKey and one Decrypt request with botocore, and replays each with wrk
# (2 threads, 32 connections, 10 s) so the client's cost stays out of the figure.
# Needs: ./scripts/setup.sh (venv), wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet --bin sealgate
DIR=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
PORT=${PORT:-18714}
AK=AKIDKMSBENCH; SK=kms-bench-secret-key
python3 -c "import secrets; print(secrets.token_hex(32))" > "$DIR/root.key"; chmod 600 "$DIR/root.key"
cat > "$DIR/sealgate.toml" <<TOML
listen = "127.0.0.1:$PORT"
[upstream]
endpoint = "http://127.0.0.1:9"
access_key_id = "unused"
secret_access_key = "unused-secret"
[[access_keys]]
access_key_id = "$AK"
secret_access_key = "$SK"
principal = "bench"
root = true
[kms]
db_path = "$DIR/kms.redb"
root_key_file = "$DIR/root.key"
TOML
./target/release/sealgate --log-level warn serve --config "$DIR/sealgate.toml" &
PID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1
AWS=".venv/bin/aws --endpoint-url http://127.0.0.1:$PORT"
KEY=$($AWS kms create-key --query KeyMetadata.KeyId --output text)
BLOB=$($AWS kms generate-data-key --key-id "$KEY" --key-spec AES_256 --query CiphertextBlob --output text)
.venv/bin/python benches/http/kms_sign.py "http://127.0.0.1:$PORT" $AK $SK "$KEY" GenerateDataKey > "$DIR/gdk.lua"
.venv/bin/python benches/http/kms_sign.py "http://127.0.0.1:$PORT" $AK $SK "$KEY" Decrypt "$BLOB" > "$DIR/dec.lua"
for op in gdk dec; do
  out=$(wrk -t2 -c32 -d10s -s "$DIR/$op.lua" "http://127.0.0.1:$PORT/")
  if echo "$out" | grep -q "Non-2xx"; then echo "$out"; echo "errors in $op run" >&2; exit 1; fi
  name=$([ $op = gdk ] && echo GenerateDataKey || echo Decrypt)
  echo "$name over HTTP: $(echo "$out" | awk '/Requests\/sec/ {print $2}') req/s, latency $(echo "$out" | awk '/Latency/ {print $2" avg, "$4" max"}')"
done
