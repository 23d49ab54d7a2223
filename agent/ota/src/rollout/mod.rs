//! Fleet rollouts (DESIGN §5). An operator signs a [`RolloutNotice`] (version, bundle URL,
//! sha256, size, waves) and gossips it on `sosna/updates/1`; a node acts only on notices
//! signed by an operator it is configured to trust. Its wave comes from a stable hash of
//! its peer id and the version, so the same nodes go first on every attempt at a release
//! and nobody coordinates. When its wave starts it hands the notice to its [`Updater`]
//! (RAUC on the disk image), and it reports where it stands on the same topic, on every
//! change and periodically, which is what `sosna fleet status` and the publisher's failure
//! threshold read. The publisher's side is [`publish`].

pub mod publish;
mod rauc;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;
use libp2p::PeerId;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::health::SlotHealth;
use sosna_bus::Bus;
use sosna_bus::Verified;
use sosna_proto::bus::envelope::now_ms;
use sosna_proto::bus::messages::{Message, RolloutNotice, UpdateReport, UpdateState};

/// The `[rollout]` section of the provisioning file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutConfig {
    /// Ethereum addresses whose signed notices this node follows; empty follows none.
    pub operators: Vec<String>,
    /// Seconds between two unprompted update reports.
    pub report_secs: u64,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RolloutConfig {
            operators: Vec::new(),
            report_secs: 60,
        }
    }
}

impl RolloutConfig {
    /// Checks the section; the error names the field and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        self.operator_addresses()?;
        if self.report_secs == 0 {
            return Err(("rollout.report_secs", "must be at least 1".into()));
        }
        Ok(())
    }

    fn operator_addresses(&self) -> Result<Vec<Address>, (&'static str, String)> {
        self.operators
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| ("rollout.operators", format!("{a:?} is not an address: {e}")))
            })
            .collect()
    }

    pub fn enabled(&self) -> bool {
        !self.operators.is_empty()
    }

    pub fn settings(&self) -> RolloutSettings {
        RolloutSettings {
            operators: self.operator_addresses().unwrap_or_default(),
            report_every: Duration::from_secs(self.report_secs),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RolloutSettings {
    pub operators: Vec<Address>,
    pub report_every: Duration,
}

pub type InstallFuture = Pin<Box<dyn Future<Output = Result<(), InstallError>> + Send>>;

/// Why a rollout's release was not installed; the node reports it as `failed`.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("this image cannot update itself (no RAUC)")]
    Unsupported,
    #[error(transparent)]
    Update(#[from] crate::cli::UpdateError),
    #[error("install task: {0}")]
    Task(String),
    #[error("installed before, but the new slot did not stay (fell back)")]
    FellBack,
    #[error("asking for a reboot: {0}")]
    Reboot(nix::Error),
}

/// How this node updates itself.
pub trait Updater: Send + Sync {
    /// The release running now.
    fn running(&self) -> String;
    /// The booted slot and the slots' states, for reports.
    fn slots(&self) -> String;
    /// Downloads the bundle (checking its size and sha256), installs it into the other
    /// slot and reboots into it. Returns only on failure, or once the reboot is under way.
    fn install(&self, notice: &RolloutNotice) -> InstallFuture;
}

/// How this node updates itself: through RAUC on the disk image, not at all elsewhere.
pub fn system_updater() -> Arc<dyn Updater> {
    if crate::present() && std::process::id() == 1 {
        Arc::new(rauc::Rauc)
    } else {
        Arc::new(Unsupported)
    }
}

/// An image that cannot update itself: every install fails, saying so.
pub struct Unsupported;

impl Updater for Unsupported {
    fn running(&self) -> String {
        env!("CARGO_PKG_VERSION").to_owned()
    }
    fn slots(&self) -> String {
        "no A/B slots".to_owned()
    }
    fn install(&self, _: &RolloutNotice) -> InstallFuture {
        Box::pin(async { Err(InstallError::Unsupported) })
    }
}

/// Whether release `candidate` is older than `running`: their leading `major.minor.patch`
/// numbers compared. What follows them (`-rc1`, a build flavor) names a build, not an
/// order; versions without numbers are never older.
pub fn is_older(candidate: &str, running: &str) -> bool {
    fn numbers(v: &str) -> Option<Vec<u64>> {
        let core = v.trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        core.split('.').map(|n| n.parse().ok()).collect()
    }
    match (numbers(candidate), numbers(running)) {
        (Some(c), Some(r)) => c < r,
        _ => false,
    }
}

/// This node's place in every rollout of `version`, 0..100: a wave of `percent` takes the
/// nodes below it.
pub fn position(peer: &PeerId, version: &str) -> u8 {
    let mut h = Sha256::new();
    h.update(peer.to_bytes());
    h.update([0]);
    h.update(version.as_bytes());
    let d = h.finalize();
    (u16::from_be_bytes([d[0], d[1]]) % 100) as u8
}

/// When a node at `position` should install: now (`Ok`), at a later wave's start
/// (`Err(Some(ms))`), or never in this notice (`Err(None)`).
pub fn due(notice: &RolloutNotice, position: u8, now_ms: u64) -> Result<(), Option<u64>> {
    match notice.waves.iter().find(|w| position < w.percent) {
        Some(w) if w.start_ms <= now_ms => Ok(()),
        Some(w) => Err(Some(w.start_ms)),
        None => Err(None),
    }
}

/// The node's side: follows operators' notices from `messages` until `stop`. `health`
/// is the verdict on the booted slot: the rollout's version counts as good only with it.
pub async fn run(
    bus: Bus,
    mut messages: mpsc::Receiver<Verified>,
    settings: RolloutSettings,
    updater: Arc<dyn Updater>,
    mut health: watch::Receiver<SlotHealth>,
    mut stop: watch::Receiver<bool>,
) {
    let mut health_open = true;
    let mut node = Node {
        bus,
        settings,
        updater,
        health: health.clone(),
        notice: None,
        state: UpdateState::Idle,
        detail: String::new(),
    };
    let mut report = tokio::time::interval(node.settings.report_every);
    // A wave that starts later wakes the loop then; far in the future means "none".
    let mut wake = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = report.tick() => node.report().await,
            changed = health.changed(), if health_open => {
                health_open = changed.is_ok();
                wake = node.consider().await;
            }
            _ = tokio::time::sleep_until(wake) => {
                wake = node.consider().await;
            }
            m = messages.recv() => {
                let Some(v) = m else { return };
                let Message::RolloutNotice(notice) = v.message else { continue };
                if !node.settings.operators.contains(&v.from) {
                    tracing::debug!("rollout: ignoring a notice signed by {}, not an operator", v.from);
                    continue;
                }
                if node.notice.as_ref().is_some_and(|n| n.issued_ms >= notice.issued_ms) {
                    continue; // the same notice again, or an older one
                }
                tracing::info!(
                    "rollout: operator {} announces {} ({} waves{})",
                    v.from,
                    notice.version,
                    notice.waves.len(),
                    if notice.halted { ", halted" } else { "" }
                );
                node.notice = Some(notice);
                wake = node.consider().await;
            }
        }
    }
}

