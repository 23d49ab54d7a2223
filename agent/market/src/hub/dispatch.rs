//! The hub's side of a unit of work: offer it to `replicas` distinct miners that joined
//! the hub, collect their signed reports, and decide by strict majority. A miner that
//! refuses, fails or stays silent past the deadline is replaced by another one, so a miner
//! dying mid-task costs time, not the unit; nobody is asked twice for the same unit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use alloy_sol_types::Eip712Domain;
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::stake::{NotAdmitted, StakeGate};
use super::verify::{decide, Decision};
use sosna_bus::Bus;
use sosna_proto::attest::{self, Attestation, Unit};
use sosna_proto::bus::messages::{Request, Response, TaskOffer, TaskOutcome, TaskReport};
use sosna_proto::result::ResultBundle;
use sosna_proto::task::TaskSpec;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("unit {unit}: every joined miner was asked ({asked}), none took it; {replicas} replicas needed")]
    NoTakers {
        unit: B256,
        asked: usize,
        replicas: u16,
    },
    #[error("unit {unit}: the task's image is not pinned to a manifest digest")]
    NotPinned { unit: B256 },
    #[error("unit {unit}: the task failed on {miners} miners: {reason}")]
    TaskFailed {
        unit: B256,
        miners: usize,
        reason: String,
    },
    #[error("unit {unit}: no majority by the deadline ({got} results from {asked} miners)")]
    NoMajority {
        unit: B256,
        got: usize,
        asked: usize,
    },
}

/// Why a miner may not join.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JoinRefused {
    #[error(transparent)]
    NotAdmitted(#[from] NotAdmitted),
    #[error("this hub has all the miners it takes ({MAX_MINERS})")]
    Full,
}

/// What a decided unit leaves behind for settlement and for the buyer.
#[derive(Debug, Clone)]
pub struct UnitResult {
    pub unit: Unit,
    pub bundle: ResultBundle,
    /// Miners whose result agreed, and those whose result did not.
    pub agree: Vec<Address>,
    pub disagree: Vec<Address>,
    /// Every signed result received.
    pub attestations: Vec<Attestation>,
    /// Miners that were offered the unit, in order.
    pub asked: Vec<Address>,
    /// Until the first full round of offers was taken.
    pub dispatch: Duration,
    /// The slowest agreeing miner's pull and run, as it reported them.
    pub pull_ms: u64,
    pub run_ms: u64,
    /// From the first result in to the decision: waiting for agreement, and the checks.
    pub verify: Duration,
}

type Reports = mpsc::Sender<(Address, TaskReport)>;

#[derive(Clone)]
pub struct Dispatcher {
    bus: Bus,
    domain: Eip712Domain,
    /// Joined miners and the peer each joined from.
    miners: Arc<Mutex<BTreeMap<Address, PeerId>>>,
    waiting: Arc<Mutex<HashMap<B256, Reports>>>,
    /// Without one, any miner that joined gets work (a hub without a chain).
    gate: Option<Arc<StakeGate>>,
}

/// Most miners one hub keeps track of.
pub const MAX_MINERS: usize = 4096;

impl Dispatcher {
    pub fn new(bus: Bus, domain: Eip712Domain) -> Dispatcher {
        Dispatcher {
            bus,
            domain,
            miners: Arc::default(),
            waiting: Arc::default(),
            gate: None,
        }
    }

    /// Work goes only to miners `gate` admits.
    pub fn with_stake_gate(mut self, gate: Arc<StakeGate>) -> Dispatcher {
        self.gate = Some(gate);
        self
    }

    /// Takes a miner that asks to join (or re-joins from another peer), if it is staked.
    pub async fn join(&self, miner: Address, peer: PeerId) -> Result<usize, JoinRefused> {
        if let Some(gate) = &self.gate {
            gate.admits(miner).await?;
        }
        let mut miners = self.miners.lock().expect("miners lock");
        if miners.len() >= MAX_MINERS && !miners.contains_key(&miner) {
            return Err(JoinRefused::Full);
        }
        miners.insert(miner, peer);
        Ok(miners.len())
    }

