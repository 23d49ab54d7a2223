//! PID-1 duties of the sosna agent, and the initramfs stage before them.
//!
//! - [`boot`]: the initramfs stage: find the disk, open the verified root (device-mapper
//!   verity), grow the state partition, pick the boot slot, switch root.
//! - The running init: [`mounts`], [`kmod`] (module loading without kmod), [`reaper`] (every
//!   zombie), [`supervisor`] (helper daemons with backoff), [`net`] (loopback, the uplink by
//!   DHCP or static, extra links), [`power`] and [`power_button`] (what asks to stop),
//!   [`shutdown`] (the orderly end of every boot), [`watchdog`] (the hardware watchdog),
//!   [`status`] and [`logging`] (the console), [`cmdline`] (the kernel command line).
//!
//! Nothing here knows of containers, the bus or the market: the binary composes those.

pub mod boot;
pub mod clock;
pub mod cmdline;
pub mod health;
pub mod kmod;
pub mod logging;
pub mod mounts;
pub mod net;
pub mod power;
pub mod power_button;
pub mod reaper;
pub mod shutdown;
pub mod status;
pub mod supervisor;
pub mod watchdog;
