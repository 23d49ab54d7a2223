//! The CLI's command groups, one file each.

pub mod bus;
pub mod containers;
pub mod flash;
pub mod fleet;
pub mod market;
pub mod power;
pub mod slave;
pub mod update;

/// Runs a future on a small runtime: the CLI's calls are one request each.
pub trait Blocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(self)
    }
}
impl<F: std::future::Future> Blocking for F {}
