//! The miner's hub book: every hub it has heard of, how far it trusts each (seed §2.4.4:
//! `not-confirmed → checked → safe`), and which one it works for. Pure bookkeeping; the
//! miner task in [`super::join`] drives it from bus and chain events. Persisted as JSON on
//! the state directory and printed by `sosna hubs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

use super::chain_view::Payout;
use sosna_proto::bus::messages::{
    Agreement, HubAnnouncement, PriceSchedule, Verdict, MICRO_SNM_WEI,
};

/// File name of the book inside the bus state directory.
pub const BOOK_FILE: &str = "hubs.json";

/// How far a miner trusts a hub. Ordered: later variants are trusted more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// Not whitelisted while the miner accepts whitelisted hubs only.
    Ignored,
    /// Failed a chain check, or the miner's experience with it was bad.
    Rejected,
    /// Passed the chain checks and answered for itself; nobody vouched yet.
    NotConfirmed,
    /// Enough other miners vouched for it.
    Checked,
    /// It paid this miner as agreed.
    Safe,
}

impl Trust {
    /// Weight of a hub's expected profit when choosing automatically.
    pub fn factor(self) -> f64 {
        match self {
            Trust::Safe => 1.0,
            Trust::Checked => 0.6,
            Trust::Ignored | Trust::Rejected | Trust::NotConfirmed => 0.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Ignored => "ignored",
            Trust::Rejected => "rejected",
            Trust::NotConfirmed => "not-confirmed",
            Trust::Checked => "checked",
            Trust::Safe => "safe",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubEntry {
    pub wallet: Address,
    pub owner: Address,
    pub peer_id: String,
    pub name: String,
    pub multiaddrs: Vec<String>,
    pub prices: PriceSchedule,
    pub trust: Trust,
    /// Why the hub is at its trust level.
    pub reason: String,
    pub whitelisted: bool,
    pub dao_trusted: bool,
    pub wallet_registered: bool,
    pub spendable_wei: U256,
    /// Payouts the wallet made to anyone in the lookback window.
    pub recent_payouts: usize,
    /// Terms from the hub's own metadata answer.
    pub agreement: Option<Agreement>,
    /// Miners who vouched for / warned against the hub.
    pub positive: BTreeSet<Address>,
    pub negative: BTreeSet<Address>,
    /// Total this miner was paid by the hub, in SNM wei.
    pub paid_wei: U256,
    pub joined: bool,
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum HubBookError {
    #[error("hub book {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("hub book {path} is corrupt: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Most hubs the book keeps: anyone can announce a wallet.
pub const MAX_HUBS: usize = 256;
/// Most voices counted for or against one hub.
pub const MAX_VOICES: usize = 64;
/// Most refused claims remembered.
pub const MAX_REFUSED: usize = 32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HubBook {
    pub hubs: BTreeMap<Address, HubEntry>,
    /// Announcements refused for claiming a wallet its signer does not own, newest last.
    #[serde(default)]
    pub refused: Vec<RefusedClaim>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedClaim {
    pub wallet: Address,
    pub owner: Address,
    pub peer_id: String,
    pub reason: String,
    pub at_ms: u64,
}

/// An announcement for a known wallet under another owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wallet {wallet} is recorded for owner {recorded}, announced by {claimed}")]
pub struct OwnerMismatch {
    pub wallet: Address,
    pub recorded: Address,
    pub claimed: Address,
}

impl HubEntry {
    fn new(ann: &HubAnnouncement, peer_id: &str, now_ms: u64) -> HubEntry {
        HubEntry {
            wallet: ann.wallet,
            owner: ann.owner,
            peer_id: peer_id.to_owned(),
            name: ann.name.clone(),
            multiaddrs: ann.multiaddrs.clone(),
            prices: ann.prices,
            trust: Trust::Ignored,
            reason: "not checked yet".into(),
            whitelisted: false,
            dao_trusted: false,
            wallet_registered: false,
            spendable_wei: U256::ZERO,
            recent_payouts: 0,
            agreement: None,
            positive: BTreeSet::new(),
            negative: BTreeSet::new(),
            paid_wei: U256::ZERO,
            joined: false,
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        }
    }
}

/// The miner's resources, for expected profit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub cores: u32,
    pub memory_gib: u32,
    pub gpus: u32,
}

impl Capacity {
    /// This machine: online CPUs and MemTotal.
    pub fn detect() -> Capacity {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        Capacity {
            cores,
            memory_gib: (memory_kib / (1024 * 1024)) as u32,
            gpus: 0,
        }
    }
}

impl HubBook {
    pub fn load(path: &Path) -> Result<HubBook, HubBookError> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|source| HubBookError::Parse {
                path: path.to_owned(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HubBook::default()),
            Err(source) => Err(HubBookError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Writes the book atomically (temp file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), HubBookError> {
        let io = |source| HubBookError::Io {
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_string_pretty(self).expect("hub book serialises");
        sosna_durable::write_atomic(path, text.as_bytes(), sosna_durable::Durability::Synced)
            .map_err(io)
    }

    pub fn get(&self, wallet: &Address) -> Option<&HubEntry> {
        self.hubs.get(wallet)
    }

    /// Records what an announcement says; a new hub starts `ignored` until checked. An
    /// announcement naming another owner than the entry's changes nothing: that takes
    /// chain proof ([`HubBook::rebind`]). The owner may move its hub to another peer: it
    /// signed the announcement, and the envelope binds the peer.
    pub fn observe(
        &mut self,
        ann: &HubAnnouncement,
        peer_id: &str,
        now_ms: u64,
    ) -> Result<&mut HubEntry, OwnerMismatch> {
        if let Some(e) = self.hubs.get(&ann.wallet) {
            if e.owner != ann.owner {
                return Err(OwnerMismatch {
                    wallet: ann.wallet,
                    recorded: e.owner,
                    claimed: ann.owner,
                });
            }
        } else {
            self.make_room();
        }
        let entry = self
            .hubs
            .entry(ann.wallet)
            .or_insert_with(|| HubEntry::new(ann, peer_id, now_ms));
        entry.peer_id = peer_id.to_owned();
        entry.name = ann.name.clone();
        entry.multiaddrs = ann.multiaddrs.clone();
        entry.prices = ann.prices;
        entry.last_seen_ms = now_ms;
        Ok(entry)
    }

    /// The chain says `ann.owner` owns the wallet: the entry starts over under that owner,
    /// whatever an earlier claimant made of it.
    pub fn rebind(&mut self, ann: &HubAnnouncement, peer_id: &str, now_ms: u64) -> &mut HubEntry {
        if !self.hubs.contains_key(&ann.wallet) {
            self.make_room();
        }
        let mut entry = HubEntry::new(ann, peer_id, now_ms);
        entry.reason = "owner proven on chain; not checked yet".into();
        self.hubs.insert(ann.wallet, entry);
        self.hubs.get_mut(&ann.wallet).expect("inserted")
    }

    /// Remembers an announcement that was refused (an owner the chain does not back), for
    /// `sosna hubs`; the newest [`MAX_REFUSED`] are kept.
    pub fn refuse(&mut self, ann: &HubAnnouncement, peer_id: &str, reason: String, now_ms: u64) {
        self.refused
            .retain(|r| r.wallet != ann.wallet || r.owner != ann.owner);
        if self.refused.len() >= MAX_REFUSED {
            self.refused.remove(0);
        }
        self.refused.push(RefusedClaim {
            wallet: ann.wallet,
            owner: ann.owner,
            peer_id: peer_id.to_owned(),
            reason,
            at_ms: now_ms,
        });
    }

    /// Keeps the book under [`MAX_HUBS`]: the least trusted, longest unseen hub that this
    /// miner has not joined goes first.
    fn make_room(&mut self) {
        while self.hubs.len() >= MAX_HUBS {
            let victim = self
                .hubs
                .values()
                .filter(|e| !e.joined)
                .min_by_key(|e| (e.trust, e.last_seen_ms))
                .map(|e| e.wallet);
            match victim {
                Some(w) => {
                    self.hubs.remove(&w);
                }
                None => break,
            }
        }
    }

    /// Records a verdict from `from`; enough distinct positive voices, outnumbering the
    /// negative ones, move a not-confirmed hub to `checked`. Returns whether trust changed.
    pub fn record_verdict(
        &mut self,
        wallet: &Address,
        from: Address,
        verdict: Verdict,
        min_positive: usize,
    ) -> bool {
        let Some(e) = self.hubs.get_mut(wallet) else {
            return false;
        };
        // The hub cannot vouch for itself.
        if from == e.owner {
            return false;
        }
        let known = e.positive.contains(&from) || e.negative.contains(&from);
        if !known && e.positive.len() + e.negative.len() >= MAX_VOICES {
            return false;
        }
        match verdict {
            Verdict::Positive => {
                e.negative.remove(&from);
                e.positive.insert(from);
            }
            Verdict::Negative => {
                e.positive.remove(&from);
                e.negative.insert(from);
            }
        }
        if e.trust == Trust::NotConfirmed
            && e.positive.len() >= min_positive
            && e.positive.len() > e.negative.len()
        {
            e.trust = Trust::Checked;
            e.reason = format!(
                "{} miners vouched, {} warned",
                e.positive.len(),
                e.negative.len()
            );
            return true;
        }
        false
    }

    /// Records payouts the hub made to this miner; one that meets the agreement's minimum
    /// makes a not-confirmed or checked hub `safe`. Returns whether trust changed.
    pub fn record_payouts(&mut self, wallet: &Address, to_me: &[Payout]) -> bool {
        let Some(e) = self.hubs.get_mut(wallet) else {
            return false;
        };
        e.paid_wei = to_me.iter().map(|p| p.amount).sum();
        let Some(agreement) = e.agreement else {
            return false;
        };
        let min = U256::from(agreement.min_payout_usnm) * U256::from(MICRO_SNM_WEI);
        let matching = to_me
            .iter()
            .find(|p| p.amount >= min && !p.amount.is_zero());
        match matching {
            Some(p) if matches!(e.trust, Trust::NotConfirmed | Trust::Checked) => {
                e.trust = Trust::Safe;
                e.reason = format!("paid {} wei in block {} as agreed", p.amount, p.block);
                true
            }
            _ => false,
        }
    }

    /// This miner's own experience with a hub, if it has any to share.
    pub fn verdict_on(&self, wallet: &Address) -> Option<Verdict> {
        match self.hubs.get(wallet)?.trust {
            Trust::Safe => Some(Verdict::Positive),
            Trust::Rejected => Some(Verdict::Negative),
            _ => None,
        }
    }

    /// The hub to work for: the configured one if usable, else the best expected hourly
    /// profit weighted by trust among checked and safe hubs.
    pub fn choose(&self, resources: Capacity, manual: Option<Address>) -> Option<Address> {
        if let Some(wallet) = manual {
            return self
                .hubs
                .get(&wallet)
                .filter(|e| e.trust >= Trust::NotConfirmed)
                .map(|e| e.wallet);
        }
        self.hubs
            .values()
            .map(|e| {
                let profit =
                    e.prices
                        .hourly_for(resources.cores, resources.memory_gib, resources.gpus);
                (profit as f64 * e.trust.factor(), e.wallet)
            })
            .filter(|(score, _)| *score > 0.0)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, wallet)| wallet)
    }

    /// Marks `wallet` as the one joined hub.
    pub fn set_joined(&mut self, wallet: &Address) {
        for e in self.hubs.values_mut() {
            e.joined = e.wallet == *wallet;
        }
    }

    /// A table for `sosna hubs`.
    pub fn render(&self) -> String {
        if self.hubs.is_empty() {
            return "no hubs heard yet\n".into();
        }
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<42}  {:<16}  {:<13}  {:>6}  {:>4}  {:>4}  reason",
            "WALLET", "NAME", "TRUST", "JOINED", "+", "-"
        );
        let mut hubs: Vec<&HubEntry> = self.hubs.values().collect();
        hubs.sort_by(|a, b| b.trust.cmp(&a.trust).then(a.name.cmp(&b.name)));
        for e in hubs {
            let _ = writeln!(
                out,
                "{:<42}  {:<16}  {:<13}  {:>6}  {:>4}  {:>4}  {}",
                e.wallet.to_string(),
                e.name,
                e.trust.as_str(),
                if e.joined { "yes" } else { "" },
                e.positive.len(),
                e.negative.len(),
                e.reason
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(wallet: u8, cpu: u64) -> HubAnnouncement {
        HubAnnouncement {
            multiaddrs: vec!["/ip4/10.0.0.1/tcp/4001".into()],
            owner: Address::repeat_byte(wallet ^ 0xff),
            wallet: Address::repeat_byte(wallet),
            name: format!("hub-{wallet}"),
            prices: PriceSchedule {
                cpu_core_hour: cpu,
                ..Default::default()
            },
            timestamp_ms: 1,
        }
    }

    const AGREED: Agreement = Agreement {
        prices: PriceSchedule {
            cpu_core_hour: 1,
            memory_gib_hour: 0,
            gpu_hour: 0,
        },
        min_payout_usnm: 1_000_000,
        payout_every_secs: 60,
    };

    fn confirmed(book: &mut HubBook, a: &HubAnnouncement) {
        let e = book.observe(a, "peer", 1).unwrap();
        e.trust = Trust::NotConfirmed;
        e.agreement = Some(AGREED);
    }

    #[test]
    fn test_verdicts_move_to_checked_only_with_enough_distinct_voices() {
        let mut book = HubBook::default();
        let a = ann(1, 10);
        confirmed(&mut book, &a);
        let (m1, m2) = (Address::repeat_byte(0x11), Address::repeat_byte(0x12));
        assert!(!book.record_verdict(&a.wallet, m1, Verdict::Positive, 2));
        // The same voice twice, and the hub's own owner, do not count.
        assert!(!book.record_verdict(&a.wallet, m1, Verdict::Positive, 2));
        assert!(!book.record_verdict(&a.wallet, a.owner, Verdict::Positive, 2));
        assert_eq!(book.get(&a.wallet).unwrap().trust, Trust::NotConfirmed);
        assert!(book.record_verdict(&a.wallet, m2, Verdict::Positive, 2));
        assert_eq!(book.get(&a.wallet).unwrap().trust, Trust::Checked);
    }

    #[test]
    fn test_negative_voices_hold_a_hub_back() {
        let mut book = HubBook::default();
        let a = ann(1, 10);
        confirmed(&mut book, &a);
        for n in 0x20..0x23 {
            book.record_verdict(&a.wallet, Address::repeat_byte(n), Verdict::Negative, 2);
        }
        book.record_verdict(&a.wallet, Address::repeat_byte(0x11), Verdict::Positive, 2);
        book.record_verdict(&a.wallet, Address::repeat_byte(0x12), Verdict::Positive, 2);
        assert_eq!(book.get(&a.wallet).unwrap().trust, Trust::NotConfirmed);
    }

    #[test]
    fn test_only_a_payout_meeting_the_agreement_makes_safe() {
        let mut book = HubBook::default();
        let a = ann(1, 10);
        confirmed(&mut book, &a);
        let min = U256::from(AGREED.min_payout_usnm) * U256::from(MICRO_SNM_WEI);
        let small = Payout {
            miner: Address::ZERO,
            amount: min - U256::from(1),
            block: 5,
        };
        assert!(!book.record_payouts(&a.wallet, std::slice::from_ref(&small)));
        assert_eq!(book.get(&a.wallet).unwrap().trust, Trust::NotConfirmed);
        let enough = Payout {
            amount: min,
            ..small
        };
        assert!(book.record_payouts(&a.wallet, &[enough]));
        let e = book.get(&a.wallet).unwrap();
        assert_eq!(e.trust, Trust::Safe);
        assert_eq!(e.paid_wei, min);
        assert_eq!(book.verdict_on(&a.wallet), Some(Verdict::Positive));
    }

    #[test]
    fn test_choice_weighs_profit_by_trust_and_respects_manual() {
        let mut book = HubBook::default();
        let (rich, modest, unknown) = (ann(1, 100), ann(2, 70), ann(3, 1_000));
        for a in [&rich, &modest, &unknown] {
            confirmed(&mut book, a);
        }
        book.hubs.get_mut(&rich.wallet).unwrap().trust = Trust::Checked; // 100 * 0.6
        book.hubs.get_mut(&modest.wallet).unwrap().trust = Trust::Safe; // 70 * 1.0
        let me = Capacity {
            cores: 4,
            memory_gib: 8,
            gpus: 0,
        };
        assert_eq!(book.choose(me, None), Some(modest.wallet));
        assert_eq!(book.choose(me, Some(unknown.wallet)), Some(unknown.wallet));
        book.hubs.get_mut(&unknown.wallet).unwrap().trust = Trust::Ignored;
        assert_eq!(book.choose(me, Some(unknown.wallet)), None);
    }

    #[test]
    fn test_book_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus").join(BOOK_FILE);
        assert_eq!(HubBook::load(&path).unwrap(), HubBook::default());
        let mut book = HubBook::default();
        confirmed(&mut book, &ann(1, 10));
        book.set_joined(&Address::repeat_byte(1));
        book.save(&path).unwrap();
        let back = HubBook::load(&path).unwrap();
        assert_eq!(back, book);
        let table = back.render();
        assert!(
            table.contains("not-confirmed") && table.contains("hub-1"),
            "{table}"
        );
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            HubBook::load(&path),
            Err(HubBookError::Parse { .. })
        ));
    }
}
