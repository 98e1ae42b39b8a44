#!/usr/bin/env bash
# Installs the system packages the project builds, tests and runs with, only when missing.
# Used by the README's first command and by .ci/run. Idempotent; needs root (or sudo).
set -euo pipefail

# Build: bindgen needs clang/libclang; we link Debian's librocksdb (7.8) instead of compiling
# the bundled C++ (seconds instead of ~20 minutes here); tonic needs protoc, etcd-client also the
# well-known .proto files of libprotobuf-dev (not a recommends of protobuf-compiler); libvirt for the agent.
BUILD_PKGS=(clang libclang-dev librocksdb-dev protobuf-compiler libprotobuf-dev libvirt-dev pkg-config)
# Run (the local demo too): the image store reads images with qemu-img; the demo script talks
# to the API with curl.
BUILD_PKGS+=(qemu-utils curl)
# Tests and benchmarks: etcd is the peer in the write benchmark; promtool checks /metrics;
# node/tests/host_deploy.rs runs its own sshd in a netns and deploys the agent with ssh/scp.
TEST_PKGS=(etcd-server etcd-client prometheus iproute2 openssh-server openssh-client)

want=("${BUILD_PKGS[@]}")
if [ "${1:-}" != "--build-only" ]; then
  want+=("${TEST_PKGS[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#want[@]} packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The Debian etcd/prometheus packages would start daemons under systemd; there is none here,
# and our tests start their own instances on private ports.
echo "install-deps: done"
