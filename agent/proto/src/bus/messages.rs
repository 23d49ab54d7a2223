//! The bus's application messages (DESIGN §3) and the topic each may travel on.
//!
//! Everything here is encoded with msgpack inside a signed [`Envelope`](super::envelope);
//! this module only knows shapes and the per-message sanity rules a receiver enforces.

use alloy_primitives::{Address, U256};
use serde::{Deserialize, Serialize};

/// Hub announcements.
pub const TOPIC_HUBS: &str = "sosna/hubs/1";
/// Miners' questions and verdicts about hubs.
pub const TOPIC_REPUTATION: &str = "sosna/reputation/1";
/// Signed OTA rollout notices from operators, and nodes' update reports.
pub const TOPIC_UPDATES: &str = "sosna/updates/1";
/// Direct request-response traffic; not a gossip topic, but envelopes name it all the same.
pub const TOPIC_RPC: &str = "sosna/rpc/1";

/// Gossip topics every node subscribes to.
pub const GOSSIP_TOPICS: [&str; 3] = [TOPIC_HUBS, TOPIC_REPUTATION, TOPIC_UPDATES];

/// Longest name, multiaddr or reason string a message may carry.
const MAX_TEXT: usize = 256;
/// Most multiaddrs one hub may announce.
const MAX_ADDRS: usize = 16;

/// SNM wei in one micro-SNM, the unit prices and agreements use (SNM has 18 decimals).
pub const MICRO_SNM_WEI: u64 = 1_000_000_000_000;

/// What a hub pays miners, per hour of each resource, in micro-SNM (1e-6 SNM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriceSchedule {
    pub cpu_core_hour: u64,
    pub memory_gib_hour: u64,
    pub gpu_hour: u64,
}

impl PriceSchedule {
    /// Micro-SNM per hour a miner with these resources earns at this hub.
    pub fn hourly_for(&self, cores: u32, memory_gib: u32, gpus: u32) -> u128 {
        u128::from(self.cpu_core_hour) * u128::from(cores)
            + u128::from(self.memory_gib_hour) * u128::from(memory_gib)
            + u128::from(self.gpu_hour) * u128::from(gpus)
    }
}

/// A hub telling the network it exists (seed §2.4.4). Signed by the hub's owner key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubAnnouncement {
    /// Where miners reach the hub; each ends in `/p2p/<hub peer id>` or is a bare IP.
    pub multiaddrs: Vec<String>,
    /// The hub operator's Ethereum address: must be the envelope's signer.
    pub owner: Address,
    /// The hub's on-chain HubWallet.
    pub wallet: Address,
    pub name: String,
    pub prices: PriceSchedule,
    /// Unix milliseconds when the hub made this announcement.
    pub timestamp_ms: u64,
}

/// A miner asking other miners what they know about a hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubQuestion {
    pub wallet: Address,
    /// Lets the asker match verdicts to this question.
    pub nonce: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The answerer was paid by this hub as agreed.
    Positive,
    /// The answerer found the hub failing its chain checks or its agreement.
    Negative,
}

/// A miner's answer, from its own experience, to a [`HubQuestion`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubVerdict {
    pub wallet: Address,
    /// The question's nonce and asker, so unsolicited verdicts can be told apart.
    pub nonce: u64,
    pub asker: Address,
    pub verdict: Verdict,
}

/// Terms a hub offers a miner: what it pays and the smallest payout it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreement {
    pub prices: PriceSchedule,
    /// Each payout to a joined miner is at least this much, in micro-SNM.
    pub min_payout_usnm: u64,
    /// How often the hub pays joined miners, in seconds.
    pub payout_every_secs: u64,
}

/// What a hub tells a miner about itself when asked directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubMetadata {
    pub owner: Address,
    pub wallet: Address,
    pub name: String,
    pub multiaddrs: Vec<String>,
    pub agreement: Agreement,
    /// Agent version the hub runs.
    pub version: String,
}

pub use super::limits::{MAX_RESULT, MAX_SPEC};

