//! The hub's side of the bus: a periodic signed `HubAnnouncement` on `sosna/hubs/1`, and
//! direct answers to miners' metadata and join requests.

use std::collections::BTreeSet;
use std::time::Duration;

use alloy_primitives::Address;
use tokio::sync::{mpsc, watch};

use crate::hub::desk::Desk;
use crate::hub::dispatch::{Dispatcher, MAX_MINERS};

/// Most submissions and joins checked against the chain at once.
const MAX_IN_FLIGHT: usize = 64;
use sosna_bus::{Bus, BusEvent};
use sosna_proto::bus::envelope::now_ms;
use sosna_proto::bus::messages::{
    Agreement, HubAnnouncement, HubMetadata, Message, Request, Response,
};

#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The hub's HubWallet on chain; its owner must be this node's Ethereum key.
    pub wallet: Address,
    pub name: String,
    /// Addresses to announce; empty announces the swarm's listen addresses.
    pub announce: Vec<String>,
    pub interval: Duration,
    pub agreement: Agreement,
}

/// Runs until `stop` turns true or the bus stops; takes no reports.
pub async fn run(
    bus: Bus,
    events: mpsc::Receiver<BusEvent>,
    settings: HubSettings,
    stop: watch::Receiver<bool>,
) {
    run_with_dispatcher(bus, events, settings, None, stop).await
}

/// [`run`], telling `dispatcher` who joined and handing it the miners' reports.
pub async fn run_with_dispatcher(
    bus: Bus,
    events: mpsc::Receiver<BusEvent>,
    settings: HubSettings,
    dispatcher: Option<Dispatcher>,
    stop: watch::Receiver<bool>,
) {
    run_with_desk(bus, events, settings, dispatcher, None, stop).await
}

/// [`run_with_dispatcher`], also taking buyers' jobs at `desk`.
pub async fn run_with_desk(
    bus: Bus,
    mut events: mpsc::Receiver<BusEvent>,
    settings: HubSettings,
    dispatcher: Option<Dispatcher>,
    desk: Option<Desk>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(settings.interval);
    let mut miners: BTreeSet<Address> = BTreeSet::new();
    // Submissions and joins read the chain off the loop; strangers can send many at once.
    let inflight = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => announce(&bus, &settings).await,
            event = events.recv() => match event {
                Some(BusEvent::Request(r)) => {
                    let off_loop = matches!(
                        (&r.request, &desk, &dispatcher),
                        (Request::Submit(_), Some(_), _) | (Request::Join { .. }, _, Some(_))
                    );
                    let permit = match off_loop.then(|| inflight.clone().try_acquire_owned()) {
                        Some(Err(_)) => {
                            let busy = Response::Refused("busy: try again shortly".into());
                            if let Err(e) = bus.respond(r.channel, busy).await {
                                tracing::debug!("bus: responding: {e}");
                            }
                            continue;
                        }
                        Some(Ok(p)) => Some(p),
                        None => None,
                    };
                    if let (Request::Submit(job), Some(desk)) = (&r.request, &desk) {
                        // Checking the deal reads the chain: answer from a task of its own.
                        let (desk, bus, job, from) = (desk.clone(), bus.clone(), job.clone(), r.from);
                        tokio::spawn(async move {
                            let _permit = permit;
                            let response = desk.submit(from, job).await;
                            if let Err(e) = bus.respond(r.channel, response).await {
                                tracing::debug!("bus: responding: {e}");
                            }
                        });
                        continue;
                    }
                    if let (Request::Join { miner }, Some(d)) = (&r.request, &dispatcher) {
                        // Admission reads the miner's stake from the chain: off the loop.
                        let (d, bus, miner, agreement) = (d.clone(), bus.clone(), *miner, settings.agreement);
                        tokio::spawn(async move {
                            let _permit = permit;
                            let response = if miner != r.from {
                                Response::Refused("join must be signed by the joining miner".into())
                            } else {
                                match d.join(miner, r.peer).await {
                                    Ok(n) => {
                                        tracing::info!("bus: miner {miner} joined ({n} in all)");
                                        Response::Joined(agreement)
                                    }
                                    Err(e) => {
                                        tracing::info!("bus: miner {miner} not taken: {e}");
                                        Response::Refused(e.to_string())
                                    }
                                }
                            };
                            if let Err(e) = bus.respond(r.channel, response).await {
                                tracing::debug!("bus: responding: {e}");
                            }
                        });
                        continue;
                    }
                    let response = match r.request {
                        Request::HubMetadata => Response::HubMetadata(metadata(&bus, &settings).await),
                        // A hub without a dispatcher hands out no work: joining only
                        // records the miner, within bounds.
                        Request::Join { miner } => {
                            if miner != r.from {
                                Response::Refused("join must be signed by the joining miner".into())
                            } else if miners.len() >= MAX_MINERS && !miners.contains(&miner) {
                                Response::Refused("this hub has all the miners it takes".into())
                            } else {
                                if miners.insert(miner) {
                                    tracing::info!("bus: miner {miner} joined ({} in all)", miners.len());
                                }
                                Response::Joined(settings.agreement)
                            }
                        }
                        Request::Offer(_) => Response::Refused("this node is a hub".into()),
                        Request::Report(report) => match &dispatcher {
                            Some(d) => d.on_report(r.from, report),
                            None => Response::Refused("no task of this hub".into()),
                        },
                        Request::Submit(_) => {
                            Response::Refused("this hub takes no deals (no chain configured)".into())
                        }
                        Request::Job { deal } => match &desk {
                            Some(desk) => desk.status(r.from, deal),
                            None => Response::Refused("this hub takes no deals".into()),
                        },
                    };
                    if let Err(e) = bus.respond(r.channel, response).await {
                        tracing::debug!("bus: responding: {e}");
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
}

async fn addresses(bus: &Bus, settings: &HubSettings) -> Vec<String> {
    if !settings.announce.is_empty() {
        return settings.announce.clone();
    }
    let peer = bus.peer_id();
    bus.status()
        .await
        .map(|s| s.listen.iter().map(|a| format!("{a}/p2p/{peer}")).collect())
        .unwrap_or_default()
}

async fn metadata(bus: &Bus, settings: &HubSettings) -> HubMetadata {
    HubMetadata {
        owner: bus.address(),
        wallet: settings.wallet,
        name: settings.name.clone(),
        multiaddrs: addresses(bus, settings).await,
        agreement: settings.agreement,
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

async fn announce(bus: &Bus, settings: &HubSettings) {
    let multiaddrs = addresses(bus, settings).await;
    if multiaddrs.is_empty() {
        tracing::debug!("bus: nothing to announce yet (no listen address)");
        return;
    }
    let announcement = Message::HubAnnouncement(HubAnnouncement {
        multiaddrs,
        owner: bus.address(),
        wallet: settings.wallet,
        name: settings.name.clone(),
        prices: settings.agreement.prices,
        timestamp_ms: now_ms(),
    });
    // No peers yet is normal right after start; the next tick tries again.
    if let Err(e) = bus.publish(announcement).await {
        tracing::debug!("bus: announcing: {e}");
    }
}
