#!/usr/bin/env bash
# Finds (or installs) PostgreSQL server binaries and runs private throwaway
# clusters for tests, make dev and benchmarks (SPEC §6).
#
#   ensure-postgres.sh bin-dir              print the directory of initdb/pg_ctl/postgres
#   ensure-postgres.sh start DIR [PORT]     init (if needed) and start a cluster in DIR; print its URL last
#   ensure-postgres.sh stop DIR             stop the cluster in DIR
#
# When $DATABASE_URL is set, callers use it instead; this script is for the
# case where none is given. Debian's postgresql package is installed when the
# binaries are missing and we are root.
set -euo pipefail

find_bin_dir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then echo "$d"; return 0; fi
  done
  # PATH last: some images ship wrappers named pg_ctl that are not PostgreSQL's.
  if command -v postgres >/dev/null 2>&1; then
    d=$(dirname "$(command -v postgres)")
    if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && "$d/pg_ctl" --version 2>/dev/null | grep -q PostgreSQL; then echo "$d"; return 0; fi
  fi
  return 1
}

ensure_bin_dir() {
  local d
  if d=$(find_bin_dir); then echo "$d"; return 0; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH)." >&2
    echo "Install them (Debian/Ubuntu: sudo apt-get install postgresql) or set DATABASE_URL." >&2
    exit 1
  fi
  echo "installing Debian's postgresql package (one time)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  find_bin_dir || { echo "postgresql installed but binaries not found" >&2; exit 1; }
}

# as_owner runs a command as the cluster owner: postgres when we are root
# (PostgreSQL refuses to run as root), ourselves otherwise.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

cmd=${1:-}
case "$cmd" in
  bin-dir)
    ensure_bin_dir
    ;;
  start)
    dir=${2:?usage: ensure-postgres.sh start DIR [PORT]}
    bin=$(ensure_bin_dir)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    port=${3:-}
    if [[ -z "$port" && -f "$dir/port" ]]; then port=$(cat "$dir/port"); fi
    [[ -n "$port" ]] || port=$(free_port)
    if [[ $(id -u) -eq 0 ]]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /bin/bash postgres
      chown -R postgres "$dir"
      # The owner must be able to reach DIR through its parents.
      p="$dir"; while [[ "$p" != "/" ]]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
    fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
      as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
      cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
synchronous_commit = on
shared_buffers = 256MB
logging_collector = off
CONF
      echo "$port" >"$dir/port"
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null \
        || { tail -20 "$dir/postgres.log" >&2; exit 1; }
    fi
    port=$(cat "$dir/port")
    if ! as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc "select 1 from pg_database where datname='promo'" postgres | grep -q 1; then
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres promo
    fi
    echo "postgres://postgres@127.0.0.1:$port/promo?sslmode=disable"
    ;;
  stop)
    dir=${2:?usage: ensure-postgres.sh stop DIR}
    bin=$(ensure_bin_dir)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
    fi
    ;;
  *)
    echo "usage: $0 bin-dir | start DIR [PORT] | stop DIR" >&2
    exit 2
    ;;
esac
