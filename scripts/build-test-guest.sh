#!/bin/bash
# The team's test-guest builder (shared/tools/qemu-guest), kept here so CI can build the guest from a clone.
# Builds a tiny Linux guest for real-client tests: Debian's cloud kernel + a busybox initramfs whose init
# configures eth0 from the kernel command line (np.ip=ADDR/PFX np.gw=GW; leave np.ip out and run
# `udhcpc -i eth0 -O mtu` in np.cmd to use DHCP) and runs np.cmd (base64 of a shell command), printing
# "NPGUEST READY ..." and "NPGUEST DONE rc=N", then powers off.
# Output: $OUT/vmlinuz, $OUT/initrd.cpio.gz. Needs (Debian): qemu-system-x86, busybox-static, cpio, kmod.
# Usage: build.sh [OUT]
# Boot (TCG boots in about 3 s; KVM may be unavailable):
#   qemu-system-x86_64 -accel tcg -m 256 -nographic -no-reboot -kernel OUT/vmlinuz -initrd OUT/initrd.cpio.gz \
#     -append "console=ttyS0 quiet np.ip=10.0.0.5/24 np.gw=10.0.0.1 np.cmd=$(printf 'ping -c3 10.0.0.1' | base64 -w0)" \
#     -device virtio-net-pci,netdev=n0,mac=02:00:00:00:00:05,romfile= \
#     -netdev stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=PORT
#   (or -netdev dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port=P1,remote.type=inet,remote.host=127.0.0.1,remote.port=P2)
# busybox gives the guest ping, udhcpc, nc, wget, httpd, md5sum, dd.
set -eu
export PATH=$PATH:/usr/sbin:/sbin
OUT=${1:-/tmp/np-guest}
mkdir -p "$OUT"; cd "$OUT"
if [ ! -f vmlinuz ]; then
  pkg=$(apt-cache search --names-only '^linux-image-6\.[0-9.]+-[0-9]+-cloud-amd64-unsigned$' | awk '{print $1}' | sort -V | tail -1)
  apt-get download "$pkg" >/dev/null
  rm -rf kx; mkdir kx; dpkg-deb -x ./"$pkg"_*.deb kx
  cp kx/boot/vmlinuz-* vmlinuz
  kver=$(ls kx/lib/modules)
  depmod -b kx "$kver"
  # the modules virtio-net needs, with their dependencies in load order, from modules.dep
  mkdir -p mods; : > mods/order
  want() {
    local rel; rel=$(grep -E "(^|/)$1\.ko[^:]*:" kx/lib/modules/$kver/modules.dep | head -1) || return 0
    [ -n "$rel" ] || return 0
    local file=${rel%%:*} deps=${rel#*:}
    for d in $deps; do want "$(basename "$d" | sed 's/\.ko.*//')"; done
    grep -qx "$(basename "$file")" mods/order || { cp "kx/lib/modules/$kver/$file" mods/; basename "$file" >> mods/order; }
  }
  for m in virtio_pci virtio_net; do want $m; done
  rm -rf kx ./"$pkg"_*.deb
fi
rm -rf root; mkdir -p root/bin root/proc root/sys root/dev root/mods root/tmp
cp /bin/busybox root/bin/busybox
cp mods/* root/mods/ 2>/dev/null || true
cat > root/init <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
for f in $(cat /mods/order 2>/dev/null); do insmod /mods/$f; done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^$1=//p"; }
ip link set lo up; ip link set eth0 up
[ -n "$(arg np.ip)" ] && ip addr add $(arg np.ip) dev eth0
[ -n "$(arg np.gw)" ] && ip route add default via $(arg np.gw)
echo "NPGUEST READY $(ip -o addr show eth0 | awk '{print $4}' | tr '\n' ' ')"
cmd=$(arg np.cmd | base64 -d 2>/dev/null)
[ -n "$cmd" ] && sh -c "$cmd"; echo "NPGUEST DONE rc=$?"
poweroff -f
INIT
chmod +x root/init
# udhcpc's hook: apply a lease (address, router, DNS, MTU) so `udhcpc -i eth0 -O mtu` configures the
# guest. Debian's busybox runs /etc/udhcpc/default.script; upstream's default is /usr/share/udhcpc/.
mkdir -p root/usr/share/udhcpc root/etc/udhcpc
cat > root/etc/udhcpc/default.script <<'DHCP'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && { ip route del default 2>/dev/null; ip route add default via ${router%% *}; }
    : > /etc/resolv.conf
    [ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "NPGUEST DHCP $ip/${mask:-24} router=$router dns=$dns mtu=$mtu" ;;
esac
exit 0
DHCP
chmod +x root/etc/udhcpc/default.script
cp root/etc/udhcpc/default.script root/usr/share/udhcpc/default.script
(cd root && find . | cpio -o -H newc 2>/dev/null | gzip -1) > initrd.cpio.gz
echo "$OUT/vmlinuz $OUT/initrd.cpio.gz"
