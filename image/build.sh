#!/usr/bin/env bash
# Builds sosna's boot artifacts for one architecture (x86_64, the default, or aarch64) into
# target/image/ARCH/:
#   vmlinux (x86_64)  uncompressed kernel (PVH boot with qemu -kernel)
#   Image (aarch64)   the kernel as Debian ships it (uncompressed arm64 Image)
#   initramfs.cpio    static agent as /init + boot modules
#   manifest.txt      kernel release, sizes, sha256s
#   disk.img (x86_64) flashable GPT disk: ESP + UKIs, root-a/root-b (erofs + verity), state
#   disk.img.xz       the same, compressed (image/disk.sh)
# Usage: image/build.sh [x86_64|aarch64]   (or SOSNA_ARCH)
# SOSNA_AGENT_FEATURES=fault-injection builds a test image (forged results, the hang and
# health-fail flags, for the QEMU tests and the demo's forger); unset, the image for users.
# Needs apt-get, dpkg-deb and depmod, and for aarch64 the cross gcc and libseccomp-dev:arm64
# (./dev installs them). The kernel .deb is cached in ~/.cache/sosna; it is extracted there,
# never installed on this host.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:-${SOSNA_ARCH:-x86_64}}
case "$arch" in
  x86_64)  debarch=amd64; target=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu ;;
  aarch64) debarch=arm64; target=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu
           # Cross toolchain for the linker and the C parts (ring, zstd, libseccomp).
           export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
           export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
           export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar ;;
  *) echo "image: unknown architecture $arch (x86_64 or aarch64)" >&2; exit 2 ;;
esac
out=${SOSNA_IMAGE_DIR:-$root/target/image/$arch}
cache=${SOSNA_CACHE:-$HOME/.cache/sosna}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

step() { printf '\n== image: %s\n' "$*" >&2; }

for tool in apt-get apt-cache dpkg-deb depmod cargo; do
  command -v "$tool" >/dev/null || { echo "image: $tool is missing (run ./dev deps)" >&2; exit 1; }
done
mkdir -p "$cache" "$out"

step "resolving Debian's linux-image-$debarch"
pkg=$(apt-cache depends "linux-image-$debarch:$debarch" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
pkg=${pkg%:*}
[ -n "$pkg" ] || { echo "image: apt knows no linux-image-$debarch (run ./dev deps)" >&2; exit 1; }
release=${pkg#linux-image-}
kroot=$cache/kernel-$release
if [ ! -f "$kroot/.extracted" ]; then
  step "downloading $pkg"
  (cd "$cache" && apt-get download -q "$pkg:$debarch" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
  deb=$(ls "$cache/${pkg}"_*_"$debarch".deb | sort | tail -n 1)
  [ -f "$deb" ] || { echo "image: download of $pkg failed" >&2; exit 1; }
  rm -rf "$kroot" && mkdir -p "$kroot"
  dpkg-deb -x "$deb" "$kroot"
  depmod -b "$kroot" "$release"
  touch "$kroot/.extracted"
fi
echo "kernel $release" >&2

features=${SOSNA_AGENT_FEATURES:-}
if [ -n "$features" ]; then
  step "building the static agent for $target with features: $features (a test image, not for users)"
else
  step "building the static agent for $target without test features (the image for users)"
fi
# crt-static gives one self-contained binary. Cargo names workspace sources by relative
# path; remapping the registry path keeps dependency paths out of the binary too.
# libseccomp (for containers' seccomp filters) is linked statically from Debian's .a.
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/$gnu \
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  cargo build --release --locked --target "$target" -p sosna --bin sosna ${features:+--features "$features"}
agent=${CARGO_TARGET_DIR:-$root/target}/$target/release/sosna

# The disk image (x86_64 only for now) needs the early-boot modules in the initramfs and
# the same tree as a directory for its root filesystem.
disk_args=()
[ "$arch" != x86_64 ] || disk_args=(--early-modules "$root/image/modules-early.list" --rootfs-dir "$out/rootfs")

step "assembling"
cargo run --release --locked -q -p sosna-image -- --arch "$arch" "${disk_args[@]}" \
  --kernel-root "$kroot" --release "$release" --agent "$agent" \
  --modules "$root/image/modules-$arch.list" --deferred-modules "$root/image/modules-deferred.list" \
  --ca-bundle /etc/ssl/certs/ca-certificates.crt \
  --out "$out"

echo "agent_features=${features:-none}" >>"$out/manifest.txt"

if [ "$arch" = x86_64 ]; then
  step "disk image"
  "$root/image/disk.sh" "$out" "$kroot" "$release" "$agent"
fi
