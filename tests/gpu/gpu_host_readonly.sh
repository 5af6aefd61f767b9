#!/bin/sh
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# READ-ONLY checks of the GPU host layer on a real GPU host (the device machine). It runs the same
# detection logic as roles/nvidia_driver/tasks/detect.yml and roles/container_runtime/tasks/cdi.yml
# and writes nothing outside a temporary directory: no persistence mode, clocks, power limits,
# compute or MIG mode, no reset, no package, no service.
#
#   sh tests/gpu/gpu_host_readonly.sh [PINNED]     PINNED: branch (580) or exact version (580.95.05)
#   GPU_HEALTH=1 ...                              also run the gpu_health module against localhost
#                                                 (needs ansible-core and this collection on the path)
set -u
PINNED=${1:-580}
PCI=${PCI_DEVICES_PATH:-/sys/bus/pci/devices}
NVSWITCH_IDS="0x1af1 0x22a3 0x22a4 0x2901"
TMP=$(mktemp -d /tmp/gpu_host_readonly.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fail=0

echo "== GPU detection (sysfs $PCI, vendor 0x10de, class 0x03xx; NVSwitch by device id)"
gpus=0; switches=0
for d in "$PCI"/*; do
  [ -r "$d/vendor" ] || continue
  [ "$(cat "$d/vendor")" = 0x10de ] || continue
  dev=$(cat "$d/device"); class=$(cat "$d/class")
  case "$class" in 0x03*) echo "gpu ${d##*/} device=$dev class=$class"; gpus=$((gpus+1)) ;; esac
  for id in $NVSWITCH_IDS; do [ "$dev" = "$id" ] && { echo "nvswitch ${d##*/} device=$dev"; switches=$((switches+1)); }; done
done
echo "gpus=$gpus nvswitches=$switches fabricmanager_auto=$([ "$switches" -gt 0 ] && echo yes || echo no)"

echo "== Secure Boot"
if command -v mokutil >/dev/null 2>&1; then mokutil --sb-state 2>&1 | sed 's/^/mokutil: /'
elif [ -e /sys/firmware/efi ]; then echo "no mokutil; EFI present"; else echo "no mokutil, no EFI: legacy boot (Secure Boot off)"; fi

echo "== Loaded modules"
[ -d /sys/module/nouveau ] && echo "nouveau: LOADED (a reboot would be needed)" || echo "nouveau: not loaded"
loaded=$(cat /sys/module/nvidia/version 2>/dev/null || true)
echo "nvidia module (/sys/module/nvidia/version): ${loaded:-none}"
[ -r /proc/driver/nvidia/version ] && sed -n 1p /proc/driver/nvidia/version

echo "== NVML library (the version container_runtime records for the CDI spec)"
nvml=$(find /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 -maxdepth 1 -name 'libnvidia-ml.so.*.*' 2>/dev/null | sed 's/.*libnvidia-ml\.so\.//' | sort | tail -1)
echo "libnvidia-ml.so version: ${nvml:-not found}"

echo "== nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
  smi=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>&1 | sed -n 1p)
  echo "nvidia-smi driver_version: $smi"; nvidia-smi -L
else smi=""; echo "nvidia-smi not found"; fi

echo "== Role logic: loaded driver == pinned ($PINNED)"
v=${loaded:-$smi}
case "$PINNED" in
  *.*) [ "$v" = "$PINNED" ] && ok=yes || ok=no ;;
  *) case "$v" in "$PINNED".*) ok=yes ;; *) ok=no ;; esac ;;
esac
echo "loaded=${v:-none} pinned=$PINNED match=$ok"
[ "$ok" = yes ] || fail=1
[ -z "$loaded" ] || [ -z "$smi" ] || [ "$loaded" = "$smi" ] || { echo "MISMATCH: module $loaded vs nvidia-smi $smi"; fail=1; }

echo "== Packages (held?)"
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' 'nvidia-*' 'cuda-drivers*' 'libnvidia-container*' 2>/dev/null | grep -v ' un' | head -40
  echo "held: $(apt-mark showhold 2>/dev/null | tr '\n' ' ')"
elif command -v rpm >/dev/null 2>&1; then rpm -qa 'nvidia-*' 'kmod-nvidia*' | head -40; fi

echo "== nvidia-ctk cdi generate (to $TMP only)"
if command -v nvidia-ctk >/dev/null 2>&1; then
  nvidia-ctk --version 2>&1 | sed -n 1p
  if nvidia-ctk cdi generate --output="$TMP/nvidia.yaml" >"$TMP/ctk.log" 2>&1; then
    echo "spec: $(wc -l < "$TMP/nvidia.yaml") lines; devices: $(grep -c '^- name:' "$TMP/nvidia.yaml" || true)"
    grep -m3 "libnvidia-ml.so" "$TMP/nvidia.yaml" || true
  else echo "cdi generate failed:"; tail -5 "$TMP/ctk.log"; fi
else echo "nvidia-ctk not found: CDI step not exercised here"; fi

if [ "${GPU_HEALTH:-0}" = 1 ]; then
  echo "== gpu_health (read-only module, localhost)"
  ansible localhost -c local -m onprem.llm_serving.gpu_health -a 'fail_on_unhealthy=false' 2>&1 \
    | grep -E '"(driver_version|gpu_count|healthy|cuda_driver_version)"|FAILED|msg' | head -20
fi
echo "== result: $([ $fail = 0 ] && echo PASS || echo FAIL)"
exit $fail
