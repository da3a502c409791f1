#!/usr/bin/env bash
# Fuzz the API from its own /openapi.json with schemathesis, the way production serves it:
# gunicorn in production mode on a throw-away PostgreSQL database holding the demo data, with a real admin key,
# so keyed and admin-only operations are exercised. Fails on any 5xx and on any response the document does not
# describe (status code, content type, body schema).
#
#   scripts/fuzz.sh                        # PostgreSQL at postgresql://postgres@127.0.0.1:5432
#   FUZZ_PG_URL=postgresql://me@db:5432 FUZZ_MAX_TIME=60 scripts/fuzz.sh
#   scripts/fuzz.sh --include-path-regex events    # extra arguments go to `schemathesis run`
#
# Needs psql and `make .venv/.installed` (schemathesis is in requirements-dev.txt).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PG_URL="${FUZZ_PG_URL:-postgresql://postgres@127.0.0.1:5432}"
MAX_TIME="${FUZZ_MAX_TIME:-100}"  # seconds of fuzzing; the whole script stays under ~2.5 minutes on 2 cores
DB="billops_fuzz_$$_$(date +%s)"
WORK_DIR=$(mktemp -d /tmp/billops-fuzz.XXXXXX)
GUNICORN_PID=""

cleanup() {
    local status=$?
    set +e
    if [[ -n "$GUNICORN_PID" ]] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
        kill -TERM "$GUNICORN_PID"
        wait "$GUNICORN_PID" 2>/dev/null
    fi
    psql -X -q -d "$PG_URL/postgres" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null \
        || echo "warning: could not drop database $DB" >&2
    rm -rf "$WORK_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql -X -q -d "$PG_URL/postgres" -c "CREATE DATABASE $DB" >/dev/null
ADMIN_KEY="bok_fuzz_$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))')"
PROD_ENV=(env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="${HOME:-/root}" LANG=C.UTF-8 BILLOPS_ENV=production
    SECRET_KEY="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))')"
    ADMIN_KEY="$ADMIN_KEY" DATABASE_URL="$PG_URL/$DB" LOG_LEVEL=WARNING)

"${PROD_ENV[@]}" .venv/bin/flask --app wsgi db upgrade >/dev/null
"${PROD_ENV[@]}" .venv/bin/flask --app wsgi billing demo-data >/dev/null

PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
LOG="$WORK_DIR/gunicorn.log"
"${PROD_ENV[@]}" .venv/bin/gunicorn -w 2 --threads 4 -b "127.0.0.1:$PORT" wsgi:app >"$LOG" 2>&1 &
GUNICORN_PID=$!
for _ in $(seq 1 100); do  # readiness poll, at most ~20 s
    curl -fsS --max-time 2 -o /dev/null "$BASE/readyz" 2>/dev/null && break
    kill -0 "$GUNICORN_PID" 2>/dev/null || { cat "$LOG" >&2; echo "gunicorn exited" >&2; exit 1; }
    sleep 0.2
done

echo "fuzzing $BASE/openapi.json for at most ${MAX_TIME}s"
# /readyz answers a documented 503 whenever the database is slow to answer (e.g. a loaded CI machine), which
# not_a_server_error would count as a failure; the smoke test checks it.
status=0
.venv/bin/schemathesis run "$BASE/openapi.json" \
    --header "X-Admin-Key: $ADMIN_KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples 60 \
    --max-time "$MAX_TIME" \
    --request-timeout 30 \
    --workers 2 \
    --generation-database none \
    --seed "${FUZZ_SEED:-$RANDOM}" \
    --no-color \
    --exclude-path /readyz \
    "$@" || status=$?

if grep -Eq 'Traceback|\bERROR\b' "$LOG"; then
    cat "$LOG" >&2
    echo "gunicorn logged errors while being fuzzed" >&2
    status=1
fi
exit "$status"