struct Node {
    bus: Bus,
    settings: RolloutSettings,
    updater: Arc<dyn Updater>,
    health: watch::Receiver<SlotHealth>,
    notice: Option<RolloutNotice>,
    state: UpdateState,
    detail: String,
}

impl Node {
    async fn set(&mut self, state: UpdateState, detail: String) {
        if (state, &detail) != (self.state, &self.detail) {
            tracing::info!("rollout: {state:?}: {detail}");
            self.state = state;
            self.detail = detail;
            self.report().await;
        }
    }

    /// Acts on the current notice; returns when to look again.
    async fn consider(&mut self) -> tokio::time::Instant {
        let never = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let Some(notice) = self.notice.clone() else {
            return never;
        };
        let running = self.updater.running();
        if notice.version == running {
            let verdict = self.health.borrow().clone();
            let (state, detail) = match verdict {
                SlotHealth::Checking => (
                    UpdateState::Rebooting,
                    format!("running {running}; checking health"),
                ),
                SlotHealth::Good => (UpdateState::Good, format!("running {running}")),
                // The slot is being marked bad and the node reboots into the other one.
                SlotHealth::Bad(why) => (
                    UpdateState::Failed,
                    format!("{running}: health check: {why}"),
                ),
            };
            self.set(state, detail).await;
            return never;
        }
        if matches!(self.state, UpdateState::Installing | UpdateState::Rebooting) {
            return never;
        }
        if is_older(&notice.version, &running) && !notice.allow_downgrade {
            // Waiting, not failed: nothing was tried, and a notice that allows it may come.
            self.set(
                UpdateState::Waiting,
                format!(
                    "refused {}: older than the running {running}, and the notice does not allow a downgrade",
                    notice.version
                ),
            )
            .await;
            return never;
        }
        if *self.health.borrow() != SlotHealth::Good {
            // A slot on trial or on its way back must not be overwritten: the fallback
            // slot is what keeps the node alive. A change of verdict looks again.
            self.set(
                UpdateState::Waiting,
                format!("{} waits for this boot's health check", notice.version),
            )
            .await;
            return never;
        }
        if self.state == UpdateState::Failed && self.detail.contains(&notice.version) {
            return never; // not again for the same release: the operator decides
        }
        if notice.halted {
            self.set(
                UpdateState::Waiting,
                "rollout halted by the operator".into(),
            )
            .await;
            return never;
        }
        let position = position(&self.bus.peer_id(), &notice.version);
        let now = now_ms();
        match due(&notice, position, now) {
            Ok(()) => {
                self.set(
                    UpdateState::Installing,
                    format!("installing {} (position {position})", notice.version),
                )
                .await;
                match self.updater.install(&notice).await {
                    Ok(()) => {
                        self.set(
                            UpdateState::Rebooting,
                            format!("rebooting into {}", notice.version),
                        )
                        .await
                    }
                    Err(e) => {
                        self.set(UpdateState::Failed, format!("{}: {e}", notice.version))
                            .await
                    }
                }
                never
            }
            Err(Some(start)) => {
                self.set(
                    UpdateState::Waiting,
                    format!(
                        "{}: position {position}, wave starts in {} s",
                        notice.version,
                        (start - now) / 1000
                    ),
                )
                .await;
                tokio::time::Instant::now() + Duration::from_millis(start - now)
            }
            Err(None) => {
                self.set(
                    UpdateState::Waiting,
                    format!("{}: position {position} is in no wave", notice.version),
                )
                .await;
                never
            }
        }
    }

