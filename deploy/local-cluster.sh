#!/usr/bin/env bash
# Local management cluster on 127.0.0.1: start / stop / status of N zsnode processes in the
# background, all state under one directory (default ./.zstack-local).
#
#   bash deploy/local-cluster.sh start [--nodes 3] [--dir DIR]
#   bash deploy/local-cluster.sh status [--dir DIR]
#   bash deploy/local-cluster.sh stop [--dir DIR]
#
# Environment: ZS_PROFILE=release|debug (default release), ZS_HOST (127.0.0.1),
# ZS_HTTP_BASE (8080), ZS_HTTPS_BASE (8443), ZS_RAFT_BASE (7070), ZS_CLUSTER_ID (zstack-local),
# ZS_STOP_TIMEOUT seconds before SIGKILL (20), ZS_START_TIMEOUT seconds (60),
# ZS_NO_BUILD=1 to use already-built binaries (ZS_BIN_DIR overrides target/<profile>).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CMD="${1:-}"
[ $# -gt 0 ] && shift
NODES=3
DIR="${ZS_DIR:-$ROOT/.zstack-local}"
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) NODES="${2:?--nodes needs a number}"; shift 2 ;;
    --nodes=*) NODES="${1#*=}"; shift ;;
    --dir) DIR="${2:?--dir needs a path}"; shift 2 ;;
    --dir=*) DIR="${1#*=}"; shift ;;
    -h|--help) CMD=help; shift ;;
    *) echo "local-cluster: unknown argument: $1" >&2; exit 2 ;;
  esac
done
case "$NODES" in ''|*[!0-9]*) echo "local-cluster: --nodes must be a positive number" >&2; exit 2 ;; esac
[ "$NODES" -ge 1 ] || { echo "local-cluster: --nodes must be at least 1" >&2; exit 2; }
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

PROFILE="${ZS_PROFILE:-release}"
HOST="${ZS_HOST:-127.0.0.1}"
HTTP_BASE="${ZS_HTTP_BASE:-8080}"
HTTPS_BASE="${ZS_HTTPS_BASE:-8443}"
RAFT_BASE="${ZS_RAFT_BASE:-7070}"
CLUSTER_ID="${ZS_CLUSTER_ID:-zstack-local}"
STOP_TIMEOUT="${ZS_STOP_TIMEOUT:-20}"
START_TIMEOUT="${ZS_START_TIMEOUT:-60}"
BIN_DIR="${ZS_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE}"
ZSNODE="$BIN_DIR/zsnode"
ZSCTL="$BIN_DIR/zsctl"
STATE="$DIR/cluster.env"
# The cluster admin token: created here, handed to node 1 when it founds the cluster, and read
# by every zsctl call below (and by the operator: export ZSCTL_TOKEN_FILE).
TOKEN_FILE="$DIR/admin.token"
export ZSCTL_TOKEN_FILE="$TOKEN_FILE"

# A started cluster remembers its size and ports, so stop/status need no flags.
if [ -f "$STATE" ] && [ "$CMD" != start ]; then
  # shellcheck disable=SC1090
  . "$STATE"
fi

http_port() { echo $((HTTP_BASE + $1 - 1)); }
https_port() { echo $((HTTPS_BASE + $1 - 1)); }
raft_port() { echo $((RAFT_BASE + $1 - 1)); }
node_dir() { echo "$DIR/node$1"; }
pid_file() { echo "$DIR/node$1/zsnode.pid"; }
log_file() { echo "$DIR/node$1/zsnode.log"; }
node_list() { local i s=""; for i in $(seq 1 "$NODES"); do s="$s${s:+,}http://$HOST:$(http_port "$i")"; done; echo "$s"; }

# Prints the pid of node $1 if its pid file names a live zsnode process.
running_pid() {
  local f pid
  f="$(pid_file "$1")"
  [ -f "$f" ] || return 1
  pid="$(cat "$f" 2>/dev/null || true)"
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid that belongs to something else.
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q zsnode || return 1
  echo "$pid"
}

port_busy() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

build() {
  if [ "${ZS_NO_BUILD:-0}" = 1 ]; then
    if [ ! -x "$ZSNODE" ] || [ ! -x "$ZSCTL" ]; then
      echo "local-cluster: ZS_NO_BUILD=1 but $ZSNODE or $ZSCTL is missing" >&2
      exit 1
    fi
    return
  fi
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  echo "local-cluster: building zsnode and zsctl ($PROFILE)..."
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p node -p ops)
}

