#!/usr/bin/env bash
# PostgreSQL "outside the cluster, as a managed database would be": a
# PostgreSQL 15 server in the node's network namespace (not in Kubernetes),
# data in .cluster/postgres/data, listening on 10.239.0.2:5432 (reachable from
# the host through the veth and from pods) and 127.0.0.1:5432 inside the
# namespace. Role `promo` (scram-sha-256, random password in
# .cluster/postgres/promo.password) owns database `promo`; fsync on.
#
#   postgres.sh start    init if needed, start, wait until it accepts connections (idempotent);
#                        prints DATABASE_URL on stdout
#   postgres.sh stop     fast shutdown (an outage, as for the outage test); idempotent
#   postgres.sh status   exit 0 when accepting connections
#   postgres.sh url      print DATABASE_URL (promo) and POSTGRES_SUPERUSER_URL lines
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
need_root

PGD="$S/postgres"
PGBIN=$(bash "$ROOT/hack/ensure-postgres.sh" bin-dir)
as_pg() { runuser -u postgres -- "$@"; }

url() { # promo|superuser
  if [[ $1 == promo ]]; then
    echo "postgres://promo:$(cat "$PGD/promo.password")@$NODE_IP:$PG_PORT/promo?sslmode=disable"
  else
    echo "postgres://postgres:$(cat "$PGD/superuser.password")@$NODE_IP:$PG_PORT/postgres?sslmode=disable"
  fi
}

running() { [[ -f "$PGD/data/postmaster.pid" ]] && as_pg "$PGBIN/pg_ctl" -D "$PGD/data" status >/dev/null 2>&1; }
accepting() { netns_exists && in_netns "$PGBIN/pg_isready" -q -h "$NODE_IP" -p "$PG_PORT" -t 2; }

psql_su() { as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGD/run" -p "$PG_PORT" -U postgres "$@"; }

init() {
  [[ -f "$PGD/data/PG_VERSION" ]] && return 0
  say "initializing PostgreSQL in $PGD/data"
  mkdir -p "$PGD/run" "$LOGS"
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  # postgres must reach the data directory through its parents
  local p="$PGD"; while [[ "$p" != / ]]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  umask 077
  [[ -f "$PGD/superuser.password" ]] || head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$PGD/superuser.password"
  [[ -f "$PGD/promo.password" ]] || head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$PGD/promo.password"
  chown -R postgres:postgres "$PGD"
  chmod 0700 "$PGD"
  as_pg cp "$PGD/superuser.password" "$PGD/.pwfile"
  as_pg "$PGBIN/initdb" -D "$PGD/data" -U postgres --pwfile="$PGD/.pwfile" \
    --auth-local=peer --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >"$PGD/initdb.log" 2>&1 \
    || { cat "$PGD/initdb.log" >&2; rm -rf "$PGD/data"; exit 1; }
  rm -f "$PGD/.pwfile"
  cat >>"$PGD/data/postgresql.conf" <<CONF
# hack/cluster/postgres.sh
listen_addresses = '$NODE_IP,127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGD/run'
max_connections = 200
shared_buffers = 128MB
password_encryption = scram-sha-256
fsync = on
synchronous_commit = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
CONF
  cat >"$PGD/data/pg_hba.conf" <<HBA
# hack/cluster/postgres.sh: peer for the local superuser, scram-sha-256 on TCP
local all postgres                 peer
local all all                      scram-sha-256
host  all all 127.0.0.1/32         scram-sha-256
host  all all $HOST_IP/30          scram-sha-256
host  all all $POD_CIDR         scram-sha-256
HBA
  chown postgres:postgres "$PGD/data/pg_hba.conf"
}

start() {
  netns_exists || net_up
  init
  if ! running; then
    say "starting PostgreSQL on $NODE_IP:$PG_PORT"
    mkdir -p "$PGD/run" "$LOGS"; chown postgres:postgres "$PGD/run"
    [[ -L "$LOGS/postgres.log" ]] && rm -f "$LOGS/postgres.log"
    touch "$LOGS/postgres.log"; chown postgres:postgres "$LOGS/postgres.log"
    in_netns runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGD/data" -l "$LOGS/postgres.log" -w -t 60 start >/dev/null 9>&- \
      || die "PostgreSQL did not start" postgres
  fi
  local end=$((SECONDS + 60))
  until accepting; do ((SECONDS < end)) || die "PostgreSQL does not accept connections on $NODE_IP:$PG_PORT" postgres; sleep 0.2; done
  if [[ "$(psql_su -Atc "select 1 from pg_roles where rolname='promo'" postgres)" != 1 ]]; then
    psql_su postgres -c "create role promo login password '$(cat "$PGD/promo.password")'"
  fi
  if [[ "$(psql_su -Atc "select 1 from pg_database where datname='promo'" postgres)" != 1 ]]; then
    psql_su postgres -c "create database promo owner promo"
  fi
  url promo
}

stop() {
  [[ -f "$PGD/data/postmaster.pid" ]] || return 0
  if running; then
    say "stopping PostgreSQL (fast shutdown)"
    as_pg "$PGBIN/pg_ctl" -D "$PGD/data" -m fast -w -t 60 stop >/dev/null
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if accepting; then echo "PostgreSQL accepting connections on $NODE_IP:$PG_PORT"; else echo "PostgreSQL not accepting connections"; exit 1; fi
    ;;
  url) echo "DATABASE_URL=$(url promo)"; echo "POSTGRES_SUPERUSER_URL=$(url superuser)" ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
