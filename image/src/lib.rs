//! Builds sosna's boot artifacts reproducibly: the initramfs (cpio newc, see [`cpio`]) and
//! the uncompressed `vmlinux` ([`vmlinux`]) from Debian's kernel package.

pub mod cpio;
pub mod initramfs;
pub mod vmlinux;
