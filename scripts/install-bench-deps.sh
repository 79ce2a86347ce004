#!/usr/bin/env bash
# What `npm run bench:e2e` needs: the end-to-end test tools, iperf3, and the peers it compares against:
# vde2 (vde_switch, vde_plug2tap), passt and slirp4netns; and valgrind for bench/icount.ts (instructions a
# packet). Needs root (Debian/Ubuntu).
set -euo pipefail
bash "$(dirname "$0")/install-test-deps.sh"
if command -v iperf3 >/dev/null && command -v vde_switch >/dev/null && command -v vde_plug2tap >/dev/null && command -v passt >/dev/null && command -v slirp4netns >/dev/null && command -v valgrind >/dev/null; then
  echo "bench dependencies already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq iperf3 vde2 passt slirp4netns valgrind >/dev/null
echo "installed: iperf3 vde2 passt slirp4netns valgrind"
