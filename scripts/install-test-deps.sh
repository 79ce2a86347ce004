#!/usr/bin/env bash
# What the tests need beyond npm: curl (.ci/newcomer asks the daemon's socket), network namespaces and TAP devices (iproute2, /dev/net/tun),
# socat (TAP <-> UDP and the test servers), ping, netcat and tcpdump; ethtool (test/e2e-overlay.test.ts turns a Linux
# vxlan device's checksum offload off); ISC dhclient (the DHCPv6 client of
# test/ipv6-autoconf.test.ts); nftables (the Linux router the
# differential suite, test/linux-diff.test.ts, compares netplane with); Debian's chromium, which
# test/browser.test.ts drives headless (through playwright-core, a dev dependency: no browser download);
# and QEMU with the tiny test guest (scripts/build-test-guest.sh: Debian's cloud kernel and a busybox
# initramfs, in $NETPLANE_GUEST_DIR, default /tmp/np-guest) that test/cli.test.ts boots against the
# command lines `netplane endpoint get` prints; and etcd (etcd-server, etcd-client), which
# test/cluster.test.ts and bench/cluster.ts start for the overlay's membership. Needs root (Debian/Ubuntu).
set -euo pipefail
export PATH=$PATH:/usr/sbin:/sbin
if ! { command -v curl && command -v socat && command -v ip && command -v ping && command -v tcpdump && command -v nc && command -v nft && command -v chromium && command -v qemu-system-x86_64 && command -v busybox && command -v dhclient && command -v cpio && command -v depmod && command -v ethtool && command -v etcd && command -v etcdctl; } >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq curl socat iproute2 iputils-ping netcat-openbsd tcpdump nftables iperf3 chromium qemu-system-x86 busybox-static isc-dhcp-client cpio kmod ethtool etcd-server etcd-client >/dev/null
  echo "installed: curl socat iproute2 iputils-ping netcat-openbsd tcpdump nftables iperf3 chromium qemu-system-x86 busybox-static isc-dhcp-client cpio kmod ethtool etcd-server etcd-client"
fi
guest=${NETPLANE_GUEST_DIR:-/tmp/np-guest}
if [ ! -f "$guest/vmlinuz" ] || [ ! -f "$guest/initrd.cpio.gz" ]; then
  bash "$(dirname "$0")/build-test-guest.sh" "$guest" >/dev/null
  echo "built the test guest in $guest"
fi
echo "test dependencies ready"
