//! The miner's side of the bus: the trust flow of seed §2.4.4 over the hub book.
//!
//! On each hub announcement: Whitelist record and HubWallet checks on chain (strict mode
//! ignores hubs that are not whitelisted), the hub's own metadata by direct request, then
//! `not-confirmed` and a question on `sosna/reputation/1`. Other miners' verdicts move the
//! hub to `checked`; a payout to this miner that meets the agreement makes it `safe`. This
//! task also answers other miners' questions from its own book, and joins the best hub.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, watch};

use super::chain_view::ChainView;
use super::hubbook::{Capacity, HubBook, Trust};
use crate::miner::worker::Worker;
use sosna_bus::Verified;
use sosna_bus::{Bus, BusEvent};
use sosna_proto::bus::envelope::now_ms;
use sosna_proto::bus::messages::{
    HubAnnouncement, HubQuestion, HubVerdict, Message, Request, Response, TaskOffer,
};

#[derive(Debug, Clone)]
pub struct MinerSettings {
    /// Accept only hubs listed in the Whitelist.
    pub strict_whitelist: bool,
    /// Distinct positive verdicts that make a hub `checked`.
    pub min_positive_verdicts: usize,
    /// Work for this hub wallet instead of choosing automatically.
    pub join: Option<Address>,
    pub resources: Capacity,
    /// How often to look for payouts and re-choose a hub.
    pub poll: Duration,
    /// Least time between two questions about the same hub.
    pub ask_every: Duration,
    /// Where the hub book lives.
    pub book_path: PathBuf,
    /// Stake (SNM wei) a miner needs for its verdicts to count; miners the hub paid count
    /// regardless.
    pub min_voice_stake: U256,
}

/// How long a voice's standing is trusted before the chain is read again.
const VOICE_TTL: Duration = Duration::from_secs(300);
/// Most voices whose standing is cached.
const MAX_VOICE_CACHE: usize = 1024;

/// Why a hub failed its chain checks.
enum CheckFailed {
    /// Not acceptable yet: unlisted while only listed hubs are accepted, or its wallet is
    /// not registered or has nothing to pay with. A hub may register or top up later.
    NotYet(String),
    /// The chain could not be read; nothing is known about the hub yet.
    Unreachable(String),
    /// The chain contradicts the announcement.
    Bad(String),
}

/// Why a hub's metadata could not be taken.
#[derive(Debug, thiserror::Error)]
enum MetadataError {
    #[error(transparent)]
    Bus(#[from] sosna_bus::BusError),
    #[error("answered for wallet {wallet} signed by {signer}, announced {announced} by {owner}")]
    Mismatch {
        wallet: Address,
        signer: Address,
        announced: Address,
        owner: Address,
    },
    #[error("unexpected answer {0}")]
    Unexpected(String),
}

/// Runs until `stop` turns true or the bus stops; takes no work.
pub async fn run(
    bus: Bus,
    events: mpsc::Receiver<BusEvent>,
    chain: Option<Arc<dyn ChainView>>,
    settings: MinerSettings,
    stop: watch::Receiver<bool>,
) {
    run_with_worker(bus, events, chain, settings, None, stop).await
}

/// [`run`], with `worker` running the tasks the joined hub offers.
pub async fn run_with_worker(
    bus: Bus,
    mut events: mpsc::Receiver<BusEvent>,
    chain: Option<Arc<dyn ChainView>>,
    settings: MinerSettings,
    worker: Option<Worker>,
    mut stop: watch::Receiver<bool>,
) {
    let book = match HubBook::load(&settings.book_path) {
        Ok(book) => book,
        Err(e) => {
            tracing::warn!("bus: {e}; starting an empty hub book");
            HubBook::default()
        }
    };
    let mut miner = Miner {
        bus,
        chain,
        settings,
        book,
        asked: HashMap::new(),
        next_nonce: now_ms(),
        voices: HashMap::new(),
        worker,
    };
    let mut poll = tokio::time::interval(miner.settings.poll);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            event = events.recv() => match event {
                Some(event) => miner.on_event(event).await,
                None => break,
            },
            _ = poll.tick() => miner.on_poll().await,
        }
    }
}

struct Miner {
    bus: Bus,
    worker: Option<Worker>,
    chain: Option<Arc<dyn ChainView>>,
    settings: MinerSettings,
    book: HubBook,
    /// Our recent questions per hub: their nonces (newest last) and when we last asked.
    asked: HashMap<Address, (Vec<u64>, Instant)>,
    next_nonce: u64,
    /// Whether a voice counts on a hub, and when that was read.
    voices: HashMap<(Address, Address), (bool, Instant)>,
}

impl Miner {
    fn save(&self) {
        if let Err(e) = self.book.save(&self.settings.book_path) {
            tracing::warn!("bus: {e}");
        }
    }

