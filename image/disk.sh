#!/usr/bin/env bash
# Builds sosna's flashable GPT disk image (x86_64) from the artifacts build.sh made:
#   OUT/disk.img   ESP (systemd-boot, one UKI per slot, sosna/config.toml),
#                  root-a and root-b (erofs + dm-verity tree), state (ext4)
#   OUT/disk.img.xz and a disk_* section in OUT/manifest.txt
#   OUT/sosna-VERSION.raucb  the signed RAUC bundle that updates a device to this build
# Usage: image/disk.sh OUT KERNEL_ROOT RELEASE AGENT
# Reproducible: every UUID, salt and timestamp is fixed or derived from the content (the
# bundle's signature is not: it carries its signing time).
# Environment (OTA, see README "Over-the-air updates"):
#   SOSNA_IMAGE_VERSION  release string (default: the workspace version)
#   SOSNA_OTA_KEYRING, SOSNA_OTA_CERT, SOSNA_OTA_KEY  the CA the image trusts and the
#       bundle signer; default a test CA made once in target/ota-ca
#   SOSNA_OTA_TEST_KEYS=1  without a keyring: sign with a throwaway test CA (test images)
#   SOSNA_OTA_UNTRUSTED=1  also sign the bundle with another, untrusted test CA (tests)
#   SOSNA_HEALTH_FAIL=1    the image fails its post-boot health check (tests)
#   SOSNA_TEST_HANG=1      the image's agent hangs at start, before it pets the watchdog (tests)
#   SOSNA_WATCHDOG_SECS    hardware watchdog timeout armed by the early stage (default 60;
#                          0 leaves it off)
#   SOSNA_BUNDLE_ONLY=1    stop after the bundle (no disk.img)
set -euo pipefail

out=$1 kroot=$2 release=$3 agent=$4
epoch=${SOURCE_DATE_EPOCH:?}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

# The keys first: nothing is built for a release that could not be signed properly.
ca_dir=$root/target/ota-ca
if [ -z "${SOSNA_OTA_KEYRING:-}" ]; then
  # A throwaway CA's key sits in target/: whoever has this tree can sign for such an
  # image. Only test images may use it, and only when asked to.
  if [ "${SOSNA_OTA_TEST_KEYS:-0}" != 1 ]; then
    echo "disk: no update keys: set SOSNA_OTA_KEYRING, SOSNA_OTA_CERT and SOSNA_OTA_KEY" \
      "(see README, \"Over-the-air updates\"), or SOSNA_OTA_TEST_KEYS=1 for a test image" >&2
    exit 1
  fi
  "$here/test-ca.sh" "$ca_dir" "sosna test"
  echo "disk: signing with the throwaway TEST CA (SOSNA_OTA_TEST_KEYS=1): not for devices" >&2
fi
keyring=${SOSNA_OTA_KEYRING:-$ca_dir/ca.cert.pem}
cert=${SOSNA_OTA_CERT:-$ca_dir/signing.cert.pem}
key=${SOSNA_OTA_KEY:-$ca_dir/signing.key.pem}

stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
sdboot=/usr/lib/systemd/boot/efi/systemd-bootx64.efi
for tool in mkfs.erofs veritysetup objcopy sfdisk mkfs.vfat mcopy mmd mkfs.ext4 zstd xz; do
  command -v "$tool" >/dev/null || { echo "disk: $tool is missing (run ./dev deps)" >&2; exit 1; }
done
for f in "$stub" "$sdboot"; do
  [ -f "$f" ] || { echo "disk: $f is missing (systemd-boot-efi; run ./dev deps)" >&2; exit 1; }
done

# Layout in MiB. The roots leave room for later, larger releases written by updates.
ESP_MB=64 ROOT_MB=128 STATE_MB=64
# Partition GUIDs are part of the layout, not the content: an update writes a new root
# into the same partition, and its UKI must name that partition. Fixed, derived from a name.
uuid_of() {
  local h; h=$(printf 'sosna %s' "$1" | sha256sum | cut -c1-32)
  echo "${h:0:8}-${h:8:4}-4${h:13:3}-8${h:17:3}-${h:20:12}"
}
disk_guid=$(uuid_of disk) esp_uuid=$(uuid_of esp) state_uuid=$(uuid_of state)
root_a_uuid=$(uuid_of root-a) root_b_uuid=$(uuid_of root-b)

