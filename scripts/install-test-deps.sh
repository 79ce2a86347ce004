#!/usr/bin/env bash
# What the end-to-end tests need beyond npm: network namespaces and TAP devices (iproute2, /dev/net/tun),
# socat (TAP <-> UDP and the test servers), ping, netcat and tcpdump. Needs root (Debian/Ubuntu).
set -euo pipefail
if command -v socat >/dev/null && command -v ip >/dev/null && command -v ping >/dev/null && command -v tcpdump >/dev/null && command -v nc >/dev/null; then
  echo "test dependencies already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq socat iproute2 iputils-ping netcat-openbsd tcpdump iperf3 >/dev/null
echo "installed: socat iproute2 iputils-ping netcat-openbsd tcpdump iperf3"
