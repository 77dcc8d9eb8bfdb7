#!/bin/sh
# Prepares MinIO for sealgate: a store user for sealgate with read/write on all buckets,
# the demo buckets, and (unencrypted) sample objects to try `sealgate`'s plaintext reads
# and migration on. Run by the compose `minio-setup` service (image minio/mc), or by hand:
#   MINIO_ROOT_USER=... MINIO_ROOT_PASSWORD=... SEALGATE_STORE_ACCESS_KEY=... \
#   SEALGATE_STORE_SECRET_KEY=... MINIO_URL=http://127.0.0.1:9000 sh minio-fixtures/setup.sh
set -eu
URL="${MINIO_URL:-http://minio:9000}"
DIR="$(dirname "$0")"
mc alias set store "$URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc admin policy create store sealgate-store "$DIR/sealgate-store-policy.json" || true
mc admin user add store "$SEALGATE_STORE_ACCESS_KEY" "$SEALGATE_STORE_SECRET_KEY"
mc admin policy attach store sealgate-store --user "$SEALGATE_STORE_ACCESS_KEY" || true
for b in demo legacy; do
  mc mb --ignore-existing "store/$b"
done
# Plaintext objects as they would exist before sealgate was introduced.
mc cp --recursive "$DIR/sample-objects/" store/legacy/
echo "minio-fixtures: ready"
