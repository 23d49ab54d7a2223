//! The CLI's command groups, one file each.

pub mod fleet;
pub mod market;
