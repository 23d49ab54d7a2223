//! The initramfs stage of the disk image: [`early`] runs it; [`gpt`] reads the partition
//! table, [`dm`] sets up dm-verity, [`grow`] grows the state partition, [`bootslot`] keeps
//! the A/B boot counters RAUC's custom backend drives.

pub mod bootslot;
pub mod dm;
pub mod early;
pub mod gpt;
pub mod grow;
