//! The wall clock. Signed envelopes carry timestamps checked to ±30 s and TLS checks
//! certificates' validity dates, so a node must know the time before it joins anything; a
//! board without a battery-backed RTC boots in 1970. PID 1 asks the configured SNTP
//! servers, sets the clock, and says when it is plausible: not before this build (the
//! floor), and confirmed by a server when it started below it.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::watch;

/// 2026-12-01T00:00:00Z: no release of this code is older.
const FLOOR_FALLBACK: u64 = 1_796_083_200;

/// Unix seconds no correct clock is below: the build's `SOURCE_DATE_EPOCH`, if set and
/// later, else [`FLOOR_FALLBACK`].
pub fn floor() -> SystemTime {
    let built = option_env!("SOURCE_DATE_EPOCH")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(built.max(FLOOR_FALLBACK))
}

/// Whether `t` can be the time now.
pub fn plausible(t: SystemTime) -> bool {
    t >= floor()
}

/// `[time]` in the provisioning file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeConfig {
    /// SNTP servers, `host[:port]` (port 123 if left out); asked in order.
    pub servers: Vec<String>,
    /// Seconds between two synchronisations once the clock is set.
    pub resync_secs: u64,
}

impl Default for TimeConfig {
    fn default() -> Self {
        TimeConfig {
            servers: vec!["pool.ntp.org".into()],
            resync_secs: 3600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("no time server configured")]
    NoServers,
    #[error("time server {server}: {reason}")]
    Server { server: String, reason: String },
    #[error("time server {server} says {unix} s, before this build: ignored")]
    Implausible { server: String, unix: u64 },
    #[error("setting the clock: {0}")]
    Set(nix::Error),
}

async fn resolve(server: &str) -> Result<SocketAddr, ClockError> {
    let with_port = if server
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        server.to_owned()
    } else {
        format!("{server}:123")
    };
    let err = |reason: String| ClockError::Server {
        server: server.to_owned(),
        reason,
    };
    let mut addrs = tokio::net::lookup_host(with_port)
        .await
        .map_err(|e| err(e.to_string()))?;
    addrs.next().ok_or_else(|| err("no address".into()))
}

/// The time one server gives, as the offset from our clock.
async fn ask(server: &str) -> Result<(SystemTime, Duration), ClockError> {
    let addr = resolve(server).await?;
    let client = rsntp::AsyncSntpClient::with_config(
        rsntp::Config::default().timeout(Duration::from_secs(3)),
    );
    let result = client
        .synchronize(addr)
        .await
        .map_err(|e| ClockError::Server {
            server: server.to_owned(),
            reason: e.to_string(),
        })?;
    let offset = result.clock_offset().as_secs_f64();
    let now = SystemTime::now();
    let theirs = if offset >= 0.0 {
        now + Duration::from_secs_f64(offset)
    } else {
        now - Duration::from_secs_f64(-offset)
    };
    if !plausible(theirs) {
        return Err(ClockError::Implausible {
            server: server.to_owned(),
            unix: theirs.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        });
    }
    Ok((theirs, Duration::from_secs_f64(offset.abs())))
}

/// Asks the servers in turn; the first answer sets the clock. Returns who answered and
/// by how much the clock moved.
pub async fn sync(servers: &[String]) -> Result<(String, Duration), ClockError> {
    let mut last = ClockError::NoServers;
    for server in servers {
        match ask(server).await {
            Ok((now, moved)) => {
                let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
                let ts = nix::sys::time::TimeSpec::from_duration(since);
                nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts)
                    .map_err(ClockError::Set)?;
                return Ok((server.clone(), moved));
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Keeps the clock set until `stop`: at once, then every `resync_secs`, retrying sooner
/// after a failure. The returned watch turns true once the clock is plausible (at once if
/// it already is).
pub fn keep(cfg: &TimeConfig, mut stop: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(plausible(SystemTime::now()));
    if !*rx.borrow() {
        tracing::warn!(
            "clock: {:?} is before this build; the bus waits for a time server",
            SystemTime::now()
        );
    }
    let cfg = cfg.clone();
    tokio::spawn(async move {
        let mut retry = Duration::from_secs(2);
        loop {
            let wait = match sync(&cfg.servers).await {
                Ok((server, moved)) => {
                    tracing::info!("clock: set from {server} (moved {moved:?})");
                    tx.send_replace(true);
                    retry = Duration::from_secs(2);
                    Duration::from_secs(cfg.resync_secs.max(60))
                }
                Err(e) => {
                    tracing::warn!("clock: {e}; again in {retry:?}");
                    let wait = retry;
                    retry = (retry * 2).min(Duration::from_secs(300));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_is_not_plausible_and_now_is() {
        assert!(!plausible(UNIX_EPOCH));
        assert!(!plausible(
            UNIX_EPOCH + Duration::from_secs(FLOOR_FALLBACK - 1)
        ));
        assert!(plausible(floor()));
        assert!(plausible(SystemTime::now()));
    }

    #[tokio::test]
    async fn servers_must_answer_or_be_named() {
        assert!(matches!(sync(&[]).await, Err(ClockError::NoServers)));
        let bad = sync(&["no-such-host.invalid".into()]).await.unwrap_err();
        assert!(bad.to_string().contains("no-such-host.invalid"), "{bad}");
    }
}
