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
# ZS_NO_BUILD=1 to use already-built binaries (ZS_BIN_DIR overrides target/<profile>),
# ZS_AGENTS=0 to start no demo hosts (default: two zsagents on libvirt's test driver at
# 127.0.0.2 and 127.0.0.3, the first also the image store, added through the API, with an image
# served over HTTP on $ZS_HOST:$ZS_IMAGE_PORT (8090), a flat L3 with an IP range and an instance
# offering, so a first VM can be created; ZS_AGENT_IPS="ip1 ip2" picks other addresses).
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
ZSAGENT="$BIN_DIR/zsagent"
AGENTS="${ZS_AGENTS:-1}"
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
    if [ ! -x "$ZSNODE" ] || [ ! -x "$ZSCTL" ] || { [ "$AGENTS" = 1 ] && [ ! -x "$ZSAGENT" ]; }; then
      echo "local-cluster: ZS_NO_BUILD=1 but $ZSNODE or $ZSCTL is missing" >&2
      exit 1
    fi
    return
  fi
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  echo "local-cluster: building zsnode, zsctl and zsagent ($PROFILE)..."
  (cd "$ROOT" && cargo build -q "${flag[@]}" -p node -p ops -p agent)
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
  if [ "$AGENTS" = 1 ]; then
    local n ports=""
    for n in $(seq 1 "$NODES"); do ports="$ports${ports:+ }$(http_port "$n")"; done
    # chaos-tests/tests/local_cluster_script.rs runs the indented lines after "First VM"
    # literally, as one shell script, and checks the VM runs on a demo agent.
    cat <<EOF

Demo hosts (zsagent on libvirt's test driver): ${AGENT_IPS[*]}; logs under $DIR/agent-<ip>/
  Image store on ${AGENT_IPS[0]}; image "$DEMO_IMAGE" served from http://$HOST:$IMAGE_PORT/$DEMO_IMAGE.qcow2
  L3 "$DEMO_L3" ($DEMO_RANGE_START-$DEMO_RANGE_END), instance offering "$DEMO_OFFERING" (1 vCPU, 256 MiB)

First VM on the demo hosts (log in, look up the image, offering and L3, create, query, see the domain):
  API=http://$HOST:$(http_port 1)/zstack/v1
  S=\$(curl -s -X PUT -d '{"logInByAccount":{"accountName":"admin","password":"$ADMIN_SHA512"}}' \$API/accounts/login | sed -n 's/.*"inventory":{[^}]*"uuid":"\([0-9a-f]\{32\}\)".*/\1/p')
  IMAGE=\$(curl -s -H "Authorization: OAuth \$S" "\$API/images?q=name=$DEMO_IMAGE&fields=uuid" | grep -o '"uuid":"[0-9a-f]*"' | cut -d'"' -f4)
  OFFERING=\$(curl -s -H "Authorization: OAuth \$S" "\$API/instance-offerings?q=name=$DEMO_OFFERING&fields=uuid" | grep -o '"uuid":"[0-9a-f]*"' | cut -d'"' -f4)
  L3=\$(curl -s -H "Authorization: OAuth \$S" "\$API/l3-networks?q=name=$DEMO_L3&fields=uuid" | grep -o '"uuid":"[0-9a-f]*"' | cut -d'"' -f4)
  JOB=\$(curl -s -X POST -H "Authorization: OAuth \$S" -H 'Content-Type: application/json' -d "{\"params\":{\"name\":\"first-vm\",\"imageUuid\":\"\$IMAGE\",\"instanceOfferingUuid\":\"\$OFFERING\",\"l3NetworkUuids\":[\"\$L3\"]}}" \$API/vm-instances | grep -o '"location":"[^"]*"' | cut -d'"' -f4)
  while [ "\$(curl -s -o /dev/null -w '%{http_code}' "\$JOB")" = 202 ]; do sleep 1; done; curl -s "\$JOB"; echo
  curl -s -H "Authorization: OAuth \$S" "\$API/vm-instances?q=name=first-vm&fields=uuid,name,state,hostUuid"; echo
  VM_HOST=\$(curl -s -H "Authorization: OAuth \$S" "\$API/vm-instances?q=name=first-vm&fields=hostUuid" | grep -o '"hostUuid":"[0-9a-f]*"' | cut -d'"' -f4)
  for p in $ports; do curl -sf -H "Authorization: Bearer \$(cat $TOKEN_FILE)" http://$HOST:\$p/cluster/hosts/\$VM_HOST/domains && break; done; echo

EOF
  fi

}

