#!/usr/bin/env bash
# Installs the real third-party clients the test suite drives: Debian's kcat (librdkafka
# 2.0.2) and psql, and from PyPI confluent-kafka, kafka-python, psycopg and duckdb. Idempotent:
# whatever is already there at the pinned version is left alone. Safe to run concurrently
# (a lock serialises runs).
set -euo pipefail

PIP_PACKAGES=(
  "confluent-kafka==2.16.1"
  "kafka-python==3.0.12"
  "psycopg[binary]==3.3.9"
  "duckdb==2.0.1"
)

exec 9>"${TMPDIR:-/tmp}/sluice-install-clients.lock"
flock 9

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian packages: kcat (librdkafka 2.0.2) and psql (postgresql-client).
apt_packages=()
command -v kcat >/dev/null 2>&1 || apt_packages+=(kcat)
command -v psql >/dev/null 2>&1 || apt_packages+=(postgresql-client)
if [ "${#apt_packages[@]}" -gt 0 ]; then
  echo "install-clients: installing ${apt_packages[*]} (Debian)" >&2
  if ! sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_packages[@]}" >/dev/null 2>&1; then
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get update >/dev/null
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${apt_packages[@]}" >/dev/null
  fi
fi

PY="${PYTHON:-python3}"
missing=()
for spec in "${PIP_PACKAGES[@]}"; do
  name="${spec%%==*}"; name="${name%%\[*}"; want="${spec##*==}"
  have="$("$PY" -c "import importlib.metadata as m; print(m.version('$name'))" 2>/dev/null || true)"
  if [ "$have" != "$want" ]; then missing+=("$spec"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-clients: pip install ${missing[*]}" >&2
  "$PY" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
fi
