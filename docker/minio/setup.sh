#!/bin/sh
# The one-shot `minio-setup` service (minio/mc image): the buckets, private, and the access
# key the pipeline uses (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), which is not MinIO's
# root user. Safe to run again: every step leaves an existing setup as it is.
set -e
: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}" "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
: "${EXPORT_S3_BUCKET:?}" "${DAGSTER_COMPUTE_LOGS_BUCKET:?}"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"

for bucket in "$EXPORT_S3_BUCKET" "$DAGSTER_COMPUTE_LOGS_BUCKET"; do
    mc mb --ignore-existing "local/$bucket"
    # Private: videos are handed out as presigned URLs only.
    mc anonymous set none "local/$bucket"
done

# MinIO's built-in readwrite policy covers every bucket of this MinIO, which holds only
# the pipeline's. On AWS, give the pipeline's role a policy limited to its bucket(s).
mc admin user add local "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
if ! mc admin policy attach local readwrite --user "$AWS_ACCESS_KEY_ID"; then
    # Attaching a policy that is already attached fails: fine if it is there.
    mc admin user info local "$AWS_ACCESS_KEY_ID" | grep -q readwrite
fi
echo "minio-setup: buckets $EXPORT_S3_BUCKET, $DAGSTER_COMPUTE_LOGS_BUCKET and the pipeline's key are ready"
