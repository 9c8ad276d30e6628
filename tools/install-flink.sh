#!/usr/bin/env bash
# Installs the Flink peer for bench/peers/flink_tumble.py: a Java 17+ runtime (Debian's
# openjdk-17-jre-headless) and PyFlink (PyPI apache-flink, pinned) in a venv of its own at
# target/peers/flink-venv, so its large dependency tree stays out of the system Python.
# Idempotent: a second run only checks versions (about a second). Prints the venv python.
# Usage: tools/install-flink.sh        then: "$(tools/install-flink.sh)" bench/peers/flink_tumble.py EVENTS.csv
set -euo pipefail
cd "$(dirname "$0")/.."

FLINK_VERSION="2.3.0"
ROOT="$PWD/target/peers"
VENV="$ROOT/flink-venv"
mkdir -p "$ROOT"
# Same lock as install-peers.sh: both write under target/peers.
exec 9>"$ROOT/.lock"
flock 9

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Major version of the `java` on PATH, or 0. Handles both "17.0.15" and the old "1.8.0" form.
java_major() {
  local v
  v="$(java -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n1)" || true
  [ -n "$v" ] || { echo 0; return; }
  case "$v" in 1.*) v="${v#1.}" ;; esac
  echo "${v%%[.+-]*}"
}

# Flink 2.x needs Java 11+ and recommends 17; Debian bookworm ships 17 (not 11 or 21).
if [ "$(java_major)" -lt 17 ]; then
  echo "install-flink: installing openjdk-17-jre-headless (Debian)" >&2
  if ! sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless >/dev/null 2>&1; then
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends openjdk-17-jre-headless >/dev/null
  fi
  [ "$(java_major)" -ge 17 ] || { echo "install-flink: java 17+ still not on PATH" >&2; exit 1; }
fi

PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "install-flink: creating venv $VENV" >&2
  "${PYTHON:-python3}" -m venv "$VENV"
fi
have="$("$PY" -c "import importlib.metadata as m; print(m.version('apache-flink'))" 2>/dev/null || true)"
if [ "$have" != "$FLINK_VERSION" ]; then
  echo "install-flink: pip install apache-flink==$FLINK_VERSION (a few hundred MB; minutes the first time)" >&2
  "$PY" -m pip install --quiet --disable-pip-version-check "apache-flink==$FLINK_VERSION" >&2
fi
echo "$PY"