version=${SOSNA_IMAGE_VERSION:-$(awk -F'"' '/^version/ {print $2; exit}' "$root/Cargo.toml")}

work=$out/disk.work
rm -rf "$work" && mkdir -p "$work"
step() { printf '\n== disk: %s\n' "$*" >&2; }

step "OTA: rauc, dbus-daemon, their configuration"
"$here/ota.sh" "$out/rootfs" "$version" "$keyring"

step "root filesystem (erofs) + dm-verity"
tree_hash=$(cd "$out/rootfs" && find . -print0 | LC_ALL=C sort -z |
  tar --no-recursion --mtime=@"$epoch" --owner=0 --group=0 --numeric-owner --null -T - -cf - | sha256sum | cut -c1-32)
erofs_uuid="${tree_hash:0:8}-${tree_hash:8:4}-4${tree_hash:13:3}-8${tree_hash:17:3}-${tree_hash:20:12}"
mkfs.erofs --quiet -zlz4hc -T"$epoch" -U"$erofs_uuid" --all-root "$work/root.img" "$out/rootfs"
data_bytes=$(stat -c %s "$work/root.img")
[ $((data_bytes % 4096)) -eq 0 ] || { echo "disk: erofs image is not 4 KiB aligned" >&2; exit 1; }
data_blocks=$((data_bytes / 4096))
salt=$(sha256sum "$work/root.img" | cut -c1-64)
verity_uuid=$(uuid_of "verity $salt")
veritysetup format "$work/root.img" "$work/root.img" --hash-offset="$data_bytes" \
  --data-blocks="$data_blocks" --salt="$salt" --uuid="$verity_uuid" >"$work/verity.txt"
roothash=$(awk '/^Root hash:/ {print $3}' "$work/verity.txt")
[ ${#roothash} -eq 64 ] || { echo "disk: no root hash from veritysetup" >&2; cat "$work/verity.txt" >&2; exit 1; }
root_bytes=$(stat -c %s "$work/root.img")
[ "$root_bytes" -le $((ROOT_MB << 20)) ] || { echo "disk: root ($root_bytes bytes) exceeds ${ROOT_MB} MiB" >&2; exit 1; }

step "unified kernel images"
# The UKI's initramfs is the sosna initramfs plus the early modules: the agent, in its
# early-boot mode.
zstd -q -19 -T1 -c "$out/initramfs-disk.cpio" >"$work/initrd.zst"
# CPU mitigations stay on: the flashable image runs strangers' code.
base="console=tty0 console=ttyS0 quiet cryptomgr.notests panic=-1"
base+=" sosna.config=/boot/sosna/config.toml sosna.fatal_delay=3 sosna.watchdog=${SOSNA_WATCHDOG_SECS:-60}"
base+=" sosna.roothash=$roothash sosna.salt=$salt sosna.data_blocks=$data_blocks"
base+=" sosna.state=PARTUUID=$state_uuid sosna.esp=PARTUUID=$esp_uuid"
uki() { # slot partuuid out
  local slot=$1 uuid=$2 file=$3
  # rauc.slot= tells RAUC which slot booted.
  printf '%s sosna.slot=%s rauc.slot=%s sosna.root=PARTUUID=%s\n' "$base" "$slot" "$slot" "$uuid" >"$work/cmdline-$slot"
  # No ID/IMAGE_ID: systemd-boot then orders entries by file name (see agent/src/bootslot.rs).
  printf 'PRETTY_NAME="sosna %s (slot %s)"\nVERSION_ID=%s\n' "$version" "${slot^^}" "$version" >"$work/osrel-$slot"
  objcopy \
    --add-section .osrel="$work/osrel-$slot" --change-section-vma .osrel=0x20000 \
    --add-section .cmdline="$work/cmdline-$slot" --change-section-vma .cmdline=0x30000 \
    --add-section .linux="$kroot/boot/vmlinuz-$release" --change-section-vma .linux=0x2000000 \
    --add-section .initrd="$work/initrd.zst" --change-section-vma .initrd=0x3000000 \
    "$stub" "$file"
  pe_pin "$file"
}
# objcopy stamps the PE header with the current time (ignoring SOURCE_DATE_EPOCH) and a
# checksum over it; pin the stamp and zero the checksum (UEFI does not check it).
le32() { printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)))"; }
pe_pin() {
  local pe; pe=$(od -An -tu4 -j60 -N4 "$1" | tr -d ' ')
  le32 "$epoch" | dd of="$1" bs=1 seek=$((pe + 8)) conv=notrunc status=none
  le32 0 | dd of="$1" bs=1 seek=$((pe + 24 + 64)) conv=notrunc status=none
}
uki a "$root_a_uuid" "$work/sosna-1-a.efi"
uki b "$root_b_uuid" "$work/sosna-0-b.efi"

