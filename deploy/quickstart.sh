#!/usr/bin/env bash
# Fresh Debian machine -> a running local 3-node management cluster on 127.0.0.1.
# Installs missing system packages, builds, starts the nodes in the background and prints how
# to reach them. Stop with: bash deploy/local-cluster.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh --build-only
exec bash deploy/local-cluster.sh start "$@"
