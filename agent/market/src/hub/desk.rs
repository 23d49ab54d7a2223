//! The hub's deal desk. A buyer opens a deal on the Market naming this hub's wallet, then
//! submits the task over the bus; the desk checks with one `isOpen` call that the Market
//! holds exactly those terms for that buyer, runs the task as one replicated unit, settles
//! it on chain and keeps the result for the buyer to fetch. A job that gets no result is
//! released on chain, which refunds the buyer at once instead of at the deadline.
//!
//! Each job is a JSON file in the desk's directory, rewritten at every phase: after a
//! restart, decided jobs finish their (idempotent) settlement and running ones are
//! dispatched again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{keccak256, Address, Uint, U256};
use serde::{Deserialize, Serialize};
use sosna_contracts::{Deployment, IMarket};

use super::dispatch::{DispatchError, Dispatcher};
use super::settle::{settle, Deal, Settlement};
use sosna_chain::sender::Sender;
use sosna_chain::ChainError;
use sosna_proto::attest::{Attestation, Unit};
use sosna_proto::bus::messages::{
    JobPhase, JobStatus, JobSubmission, JobTimings, Response, MAX_REPLICAS, MICRO_SNM_WEI,
};
use sosna_proto::task::TaskSpec;

/// Most jobs a hub works on at once; each holds a task per replica on its miners.
const MAX_RUNNING_JOBS: usize = 256;

/// Time kept back from a deal's deadline for committing the result.
const SETTLE_MARGIN: Duration = Duration::from_secs(30);
/// Longest detail text kept (the bus caps text fields at 256 bytes).
const MAX_DETAIL: usize = 240;

#[derive(Debug, Clone)]
pub struct DeskSettings {
    /// This hub's HubWallet: deals must name it.
    pub wallet: Address,
    /// Share of a deal's price paid to the miners who agreed, in percent; the rest stays
    /// with the hub.
    pub miner_share_pct: u8,
    /// Longest a unit may run, whatever its deadline.
    pub unit_timeout: Duration,
    pub dir: PathBuf,
    /// Registries reached over plain HTTP when pinning images.
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("job state {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// Why a buyer's job is refused; the text goes back to the buyer.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("deal {0} was submitted already")]
    Duplicate(U256),
    #[error("task spec: {0}")]
    SpecJson(#[from] serde_json::Error),
    #[error("task spec: {0}")]
    Spec(#[from] sosna_proto::task::TaskError),
    #[error("{0} replicas (1..={MAX_REPLICAS})")]
    Replicas(u16),
    #[error("price is not a uint96 above zero")]
    Price,
    #[error("deadline is only {0}s away")]
    Deadline(u64),
    #[error("deal {deal} is not open on the Market with these terms for {buyer} and hub {hub}")]
    NotOpen {
        deal: U256,
        buyer: Address,
        hub: Address,
    },
    #[error("checking deal {deal}: {source}")]
    Chain { deal: U256, source: ChainError },
}

/// Why a taken job did not finish.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error("the deal's deadline passed before the task ran")]
    DeadlinePassed,
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error("pinning the task's image: {0}")]
    Pin(String),
    #[error("decided without a result")]
    NoResult,
    #[error(transparent)]
    Settle(#[from] ChainError),
}

/// One job as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    buyer: Address,
    submission: JobSubmission,
    status: JobStatus,
    /// Every replica's signed result, kept for a settlement resumed after a restart.
    attestations: Vec<Attestation>,
    /// The buyer's spec with its image pinned to a manifest digest at intake: what every
    /// replica runs.
    #[serde(default)]
    pinned_spec: Option<String>,
}

#[derive(Clone)]
pub struct Desk {
    inner: Arc<Inner>,
}

struct Inner {
    dispatcher: Dispatcher,
    sender: Arc<Sender>,
    deployment: Deployment,
    settings: DeskSettings,
    jobs: Mutex<BTreeMap<U256, Job>>,
}

impl Desk {
    /// Opens the desk and resumes the jobs a previous run left unfinished.
    pub fn open(
        dispatcher: Dispatcher,
        sender: Arc<Sender>,
        deployment: Deployment,
        settings: DeskSettings,
    ) -> Result<Desk, DeskError> {
        let jobs = load_jobs(&settings.dir)?;
        let unfinished: Vec<U256> = jobs
            .values()
            .filter(|j| matches!(j.status.phase, JobPhase::Running | JobPhase::Settling))
            .map(|j| j.submission.deal)
            .collect();
        let desk = Desk {
            inner: Arc::new(Inner {
                dispatcher,
                sender,
                deployment,
                settings,
                jobs: Mutex::new(jobs),
            }),
        };
        for deal in unfinished {
            tracing::info!("market: resuming the job for deal {deal}");
            let desk = desk.clone();
            tokio::spawn(async move { desk.work(deal).await });
        }
        Ok(desk)
    }