    async fn on_event(&mut self, event: BusEvent) {
        match event {
            BusEvent::Message(Verified {
                peer,
                from,
                message,
                ..
            }) => match message {
                Message::HubAnnouncement(a) => self.on_announcement(a, peer).await,
                Message::HubQuestion(q) => self.on_question(q, from).await,
                Message::HubVerdict(v) => self.on_verdict(v, from).await,
                _ => {}
            },
            BusEvent::Request(r) => {
                let response = match r.request {
                    Request::Offer(offer) => self.on_offer(r.peer, r.from, offer),
                    _ => Response::Refused("this node is a miner".into()),
                };
                let _ = self.bus.respond(r.channel, response).await;
            }
            BusEvent::Rejected { .. } => {}
        }
    }

    /// Work is taken only from the hub this miner joined, signed by its owner.
    fn on_offer(&self, peer: PeerId, from: Address, offer: TaskOffer) -> Response {
        let Some(worker) = &self.worker else {
            return Response::Refused("this miner runs no tasks".into());
        };
        let joined = self.book.hubs.values().find(|e| e.joined);
        match joined {
            Some(hub) if hub.owner == from && hub.wallet == offer.unit.hub => {
                worker.offer(peer, offer)
            }
            _ => Response::Refused("not from the hub this miner joined".into()),
        }
    }

    async fn on_announcement(&mut self, a: HubAnnouncement, peer: PeerId) {
        let wallet = a.wallet;
        if !self.owner_backed(&a, peer).await {
            self.save();
            return;
        }
        let known = self.book.get(&wallet).map(|e| e.trust);
        if matches!(known, Some(Trust::Rejected)) {
            return;
        }
        // Chain checks every time until confirmed: a hub may register or top up later.
        if known.is_none_or(|t| t < Trust::NotConfirmed) {
            if let Err(failed) = self.check_chain(&a).await {
                let e = self.book.hubs.get_mut(&wallet).expect("observed above");
                (e.trust, e.reason) = match failed {
                    // Both are looked at again on the hub's next announcement.
                    CheckFailed::NotYet(r) => (Trust::Ignored, r),
                    CheckFailed::Unreachable(r) => {
                        (Trust::Ignored, format!("chain unreachable: {r}"))
                    }
                    CheckFailed::Bad(r) => (Trust::Rejected, r),
                };
                tracing::info!(
                    "bus: hub {wallet} ({}) {}: {}",
                    a.name,
                    e.trust.as_str(),
                    e.reason
                );
                self.save();
                return;
            }
            match self.fetch_metadata(&a, peer).await {
                Ok(agreement) => {
                    let e = self.book.hubs.get_mut(&wallet).expect("observed above");
                    e.agreement = Some(agreement);
                    e.trust = Trust::NotConfirmed;
                    e.reason = "chain checks passed; asking other miners".into();
                    tracing::info!("bus: hub {wallet} ({}) not-confirmed", a.name);
                }
                Err(reason) => {
                    let e = self.book.hubs.get_mut(&wallet).expect("observed above");
                    e.reason = format!("metadata: {reason}");
                    tracing::info!("bus: hub {wallet}: {}", e.reason);
                    self.save();
                    return;
                }
            }
        }
        if self.book.get(&wallet).map(|e| e.trust) == Some(Trust::NotConfirmed) {
            self.ask(wallet).await;
        }
        self.save();
    }

    /// Records the announcement if its signer owns the wallet: for a wallet new to the
    /// book or claimed by another owner than the book's, the HubWallet's on-chain owner
    /// decides. A claim the chain does not back changes nothing and is listed as refused.
    /// Without a chain, the first owner heard keeps the wallet.
    async fn owner_backed(&mut self, a: &HubAnnouncement, peer: PeerId) -> bool {
        let peer_id = peer.to_string();
        let recorded = self.book.get(&a.wallet).map(|e| e.owner);
        if recorded == Some(a.owner) {
            return self.book.observe(a, &peer_id, now_ms()).is_ok();
        }
        let Some(chain) = self.chain.clone() else {
            if recorded.is_none() {
                return self.book.observe(a, &peer_id, now_ms()).is_ok();
            }
            let why = "no chain to prove an owner change".to_string();
            self.book.refuse(a, &peer_id, why, now_ms());
            return false;
        };
        match chain.wallet_owner(a.wallet).await {
            Ok(Some(owner)) if owner == a.owner => {
                if recorded.is_some() {
                    tracing::warn!("bus: hub {} changed owner to {owner} on chain", a.wallet);
                }
                self.book.rebind(a, &peer_id, now_ms());
                true
            }
            Ok(owner) => {
                let why = match owner {
                    Some(o) => format!("the wallet's owner on chain is {o}"),
                    None => "not a HubWallet on chain".to_string(),
                };
                tracing::warn!(
                    "bus: refused {} claiming hub {} from {peer}: {why}",
                    a.owner,
                    a.wallet
                );
                self.book.refuse(a, &peer_id, why, now_ms());
                false
            }
            // Unproven either way: a new wallet is heard (ignored until its checks pass),
            // a known one stays as it is.
            Err(e) => {
                tracing::info!("bus: owner of {}: chain unreachable: {e}", a.wallet);
                recorded.is_none() && self.book.observe(a, &peer_id, now_ms()).is_ok()
            }
        }
    }

