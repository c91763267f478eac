#!/usr/bin/env bash
# Install (if missing) and start a local PostgreSQL for the sync-server tests.
#
# Idempotent: safe to run when PostgreSQL is already installed or running.
# Listens on 127.0.0.1 only.  Creates the role/password and database that the
# tests use by default, and prints the URL on stdout, so .ci/run can do:
#     export REALMPY_TEST_PG_URL="$(bash .ci/postgres.sh)"
set -euo pipefail
log() { echo "postgres.sh: $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql from Debian"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
VER=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$VER main"; then
    log "creating cluster $VER/main"
    pg_createcluster "$VER" main >&2
fi
PORT=$(pg_lsclusters -h | awk -v v="$VER" '$1==v && $2=="main" {print $3}')
if ! pg_lsclusters -h | awk -v v="$VER" '$1==v && $2=="main" {print $4}' | grep -q online; then
    log "starting cluster $VER/main on port $PORT"
    pg_ctlcluster "$VER" main start -- -o "-c listen_addresses=127.0.0.1 -c max_connections=200" >&2 \
        || pg_ctlcluster "$VER" main start >&2
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
done
pg_isready -h 127.0.0.1 -p "$PORT" >&2
su postgres -c "psql -q -p $PORT -c \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
if ! su postgres -c "psql -p $PORT -tAc \"SELECT 1 FROM pg_database WHERE datname='realmpy_test'\"" | grep -q 1; then
    su postgres -c "createdb -p $PORT realmpy_test" >&2
fi
echo "postgresql://postgres:postgres@127.0.0.1:$PORT/realmpy_test"
