#!/usr/bin/env bash
# Installs the system packages the project builds, tests and runs with, only when missing.
# Used by the README's first command and by .ci/run. Idempotent; needs root (or sudo).
set -euo pipefail

# Build: bindgen needs clang/libclang; we link Debian's librocksdb (7.8) instead of compiling
# the bundled C++ (seconds instead of ~20 minutes here); tonic needs protoc, etcd-client also the
# well-known .proto files of libprotobuf-dev (not a recommends of protobuf-compiler); libvirt for the agent.
BUILD_PKGS=(clang libclang-dev librocksdb-dev protobuf-compiler libprotobuf-dev libvirt-dev pkg-config)
# Run (the local demo too): the demo script talks to the API with curl and serves its image
# over HTTP with python3's http.server.
BUILD_PKGS+=(curl python3)
# QEMU: the image store reads images with qemu-img (build), a KVM host runs VMs with
# qemu-system-x86 (tests). On bookworm both come from bookworm-backports (QEMU 10): its
# qemu-system-x86 7.2 and the newer qemu-utils conflict, so the two must come from one place.
QEMU_BUILD_PKGS=(qemu-utils)
QEMU_TEST_PKGS=(qemu-system-x86)
# Tests and benchmarks: etcd is the peer in the write benchmark; promtool checks /metrics;
# node/tests/host_deploy.rs runs its own sshd in a netns and deploys the agent with ssh/scp;
# agent/tests/real_kvm.rs boots a VM on qemu:///system (libvirtd and virtlogd, started by the
# test itself). libvirt stays bookworm's 9.0, the version libvirt-dev links the agent against;
# the sysv flavour of libvirt-daemon-system because the systemd one would upgrade systemd.
TEST_PKGS=(etcd-server etcd-client prometheus iproute2 openssh-server openssh-client
  libvirt-daemon-system libvirt-daemon-system-sysv)

want=("${BUILD_PKGS[@]}")
qemu_want=("${QEMU_BUILD_PKGS[@]}")
if [ "${1:-}" != "--build-only" ]; then
  want+=("${TEST_PKGS[@]}")
  qemu_want+=("${QEMU_TEST_PKGS[@]}")
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
backports=""
[ "$codename" = bookworm ] && backports=bookworm-backports

installed() {
  dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null | grep -q "^install ok installed"
}
# On bookworm an installed QEMU package counts only in its backports version: a 7.2 left by
# an older run of this script is upgraded rather than kept next to a QEMU 10 package.
from_backports() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null | grep -q "~bpo"
}

missing=()
for p in "${want[@]}"; do
  installed "$p" || missing+=("$p")
done
qemu_missing=()
for p in "${qemu_want[@]}"; do
  if ! installed "$p" || { [ -n "$backports" ] && ! from_backports "$p"; }; then
    qemu_missing+=("$p")
  fi
done

total=$((${#want[@]} + ${#qemu_want[@]}))
if [ ${#missing[@]} -eq 0 ] && [ ${#qemu_missing[@]} -eq 0 ]; then
  echo "install-deps: all $total packages present"
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# The backports source, added only when a QEMU package is to come from it and no apt source
# names the suite yet (one-line .list or deb822 .sources alike).
if [ ${#qemu_missing[@]} -gt 0 ] && [ -n "$backports" ] &&
  ! grep -rqsE "^[^#]*\b$backports\b" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "install-deps: adding the $backports apt source"
  echo "deb http://deb.debian.org/debian $backports main" |
    $SUDO tee /etc/apt/sources.list.d/$backports.list >/dev/null
fi
all_missing=("${qemu_missing[@]}" "${missing[@]}")
echo "install-deps: installing ${all_missing[*]}"
$SUDO apt-get update -qq
# QEMU first: nothing else then pulls in an older qemu-utils from the main archive.
if [ ${#qemu_missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    ${backports:+-t "$backports"} "${qemu_missing[@]}" >/dev/null
fi
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian etcd/prometheus packages would start daemons under systemd; there is none here,
# and our tests start their own instances on private ports.
echo "install-deps: done"
