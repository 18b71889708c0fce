# Sourced by the scripts: starts an S3-compatible server (moto) on a free
# loopback port with a bucket `kmdr-test`, exports KMDR_TEST_S3_ENDPOINT and
# AWS_* credentials, and stops it (by its pid) on exit.
_s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
_s3_log=$(mktemp /tmp/kmdr-s3.XXXXXX.log)
python3 -m moto.server -H 127.0.0.1 -p "$_s3_port" >"$_s3_log" 2>&1 &
KMDR_S3_PID=$!
trap 'kill $KMDR_S3_PID 2>/dev/null || true' EXIT
export AWS_ACCESS_KEY_ID=kmdr-test AWS_SECRET_ACCESS_KEY=kmdr-test AWS_REGION=us-east-1
export KMDR_TEST_S3_ENDPOINT="http://127.0.0.1:$_s3_port" KMDR_TEST_S3_BUCKET=kmdr-test
for _i in $(seq 1 100); do
  if python3 - <<PY 2>/dev/null
import boto3
s3 = boto3.client("s3", endpoint_url="$KMDR_TEST_S3_ENDPOINT")
s3.create_bucket(Bucket="kmdr-test")
PY
  then break; fi
  if [ "$_i" = 100 ]; then echo "S3 server did not start; log: $_s3_log" >&2; cat "$_s3_log" >&2; exit 1; fi
  sleep 0.2
done
echo "S3 server (moto) on $KMDR_TEST_S3_ENDPOINT, pid $KMDR_S3_PID" >&2