/// One replica of a unit of work, offered by a hub to a miner that joined it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOffer {
    pub unit: crate::attest::Unit,
    /// The buyer's [`TaskSpec`](crate::task::TaskSpec) as JSON, its native format.
    pub spec: String,
    /// What the miner is paid if its result agrees with the majority, in micro-SNM.
    pub pay_usnm: u64,
    /// Unix milliseconds by which the result must be in; the miner kills the task then.
    pub deadline_ms: u64,
}

/// A miner's result for one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub unit: alloy_primitives::B256,
    pub outcome: TaskOutcome,
    /// Milliseconds the miner spent pulling the image and running the task (for the
    /// hub's phase timings; not part of what is voted on).
    #[serde(default)]
    pub pull_ms: u64,
    #[serde(default)]
    pub run_ms: u64,
}

/// Most replicas a buyer may ask for.
pub const MAX_REPLICAS: u16 = 16;

/// A buyer handing a task to the hub named in a deal the buyer opened on the Market. The
/// deal's terms travel along so the hub can check them with one `isOpen` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSubmission {
    pub deal: U256,
    /// The deal's price in SNM wei, as opened.
    pub price: U256,
    /// The deal's deadline, unix seconds, as opened.
    pub deadline: u64,
    /// How many distinct miners run the task; a strict majority decides.
    pub replicas: u16,
    /// The [`TaskSpec`](crate::task::TaskSpec) as JSON.
    pub spec: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobPhase {
    /// Offered to miners and running.
    Running,
    /// Decided; the result is being committed and the miners paid on chain.
    Settling,
    /// Committed on chain; the result can be fetched and confirmed.
    Done,
    /// No result: see the detail. The hub releases the deal so the buyer is refunded.
    Failed,
}

/// Milliseconds spent in each phase of a job, as the hub saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTimings {
    /// Until the last of the first round of offers was accepted.
    pub dispatch_ms: u64,
    /// Slowest agreeing miner's image pull, and its run (overlapping the other phases:
    /// miners start as soon as they take the offer).
    pub pull_ms: u64,
    pub run_ms: u64,
    /// From the first result in to the decision: waiting for the replicas to agree,
    /// signature checks, the vote.
    pub verify_ms: u64,
    /// Commit, payout and challenge transactions, confirmed.
    pub settle_ms: u64,
    /// Gas the hub's settlement transactions used.
    pub settle_gas: u64,
}

/// Where a job stands; once `Done`, it carries the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    pub deal: U256,
    pub phase: JobPhase,
    /// What happened last, for people.
    pub detail: String,
    pub result: Option<crate::result::ResultBundle>,
    /// Miners whose results agreed, and those outvoted.
    pub agree: Vec<Address>,
    pub disagree: Vec<Address>,
    /// Settlement transactions: (what, hash).
    pub txs: Vec<(String, alloy_primitives::B256)>,
    pub timings: JobTimings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutcome {
    /// The result bundle and the miner's signature over its digest.
    Done {
        /// Manifest digest of the image the task ran from.
        image: String,
        exit_code: i32,
        #[serde(with = "serde_bytes")]
        stdout: Vec<u8>,
        attestation: crate::attest::Attestation,
    },
    /// The task produced no result (bad image, killed, too much output).
    Failed(String),
}

/// Direct requests: miner → hub (metadata, join, reports), hub → miner (offers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    HubMetadata,
    /// The miner joins the hub under the hub's current agreement.
    Join {
        miner: Address,
    },
    Offer(TaskOffer),
    Report(TaskReport),
    /// Buyer → hub: run this task for this deal.
    Submit(JobSubmission),
    /// Buyer → hub: where does the job for this deal stand.
    Job {
        deal: U256,
    },
}

/// Direct responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    HubMetadata(HubMetadata),
    Joined(Agreement),
    /// The peer will not serve this request (e.g. a miner asked for hub metadata).
    Refused(String),
    /// The miner took the offer and will report.
    Accepted,
    /// The hub recorded the report.
    Received,
    Job(JobStatus),
}

/// Most waves one rollout may have.
pub const MAX_WAVES: usize = 16;

/// One wave of a rollout: from `start_ms` on, nodes whose stable position in the fleet
/// (0..100) is below `percent` take the update. Percentages are cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wave {
    pub percent: u8,
    pub start_ms: u64,
}