    /// Takes a buyer's job after checking its deal on chain. Submitting the same job again
    /// is harmless.
    pub async fn submit(&self, buyer: Address, job: JobSubmission) -> Response {
        match self.check(buyer, &job).await {
            Ok(true) => return Response::Accepted,
            Ok(false) => {}
            Err(why) => {
                tracing::info!("market: refused deal {} from {buyer}: {why}", job.deal);
                return Response::Refused(truncate(why.to_string()));
            }
        }
        let deal = job.deal;
        let running = self
            .inner
            .jobs
            .lock()
            .expect("jobs lock")
            .values()
            .filter(|j| matches!(j.status.phase, JobPhase::Running | JobPhase::Settling))
            .count();
        if running >= MAX_RUNNING_JOBS {
            return Response::Refused(format!(
                "this hub runs {MAX_RUNNING_JOBS} jobs already; the deal stays open for another"
            ));
        }
        let status = JobStatus {
            deal,
            phase: JobPhase::Running,
            detail: format!("offering to {} miners", job.replicas),
            result: None,
            agree: Vec::new(),
            disagree: Vec::new(),
            txs: Vec::new(),
            timings: JobTimings::default(),
        };
        let record = Job {
            buyer,
            submission: job,
            status,
            attestations: Vec::new(),
            pinned_spec: None,
        };
        {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            if jobs.contains_key(&deal) {
                return Response::Accepted; // a concurrent duplicate got here first
            }
            jobs.insert(deal, record.clone());
        }
        self.save(&record);
        tracing::info!("market: took deal {deal} from {buyer}");
        let desk = self.clone();
        tokio::spawn(async move { desk.work(deal).await });
        Response::Accepted
    }

    /// The job's status, for its buyer only: results are the buyer's.
    pub fn status(&self, asker: Address, deal: U256) -> Response {
        match self.inner.jobs.lock().expect("jobs lock").get(&deal) {
            Some(j) if j.buyer == asker => Response::Job(j.status.clone()),
            Some(_) => Response::Refused(format!("deal {deal} is not yours")),
            None => Response::Refused(format!("no job for deal {deal}")),
        }
    }

    /// Ok(true): already taken. Ok(false): new and acceptable.
    async fn check(&self, buyer: Address, job: &JobSubmission) -> Result<bool, Refusal> {
        if let Some(known) = self.inner.jobs.lock().expect("jobs lock").get(&job.deal) {
            return if known.buyer == buyer && known.submission == *job {
                Ok(true)
            } else {
                Err(Refusal::Duplicate(job.deal))
            };
        }
        let spec: TaskSpec = serde_json::from_str(&job.spec)?;
        spec.validate()?;
        if job.replicas == 0 || job.replicas > MAX_REPLICAS {
            return Err(Refusal::Replicas(job.replicas));
        }
        if job.price.is_zero() || job.price > U256::from(u128::MAX >> 32) {
            return Err(Refusal::Price);
        }
        let left = Duration::from_secs(job.deadline.saturating_sub(now_secs()));
        if left <= SETTLE_MARGIN * 2 {
            return Err(Refusal::Deadline(left.as_secs()));
        }
        let open = IMarket::isOpenCall {
            id: job.deal,
            deal: self.terms(buyer, job),
        };
        let market = self.inner.deployment.market;
        match self.inner.sender.call("Market.isOpen", market, open).await {
            Ok(true) => Ok(false),
            Ok(false) => Err(Refusal::NotOpen {
                deal: job.deal,
                buyer,
                hub: self.inner.settings.wallet,
            }),
            Err(source) => Err(Refusal::Chain {
                deal: job.deal,
                source,
            }),
        }
    }

