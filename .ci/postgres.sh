#!/usr/bin/env bash
# Start a PostgreSQL server on loopback for the multi-worker tests and print its URL on stdout.
# Installs Debian's `postgresql` when it is missing (apt-get update once). Prints nothing and exits 1
# when no server can be started; the tests then skip with that reason.
set -uo pipefail
log() { echo "postgres: $*" >&2; }
SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log "installing Debian's postgresql"
  $SUDO apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null \
    || { log "could not install postgresql"; exit 1; }
fi
cluster=$(pg_lsclusters --no-header 2>/dev/null | head -n1)
if [ -z "$cluster" ]; then
  version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  $SUDO pg_createcluster "$version" main >&2 || { log "could not create a cluster"; exit 1; }
  cluster=$(pg_lsclusters --no-header | head -n1)
fi
read -r version name port status _ <<<"$cluster"
if [ "$status" != "online" ]; then
  $SUDO pg_ctlcluster "$version" "$name" start >&2 || { log "could not start cluster $version/$name"; exit 1; }
fi
password="edgenas-ci-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
AS_POSTGRES=$( [ "$(id -u)" = 0 ] && echo "runuser -u postgres --" || echo "sudo -u postgres" )
psql_as_postgres() { $AS_POSTGRES psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"; }
if psql_as_postgres -c "select 1 from pg_roles where rolname='edgenas'" | grep -q 1; then
  psql_as_postgres -c "alter role edgenas with login password '$password'" >&2 || exit 1
else
  psql_as_postgres -c "create role edgenas with login password '$password'" >&2 || exit 1
fi
if ! psql_as_postgres -c "select 1 from pg_database where datname='edgenas_test'" | grep -q 1; then
  psql_as_postgres -c "create database edgenas_test owner edgenas" >&2 || exit 1
fi
echo "postgresql://edgenas:${password}@127.0.0.1:${port}/edgenas_test"
