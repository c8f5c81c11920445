#!/usr/bin/env bash
# Start / stop / check the real services that blockdrive's integration tests use:
#
#   MariaDB  (Debian package, own data dir)        127.0.0.1:3306
#   HDFS     (Apache Hadoop MiniDFSCluster 3.5.0)  RPC 127.0.0.1:9000, WebHDFS 127.0.0.1:9870
#   S3       (moto server from the repo's venv)    127.0.0.1:9002
#
# Usage: scripts/services.sh up|down|status|clean|build
#
#   up      start whatever is not running (idempotent), wait until each answers,
#           print versions and timings, write the env file (var/services.env)
#   down    stop all three
#   status  print each as up/down; exit 1 if any is down
#   clean   down, then delete var/services (all data and logs)
#   build   (re)build the MiniDFS launcher if its sources are newer than its jar
#           (`up` does this only when HDFS is not already running)
#
# Works on a fresh Debian machine as root: installs mariadb-server with apt-get
# if missing, builds the MiniDFS launcher with Maven (jars cached in ~/.m2),
# creates the venv and installs moto[server] into it if missing.
#
# Environment overrides:
#   VENV (default .venv), PYTHON (default $VENV/bin/python)
#   BLOCKDRIVE_SERVICES_ENV  env file to write (default var/services.env)
#   BLOCKDRIVE_MYSQL_PORT (3306) BLOCKDRIVE_HDFS_PORT (9000)
#   BLOCKDRIVE_WEBHDFS_PORT (9870) BLOCKDRIVE_S3_PORT (9002)
#   BLOCKDRIVE_HDFS_HEAP (1g)  BLOCKDRIVE_HDFS_LOG_LEVEL (warn)
#   BLOCKDRIVE_SERVICE_TIMEOUT (seconds to wait for each service, default 180)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-$VENV/bin/python}"
ENV_FILE="${BLOCKDRIVE_SERVICES_ENV:-var/services.env}"
STATE="$ROOT/var/services"
LOGS="$STATE/logs"

MYSQL_PORT="${BLOCKDRIVE_MYSQL_PORT:-3306}"
HDFS_PORT="${BLOCKDRIVE_HDFS_PORT:-9000}"
WEBHDFS_PORT="${BLOCKDRIVE_WEBHDFS_PORT:-9870}"
S3_PORT="${BLOCKDRIVE_S3_PORT:-9002}"
HDFS_HEAP="${BLOCKDRIVE_HDFS_HEAP:-1g}"
HDFS_LOG_LEVEL="${BLOCKDRIVE_HDFS_LOG_LEVEL:-warn}"
TIMEOUT="${BLOCKDRIVE_SERVICE_TIMEOUT:-180}"

MYSQL_USER=blockdrive
MYSQL_PASSWORD=blockdrive
MYSQL_DB=blockdrive_test
HDFS_TEST_DIR=/blockdrive-test
S3_BUCKET=blockdrive-test
AWS_KEY=testing
AWS_SECRET=testing
AWS_REGION=us-east-1

MINIDFS_DIR="$ROOT/scripts/minidfs"
MINIDFS_JAR="$MINIDFS_DIR/target/minidfs-launcher-1.0.jar"
MINIDFS_MAIN=blockdrive.minidfs.Launcher

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

# --- process helpers ---------------------------------------------------------

# alive PID: the process exists and is not a zombie (a killed daemon can stay
# a zombie for a while when PID 1 is slow to reap it).
alive() {
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$st" && "$st" != Z && "$st" != X ]]
}