    /// Whitelist and wallet checks; Err says why and whether to look again.
    async fn check_chain(&mut self, a: &HubAnnouncement) -> Result<(), CheckFailed> {
        let Some(chain) = self.chain.clone() else {
            if self.settings.strict_whitelist {
                return Err(CheckFailed::NotYet(
                    "not whitelisted: no chain configured to check".into(),
                ));
            }
            return Ok(());
        };
        let unreachable = |what: &str| {
            let what = what.to_owned();
            move |e| CheckFailed::Unreachable(format!("{what}: {e}"))
        };
        // The book may have heard this owner while the chain was down.
        match chain
            .wallet_owner(a.wallet)
            .await
            .map_err(unreachable("owner"))?
        {
            Some(owner) if owner == a.owner => {}
            Some(owner) => {
                return Err(CheckFailed::Bad(format!(
                    "announced owner {} is not the wallet's owner {owner}",
                    a.owner
                )))
            }
            None => return Err(CheckFailed::Bad("not a HubWallet on chain".into())),
        }
        let record = chain
            .whitelist_record(a.wallet)
            .await
            .map_err(unreachable("whitelist"))?;
        let listed = record.as_ref().is_some_and(|r| r.listed);
        if let Some(r) = &record {
            if r.owner != a.owner {
                return Err(CheckFailed::Bad(format!(
                    "announced owner {} is not the whitelisted owner {}",
                    a.owner, r.owner
                )));
            }
        }
        {
            let e = self.book.hubs.get_mut(&a.wallet).expect("observed");
            e.whitelisted = listed;
            e.dao_trusted = record.as_ref().is_some_and(|r| r.trusted);
        }
        if !listed {
            if self.settings.strict_whitelist {
                return Err(CheckFailed::NotYet("not whitelisted (strict mode)".into()));
            }
            // Accepting all hubs: an unlisted wallet has no chain record worth reading.
            return Ok(());
        }
        let status = chain
            .wallet_status(a.wallet)
            .await
            .map_err(unreachable("wallet"))?;
        let payouts = chain
            .payouts(a.wallet, None)
            .await
            .map_err(unreachable("payouts"))?;
        let e = self.book.hubs.get_mut(&a.wallet).expect("observed");
        e.wallet_registered = status.registered;
        e.spendable_wei = status.spendable;
        e.recent_payouts = payouts.len();
        if !status.registered {
            return Err(CheckFailed::NotYet(format!(
                "wallet is {}, not Registered",
                status.state
            )));
        }
        if status.spendable == U256::ZERO {
            return Err(CheckFailed::NotYet("wallet has no spendable funds".into()));
        }
        Ok(())
    }

    async fn fetch_metadata(
        &self,
        a: &HubAnnouncement,
        peer: PeerId,
    ) -> Result<sosna_proto::bus::messages::Agreement, MetadataError> {
        let addrs: Vec<Multiaddr> = a.multiaddrs.iter().filter_map(|m| m.parse().ok()).collect();
        let (from, response) = self.bus.request(peer, addrs, Request::HubMetadata).await?;
        match response {
            Response::HubMetadata(m) if m.wallet == a.wallet && from == a.owner => Ok(m.agreement),
            Response::HubMetadata(m) => Err(MetadataError::Mismatch {
                wallet: m.wallet,
                signer: from,
                announced: a.wallet,
                owner: a.owner,
            }),
            other => Err(MetadataError::Unexpected(format!("{other:?}"))),
        }
    }

    async fn ask(&mut self, wallet: Address) {
        if let Some((_, at)) = self.asked.get(&wallet) {
            if at.elapsed() < self.settings.ask_every {
                return;
            }
        }
        self.next_nonce += 1;
        let nonce = self.next_nonce;
        let question = Message::HubQuestion(HubQuestion { wallet, nonce });
        match self.bus.publish(question).await {
            Ok(()) => {
                let (nonces, at) = self
                    .asked
                    .entry(wallet)
                    .or_insert((Vec::new(), Instant::now()));
                // Late answers to the last few questions still count.
                if nonces.len() == 8 {
                    nonces.remove(0);
                }
                nonces.push(nonce);
                *at = Instant::now();
            }
            Err(e) => tracing::debug!("bus: asking about {wallet}: {e}"),
        }
    }

