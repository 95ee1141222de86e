#!/usr/bin/env bash
# Stops a cluster started by tests/pg/start-postgres.sh and deletes its temp dir.
#
# Usage: tests/pg/stop-postgres.sh <DATADIR | STATE_FILE>
#   DATADIR     the data directory start-postgres.sh reported
#   STATE_FILE  the file start-postgres.sh wrote the data directory into
set -euo pipefail

log() { printf 'stop-postgres: %s\n' "$*" >&2; }

if [[ $# -ne 1 || -z "$1" ]]; then
    log "usage: $0 <datadir | state file>"
    exit 2
fi
datadir="$1"
if [[ -f "$datadir" ]]; then
    datadir="$(head -n 1 "$datadir")"
fi
if [[ ! -d "$datadir" ]]; then
    log "$datadir does not exist; nothing to stop"
    exit 0
fi
base="$(dirname "$datadir")"

# The data dir records the binaries that created it; fall back to pg_ctl on PATH.
pg_ctl=""
if [[ -f "$datadir/postmaster.opts" ]]; then
    postgres_bin="$(sed -n '1s/^\([^ ]*\).*/\1/p' "$datadir/postmaster.opts")"
    if [[ -x "$(dirname "$postgres_bin")/pg_ctl" ]]; then
        pg_ctl="$(dirname "$postgres_bin")/pg_ctl"
    fi
fi
if [[ -z "$pg_ctl" ]]; then
    pg_ctl="$(command -v pg_ctl || true)"
fi

run_as=()
owner="$(stat -c %U "$datadir")"
if [[ "$(id -u)" == 0 && "$owner" != root ]]; then
    run_as=(runuser -u "$owner" --)
fi

cd "$base"
if [[ -f "$datadir/postmaster.pid" ]]; then
    if [[ -z "$pg_ctl" ]]; then
        log "pg_ctl not found; cannot stop the server of $datadir"
        exit 1
    fi
    # Immediate: the data is thrown away, so there is nothing worth a checkpoint.
    if ! "${run_as[@]}" "$pg_ctl" --pgdata="$datadir" --mode=immediate --wait --silent stop >&2; then
        log "pg_ctl stop failed"
        exit 1
    fi
fi

cd /
if [[ -f "$base/.switchyard-test-cluster" ]]; then
    rm -rf "$base"
    log "stopped and removed $base"
else
    log "stopped; left $base in place (not created by start-postgres.sh)"
fi