/// An operator telling the fleet to update (DESIGN §5). Nodes act only on notices whose
/// envelope signer is one of their configured operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutNotice {
    /// The release the bundle installs.
    pub version: String,
    /// Where nodes download the bundle (http or https).
    pub url: String,
    /// The bundle's sha256 and size: checked before anything is installed.
    pub sha256: alloy_primitives::B256,
    pub size: u64,
    pub waves: Vec<Wave>,
    /// The operator stopped the rollout: nodes that have not started do not.
    pub halted: bool,
    /// Orders notices: a node keeps the newest it saw.
    pub issued_ms: u64,
    /// The operator means to go back to an older release; without this a node refuses a
    /// notice whose version is below what it runs (a replayed old notice, say).
    pub allow_downgrade: bool,
}

/// Where a node stands with updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateState {
    /// Running its version; no rollout for it.
    Idle,
    /// A rollout exists; this node's wave has not started (or it was halted).
    Waiting,
    /// Downloading and installing the bundle.
    Installing,
    /// Installed; rebooting into it, then checking its health. (No state of its own for
    /// the check: peers on older releases decode reports strictly.)
    Rebooting,
    /// Running the rollout's version, health-checked and marked good.
    Good,
    Failed,
}

/// A node's report on `sosna/updates/1`, on every change and periodically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateReport {
    /// The version this node runs.
    pub running: String,
    /// The version of the rollout it follows; empty if none.
    pub target: String,
    pub state: UpdateState,
    /// The booted slot and the other slot's state, as RAUC sees them.
    pub slot: String,
    pub detail: String,
}

/// Every message an envelope may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    HubAnnouncement(HubAnnouncement),
    HubQuestion(HubQuestion),
    HubVerdict(HubVerdict),
    Request(Request),
    Response(Response),
    RolloutNotice(RolloutNotice),
    UpdateReport(UpdateReport),
}

