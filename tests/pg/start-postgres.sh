#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for tests and prints its connection URL as the last line of
# stdout (everything else goes to stderr):
#
#   postgres://postgres@localhost/postgres?host=<socket dir>
#
# Usage: tests/pg/start-postgres.sh [STATE_FILE]
#   STATE_FILE  receives the data directory path, for `tests/pg/stop-postgres.sh <datadir|STATE_FILE>`.
#
# The cluster listens only on a unix socket inside a fresh temp dir (no TCP port, so parallel
# clusters never collide), trusts every local connection and runs with fsync off: it is for tests
# only and is thrown away by stop-postgres.sh. Postgres refuses to run as root, so as root the
# cluster is owned by and run as the `postgres` system user (created if missing).
#
# Environment:
#   PG_BINDIR            directory holding initdb/pg_ctl (default: pg_config --bindir, else the
#                        newest /usr/lib/postgresql/*/bin, else the directory of `initdb` on PATH)
#   SWITCHYARD_PG_TMPDIR parent of the temp dir (default /tmp; unix socket paths must stay short)
set -euo pipefail

state_file="${1:-}"

log() { printf 'start-postgres: %s\n' "$*" >&2; }

find_bindir() {
    local dir
    if [[ -n "${PG_BINDIR:-}" ]]; then
        printf '%s\n' "$PG_BINDIR"
        return
    fi
    # pg_config comes with libpq-dev and may name a bindir whose server binaries are not installed.
    if command -v pg_config >/dev/null 2>&1 && dir="$(pg_config --bindir 2>/dev/null)" &&
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
        printf '%s\n' "$dir"
        return
    fi
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1)"
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        printf '%s\n' "$dir"
        return
    fi
    if dir="$(command -v initdb 2>/dev/null)"; then
        dirname "$(readlink -f "$dir")"
        return
    fi
    return 1
}

if ! bindir="$(find_bindir)"; then
    log "no PostgreSQL server binaries found (install the 'postgresql' package or set PG_BINDIR)"
    exit 1
fi
for tool in initdb pg_ctl; do
    if [[ ! -x "$bindir/$tool" ]]; then
        log "$bindir/$tool is missing"
        exit 1
    fi
done

base="$(mktemp -d "${SWITCHYARD_PG_TMPDIR:-/tmp}/switchyard-pg.XXXXXX")"
datadir="$base/data"
logfile="$base/postgres.log"
# stop-postgres.sh deletes the temp dir only when it finds this marker, never an arbitrary path.
touch "$base/.switchyard-test-cluster" "$logfile"

run_as=()
if [[ "$(id -u)" == 0 ]]; then
    if ! id -u postgres >/dev/null 2>&1; then
        log "creating system user postgres"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin postgres
    fi
    # The server appends to the log file, so it must own it as well as the directory.
    chown postgres: "$base" "$logfile"
    run_as=(runuser -u postgres --)
fi
# Other users (tests not run as root or postgres) must reach the socket; data/ stays 0700.
chmod 755 "$base"

fail() {
    log "$1"
    [[ -f "$logfile" ]] && sed 's/^/  postgres.log: /' "$logfile" >&2
    rm -rf "$base"
    exit 1
}

# initdb and pg_ctl resolve their own path via getcwd, which fails for the postgres user in /root.
cd "$base"

log "initdb ($bindir) into $datadir"
if ! "${run_as[@]}" "$bindir/initdb" --pgdata="$datadir" --username=postgres --auth=trust \
    --encoding=UTF8 --no-locale --no-sync >"$logfile" 2>&1; then
    fail "initdb failed"
fi

# pg_ctl hands -o to a shell, hence the quoting of the empty listen_addresses.
server_opts="-c listen_addresses='' -k $base -c fsync=off -c synchronous_commit=off"
server_opts+=" -c full_page_writes=off -c max_connections=200"
if ! "${run_as[@]}" "$bindir/pg_ctl" --pgdata="$datadir" --log="$logfile" --wait --timeout=60 \
    --silent -o "$server_opts" start >&2; then
    fail "pg_ctl start failed"
fi

if [[ -n "$state_file" ]]; then
    printf '%s\n' "$datadir" >"$state_file"
fi
log "running; data dir $datadir, log $logfile"
log "stop with: tests/pg/stop-postgres.sh $datadir"
printf 'postgres://postgres@localhost/postgres?host=%s\n' "$base"