wait_http() { # node, seconds
  local i end=$((SECONDS + $2))
  while [ $SECONDS -lt $end ]; do
    if "$ZSCTL" --node "http://$HOST:$(http_port "$1")" --timeout 2 member list >/dev/null 2>&1; then return 0; fi
    running_pid "$1" >/dev/null || { echo "local-cluster: node $1 exited; last log lines:" >&2; tail -n 20 "$(log_file "$1")" >&2; return 1; }
    sleep 0.2
  done
  echo "local-cluster: node $1 did not answer within $2 s (log: $(log_file "$1"))" >&2
  return 1
}

start_node() { # id, extra args...
  local id=$1; shift
  local d; d="$(node_dir "$id")"
  mkdir -p "$d/data"
  local hp rp sp; hp="$(http_port "$id")"; rp="$(raft_port "$id")"; sp="$(https_port "$id")"
  for p in "$hp" "$rp" "$sp"; do
    if port_busy "$p"; then
      echo "local-cluster: port $HOST:$p (node $id) is already in use by another process; set ZS_HTTP_BASE / ZS_RAFT_BASE" >&2
      exit 1
    fi
  done
  # setsid: the node must not die with this shell's session or receive its terminal's ^C.
  local launcher=()
  command -v setsid >/dev/null && launcher=(setsid)
  RUST_LOG="${RUST_LOG:-info}" nohup "${launcher[@]}" "$ZSNODE" --id "$id" --data-dir "$d/data" \
    --raft-addr "$HOST:$rp" --http-addr "$HOST:$hp" --https-addr "$HOST:$sp" \
    --admin-token-file "$TOKEN_FILE" --cluster-id "$CLUSTER_ID" "$@" \
    >>"$(log_file "$id")" 2>&1 </dev/null &
  echo $! > "$(pid_file "$id")"
}

print_info() {
  local list; list="$(node_list)"
  cat <<EOF

Local management cluster "$CLUSTER_ID": $NODES node(s) on $HOST
  HTTP API (any node):  $(for i in $(seq 1 "$NODES"); do printf 'http://%s:%s  ' "$HOST" "$(http_port "$i")"; done)
  HTTPS API:            $(for i in $(seq 1 "$NODES"); do printf 'https://%s:%s  ' "$HOST" "$(https_port "$i")"; done)
  Cluster CA:           $(node_dir 1)/data/pki/ca.crt
  Admin token:          $TOKEN_FILE
  Raft ports:           $(for i in $(seq 1 "$NODES"); do printf '%s  ' "$(raft_port "$i")"; done)
  Metrics:              http://$HOST:$(http_port 1)/metrics
  Data and logs:        $DIR/node<N>/{data,zsnode.log}

  export ZSCTL_NODE=$list ZSCTL_TOKEN_FILE=$TOKEN_FILE
  $ZSCTL status
  $ZSCTL member list
  $ZSCTL leader transfer
  $ZSCTL snapshot save backup.snap
  curl -X PUT -H "Authorization: Bearer \$(cat $TOKEN_FILE)" --data-binary hello http://$HOST:$(http_port 1)/kv/greeting
  curl --cacert $(node_dir 1)/data/pki/ca.crt https://$HOST:$(https_port 1)/health/ready

  Stop:   bash deploy/local-cluster.sh stop${DIR:+ --dir $DIR}
EOF
}

