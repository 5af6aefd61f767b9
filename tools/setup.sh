#!/usr/bin/env bash
# Prepare this checkout on a fresh Debian 12 controller: OS packages, the pinned venv, and the
# collection link that lets ansible.cfg resolve onprem.llm_serving.* from the checkout.
# Idempotent: a warm re-run takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
# tcpdump: the air-gap test counts egress attempts; gnupg: the bundle signs its apt repository; haproxy: the gateway
# role's unit tests check and run its rendered configurations (Debian 12: 2.6, as on the hosts); prometheus: its promtool
# checks and unit-tests the monitoring role's alert rules and dashboard queries (Debian 12: 2.42, as on the hosts),
# prometheus-alertmanager: its amtool checks the rendered Alertmanager configuration; the three also run for real in
# tests/integration/test_monitoring_lab.py (not as services: the test starts them on ports of its own); chromium: the
# benchmark report test opens the HTML page headless and screenshots it (tests/unit/plugins/filter/test_benchmark_html_chromium.py).
APT_PACKAGES=(debootstrap docker.io rsync shellcheck tcpdump gnupg haproxy prometheus prometheus-alertmanager
  prometheus-node-exporter chromium)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing OS packages ${missing[*]}; run as root or install them: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: apt-get install ${missing[*]}"
  mkdir -p .cache
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
      >.cache/setup-apt.log 2>&1; then
    tail -20 .cache/setup-apt.log >&2
    echo "setup: apt-get install ${missing[*]} failed (full log: .cache/setup-apt.log)" >&2
    exit 1
  fi
fi

mkdir -p .cache
stamp="$VENV/.requirements.sha256"
want=$(cat requirements/controller.txt requirements/constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating $VENV (pinned requirements)"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements/controller.txt \
    -c requirements/constraints.txt 2>&1 | { grep -v "is ignored: it is neither a file" || true; }
  echo "$want" > "$stamp"
fi

wheels=.cache/artefacts/wheels/common
if ! "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes \
    -r requirements/host-wheels.txt -d "$wheels" >/dev/null 2>.cache/setup-pip.log; then
  echo "setup: could not download the host wheels in requirements/host-wheels.txt (see .cache/setup-pip.log)" >&2
  exit 1
fi

link=.cache/collections/ansible_collections/onprem/llm_serving
mkdir -p "$(dirname "$link")"
if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
  rm -f "$link"
  ln -s "$ROOT" "$link"
fi
echo "setup: ready ($VENV, collection link $link)"