    async fn report(&self) {
        let report = UpdateReport {
            running: self.updater.running(),
            target: self
                .notice
                .as_ref()
                .map(|n| n.version.clone())
                .unwrap_or_default(),
            state: self.state,
            slot: self.updater.slots(),
            detail: cut(&self.detail),
        };
        // No peers yet is normal right after start; the next tick tries again.
        if let Err(e) = self.bus.publish(Message::UpdateReport(report)).await {
            tracing::debug!("rollout: reporting: {e}");
        }
    }
}

/// Cuts `text` to what a bus text field may hold.
fn cut(text: &str) -> String {
    let mut end = text.len().min(240);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sosna_proto::bus::messages::Wave;

    fn notice(waves: &[(u8, u64)]) -> RolloutNotice {
        RolloutNotice {
            version: "2".into(),
            url: "http://10.0.2.2/b.raucb".into(),
            sha256: alloy_primitives::B256::repeat_byte(1),
            size: 1,
            waves: waves
                .iter()
                .map(|(percent, start_ms)| Wave {
                    percent: *percent,
                    start_ms: *start_ms,
                })
                .collect(),
            halted: false,
            issued_ms: 1,
            allow_downgrade: false,
        }
    }

    #[test]
    fn older_means_a_lower_release_number() {
        assert!(is_older("0.9.9", "0.10.0"));
        assert!(is_older("1.2", "1.2.1"));
        assert!(!is_older("0.1.0-ota2", "0.1.0"));
        assert!(!is_older("0.1.0", "0.1.0-ota2"));
        assert!(!is_older("2", "1"));
        assert!(!is_older("nightly", "1.0"));
        assert!(!is_older("1.0", "nightly"));
    }

    #[test]
    fn waves_take_the_nodes_below_their_percent_once_started() {
        let n = notice(&[(10, 100), (50, 200), (100, 300)]);
        assert_eq!(due(&n, 5, 150), Ok(()));
        assert_eq!(due(&n, 5, 50), Err(Some(100)));
        assert_eq!(due(&n, 30, 150), Err(Some(200)));
        assert_eq!(due(&n, 30, 250), Ok(()));
        assert_eq!(due(&n, 99, 299), Err(Some(300)));
        let partial = notice(&[(20, 0)]);
        assert_eq!(due(&partial, 20, 10), Err(None));
    }

    #[test]
    fn positions_are_stable_and_spread() {
        let peers: Vec<PeerId> = (0..400).map(|_| PeerId::random()).collect();
        let first: Vec<u8> = peers.iter().map(|p| position(p, "2")).collect();
        let again: Vec<u8> = peers.iter().map(|p| position(p, "2")).collect();
        assert_eq!(first, again);
        assert!(first.iter().all(|p| *p < 100));
        // Roughly a tenth of 400 nodes below 10: far from none and far from all.
        let low = first.iter().filter(|p| **p < 10).count();
        assert!((10..=80).contains(&low), "{low} of 400 below 10");
    }

    #[test]
    fn operators_must_be_addresses() {
        let bad = RolloutConfig {
            operators: vec!["nope".into()],
            ..RolloutConfig::default()
        };
        let (field, why) = bad.validate().unwrap_err();
        assert_eq!(field, "rollout.operators");
        assert!(why.contains("nope"), "{why}");
    }
}