    async fn on_question(&mut self, q: HubQuestion, asker: Address) {
        let Some(verdict) = self.book.verdict_on(&q.wallet) else {
            return;
        };
        let answer = Message::HubVerdict(HubVerdict {
            wallet: q.wallet,
            nonce: q.nonce,
            asker,
            verdict,
        });
        if let Err(e) = self.bus.publish(answer).await {
            tracing::debug!("bus: answering about {}: {e}", q.wallet);
        }
    }

    /// Whether `voice` may vouch for or warn against `wallet`: only miners with a stake
    /// at risk, or that the hub has paid, count, so fresh keys cannot outvote anyone.
    async fn counts(&mut self, wallet: Address, voice: Address) -> bool {
        if let Some((ok, at)) = self.voices.get(&(wallet, voice)) {
            if at.elapsed() < VOICE_TTL {
                return *ok;
            }
        }
        let Some(chain) = self.chain.clone() else {
            return false;
        };
        let staked = match chain.stake_of(voice).await {
            Ok(stake) => stake >= self.settings.min_voice_stake && !stake.is_zero(),
            Err(e) => {
                tracing::info!("bus: stake of {voice}: {e}");
                return false;
            }
        };
        let ok = staked
            || chain
                .payouts(wallet, Some(voice))
                .await
                .is_ok_and(|p| !p.is_empty());
        if self.voices.len() >= MAX_VOICE_CACHE {
            self.voices.clear();
        }
        self.voices.insert((wallet, voice), (ok, Instant::now()));
        ok
    }

    async fn on_verdict(&mut self, v: HubVerdict, from: Address) {
        // Only answers to our own questions count; anything else is noise or an attempt to
        // steer us.
        let ours = v.asker == self.bus.address()
            && self
                .asked
                .get(&v.wallet)
                .is_some_and(|(nonces, _)| nonces.contains(&v.nonce));
        if !ours || !self.book.hubs.contains_key(&v.wallet) {
            return;
        }
        if !self.counts(v.wallet, from).await {
            tracing::debug!(
                "bus: verdict on {} from {from}: neither staked nor paid",
                v.wallet
            );
            return;
        }
        let min = self.settings.min_positive_verdicts;
        if self.book.record_verdict(&v.wallet, from, v.verdict, min) {
            tracing::info!("bus: hub {} checked", v.wallet);
        }
        self.save();
    }

    async fn on_poll(&mut self) {
        let me = self.bus.address();
        let mut changed = false;
        if let Some(chain) = self.chain.clone() {
            let waiting: Vec<Address> = self
                .book
                .hubs
                .values()
                .filter(|e| matches!(e.trust, Trust::NotConfirmed | Trust::Checked))
                .map(|e| e.wallet)
                .collect();
            for wallet in waiting {
                match chain.payouts(wallet, Some(me)).await {
                    Ok(paid) if !paid.is_empty() => {
                        if self.book.record_payouts(&wallet, &paid) {
                            tracing::info!("bus: hub {wallet} safe");
                        }
                        changed = true;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!("bus: payouts of {wallet}: {e}"),
                }
            }
        }
        changed |= self.join_best().await;
        if changed {
            self.save();
        }
    }

    /// Joins the chosen hub if it is not the one joined already. Returns whether it joined.
    async fn join_best(&mut self) -> bool {
        let Some(wallet) = self
            .book
            .choose(self.settings.resources, self.settings.join)
        else {
            return false;
        };
        let entry = self.book.get(&wallet).expect("chosen from the book");
        if entry.joined {
            return false;
        }
        let Ok(peer) = entry.peer_id.parse::<PeerId>() else {
            return false;
        };
        let addrs = entry
            .multiaddrs
            .iter()
            .filter_map(|m| m.parse().ok())
            .collect();
        let request = Request::Join {
            miner: self.bus.address(),
        };
        match self.bus.request(peer, addrs, request).await {
            Ok((from, Response::Joined(agreement))) if from == entry.owner => {
                let why = format!("{} {:?}: {}", entry.name, entry.trust, entry.reason);
                self.book.hubs.get_mut(&wallet).expect("chosen").agreement = Some(agreement);
                self.book.set_joined(&wallet);
                tracing::info!("bus: joined hub {wallet} ({why})");
                true
            }
            Ok((_, other)) => {
                tracing::info!("bus: hub {wallet} did not take us: {other:?}");
                false
            }
            Err(e) => {
                tracing::info!("bus: joining {wallet}: {e}");
                false
            }
        }
    }
}