step "RAUC bundle"
# One RAUC image, the root (erofs + verity tree) written raw into the other slot; the
# UKIs ride along as plain bundle files that the agent's post-install handler puts on the
# ESP (agent/src/ota/mod.rs says why). The verity bundle format covers all of it.
bundle_dir=$work/bundle
mkdir -p "$bundle_dir"
ln "$work/root.img" "$bundle_dir/root.img"
cp "$work/sosna-1-a.efi" "$bundle_dir/uki-a.efi"
cp "$work/sosna-0-b.efi" "$bundle_dir/uki-b.efi"
printf '[update]\ncompatible=sosna-x86_64\nversion=%s\nbuild=%s\n\n[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=root.img\n' \
  "$version" "$roothash" >"$bundle_dir/manifest.raucm"
sign() { # cert key out
  rm -f "$3"
  rauc bundle --cert="$1" --key="$2" "$bundle_dir" "$3" 2>&1 | grep -v '^Creating bundle' >&2 || true
  [ -f "$3" ] || { echo "disk: rauc bundle failed for $3" >&2; exit 1; }
}
bundle=$out/sosna-$version.raucb
sign "$cert" "$key" "$bundle"
if [ "${SOSNA_OTA_UNTRUSTED:-0}" = 1 ]; then
  "$here/test-ca.sh" "$root/target/ota-ca-untrusted" "untrusted test"
  sign "$root/target/ota-ca-untrusted/signing.cert.pem" "$root/target/ota-ca-untrusted/signing.key.pem" \
    "$out/sosna-$version-untrusted.raucb"
fi
sed -i '/^bundle_/d' "$out/manifest.txt"
printf 'bundle_version=%s\nbundle_file=%s\nbundle_bytes=%s\n' \
  "$version" "$(basename "$bundle")" "$(stat -c %s "$bundle")" >>"$out/manifest.txt"
if [ "${SOSNA_BUNDLE_ONLY:-0}" = 1 ]; then
  rm -rf "$work" "$out/rootfs" "$out/initramfs-disk.cpio"
  echo "disk: bundle $bundle ($(stat -c %s "$bundle") bytes); no disk image (SOSNA_BUNDLE_ONLY)" >&2
  exit 0
fi

