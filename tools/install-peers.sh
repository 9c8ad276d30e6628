#!/usr/bin/env bash
# Installs the peers the benchmarks compare Sluice with, into target/peers (idempotent):
#   tansu  - a Kafka-compatible broker in Rust (cargo install, ~7 minutes the first time)
# Usage: tools/install-peers.sh [tansu]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD/target/peers"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
flock 9

want="${1:-tansu}"
case "$want" in
  tansu)
    if [ ! -x "$ROOT/tansu/bin/tansu" ]; then
      echo "install-peers: building tansu 0.6.0 (cargo install; several minutes)" >&2
      cargo install tansu --version 0.6.0 --locked --no-default-features --features dynostore \
        --root "$ROOT/tansu" --quiet >&2
    fi
    echo "$ROOT/tansu/bin/tansu"
    ;;
  *)
    echo "install-peers: unknown peer '$want'" >&2
    exit 2
    ;;
esac
