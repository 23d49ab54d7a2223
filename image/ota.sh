#!/usr/bin/env bash
# Adds what over-the-air updates need to the disk image's root tree (image/disk.sh calls it):
# Debian's rauc and dbus-daemon (plus util-linux mount/umount, which RAUC runs to mount a
# bundle) with just their shared-library closure, resolved with ldd on this bookworm host;
# the configuration of both; the bundle keyring; symlinks that make the agent RAUC's boot
# backend and post-install handler; and /etc/sosna-version.
# Usage: image/ota.sh ROOTFS VERSION KEYRING
#   SOSNA_HEALTH_FAIL=1 also puts /etc/sosna/health-fail in (test bundles whose new root
#   must fail its post-boot health check); SOSNA_TEST_HANG=1 puts /etc/sosna/test-hang in
#   (the agent then hangs at start, and only the watchdog brings the machine back).
set -euo pipefail

rootfs=$1 version=$2 keyring=$3
for tool in rauc dbus-daemon ldd; do
  command -v "$tool" >/dev/null || { echo "ota: $tool is missing (run ./dev deps)" >&2; exit 1; }
done
[ -f "$keyring" ] || { echo "ota: keyring $keyring is missing" >&2; exit 1; }

bins=(/usr/bin/rauc /usr/bin/dbus-daemon /usr/bin/mount /usr/bin/umount)
libs=$(for b in "${bins[@]}"; do ldd "$b"; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
mkdir -p "$rootfs/usr/bin" "$rootfs/lib64" "$rootfs/etc/rauc" "$rootfs/usr/lib/sosna"
for b in "${bins[@]}"; do install -m 0755 "$b" "$rootfs$b"; done
for l in $libs; do
  # Keep the path the binaries ask for (/lib/x86_64-linux-gnu/…, /lib64/ld-linux…).
  mkdir -p "$rootfs$(dirname "$l")"
  install -m 0644 "$(readlink -f "$l")" "$rootfs$l"
done
chmod 0755 "$rootfs"/lib64/ld-linux-*.so.* 2>/dev/null || true
ln -sfn usr/bin "$rootfs/bin"
ln -sfn ../../../sbin/sosna "$rootfs/usr/lib/sosna/rauc-backend"
ln -sfn ../../../sbin/sosna "$rootfs/usr/lib/sosna/rauc-post-install"

printf 'root:x:0:0:root:/:/sbin/sosna\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\n' >"$rootfs/etc/group"
printf '%s\n' "$version" >"$rootfs/etc/sosna-version"
install -m 0644 "$keyring" "$rootfs/etc/rauc/keyring.pem"
[ "${SOSNA_HEALTH_FAIL:-0}" != 1 ] || echo "test image: the health check fails" >"$rootfs/etc/sosna/health-fail"
[ "${SOSNA_TEST_HANG:-0}" != 1 ] || echo "test image: the agent hangs at start" >"$rootfs/etc/sosna/test-hang"

# The system bus, for root only (containers never see /run/dbus).
cat >"$rootfs/etc/sosna/dbus-system.conf" <<'XML'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="false"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
XML

# Slots by partition label: the agent makes /dev/disk/by-partlabel at boot (no udev).
# rauc.slot= on each UKI's command line tells RAUC which slot booted.
cat >"$rootfs/etc/rauc/system.conf" <<'CONF'
[system]
compatible=sosna-x86_64
bootloader=custom
mountprefix=/run/rauc
statusfile=/var/lib/sosna/rauc/status.raucs
bundle-formats=-plain

[keyring]
path=/etc/rauc/keyring.pem

[handlers]
bootloader-custom-backend=/usr/lib/sosna/rauc-backend
post-install=/usr/lib/sosna/rauc-post-install

[slot.rootfs.0]
device=/dev/disk/by-partlabel/root-a
type=raw
bootname=a

[slot.rootfs.1]
device=/dev/disk/by-partlabel/root-b
type=raw
bootname=b
CONF
echo "ota: rauc, dbus-daemon, mount and $(echo "$libs" | wc -w) libraries added (version $version)" >&2