# --- Demo hosts: zsagents on libvirt's test driver, added the way an operator would. ---
read -r -a AGENT_IPS <<< "${ZS_AGENT_IPS:-127.0.0.2 127.0.0.3}"
[ ${#AGENT_IPS[@]} -ge 1 ] || { echo "local-cluster: ZS_AGENT_IPS names no address" >&2; exit 2; }
IMAGE_PORT="${ZS_IMAGE_PORT:-8090}"
DEMO_IMAGE=demo-image
DEMO_L3=demo-l3
DEMO_OFFERING=demo-small
DEMO_RANGE_START=10.99.0.10
DEMO_RANGE_END=10.99.0.250
ADMIN_SHA512=b109f3bbbc244eb82441917ed06d618b9008dd09b3befd1b5e07394c706a8bb980b1d7785e5976ec049b46df5f1326af5a2ea6d103fd07c95385ffab0cacbc86
agent_dir() { echo "$DIR/agent-$1"; }

# One REST v1 call as admin; an accepted async call (202) is polled until done. Prints the body.
rest() { # method path [json]
  local out code loc
  out="$(curl -s -w '\n%{http_code}' -X "$1" -H "Authorization: OAuth $SESSION" \
    -H 'Content-Type: application/json' ${3:+--data "$3"} "http://$HOST:$(http_port 1)/zstack/v1$2")"
  code="${out##*$'\n'}"; out="${out%$'\n'*}"
  if [ "$code" = 202 ]; then
    loc="$(printf '%s' "$out" | sed -n 's/.*"location":"\([^"]*\)".*/\1/p')"
    while :; do
      out="$(curl -s -w '\n%{http_code}' "$loc")"; code="${out##*$'\n'}"; out="${out%$'\n'*}"
      [ "$code" = 202 ] || break
      sleep 0.3
    done
  fi
  printf '%s' "$out"
  [ "$code" = 200 ]
}
uuid_of() { sed -n 's/.*"inventory":{[^}]*"uuid":"\([0-9a-f]\{32\}\)".*/\1/p' | head -n 1; }

image_pid_file() { echo "$DIR/images/http.pid"; }

# The demo's image, a blank qcow2 (the test driver boots nothing), served over plain HTTP the
# way an operator's image server would be: AddImage downloads it into the image store.
start_image_server() {
  local pid end
  mkdir -p "$DIR/images"
  if [ ! -f "$DIR/images/$DEMO_IMAGE.qcow2" ]; then
    command -v qemu-img >/dev/null || { echo "local-cluster: qemu-img is missing (bash deploy/install-deps.sh)" >&2; return 1; }
    qemu-img create -q -f qcow2 "$DIR/images/$DEMO_IMAGE.qcow2" 64M
  fi
  pid="$(cat "$(image_pid_file)" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then return 0; fi
  command -v python3 >/dev/null || { echo "local-cluster: python3 is missing: it serves the demo image (bash deploy/install-deps.sh)" >&2; return 1; }
  if port_busy "$IMAGE_PORT"; then
    echo "local-cluster: port $HOST:$IMAGE_PORT (image server) is already in use; set ZS_IMAGE_PORT" >&2
    return 1
  fi
  nohup python3 -m http.server --bind "$HOST" --directory "$DIR/images" "$IMAGE_PORT" \
    >>"$DIR/images/http.log" 2>&1 </dev/null &
  echo $! > "$(image_pid_file)"
  end=$((SECONDS + 20))
  until port_busy "$IMAGE_PORT"; do
    [ $SECONDS -lt $end ] || { echo "local-cluster: the image server did not listen on $HOST:$IMAGE_PORT; see $DIR/images/http.log" >&2; return 1; }
    sleep 0.2
  done
}

stop_image_server() {
  local pid
  pid="$(cat "$(image_pid_file)" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    echo "local-cluster: image server (pid $pid) stopped"
  fi
  rm -f "$(image_pid_file)"
}

# What a first VM needs beyond hosts and storage: the image, a flat L3 with an IP range and an
# instance offering.
add_vm_resources() { # zone cluster bs
  local zone=$1 cluster=$2 bs=$3 l2 l3 out
  if ! out="$(rest POST /images "{\"params\":{\"name\":\"$DEMO_IMAGE\",\"url\":\"http://$HOST:$IMAGE_PORT/$DEMO_IMAGE.qcow2\",\"format\":\"qcow2\",\"mediaType\":\"RootVolumeTemplate\",\"platform\":\"Linux\",\"backupStorageUuids\":[\"$bs\"]}}")"; then
    echo "local-cluster: adding image $DEMO_IMAGE failed: $out" >&2; return 1
  fi
  l2="$(rest POST /l2-networks/no-vlan "{\"params\":{\"zoneUuid\":\"$zone\",\"name\":\"demo-flat\",\"physicalInterface\":\"eth0\"}}" | uuid_of)"
  rest POST "/l2-networks/$l2/clusters/$cluster" '{"params":{}}' >/dev/null
  l3="$(rest POST /l3-networks "{\"params\":{\"l2NetworkUuid\":\"$l2\",\"name\":\"$DEMO_L3\"}}" | uuid_of)"
  if ! out="$(rest POST "/l3-networks/$l3/ip-ranges" "{\"params\":{\"name\":\"demo-range\",\"startIp\":\"$DEMO_RANGE_START\",\"endIp\":\"$DEMO_RANGE_END\",\"netmask\":\"255.255.255.0\",\"gateway\":\"10.99.0.1\"}}")"; then
    echo "local-cluster: adding the IP range failed: $out" >&2; return 1
  fi
  if ! out="$(rest POST /instance-offerings "{\"params\":{\"name\":\"$DEMO_OFFERING\",\"cpuNum\":1,\"memorySize\":268435456}}")"; then
    echo "local-cluster: adding the instance offering failed: $out" >&2; return 1
  fi
  echo "local-cluster: image $DEMO_IMAGE, L3 $DEMO_L3 with addresses $DEMO_RANGE_START-$DEMO_RANGE_END and instance offering $DEMO_OFFERING added"
}

start_agents() {
  local ip pki xml out end
  for ip in "${AGENT_IPS[@]}"; do
    mkdir -p "$(agent_dir "$ip")"
    pki="$(agent_dir "$ip")/pki"
    [ -f "$pki/agent.crt" ] || "$ZSNODE" pki agent-cert --data-dir "$(node_dir 1)/data" --host "$ip" --out "$pki" >/dev/null
    xml="$(agent_dir "$ip")/host.xml"
    [ -f "$xml" ] || "$ZSAGENT" test-host-xml --sockets 1 --cores 4 --threads 2 --memory-mib 16384 > "$xml"
    if [ -f "$(agent_dir "$ip")/zsagent.pid" ] && kill -0 "$(cat "$(agent_dir "$ip")/zsagent.pid")" 2>/dev/null; then
      continue
    fi
    nohup "$ZSAGENT" run --listen "$ip:7272" --data-dir "$(agent_dir "$ip")" \
      --libvirt-uri "test://$xml" >>"$(agent_dir "$ip")/zsagent.log" 2>&1 &
    echo $! > "$(agent_dir "$ip")/zsagent.pid"
  done
  for ip in "${AGENT_IPS[@]}"; do
    end=$((SECONDS + 20))
    until (exec 3<>"/dev/tcp/$ip/7272") 2>/dev/null; do
      [ $SECONDS -lt $end ] || { echo "local-cluster: zsagent on $ip did not listen; see $(agent_dir "$ip")/zsagent.log" >&2; return 1; }
      sleep 0.2
    done
  done
  end=$((SECONDS + 60))
  SESSION=""
  until [ -n "$SESSION" ]; do
    SESSION="$(curl -s -X PUT -H 'Content-Type: application/json' \
      --data "{\"logInByAccount\":{\"accountName\":\"admin\",\"password\":\"$ADMIN_SHA512\"}}" \
      "http://$HOST:$(http_port 1)/zstack/v1/accounts/login" | uuid_of || true)"
    if [ -z "$SESSION" ]; then
      [ $SECONDS -lt $end ] || { echo "local-cluster: cannot log in as admin" >&2; return 1; }
      sleep 0.5
    fi
  done
  start_image_server
  if rest GET "/hosts" | grep -q "\"managementIp\":\"${AGENT_IPS[0]}\""; then
    echo "local-cluster: demo hosts already added"
    return 0
  fi
  local zone cluster bs ps
  zone="$(rest POST /zones '{"params":{"name":"demo-zone"}}' | uuid_of)"
  cluster="$(rest POST /clusters "{\"params\":{\"zoneUuid\":\"$zone\",\"name\":\"demo-cluster\",\"hypervisorType\":\"KVM\"}}" | uuid_of)"
  rest PUT /global-configurations/kvm/allowTestDriver/actions '{"updateGlobalConfig":{"value":"true"}}' >/dev/null
  # The demo's primary storage is a directory on this machine's own disk, shared with
  # everything else on it: ZStack's 0.9 physical-usage threshold would refuse the demo's 64 MiB
  # overlays on a disk others filled. The demo VMs are thin qcow2 overlays of a blank image.
  rest PUT /global-configurations/mevoco/threshold.primaryStorage.physicalCapacity/actions '{"updateGlobalConfig":{"value":"0.99"}}' >/dev/null
  for ip in "${AGENT_IPS[@]}"; do
    if ! out="$(rest POST /hosts/kvm "{\"params\":{\"clusterUuid\":\"$cluster\",\"name\":\"demo-$ip\",\"managementIp\":\"$ip\",\"username\":\"root\",\"password\":\"demo\"}}")"; then
      echo "local-cluster: adding host $ip failed: $out" >&2; return 1
    fi
    echo "local-cluster: host $ip Connected"
  done
  ps="$(rest POST /primary-storage/local-storage "{\"params\":{\"zoneUuid\":\"$zone\",\"name\":\"demo-local\",\"url\":\"$DIR/primary\"}}" | uuid_of)"
  rest POST "/clusters/$cluster/primary-storage/$ps" '{"params":{}}' >/dev/null
  # The image store is host 1's pre-installed agent (one agent serves both roles), so the
  # add attaches it: the demo has no sshd on its loopback addresses to install through.
  bs="$(rest POST /backup-storage/image-store "{\"params\":{\"name\":\"demo-store\",\"url\":\"$DIR/imagestore\",\"hostname\":\"${AGENT_IPS[0]}\",\"username\":\"root\",\"password\":\"demo\"}}" | uuid_of)"
  rest POST "/zones/$zone/backup-storage/$bs" '{"params":{}}' >/dev/null
  echo "local-cluster: demo zone, cluster, ${#AGENT_IPS[@]} hosts, local primary storage and image store $bs added"
  add_vm_resources "$zone" "$cluster" "$bs"
}

stop_agents() {
  local ip pid
  for ip in "${AGENT_IPS[@]}"; do
    pid="$(cat "$(agent_dir "$ip")/zsagent.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      echo "local-cluster: zsagent $ip (pid $pid) stopped"
    fi
    rm -f "$(agent_dir "$ip")/zsagent.pid"
  done
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
ZS_AGENT_IPS="${AGENT_IPS[*]}"
ZS_IMAGE_PORT=$IMAGE_PORT
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
  [ "$AGENTS" = 1 ] && start_agents
  print_info
}

cmd_stop() {
  stop_agents
  stop_image_server
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