    /// Routes a report to the unit waiting for it.
    pub fn on_report(&self, from: Address, report: TaskReport) -> Response {
        let tx = self
            .waiting
            .lock()
            .expect("waiting lock")
            .get(&report.unit)
            .cloned();
        match tx {
            Some(tx) if tx.try_send((from, report)).is_ok() => Response::Received,
            _ => Response::Refused("no such unit pending".into()),
        }
    }

    /// Runs `unit` to a decision or to `deadline` from now.
    pub async fn run_unit(
        &self,
        unit: Unit,
        spec_json: &str,
        pay_usnm: u64,
        deadline: Duration,
    ) -> Result<UnitResult, DispatchError> {
        let (tx, mut rx) = mpsc::channel(64);
        self.waiting
            .lock()
            .expect("waiting lock")
            .insert(unit.id, tx);
        let result = self
            .collect(unit, spec_json, pay_usnm, deadline, &mut rx)
            .await;
        self.waiting.lock().expect("waiting lock").remove(&unit.id);
        result
    }

    async fn collect(
        &self,
        unit: Unit,
        spec_json: &str,
        pay_usnm: u64,
        deadline: Duration,
        rx: &mut mpsc::Receiver<(Address, TaskReport)>,
    ) -> Result<UnitResult, DispatchError> {
        let pinned = serde_json::from_str::<TaskSpec>(spec_json)
            .ok()
            .and_then(|t| t.pinned_digest().map(str::to_owned))
            .ok_or(DispatchError::NotPinned { unit: unit.id })?;
        let end = Instant::now() + deadline;
        // A replica that has not reported by then is presumed dead and replaced.
        let patience = deadline / 2;
        let offer = TaskOffer {
            unit,
            spec: spec_json.to_owned(),
            pay_usnm,
            deadline_ms: sosna_proto::bus::envelope::now_ms()
                .saturating_add(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
        };
        let mut asked: Vec<Address> = Vec::new();
        let mut running: BTreeMap<Address, Instant> = BTreeMap::new();
        let mut results: BTreeMap<Address, (ResultBundle, Attestation)> = BTreeMap::new();
        let mut timings: BTreeMap<Address, (u64, u64)> = BTreeMap::new();
        // Why miners said the task failed, and who said it: a failure a majority agrees on
        // (a result over the limit, an image that does not exist) is the unit's outcome.
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        let majority = usize::from(unit.replicas) / 2 + 1;
        let started = Instant::now();
        let mut dispatched: Option<Duration> = None;
        let mut first_result: Option<Instant> = None;
        loop {
            // Keep `replicas` miners busy on the unit, never asking one twice.
            // Keep `replicas` miners busy on the unit, never asking one twice; each round
            // of offers goes out at once. Reports wait in `rx` until the round is done.
            loop {
                let needed =
                    usize::from(unit.replicas).saturating_sub(running.len() + results.len());
                let mut round = Vec::new();
                while round.len() < needed {
                    let Some((miner, peer)) = self.next_miner(&unit.id, &mut asked).await else {
                        break;
                    };
                    round.push((miner, peer));
                }
                if round.is_empty() {
                    break;
                }
                let answers = futures::future::join_all(round.iter().map(|(_, peer)| {
                    self.bus
                        .request(*peer, Vec::new(), Request::Offer(offer.clone()))
                }))
                .await;
                for ((miner, _), answer) in round.into_iter().zip(answers) {
                    match answer {
                        Ok((from, Response::Accepted)) if from == miner => {
                            tracing::info!("market: unit {} offered to {miner}", unit.id);
                            running.insert(miner, Instant::now() + patience);
                        }
                        Ok((_, other)) => {
                            tracing::info!("market: {miner} declined unit {}: {other:?}", unit.id)
                        }
                        Err(e) => {
                            tracing::info!("market: offering unit {} to {miner}: {e}", unit.id)
                        }
                    }
                }
            }
            if dispatched.is_none() && running.len() + results.len() >= usize::from(unit.replicas) {
                dispatched = Some(started.elapsed());
            }
            if running.is_empty() && results.len() < usize::from(unit.replicas) {
                let joined = self.miners.lock().expect("miners lock").len();
                if asked.len() >= joined && results.is_empty() {
                    return Err(DispatchError::NoTakers {
                        unit: unit.id,
                        asked: asked.len(),
                        replicas: unit.replicas,
                    });
                }
            }
            let votes: Vec<(Address, B256)> =
                results.iter().map(|(m, (_, a))| (*m, a.digest)).collect();
            if let Decision::Agreed {
                digest,
                agree,
                disagree,
            } = decide(unit.replicas, &votes)
            {
                // Wait for the stragglers only while they could still change nothing:
                // a strict majority is final, but every report counts for slashing.
                if running.is_empty() || Instant::now() >= end {
                    let bundle = results
                        .values()
                        .find(|(b, _)| b.digest() == digest)
                        .map(|(b, _)| b.clone())
                        .expect("the majority digest has a bundle");
                    let slowest = |f: fn(&(u64, u64)) -> u64| {
                        agree
                            .iter()
                            .filter_map(|m| timings.get(m))
                            .map(f)
                            .max()
                            .unwrap_or(0)
                    };
                    return Ok(UnitResult {
                        unit,
                        bundle,
                        pull_ms: slowest(|t| t.0),
                        run_ms: slowest(|t| t.1),
                        agree,
                        disagree,
                        attestations: results.into_values().map(|(_, a)| a).collect(),
                        asked,
                        dispatch: dispatched.unwrap_or_else(|| started.elapsed()),
                        verify: first_result.map_or(Duration::ZERO, |t| t.elapsed()),
                    });
                }
            }
            let now = Instant::now();
            if now >= end {
                return Err(DispatchError::NoMajority {
                    unit: unit.id,
                    got: results.len(),
                    asked: asked.len(),
                });
            }
            let next_expiry = running.values().min().copied().unwrap_or(end).min(end);
            tokio::select! {
                got = rx.recv() => {
                    let Some((from, report)) = got else { continue };
                    if running.remove(&from).is_none() {
                        continue; // not asked, or already reported
                    }
                    timings.insert(from, (report.pull_ms, report.run_ms));
                    match report.outcome {
                        TaskOutcome::Done { image, exit_code, stdout, attestation } => {
                            if let Err(e) = attest::check(&self.domain, &unit, &attestation) {
                                tracing::warn!("market: {from}'s report of {}: {e}", unit.id);
                                continue;
                            }
                            // A result from another image than the pinned one still goes
                            // to the vote (its signed digest says so), and loses it.
                            if image != pinned {
                                tracing::warn!("market: {from} ran {image} for unit {}, not {pinned}", unit.id);
                            }
                            let bundle = ResultBundle { image, exit_code, stdout };
                            results.insert(from, (bundle, attestation));
                            first_result.get_or_insert_with(Instant::now);
                        }
                        TaskOutcome::Failed(why) => {
                            tracing::info!("market: {from} failed unit {}: {why}", unit.id);
                            let count = failures.entry(why.clone()).or_default();
                            *count += 1;
                            if *count >= majority {
                                return Err(DispatchError::TaskFailed {
                                    unit: unit.id,
                                    miners: *count,
                                    reason: why,
                                });
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_expiry) => {
                    let now = Instant::now();
                    let late: BTreeSet<Address> = running
                        .iter()
                        .filter(|(_, t)| **t <= now)
                        .map(|(m, _)| *m)
                        .collect();
                    for m in late {
                        tracing::info!("market: {m} silent on unit {}; replacing it", unit.id);
                        running.remove(&m);
                    }
                }
            }
        }
    }

    /// A joined miner not asked yet for this unit, still staked. Where the choice starts
    /// depends on the unit id, which spreads units over miners without keeping history.
    async fn next_miner(&self, unit: &B256, asked: &mut Vec<Address>) -> Option<(Address, PeerId)> {
        loop {
            let pick = {
                let miners = self.miners.lock().expect("miners lock");
                let free: Vec<(Address, PeerId)> = miners
                    .iter()
                    .filter(|(m, _)| !asked.contains(m))
                    .map(|(m, p)| (*m, *p))
                    .collect();
                if free.is_empty() {
                    return None;
                }
                free[usize::from(unit[0]) % free.len()]
            };
            asked.push(pick.0);
            match &self.gate {
                Some(gate) => match gate.admits(pick.0).await {
                    Ok(()) => return Some(pick),
                    Err(e) => tracing::info!("market: not offering unit {unit} to {}: {e}", pick.0),
                },
                None => return Some(pick),
            }
        }
    }
}
