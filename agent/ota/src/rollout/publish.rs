//! The operator's side of a rollout: the notice for a bundle, and the tally of the
//! fleet's reports that decides when to halt.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use alloy_primitives::{Address, B256};
use sha2::{Digest, Sha256};

use sosna_proto::bus::messages::{RolloutNotice, UpdateReport, UpdateState, Wave};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("bundle {path}: {reason}")]
    Bundle { path: String, reason: String },
    #[error("waves {0:?}: each must be 1..=100 and larger than the one before")]
    Waves(Vec<u8>),
}

/// The sha256 and size of the bundle at `path`.
pub fn digest_file(path: &Path) -> Result<(B256, u64), PublishError> {
    use std::io::Read;
    let bad = |e: std::io::Error| PublishError::Bundle {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(bad)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(bad)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    if size == 0 {
        return Err(PublishError::Bundle {
            path: path.display().to_string(),
            reason: "empty".into(),
        });
    }
    Ok((B256::from_slice(&h.finalize()), size))
}

/// Waves of cumulative `percents`, the first starting at `start_ms` and each next one
/// `every` later.
pub fn waves(percents: &[u8], start_ms: u64, every: Duration) -> Result<Vec<Wave>, PublishError> {
    let growing = percents.windows(2).all(|w| w[0] < w[1]);
    if percents.is_empty() || !growing || percents.iter().any(|p| *p == 0 || *p > 100) {
        return Err(PublishError::Waves(percents.to_vec()));
    }
    Ok(percents
        .iter()
        .enumerate()
        .map(|(i, percent)| Wave {
            percent: *percent,
            start_ms: start_ms + every.as_millis() as u64 * i as u64,
        })
        .collect())
}

/// The fleet as its reports describe it: the latest report of each node.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub nodes: BTreeMap<Address, UpdateReport>,
}

impl Tally {
    /// Records `report` from `node`; returns whether anything changed.
    pub fn record(&mut self, node: Address, report: UpdateReport) -> bool {
        self.nodes.insert(node, report.clone()) != Some(report)
    }

    /// Nodes in `state` for the rollout of `version`.
    pub fn count(&self, version: &str, state: UpdateState) -> usize {
        self.nodes
            .values()
            .filter(|r| r.target == version && r.state == state)
            .count()
    }

    /// Whether the rollout of `notice` has failed on more than `max_failures` nodes.
    pub fn should_halt(&self, notice: &RolloutNotice, max_failures: usize) -> bool {
        !notice.halted && self.count(&notice.version, UpdateState::Failed) > max_failures
    }

    /// A table for people: one row per node.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<42}  {:<12}  {:<12}  {:<10}  {:<24}  DETAIL\n",
            "NODE", "RUNNING", "TARGET", "STATE", "SLOTS"
        );
        for (node, r) in &self.nodes {
            out.push_str(&format!(
                "{node:<42}  {:<12}  {:<12}  {:<10}  {:<24}  {}\n",
                r.running,
                r.target,
                format!("{:?}", r.state).to_lowercase(),
                r.slot,
                r.detail
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(target: &str, state: UpdateState) -> UpdateReport {
        UpdateReport {
            running: "1".into(),
            target: target.into(),
            state,
            slot: "A".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn waves_must_grow() {
        let w = waves(&[10, 50, 100], 1000, Duration::from_secs(60)).unwrap();
        assert_eq!(w[2].start_ms, 1000 + 120_000);
        assert!(waves(&[50, 10], 0, Duration::ZERO).is_err());
        assert!(waves(&[0, 10], 0, Duration::ZERO).is_err());
        assert!(waves(&[], 0, Duration::ZERO).is_err());
        assert!(waves(&[101], 0, Duration::ZERO).is_err());
    }

    #[test]
    fn halts_past_the_failure_threshold_only_for_its_version() {
        let notice = RolloutNotice {
            version: "2".into(),
            url: "http://h/b".into(),
            sha256: B256::repeat_byte(1),
            size: 1,
            waves: vec![],
            halted: false,
            issued_ms: 1,
            allow_downgrade: false,
        };
        let mut t = Tally::default();
        t.record(Address::repeat_byte(1), report("2", UpdateState::Failed));
        t.record(Address::repeat_byte(2), report("1", UpdateState::Failed));
        assert!(!t.should_halt(&notice, 1));
        t.record(Address::repeat_byte(3), report("2", UpdateState::Failed));
        assert!(t.should_halt(&notice, 1));
        assert!(!t.record(Address::repeat_byte(3), report("2", UpdateState::Failed)));
        assert!(t.render().contains("failed"));
    }

    #[test]
    fn a_missing_bundle_is_named() {
        let err = digest_file(Path::new("/nonexistent/b.raucb")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/b.raucb"), "{err}");
    }
}