step "ESP (FAT32)"
esp=$work/esp.img
truncate -s $((ESP_MB << 20)) "$esp"
mkfs.vfat -F 32 -s 1 -n SOSNA-ESP -i "${esp_uuid:0:8}" --invariant "$esp" >/dev/null
printf 'timeout 0\neditor no\nauto-entries no\nauto-firmware no\n' >"$work/loader.conf"
{
  echo "# sosna provisioning file, read by the agent at boot (/boot/sosna/config.toml)."
  echo "# Edit it from any OS after flashing. Every key is optional; these are the defaults."
  "$agent" config example
} >"$work/config.toml"
# mtools stamps files with their mtime and new directories with now; pin both.
touch -d @"$epoch" "$work"/*.efi "$work/loader.conf" "$work/config.toml"
export MTOOLS_SKIP_CHECK=1 SOURCE_DATE_EPOCH="$epoch"
mmd -i "$esp" ::EFI ::EFI/BOOT ::EFI/Linux ::loader ::sosna
mcopy -m -i "$esp" "$sdboot" ::EFI/BOOT/BOOTX64.EFI
mcopy -m -i "$esp" "$work/sosna-1-a.efi" "$work/sosna-0-b.efi" ::EFI/Linux/
mcopy -m -i "$esp" "$work/loader.conf" ::loader/loader.conf
mcopy -m -i "$esp" "$work/config.toml" ::sosna/config.toml

step "state (ext4)"
# Made here, not on the device: the image carries no mkfs. The early stage only mounts it.
state=$work/state.img
truncate -s $((STATE_MB << 20)) "$state"
E2FSPROGS_FAKE_TIME=$epoch mkfs.ext4 -q -b 4096 -L sosna-state -U "$state_uuid" \
  -E "hash_seed=$state_uuid,lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0" "$state"

step "GPT"
img=$out/disk.img
start_esp=1 start_a=$((1 + ESP_MB)) start_b=$((1 + ESP_MB + ROOT_MB)) start_state=$((1 + ESP_MB + 2 * ROOT_MB))
total_mb=$((start_state + STATE_MB + 1))
rm -f "$img.tmp" && truncate -s $((total_mb << 20)) "$img.tmp"
sfdisk --quiet --no-reread --no-tell-kernel "$img.tmp" <<EOF
label: gpt
label-id: $disk_guid
first-lba: 2048
start=$((start_esp << 11)), size=$((ESP_MB << 11)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$esp_uuid, name="esp"
start=$((start_a << 11)), size=$((ROOT_MB << 11)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_a_uuid, name="root-a"
start=$((start_b << 11)), size=$((ROOT_MB << 11)), type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$root_b_uuid, name="root-b"
start=$((start_state << 11)), size=$((STATE_MB << 11)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$state_uuid, name="state"
EOF
put() { dd if="$1" of="$img.tmp" bs=1M seek="$2" conv=notrunc,sparse status=none; }
put "$esp" "$start_esp"
put "$work/root.img" "$start_a"
put "$work/root.img" "$start_b"
put "$state" "$start_state"
mv "$img.tmp" "$img"

step "compressing"
# The slots hold identical roots and near-identical UKIs 128 MiB apart; a dictionary that
# spans them stores the second copies almost for free (decompressing needs 192 MiB of RAM).
xz -T1 --lzma2=preset=6,dict=192MiB -c "$img" >"$img.xz.tmp" && mv "$img.xz.tmp" "$img.xz"
raw=$(stat -c %s "$img") packed=$(stat -c %s "$img.xz")
sed -i '/^disk_/d' "$out/manifest.txt"
cat >>"$out/manifest.txt" <<EOF
disk_bytes=$raw
disk_xz_bytes=$packed
disk_sha256=$(sha256sum "$img" | cut -c1-64)
disk_root_bytes=$root_bytes
disk_roothash=$roothash
disk_root_a_partuuid=$root_a_uuid
disk_root_b_partuuid=$root_b_uuid
disk_esp_partuuid=$esp_uuid
disk_state_partuuid=$state_uuid
disk_root_offset_a=$((start_a << 20))
disk_root_offset_b=$((start_b << 20))
disk_root_data_bytes=$data_bytes
EOF
rm -rf "$work" "$out/rootfs" "$out/initramfs-disk.cpio"
awk -v img="$img" -v raw="$raw" -v xz="$packed" -v root="$root_bytes" -v h="$roothash" 'BEGIN {
  printf "disk: %s\n  raw %.1f MiB, xz %.1f MiB, root %.1f MiB (erofs + verity), root hash %s\n",
    img, raw / 1048576, xz / 1048576, root / 1048576, h }' >&2