# pid_of NAME MARKER: print the pid recorded in $STATE/NAME.pid if that process
# is alive and its command line contains MARKER (guards against reused pids).
pid_of() {
    local f="$STATE/$1.pid" pid
    [[ -f "$f" ]] || return 1
    pid="$(tr -dc '0-9' <"$f")"
    [[ -n "$pid" ]] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
    echo "$pid"
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# start_daemon NAME LOGFILE CMD ARGS...: run CMD in the background, detached,
# stdout+stderr to LOGFILE, pid in $STATE/NAME.pid.
start_daemon() {
    local name="$1" logfile="$2"
    shift 2
    : >"$logfile"
    # Only called when pid_of said it is not running: drop a stale pid file,
    # which start-stop-daemon would otherwise honour.
    rm -f "$STATE/$name.pid"
    start-stop-daemon --start --background --make-pidfile \
        --pidfile "$STATE/$name.pid" --chdir "$ROOT" --output "$logfile" \
        --startas "$1" -- "${@:2}" ||
        die "$name: start-stop-daemon failed to start $1"
}

# stop_daemon NAME MARKER: SIGTERM, wait up to 30 s, then SIGKILL.
stop_daemon() {
    local name="$1" marker="$2" pid i
    if ! pid="$(pid_of "$name" "$marker")"; then
        rm -f "$STATE/$name.pid"
        echo "$name: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "$name (pid $pid) did not stop after 30 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$STATE/$name.pid"
    echo "$name: stopped (pid $pid)"
}

# wait_for NAME PID_NAME MARKER LOGFILE CHECK...: poll CHECK until it succeeds,
# the process dies, or $TIMEOUT seconds pass.
wait_for() {
    local name="$1" pidname="$2" marker="$3" logfile="$4" deadline
    shift 4
    deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if ! pid_of "$pidname" "$marker" >/dev/null; then
            log "$name exited during startup; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "$name not ready after ${TIMEOUT}s; last lines of $logfile:"
            tail -n 40 "$logfile" >&2 || true
            return 1
        fi
        sleep 0.5
    done
}

# --- MariaDB -------------------------------------------------------------------

MYSQL_MARKER=mariadbd
MYSQL_LOG="$LOGS/mariadb.log"

mysql_paths() {
    # Data dir under var/services when the mysql user can reach it (mariadbd
    # drops to that user); otherwise a per-checkout dir under /var/tmp.
    MYSQL_DATA="${BLOCKDRIVE_MYSQL_DATADIR:-$STATE/mariadb}"
    if [[ -z "${BLOCKDRIVE_MYSQL_DATADIR:-}" && $EUID -eq 0 ]] &&
        ! runuser -u mysql -- test -x "$STATE" 2>/dev/null; then
        MYSQL_DATA="/var/tmp/blockdrive-services-$(echo "$ROOT" | md5sum | cut -c1-8)/mariadb"
    fi
    # Unix socket paths are limited to 107 bytes: keep it short.
    if [[ $EUID -eq 0 ]]; then
        MYSQL_SOCK="/run/mysqld/blockdrive-$MYSQL_PORT.sock"
    else
        MYSQL_SOCK="$MYSQL_DATA/mysqld.sock"
    fi
}

mysql_tcp() { # run SQL as the test user over TCP
    mariadb --no-defaults --protocol=TCP -h 127.0.0.1 -P "$MYSQL_PORT" \
        -u "$MYSQL_USER" -p"$MYSQL_PASSWORD" --connect-timeout=3 -N -B "$@"
}

# shellcheck disable=SC2120  # called with arguments through wait_for
mysql_root() { # run SQL as root over the unix socket
    mariadb --no-defaults --protocol=SOCKET -S "$MYSQL_SOCK" -u root -N -B "$@"
}

mysql_ready() { mysql_tcp -e 'SELECT 1' "$MYSQL_DB"; }

mysql_install() {
    if [[ -x /usr/sbin/mariadbd ]] && command -v mariadb >/dev/null &&
        command -v mariadb-install-db >/dev/null; then
        return 0
    fi
    [[ $EUID -eq 0 ]] || die "mariadb-server is not installed and this is not root: apt-get install mariadb-server"
    local t0
    t0="$(now)"
    if ! dpkg -s mariadb-server >/dev/null 2>&1; then
        log "mariadb: apt-get update"
        apt-get -o DPkg::Lock::Timeout=300 update -q >"$LOGS/apt.log" 2>&1 || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get update failed"; }
    fi
    log "mariadb: apt-get install mariadb-server"
    # Keep the package from starting the system instance on 3306 (we run our
    # own, on our own data dir): a policy-rc.d that denies, unless one exists.
    local policy=/usr/sbin/policy-rc.d added_policy=""
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added_policy=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q mariadb-server mariadb-client >>"$LOGS/apt.log" 2>&1 || rc=$?
    if [[ -n "$added_policy" ]]; then rm -f "$policy"; fi
    if ((rc != 0)); then
        tail -n 20 "$LOGS/apt.log" >&2
        die "apt-get install mariadb-server failed (log: $LOGS/apt.log)"
    fi
    log "mariadb: installed in $(elapsed "$t0")"
}

mysql_up() {
    local t0 pid
    t0="$(now)"
    mysql_install
    mysql_paths
    if pid="$(pid_of mariadb "$MYSQL_MARKER")"; then
        log "mariadb: already running (pid $pid)"
    else
        if port_open "$MYSQL_PORT"; then
            die "port $MYSQL_PORT is taken by another process (not ours); stop it or set BLOCKDRIVE_MYSQL_PORT"
        fi
        mkdir -p "$MYSQL_DATA" "$(dirname "$MYSQL_SOCK")"
        if [[ $EUID -eq 0 ]]; then
            chown mysql: "$MYSQL_DATA" "$(dirname "$MYSQL_SOCK")"
        fi
        local user_args=()
        if [[ $EUID -eq 0 ]]; then user_args=(--user=mysql); fi
        if [[ ! -d "$MYSQL_DATA/mysql" ]]; then
            log "mariadb: initialising data dir $MYSQL_DATA"
            mariadb-install-db --no-defaults "${user_args[@]}" --datadir="$MYSQL_DATA" \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$LOGS/mariadb-install-db.log" 2>&1 ||
                { tail -n 30 "$LOGS/mariadb-install-db.log" >&2; die "mariadb-install-db failed"; }
        fi
        start_daemon mariadb "$MYSQL_LOG" /usr/sbin/mariadbd --no-defaults "${user_args[@]}" \
            --datadir="$MYSQL_DATA" --socket="$MYSQL_SOCK" --pid-file="$MYSQL_DATA/mariadbd.pid" \
            --port="$MYSQL_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
            --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
            --innodb-buffer-pool-size=256M --innodb-log-file-size=64M \
            --max-connections=300 --max-allowed-packet=64M
        log "mariadb: started (pid $(cat "$STATE/mariadb.pid")), waiting for the socket"
        wait_for mariadb mariadb "$MYSQL_MARKER" "$MYSQL_LOG" mysql_root -e 'SELECT 1' ||
            die "mariadb did not start"
    fi
    # Idempotent bootstrap: test user (TCP and socket), test database, and the
    # right to create/drop any database named blockdrive_test%.
    mysql_root <<SQL || die "mariadb: bootstrap SQL failed"
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
ALTER USER '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
ALTER USER '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DB\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT ALL PRIVILEGES ON \`blockdrive\\_test%\`.* TO '$MYSQL_USER'@'127.0.0.1';
GRANT ALL PRIVILEGES ON \`blockdrive\\_test%\`.* TO '$MYSQL_USER'@'localhost';
FLUSH PRIVILEGES;
SQL
    wait_for mariadb mariadb "$MYSQL_MARKER" "$MYSQL_LOG" mysql_ready ||
        die "mariadb: TCP login as $MYSQL_USER failed"
    MYSQL_VERSION="$(mysql_tcp -e 'SELECT VERSION()' | sed 's/-.*//')"
    echo "mariadb $MYSQL_VERSION up on 127.0.0.1:$MYSQL_PORT ($(elapsed "$t0"))"
}

mysql_down() { stop_daemon mariadb "$MYSQL_MARKER"; }

# --- HDFS (MiniDFSCluster) ----------------------------------------------------

HDFS_LOG="$LOGS/hdfs.log"

hdfs_build() {
    if [[ -f "$MINIDFS_JAR" && -d "$MINIDFS_DIR/target/dependency" ]] &&
        [[ -z "$(find "$MINIDFS_DIR/pom.xml" "$MINIDFS_DIR/src" -newer "$MINIDFS_JAR" -type f 2>/dev/null)" ]]; then
        return 0
    fi
    if ! command -v mvn >/dev/null || ! command -v javac >/dev/null; then
        [[ $EUID -eq 0 ]] || die "a JDK 17 and Maven are needed: apt-get install openjdk-17-jdk-headless maven"
        log "hdfs: installing a JDK and Maven from Debian's packages"
        apt-get -o DPkg::Lock::Timeout=300 update -q >"$LOGS/apt-java.log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q \
                openjdk-17-jdk-headless maven >>"$LOGS/apt-java.log" 2>&1 ||
            { tail -n 20 "$LOGS/apt-java.log" >&2; die "apt-get install openjdk-17-jdk-headless maven failed"; }
    fi
    local t0
    t0="$(now)"
    log "hdfs: building the MiniDFS launcher (Maven; first run downloads ~130 MB of jars)"
    rm -rf "$MINIDFS_DIR/target/dependency"
    timeout 1200 mvn -B -q -f "$MINIDFS_DIR/pom.xml" package dependency:copy-dependencies \
        >"$LOGS/minidfs-build.log" 2>&1 ||
        { tail -n 40 "$LOGS/minidfs-build.log" >&2; die "hdfs: maven build failed (log: $LOGS/minidfs-build.log)"; }
    touch "$MINIDFS_JAR"
    log "hdfs: launcher built in $(elapsed "$t0")"
}

# The NameNode answers before the DataNodes have registered, so also wait for
# the launcher's "MINIDFS READY" line (printed after cluster.waitActive()).
hdfs_ready() {
    grep -q 'MINIDFS READY' "$HDFS_LOG" 2>/dev/null &&
        curl -sf -m 5 "http://127.0.0.1:$WEBHDFS_PORT/webhdfs/v1/?op=LISTSTATUS"
}

hdfs_version() {
    curl -sf -m 5 "http://127.0.0.1:$WEBHDFS_PORT/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo" |
        sed -n 's/.*"SoftwareVersion" *: *"\([^"]*\)".*/\1/p' | head -n 1
}

# Real CREATE/OPEN round trip through WebHDFS, following the redirect to a
# DataNode: fails if the redirect points somewhere unreachable.
hdfs_smoke() {
    local base="http://127.0.0.1:$WEBHDFS_PORT/webhdfs/v1$HDFS_TEST_DIR/.services-smoke" got
    local data="blockdrive services smoke $$"
    printf '%s' "$data" | curl -sf -m 30 -L -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary @- "$base?op=CREATE&overwrite=true&user.name=services" >/dev/null || return 1
    got="$(curl -sf -m 30 -L "$base?op=OPEN&user.name=services")" || return 1
    [[ "$got" == "$data" ]]
}

hdfs_start() { # hdfs_start [--format]
    start_daemon hdfs "$HDFS_LOG" "$(command -v java)" \
        "-Xmx$HDFS_HEAP" -Xms128m -XX:+UseSerialGC -XX:MaxMetaspaceSize=256m \
        -Djava.net.preferIPv4Stack=true \
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=$HDFS_LOG_LEVEL" \
        -Dorg.slf4j.simpleLogger.showDateTime=true \
        -cp "$MINIDFS_JAR:$MINIDFS_DIR/target/dependency/*" "$MINIDFS_MAIN" \
        --base "$STATE/hdfs" --nn-port "$HDFS_PORT" --http-port "$WEBHDFS_PORT" \
        --datanodes 2 --replication 2 --dir "$HDFS_TEST_DIR" "$@"
}

hdfs_up() {
    local t0 t1 pid
    t0="$(now)"
    if pid="$(pid_of hdfs "$MINIDFS_MAIN")"; then
        log "hdfs: already running (pid $pid)"
        wait_for hdfs hdfs "$MINIDFS_MAIN" "$HDFS_LOG" hdfs_ready || die "hdfs is running but not answering"
    else
        command -v java >/dev/null || die "java not found (install a JDK 17)"
        for p in "$HDFS_PORT" "$WEBHDFS_PORT"; do
            if port_open "$p"; then
                die "port $p is taken by another process (not ours); stop it or set BLOCKDRIVE_HDFS_PORT / BLOCKDRIVE_WEBHDFS_PORT"
            fi
        done
        hdfs_build
        t1="$(now)"
        mkdir -p "$STATE/hdfs"
        hdfs_start
        log "hdfs: started (pid $(cat "$STATE/hdfs.pid")), waiting for WebHDFS"
        if ! wait_for hdfs hdfs "$MINIDFS_MAIN" "$HDFS_LOG" hdfs_ready; then
            # A data dir left inconsistent by a hard kill: start over once.
            log "hdfs: retrying with a freshly formatted data dir"
            stop_daemon hdfs "$MINIDFS_MAIN" >/dev/null
            cp -f "$HDFS_LOG" "$HDFS_LOG.failed" 2>/dev/null || true
            rm -rf "$STATE/hdfs"
            mkdir -p "$STATE/hdfs"
            hdfs_start --format
            wait_for hdfs hdfs "$MINIDFS_MAIN" "$HDFS_LOG" hdfs_ready || die "hdfs did not start"
        fi
        log "hdfs: ready in $(elapsed "$t1") after launch"
    fi
    hdfs_smoke || die "hdfs: WebHDFS CREATE/OPEN round trip via the DataNode redirect failed"
    HDFS_VERSION="$(hdfs_version)"
    echo "hadoop ${HDFS_VERSION:-?} up: hdfs://127.0.0.1:$HDFS_PORT, webhdfs http://127.0.0.1:$WEBHDFS_PORT ($(elapsed "$t0"))"
}

hdfs_down() { stop_daemon hdfs "$MINIDFS_MAIN"; }

# --- S3 (moto server) ---------------------------------------------------------

S3_MARKER=moto.server
S3_LOG="$LOGS/moto.log"

s3_ready() { curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$S3_PORT/" | grep -q '^[1-4]'; }

s3_python() {
    if [[ ! -x "$PYTHON" ]]; then
        [[ "$PYTHON" == "$VENV/bin/python" ]] || die "PYTHON=$PYTHON is not executable"
        log "s3: creating venv $VENV"
        python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
    fi
    if ! "$PYTHON" -c 'import moto.server, boto3, flask' >/dev/null 2>&1; then
        log "s3: installing moto[server] and boto3 into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
        "$PYTHON" -m pip install -q 'moto[server]>=5.0' 'boto3>=1.34' >"$LOGS/pip-moto.log" 2>&1 ||
            { tail -n 20 "$LOGS/pip-moto.log" >&2; die "pip install moto[server] failed"; }
    fi
}

s3_make_bucket() {
    AWS_ACCESS_KEY_ID="$AWS_KEY" AWS_SECRET_ACCESS_KEY="$AWS_SECRET" AWS_DEFAULT_REGION="$AWS_REGION" \
        "$PYTHON" - "http://127.0.0.1:$S3_PORT" "$S3_BUCKET" <<'PY'
import sys
import boto3
from botocore.exceptions import ClientError

endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint)
try:
    s3.create_bucket(Bucket=bucket)
except ClientError as e:
    if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        raise
s3.head_bucket(Bucket=bucket)
PY
}

s3_up() {
    local t0 pid
    t0="$(now)"
    s3_python
    if pid="$(pid_of moto "$S3_MARKER")"; then
        log "s3: already running (pid $pid)"
    else
        if port_open "$S3_PORT"; then
            die "port $S3_PORT is taken by another process (not ours); stop it or set BLOCKDRIVE_S3_PORT"
        fi
        start_daemon moto "$S3_LOG" "$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" \
            -m moto.server -H 127.0.0.1 -p "$S3_PORT"
        log "s3: started (pid $(cat "$STATE/moto.pid")), waiting for it to answer"
    fi
    wait_for s3 moto "$S3_MARKER" "$S3_LOG" s3_ready || die "moto server did not start"
    s3_make_bucket || die "s3: could not create bucket $S3_BUCKET"
    MOTO_VERSION="$("$PYTHON" -c 'import moto; print(moto.__version__)')"
    echo "moto $MOTO_VERSION up on http://127.0.0.1:$S3_PORT, bucket $S3_BUCKET ($(elapsed "$t0"))"
}

s3_down() { stop_daemon moto "$S3_MARKER"; }

# --- commands -----------------------------------------------------------------

write_env() {
    mkdir -p "$(dirname "$ENV_FILE")"
    local tmp="$ENV_FILE.tmp.$$"
    cat >"$tmp" <<EOF
BLOCKDRIVE_TEST_MYSQL_URL=mysql+pymysql://$MYSQL_USER:$MYSQL_PASSWORD@127.0.0.1:$MYSQL_PORT/$MYSQL_DB
BLOCKDRIVE_TEST_WEBHDFS_URL=webhdfs://127.0.0.1:$WEBHDFS_PORT$HDFS_TEST_DIR
BLOCKDRIVE_TEST_HDFS_URL=hdfs://127.0.0.1:$HDFS_PORT$HDFS_TEST_DIR
BLOCKDRIVE_TEST_S3_URL=s3://$S3_BUCKET/packs?endpoint=http://127.0.0.1:$S3_PORT&region=$AWS_REGION
BLOCKDRIVE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
AWS_ACCESS_KEY_ID=$AWS_KEY
AWS_SECRET_ACCESS_KEY=$AWS_SECRET
AWS_DEFAULT_REGION=$AWS_REGION
BLOCKDRIVE_TEST_SERVICE_VERSIONS=mariadb $MYSQL_VERSION; hadoop $HDFS_VERSION; moto $MOTO_VERSION
EOF
    mv -f "$tmp" "$ENV_FILE"
}

cmd_up() {
    local t0
    t0="$(now)"
    mkdir -p "$STATE" "$LOGS"
    mysql_up
    hdfs_up
    s3_up
    write_env
    echo "all services up in $(elapsed "$t0"); env file: $ENV_FILE"
}

cmd_down() {
    s3_down
    hdfs_down
    mysql_down
}

cmd_status() {
    local bad=0 pid
    mysql_paths
    if pid="$(pid_of mariadb "$MYSQL_MARKER")" && mysql_ready >/dev/null 2>&1; then
        echo "mariadb: up (pid $pid, 127.0.0.1:$MYSQL_PORT)"
    else
        echo "mariadb: down"
        bad=1
    fi
    if pid="$(pid_of hdfs "$MINIDFS_MAIN")" && hdfs_ready >/dev/null 2>&1; then
        echo "hdfs: up (pid $pid, hdfs://127.0.0.1:$HDFS_PORT, webhdfs 127.0.0.1:$WEBHDFS_PORT)"
    else
        echo "hdfs: down"
        bad=1
    fi
    if pid="$(pid_of moto "$S3_MARKER")" && s3_ready >/dev/null 2>&1; then
        echo "s3 (moto): up (pid $pid, http://127.0.0.1:$S3_PORT)"
    else
        echo "s3 (moto): down"
        bad=1
    fi
    return "$bad"
}

cmd_clean() {
    cmd_down
    mysql_paths
    rm -rf "$STATE" "$MYSQL_DATA"
    echo "removed $STATE"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
clean) cmd_clean ;;
build) mkdir -p "$LOGS" && hdfs_build ;;
*)
    echo "usage: $0 up|down|status|clean|build" >&2
    exit 2
    ;;
esac