    fn terms(&self, buyer: Address, job: &JobSubmission) -> IMarket::Deal {
        IMarket::Deal {
            buyer,
            hub: self.inner.settings.wallet,
            price: Uint::<96, 2>::saturating_from(job.price),
            deadline: Uint::<40, 1>::saturating_from(job.deadline),
            committedAt: Uint::ZERO,
        }
    }

    fn job(&self, deal: U256) -> Job {
        self.inner.jobs.lock().expect("jobs lock")[&deal].clone()
    }

    /// Applies `f` to the job's record and writes it out.
    fn update(&self, deal: U256, f: impl FnOnce(&mut Job)) -> Job {
        let job = {
            let mut jobs = self.inner.jobs.lock().expect("jobs lock");
            let job = jobs.get_mut(&deal).expect("job exists");
            f(job);
            job.clone()
        };
        self.save(&job);
        job
    }

    fn save(&self, job: &Job) {
        let path = job_path(&self.inner.settings.dir, job.submission.deal);
        if let Err(e) = write_job(&path, job) {
            tracing::error!("market: saving {}: {e}", path.display());
        }
    }

    /// Runs a job from wherever it stands to Done or Failed.
    async fn work(&self, deal: U256) {
        let job = self.job(deal);
        if job.status.phase == JobPhase::Running {
            if let Err(why) = self.run(&job).await {
                self.fail(&job, why).await;
                return;
            }
        }
        let job = self.job(deal);
        if let Err(why) = self.settle(&job).await {
            tracing::error!("market: settling deal {deal}: {why}");
            self.update(deal, |j| {
                j.status.phase = JobPhase::Failed;
                j.status.detail = truncate(format!("settlement failed: {why}"));
            });
        }
    }

    /// The spec with its image pinned to the digest the registry serves now.
    async fn pin(&self, spec_json: &str) -> Result<String, JobError> {
        let mut spec: TaskSpec = serde_json::from_str(spec_json)
            .map_err(|e| JobError::Pin(format!("task spec: {e}")))?;
        let client = sosna_runtime::pull::client(&self.inner.settings.insecure_registries)
            .map_err(|e| JobError::Pin(e.to_string()))?;
        spec.image = sosna_runtime::pull::pin(&client, &spec.image)
            .await
            .map_err(|e| JobError::Pin(sosna_runtime::pull::error_chain(&e)))?;
        let pinned = serde_json::to_string(&spec).map_err(|e| JobError::Pin(e.to_string()))?;
        if pinned.len() > sosna_proto::bus::limits::MAX_SPEC {
            return Err(JobError::Pin(format!(
                "the pinned spec is {} bytes, over the {}-byte limit",
                pinned.len(),
                sosna_proto::bus::limits::MAX_SPEC
            )));
        }
        Ok(pinned)
    }

    fn unit(&self, job: &JobSubmission) -> Unit {
        Unit {
            hub: self.inner.settings.wallet,
            id: keccak256(job.deal.to_be_bytes::<32>()),
            replicas: job.replicas,
        }
    }

    /// What each agreeing miner is paid, in SNM wei.
    fn pay_each(&self, job: &JobSubmission) -> U256 {
        job.price * U256::from(self.inner.settings.miner_share_pct)
            / U256::from(100)
            / U256::from(job.replicas)
    }

    async fn run(&self, job: &Job) -> Result<(), JobError> {
        let s = &job.submission;
        let left = Duration::from_secs(s.deadline.saturating_sub(now_secs()));
        let timeout = left
            .saturating_sub(SETTLE_MARGIN)
            .min(self.inner.settings.unit_timeout);
        if timeout.is_zero() {
            return Err(JobError::DeadlinePassed);
        }
        let pay_usnm = (self.pay_each(s) / U256::from(MICRO_SNM_WEI)).saturating_to::<u64>();
        let spec = match &job.pinned_spec {
            Some(spec) => spec.clone(),
            None => {
                let spec = self.pin(&s.spec).await?;
                self.update(s.deal, |j| {
                    j.pinned_spec = Some(spec.clone());
                    j.status.detail = format!("image pinned; offering to {} miners", s.replicas);
                });
                spec
            }
        };
        let result = self
            .inner
            .dispatcher
            .run_unit(self.unit(s), &spec, pay_usnm, timeout)
            .await?;
        let dispatch_ms = result.dispatch.as_millis() as u64;
        tracing::info!(
            "market: deal {}: {} agreed, {} outvoted",
            s.deal,
            result.agree.len(),
            result.disagree.len()
        );
        self.update(s.deal, |j| {
            j.status.phase = JobPhase::Settling;
            j.status.detail = format!(
                "{} of {} replicas agreed; committing",
                result.agree.len(),
                s.replicas
            );
            j.status.result = Some(result.bundle.clone());
            j.status.agree = result.agree.clone();
            j.status.disagree = result.disagree.clone();
            j.status.timings = JobTimings {
                dispatch_ms,
                pull_ms: result.pull_ms,
                run_ms: result.run_ms,
                verify_ms: result.verify.as_millis() as u64,
                ..JobTimings::default()
            };
            j.attestations = result.attestations.clone();
        });
        Ok(())
    }

