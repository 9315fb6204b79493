#!/usr/bin/env bash
# Set-up for a fresh Debian machine: the system services the tests and the
# demo start themselves (Mosquitto, PostgreSQL server binaries), then the
# project's virtual environment. Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=.venv

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
  || need_apt+=(postgresql)
# the time-series tests: VictoriaMetrics takes what influxdb-client sends to
# /api/v2/write; InfluxDB 1.6 runs the Grafana dashboard's InfluxQL queries
command -v victoria-metrics >/dev/null 2>&1 || [ -x /usr/bin/victoria-metrics ] \
  || need_apt+=(victoria-metrics)
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || need_apt+=(influxdb)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "setup: missing Debian packages: ${need_apt[*]} (run as root or install them)" >&2
      exit 1
    fi
  fi
  echo "setup: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${need_apt[@]}" \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${need_apt[@]}"; }
  # The packages start system-wide services; the project never uses them.
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into $VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -e '.[dev]'
  # MicroPython ESP32 stubs, apart from the venv's site-packages (they shadow
  # the standard library): firmware code is type-checked against them
  "$VENV/bin/pip" install --quiet --target "$VENV/mpy-stubs" 'micropython-esp32-stubs==1.28.0.post4'
  touch "$stamp"
fi
