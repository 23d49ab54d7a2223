//! The sosna agent, composed: the provisioning file ([`config`]), the node's long-running
//! core ([`node`]), the one place that wires bus, market, rollout and runtime together
//! ([`roles`]), PID 1's boot path ([`pid1`]), the host daemon ([`daemon`]) and `sosna
//! flash` ([`flash`]). The `sosna` binary's CLI is in `main.rs` and `cli/`.
//!
//! Boot path: [`pid1::run`] mounts, loads modules, then [`node::run`] brings up the
//! network, supervises services and waits for a power request; `sosna_init::shutdown`
//! ends every boot. Off the image, [`daemon::run`] drives the same [`node`] core.

pub mod config;
pub mod daemon;
pub mod flash;
pub mod node;
pub mod pid1;
pub mod roles;
pub mod slave_bus;