impl Message {
    /// The only topic this message may appear on (the topic schema).
    pub fn topic(&self) -> &'static str {
        match self {
            Message::HubAnnouncement(_) => TOPIC_HUBS,
            Message::HubQuestion(_) | Message::HubVerdict(_) => TOPIC_REPUTATION,
            Message::Request(_) | Message::Response(_) => TOPIC_RPC,
            Message::RolloutNotice(_) | Message::UpdateReport(_) => TOPIC_UPDATES,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Message::HubAnnouncement(_) => "HubAnnouncement",
            Message::HubQuestion(_) => "HubQuestion",
            Message::HubVerdict(_) => "HubVerdict",
            Message::Request(_) => "Request",
            Message::Response(_) => "Response",
            Message::RolloutNotice(_) => "RolloutNotice",
            Message::UpdateReport(_) => "UpdateReport",
        }
    }

    /// Content rules beyond the schema; `signer` is the envelope's verified sender.
    pub fn check(&self, signer: Address) -> Result<(), MessageError> {
        let signed_by = |what: &'static str, claimed: Address| {
            if claimed == signer {
                Ok(())
            } else {
                Err(MessageError::NotSigner {
                    what,
                    claimed,
                    signer,
                })
            }
        };
        match self {
            Message::HubAnnouncement(a) => {
                signed_by("announcement owner", a.owner)?;
                if a.wallet.is_zero() {
                    return Err(MessageError::ZeroWallet);
                }
                check_count("multiaddrs", a.multiaddrs.len(), MAX_ADDRS)?;
                check_text("name", &a.name)?;
                a.multiaddrs
                    .iter()
                    .try_for_each(|m| check_text("multiaddr", m))
            }
            Message::HubVerdict(v) if v.asker == signer => Err(MessageError::OwnVerdict),
            Message::Response(Response::HubMetadata(m)) => {
                signed_by("metadata owner", m.owner)?;
                check_text("name", &m.name)
            }
            Message::Response(Response::Refused(why)) => check_text("reason", why),
            Message::Request(Request::Offer(o)) => {
                check_len("task spec", o.spec.len(), MAX_SPEC)?;
                if o.deadline_ms == 0 {
                    return Err(MessageError::NoDeadline);
                }
                if o.unit.replicas == 0 {
                    return Err(MessageError::Count {
                        what: "replicas",
                        got: 0,
                        max: usize::from(MAX_REPLICAS),
                    });
                }
                Ok(())
            }
            Message::Request(Request::Report(r)) => match &r.outcome {
                TaskOutcome::Done {
                    image,
                    exit_code,
                    stdout,
                    attestation,
                } => {
                    check_len("result", stdout.len(), MAX_RESULT)?;
                    check_text("image digest", image)?;
                    signed_by("result attestation", attestation.miner)?;
                    let bundle = crate::result::ResultBundle {
                        image: image.clone(),
                        exit_code: *exit_code,
                        stdout: stdout.clone(),
                    };
                    if bundle.digest() != attestation.digest {
                        return Err(MessageError::DigestMismatch);
                    }
                    Ok(())
                }
                TaskOutcome::Failed(why) => check_text("failure", why),
            },
            Message::RolloutNotice(n) => {
                check_text("version", &n.version)?;
                check_text("url", &n.url)?;
                if !(n.url.starts_with("http://") || n.url.starts_with("https://")) {
                    return Err(MessageError::NotHttp(n.url.clone()));
                }
                if n.size == 0 || n.sha256.is_zero() {
                    return Err(MessageError::NoBundleDigest);
                }
                check_count("waves", n.waves.len(), MAX_WAVES)?;
                let ordered = n
                    .waves
                    .windows(2)
                    .all(|w| w[0].percent <= w[1].percent && w[0].start_ms <= w[1].start_ms);
                if !ordered || n.waves.iter().any(|w| w.percent > 100) {
                    return Err(MessageError::WavesOutOfOrder);
                }
                Ok(())
            }
            Message::UpdateReport(r) => {
                check_text("running", &r.running)?;
                check_text("target", &r.target)?;
                check_text("slot", &r.slot)?;
                check_text("detail", &r.detail)
            }
            Message::Request(Request::Submit(j)) => {
                check_len("task spec", j.spec.len(), MAX_SPEC)?;
                check_count(
                    "replicas",
                    usize::from(j.replicas),
                    usize::from(MAX_REPLICAS),
                )
            }
            Message::Response(Response::Job(j)) => {
                if let Some(r) = &j.result {
                    check_len("result", r.stdout.len(), MAX_RESULT)?;
                }
                if j.agree.len() + j.disagree.len() > usize::from(MAX_REPLICAS) * 2
                    || j.txs.len() > 8
                {
                    return Err(MessageError::TooManyListed);
                }
                check_text("detail", &j.detail)
            }
            _ => Ok(()),
        }
    }
}

/// Why a message that decoded is still refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{what} {claimed} is not the signer {signer}")]
    NotSigner {
        what: &'static str,
        claimed: Address,
        signer: Address,
    },
    #[error("announcement wallet is zero")]
    ZeroWallet,
    #[error("{got} {what} (1..={max})")]
    Count {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("{what} longer than {max} bytes")]
    TooLong { what: &'static str, max: usize },
    #[error("a verdict answering its own question")]
    OwnVerdict,
    #[error("attested digest is not the result's")]
    DigestMismatch,
    #[error("bundle url {0:?} is not http(s)")]
    NotHttp(String),
    #[error("notice without the bundle's size and sha256")]
    NoBundleDigest,
    #[error("waves must grow in percent (at most 100) and start time")]
    WavesOutOfOrder,
    #[error("job status lists too many miners or transactions")]
    TooManyListed,
    #[error("task offer without a deadline")]
    NoDeadline,
}

fn check_text(what: &'static str, text: &str) -> Result<(), MessageError> {
    check_len(what, text.len(), MAX_TEXT)
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), MessageError> {
    if len > max {
        return Err(MessageError::TooLong { what, max });
    }
    Ok(())
}

fn check_count(what: &'static str, got: usize, max: usize) -> Result<(), MessageError> {
    if got == 0 || got > max {
        return Err(MessageError::Count { what, got, max });
    }
    Ok(())
}
