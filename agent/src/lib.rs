//! sosna's agent: PID 1 of the sosna image, and the same code as a host daemon.
//!
//! Boot path: [`init::run`] mounts, loads modules, then [`node::run`] brings up the
//! network, supervises services and waits for a power request; [`shutdown::finish`] ends
//! every boot. Off the image, [`daemon::run`] drives the same [`node`] core.

pub mod bootslot;
pub mod bus;
pub mod chain;
pub mod cmdline;
pub mod config;
pub mod daemon;
pub mod dm;
pub mod early;
pub mod flash;
pub mod gpt;
pub mod grow;
pub mod init;
pub mod kmod;
pub mod logging;
pub mod market;
pub mod mounts;
pub mod net;
pub mod node;
pub mod ota;
pub mod power;
pub mod power_button;
pub mod reaper;
pub mod rollout;
pub mod runtime;
pub mod shutdown;
pub mod slave;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod watchdog;
