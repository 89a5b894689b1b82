#!/usr/bin/env bash
# Makes sure MariaDB (127.0.0.1:3306, root without password) and PostgreSQL (127.0.0.1:5432,
# user postgres, trust) run and have a `test` database. Idempotent; for CI and fresh machines.
set -euo pipefail

wait_for() { # description, command...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "start-databases: $what did not come up" >&2
  return 1
}

# MariaDB
if ! mysqladmin --protocol=tcp -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  if ! mysqladmin ping >/dev/null 2>&1; then
    echo "start-databases: starting MariaDB"
    install -d -o mysql -g mysql /run/mysqld
    if [[ ! -d /var/lib/mysql/mysql ]]; then mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null; fi
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_for "MariaDB (socket)" mysqladmin ping
  fi
  # A fresh Debian install lets root in only through the socket: allow TCP from 127.0.0.1 without a password.
  mariadb -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;"
  wait_for "MariaDB (tcp)" mysqladmin --protocol=tcp -h 127.0.0.1 -u root ping
fi
mariadb --protocol=tcp -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test'
echo "start-databases: MariaDB ready"

# PostgreSQL
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  if [[ -z "$version" ]]; then echo "start-databases: PostgreSQL is not installed" >&2; exit 1; fi
  echo "start-databases: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for "PostgreSQL" pg_isready -h 127.0.0.1 -p 5432
fi
if ! psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  # A fresh cluster asks TCP clients for a password: trust 127.0.0.1 like the test machines do.
  version=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
  wait_for "PostgreSQL trust auth" psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1'
fi
if [[ $(psql -w -h 127.0.0.1 -U postgres -d postgres -Atc "select count(*) from pg_database where datname = 'test'") == 0 ]]; then
  psql -w -h 127.0.0.1 -U postgres -d postgres -Atc 'CREATE DATABASE test' >/dev/null
fi
echo "start-databases: PostgreSQL ready"
