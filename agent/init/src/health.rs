//! The verdict on the booted slot. The OTA health check decides it; the watchdog keeps
//! a machine on trial from being reset while it is checking; the rollout reports it (a
//! node is "good" on a new release only once its slot is marked good).

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotHealth {
    Checking,
    Good,
    Bad(String),
}
