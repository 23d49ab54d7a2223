//! The Slave services over the bus, for the peers a node trusts: its operator's keys
//! (`[slave] trusted_peers`) and, on a miner, the hub it joined. libp2p's noise handshake
//! has authenticated the peer id before a stream exists, so the services need no
//! authentication of their own; over TCP only this machine's callers get that far.
//!
//! A stream starts with the client naming the service (one length byte, then the name)
//! and the server answering one byte: [`ACCEPTED`], or [`NOT_TRUSTED`] and the end of
//! the stream. Cocaine frames follow, as over TCP.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::{watch, Semaphore};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use sosna_bus::{Bus, BusError};
use sosna_market::miner::hubbook::HubBook;
use sosna_slave::client::Connection;
use sosna_slave::session::{self, Service, SessionOptions};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/sosna/slave/1");
const ACCEPTED: u8 = 0;
const NOT_TRUSTED: u8 = 1;
const NO_SUCH_SERVICE: u8 = 2;
/// Most sessions open over the bus at once.
const MAX_SESSIONS: usize = 64;
/// How long a peer may take to name its service.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SlaveBusError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("slave stream: {0}")]
    Io(#[from] std::io::Error),
    #[error("service name {0:?} is empty or longer than 255 bytes")]
    Name(String),
    #[error("the node does not trust this key (peer {0})")]
    NotTrusted(PeerId),
    #[error("the node serves no {0:?} over the bus")]
    NoSuchService(String),
    #[error("unexpected answer {0} to the stream's hello")]
    Answer(u8),
}

/// Who may call the services over the bus.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    pub peers: HashSet<PeerId>,
    /// A miner's hub book: the hub it joined is trusted while it stays joined.
    pub book: Option<PathBuf>,
}

impl Trust {
    fn allows(&self, peer: &PeerId) -> bool {
        if self.peers.contains(peer) {
            return true;
        }
        let Some(path) = &self.book else {
            return false;
        };
        let peer = peer.to_string();
        HubBook::load(path).is_ok_and(|b| b.hubs.values().any(|e| e.joined && e.peer_id == peer))
    }
}

/// Serves `services` to trusted peers until `stop`.
pub async fn serve(
    bus: Bus,
    services: BTreeMap<&'static str, Arc<dyn Service>>,
    trust: Trust,
    max_frame: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<(), SlaveBusError> {
    let mut incoming = bus.accept_streams(PROTOCOL)?;
    let sessions = Arc::new(Semaphore::new(MAX_SESSIONS));
    let services = Arc::new(services);
    loop {
        let (peer, stream) = tokio::select! {
            _ = stop.changed() => return Ok(()),
            next = incoming.next() => match next {
                Some(s) => s,
                None => return Ok(()),
            },
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tracing::warn!("slave: {MAX_SESSIONS} bus sessions open; dropped one from {peer}");
            continue;
        };
        let (services, trust, stop) = (services.clone(), trust.clone(), stop.clone());
        tokio::spawn(async move {
            let opened =
                tokio::time::timeout(HELLO_TIMEOUT, hello(stream, &peer, &trust, &services)).await;
            match opened {
                Ok(Ok((stream, svc))) => {
                    let opts = SessionOptions {
                        max_frame,
                        local_addr: None,
                        trusted: true,
                    };
                    session::serve(stream.compat(), svc, opts, stop).await;
                }
                Ok(Err(e)) => tracing::warn!("slave: bus stream from {peer}: {e}"),
                Err(_) => tracing::info!("slave: bus stream from {peer} named no service"),
            }
            drop(permit);
        });
    }
}

/// Reads the service's name, answers, and hands back the stream to serve it on.
async fn hello(
    mut stream: libp2p::Stream,
    peer: &PeerId,
    trust: &Trust,
    services: &BTreeMap<&'static str, Arc<dyn Service>>,
) -> Result<(libp2p::Stream, Arc<dyn Service>), SlaveBusError> {
    let name = read_service_name(&mut stream).await?;
    // Blocking file read of the hub book: small, and once per stream.
    let trusted = trust.allows(peer);
    let answer = match services.get(name.as_str()) {
        _ if !trusted => NOT_TRUSTED,
        Some(_) => ACCEPTED,
        None => NO_SUCH_SERVICE,
    };
    stream.write_all(&[answer]).await?;
    stream.flush().await?;
    match (answer, services.get(name.as_str())) {
        (ACCEPTED, Some(svc)) => Ok((stream, svc.clone())),
        (NOT_TRUSTED, _) => {
            let _ = stream.close().await;
            Err(SlaveBusError::NotTrusted(*peer))
        }
        _ => {
            let _ = stream.close().await;
            Err(SlaveBusError::NoSuchService(name))
        }
    }
}

/// The hello's service name: a length byte, then that many bytes of name.
pub async fn read_service_name<R: futures::AsyncRead + Unpin>(
    io: &mut R,
) -> std::io::Result<String> {
    let mut len = [0u8; 1];
    io.read_exact(&mut len).await?;
    let mut name = vec![0u8; usize::from(len[0])];
    io.read_exact(&mut name).await?;
    Ok(String::from_utf8_lossy(&name).into_owned())
}

/// A connection to `service` on the node at `addr` (ending in `/p2p/<peer id>`).
pub async fn connect(
    bus: &Bus,
    addr: Multiaddr,
    service: &str,
) -> Result<Connection, SlaveBusError> {
    let len = u8::try_from(service.len())
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| SlaveBusError::Name(service.to_owned()))?;
    let mut stream = bus.open_stream(addr, PROTOCOL).await?;
    stream.write_all(&[len]).await?;
    stream.write_all(service.as_bytes()).await?;
    stream.flush().await?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        ACCEPTED => Ok(Connection::over(stream.compat())),
        NOT_TRUSTED => Err(SlaveBusError::NotTrusted(bus.peer_id())),
        NO_SUCH_SERVICE => Err(SlaveBusError::NoSuchService(service.to_owned())),
        other => Err(SlaveBusError::Answer(other)),
    }
}
