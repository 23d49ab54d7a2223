#!/usr/bin/env bash
# Builds sosna's boot artifacts into target/image/x86_64/:
#   vmlinux          uncompressed kernel (PVH boot with qemu -kernel)
#   initramfs.cpio   static agent as /init + boot modules
#   manifest.txt     kernel release, sizes, sha256s
# Needs apt-get, dpkg-deb and depmod (./dev installs them). The kernel .deb is cached in
# ~/.cache/sosna; it is extracted there, never installed on this host.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-unknown-linux-gnu
out=${SOSNA_IMAGE_DIR:-$root/target/image/x86_64}
cache=${SOSNA_CACHE:-$HOME/.cache/sosna}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

step() { printf '\n== image: %s\n' "$*" >&2; }

for tool in apt-get apt-cache dpkg-deb depmod cargo; do
  command -v "$tool" >/dev/null || { echo "image: $tool is missing (run ./dev deps)" >&2; exit 1; }
done
mkdir -p "$cache" "$out"

step "resolving Debian's linux-image-amd64"
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$pkg" ] || { echo "image: apt knows no linux-image-amd64 (run apt-get update)" >&2; exit 1; }
release=${pkg#linux-image-}
kroot=$cache/kernel-$release
if [ ! -f "$kroot/.extracted" ]; then
  step "downloading $pkg"
  (cd "$cache" && apt-get download -q "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
  deb=$(ls "$cache/${pkg}"_*.deb | sort | tail -n 1)
  [ -f "$deb" ] || { echo "image: download of $pkg failed" >&2; exit 1; }
  rm -rf "$kroot" && mkdir -p "$kroot"
  dpkg-deb -x "$deb" "$kroot"
  depmod -b "$kroot" "$release"
  touch "$kroot/.extracted"
fi
echo "kernel $release" >&2

step "building the static agent"
# crt-static gives one self-contained binary. Cargo names workspace sources by relative
# path; remapping the registry path keeps dependency paths out of the binary too.
# libseccomp (for containers' seccomp filters) is linked statically from Debian's .a.
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo" \
  cargo build --release --locked --target "$target" -p sosna-agent --bin sosna
agent=${CARGO_TARGET_DIR:-$root/target}/$target/release/sosna

step "assembling"
cargo run --release --locked -q -p sosna-image -- \
  --kernel-root "$kroot" --release "$release" --agent "$agent" \
  --modules "$root/image/modules.list" --deferred-modules "$root/image/modules-deferred.list" \
  --ca-bundle /etc/ssl/certs/ca-certificates.crt \
  --out "$out"