    async fn settle(&self, job: &Job) -> Result<(), JobError> {
        let s = &job.submission;
        let bundle = job.status.result.as_ref().ok_or(JobError::NoResult)?;
        let pay_each = self.pay_each(s);
        let settlement = Settlement {
            deal: Deal {
                id: s.deal,
                terms: self.terms(job.buyer, s),
            },
            unit: self.unit(s),
            digest: bundle.digest(),
            payouts: job.status.agree.iter().map(|m| (*m, pay_each)).collect(),
            attestations: job.attestations.clone(),
        };
        let started = Instant::now();
        let settled = settle(
            &self.inner.sender,
            &self.inner.deployment,
            self.inner.settings.wallet,
            &settlement,
        )
        .await?;
        let settle_ms = started.elapsed().as_millis() as u64;
        let txs: Vec<_> = [
            Some(&settled.commit),
            settled.pay.as_ref(),
            settled.challenge.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|t| (t.label.clone(), t.hash))
        .collect();
        tracing::info!("market: deal {} settled: {txs:?}", s.deal);
        self.update(s.deal, |j| {
            j.status.phase = JobPhase::Done;
            j.status.detail = format!(
                "committed in block {}; {} miners paid, {} challenged",
                settled.commit.block,
                j.status.agree.len(),
                if settled.challenge.is_some() {
                    j.status.disagree.len()
                } else {
                    0
                }
            );
            j.status.txs = txs;
            j.status.timings.settle_ms = settle_ms;
            j.status.timings.settle_gas = settled.gas_used();
        });
        Ok(())
    }

    /// Marks the job failed and hands the buyer's money back through `releaseDeal`.
    async fn fail(&self, job: &Job, why: JobError) {
        let deal = job.submission.deal;
        tracing::warn!("market: deal {deal} failed: {why}");
        let release = IMarket::releaseDealCall {
            id: deal,
            deal: self.terms(job.buyer, &job.submission),
        };
        let label = format!("release deal {deal}");
        let market = self.inner.deployment.market;
        let detail = match self.inner.sender.send_once(&label, market, release).await {
            Ok(tx) => {
                self.update(deal, |j| j.status.txs.push((label, tx.hash)));
                // The outcome first: a long reason is what the length limit cuts.
                format!("deal released, buyer refunded: {why}")
            }
            Err(e) => format!("releasing the deal failed ({e}): {why}"),
        };
        self.update(deal, |j| {
            j.status.phase = JobPhase::Failed;
            j.status.detail = truncate(detail);
        });
    }
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn job_path(dir: &Path, deal: U256) -> PathBuf {
    dir.join(format!("deal-{deal:x}.json"))
}

fn write_job(path: &Path, job: &Job) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(job).map_err(std::io::Error::other)?;
    sosna_durable::write_atomic(path, &json, sosna_durable::Durability::Synced)
}

fn load_jobs(dir: &Path) -> Result<BTreeMap<U256, Job>, DeskError> {
    let mut jobs = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(jobs),
        Err(e) => {
            return Err(DeskError::State {
                path: dir.to_owned(),
                reason: e.to_string(),
            })
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bad = |reason: String| DeskError::State {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let job: Job = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        jobs.insert(job.submission.deal, job);
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_is_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_DETAIL);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_corrupt_job_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("deal-1.json"), b"{not json").unwrap();
        let err = load_jobs(dir.path()).unwrap_err().to_string();
        assert!(err.contains("deal-1.json"), "{err}");
    }
}