cmd_start() {
  local running=() missing=() i
  for i in $(seq 1 "$NODES"); do
    if running_pid "$i" >/dev/null; then running+=("$i"); else missing+=("$i"); fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    local pids=""
    for i in $(seq 1 "$NODES"); do pids="$pids${pids:+ }$(running_pid "$i")"; done
    echo "local-cluster: already running ($NODES nodes, pids $pids)"
    print_info
    return 0
  fi
  build
  cat > "$STATE" <<EOF
NODES=$NODES
HOST=$HOST
HTTP_BASE=$HTTP_BASE
HTTPS_BASE=$HTTPS_BASE
RAFT_BASE=$RAFT_BASE
CLUSTER_ID=$CLUSTER_ID
PROFILE=$PROFILE
BIN_DIR=$BIN_DIR
ZSNODE=$ZSNODE
ZSCTL=$ZSCTL
EOF
  if [ ! -s "$TOKEN_FILE" ]; then
    (umask 077; printf 'zsadm_%s\n' "$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')" > "$TOKEN_FILE")
  fi
  [ ${#running[@]} -gt 0 ] && echo "local-cluster: nodes ${running[*]} already running; starting ${missing[*]}"
  for i in "${missing[@]}"; do
    # A node with an existing data dir is already a member: it restarts and catches up.
    local fresh=0
    [ -z "$(ls -A "$(node_dir "$i")/data" 2>/dev/null)" ] && fresh=1
    if [ "$i" = 1 ]; then
      start_node 1 --init
    elif [ "$fresh" = 1 ]; then
      # A new node gets its certificate and the cluster keys with a join token.
      local tf="$DIR/node$i/join.token" end=$((SECONDS + START_TIMEOUT)) out
      until out="$("$ZSCTL" --node "$(node_list)" join-token create --node-id "$i" --ttl 600 2>&1)"; do
        if [ $SECONDS -ge $end ]; then echo "local-cluster: no join token for node $i: $out" >&2; exit 1; fi
        sleep 0.5
      done
      mkdir -p "$DIR/node$i"
      (umask 077; printf '%s\n' "$out" > "$tf")
      start_node "$i" --join "https://$HOST:$(https_port 1)" --join-token-file "$tf"
    else
      start_node "$i"
    fi
    echo "local-cluster: node $i started (pid $(cat "$(pid_file "$i")"), http $HOST:$(http_port "$i"))"
    wait_http "$i" "$START_TIMEOUT"
    if [ "$i" != 1 ] && [ "$fresh" = 1 ]; then
      # Join through any running node; the request is forwarded to the leader.
      local end=$((SECONDS + START_TIMEOUT)) out
      until out="$("$ZSCTL" --node "$(node_list)" member add --id "$i" --raft-addr "$HOST:$(raft_port "$i")" --api-addr "$HOST:$(http_port "$i")" 2>&1)"; do
        if [ $SECONDS -ge $end ]; then echo "local-cluster: joining node $i failed: $out" >&2; exit 1; fi
        sleep 0.5
      done
      echo "local-cluster: $out"
    fi
  done
  echo "local-cluster: waiting for one leader and equal applied indexes..."
  if ! "$ZSCTL" --node "$(node_list)" status --wait "$START_TIMEOUT"; then
    echo "local-cluster: the cluster did not converge within $START_TIMEOUT s; see the logs under $DIR" >&2
    exit 1
  fi
  print_info
}

cmd_stop() {
  local i pid any=0
  local pids=()
  for i in $(seq 1 "$NODES"); do
    if pid="$(running_pid "$i")"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$i:$pid")
      any=1
    fi
  done
  if [ $any = 0 ]; then
    echo "local-cluster: not running (dir $DIR)"
    rm -f "$DIR"/node*/zsnode.pid
    return 0
  fi
  local end=$((SECONDS + STOP_TIMEOUT)) entry
  for entry in "${pids[@]}"; do
    i="${entry%%:*}"; pid="${entry#*:}"
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "local-cluster: node $i (pid $pid) ignored SIGTERM for $STOP_TIMEOUT s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    else
      echo "local-cluster: node $i (pid $pid) stopped"
    fi
    rm -f "$(pid_file "$i")"
  done
}

cmd_status() {
  local i pid up=0
  for i in $(seq 1 "$NODES"); do
    if pid="$(running_pid "$i")"; then
      echo "node $i: running (pid $pid), http $HOST:$(http_port "$i"), log $(log_file "$i")"
      up=$((up + 1))
    else
      echo "node $i: not running"
    fi
  done
  if [ $up -gt 0 ] && [ -x "$ZSCTL" ]; then
    echo
    "$ZSCTL" --node "$(node_list)" status
  fi
  [ $up -gt 0 ]
}

case "$CMD" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  help|-h|--help|"")
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    [ -n "$CMD" ] ;;
  *) echo "local-cluster: unknown command: $CMD (start|stop|status)" >&2; exit 2 ;;
esac
