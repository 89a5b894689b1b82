#!/usr/bin/env bash
# Installs the Debian packages panel-bandwidth's kernel features, tests and demo need.
# Idempotent: installs only what is missing, and runs apt-get update only then.
set -euo pipefail

PACKAGES=(
  iproute2        # tc, ip (HTB, u32, IFB, netns)
  wireguard-tools # wg
  wireguard-go    # userspace WireGuard where the kernel module is absent
  iperf3          # real traffic in the kernel tests
  mariadb-server  # db test layer
  postgresql      # db test layer
  chromium        # browser test layer (headless, driven by playwright-core)
  vnstat          # optional import source for accounting
  faketime        # libfaketime: the test runner's clock layer moves the wall clock by ±400 days
)

if [[ $(id -u) -ne 0 ]]; then
  echo "install-system-deps: run as root (apt-get needs it)" >&2
  exit 1
fi

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-system-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Services must not be started by the package scripts here; scripts/start-databases.sh does that.
apt-get install -y -qq --no-install-recommends "${missing[@]}"
