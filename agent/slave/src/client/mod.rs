//! Async client: resolve a service through a locator, connect, call methods by name, and
//! read values or streams. One [`Connection`] multiplexes any number of channels.

mod resolve;
mod service;
mod values;

pub use resolve::{endpoint_addr, endpoint_from_value, endpoint_to_value, LocatorClient, Resolved};
pub use service::{Response, ServiceClient, StorageClient};
pub use values::{call_cli, value_from_arg, value_to_json};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rmpv::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::locator::LocatorMethod;
use super::session::control;
use super::storage::StorageMethod;
use sosna_proto::slave::error::RpcError;
use sosna_proto::slave::frame::{Decoder, Frame, DEFAULT_MAX_FRAME};
use sosna_proto::slave::graph::{ids, parse_graph, RemoteMethod};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection closed: {0}")]
    Disconnected(String),
    #[error("remote error {0}")]
    Rpc(#[from] RpcError),
    #[error("unexpected reply type {ty} on channel {channel} (args {args})")]
    UnexpectedReply { channel: u64, ty: u64, args: Value },
    #[error("service {service:?} has no method {method:?} (it has: {known})")]
    NoSuchMethod {
        service: String,
        method: String,
        known: String,
    },
    #[error("malformed {what} reply: {got}")]
    Malformed { what: &'static str, got: Value },
    #[error("channel {0} is already in use on this connection")]
    ChannelInUse(u64),
    #[error("service {0:?} resolved to no endpoints")]
    NoEndpoints(String),
}

/// Channel table shared with the reader task.
#[derive(Default)]
struct Shared {
    table: Mutex<Table>,
}

/// Where a channel's replies go: one reply (plain calls) or many (opened channels).
enum Slot {
    Once(oneshot::Sender<Frame>),
    Many(mpsc::UnboundedSender<Frame>),
}

#[derive(Default)]
struct Table {
    channels: HashMap<u64, Slot>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
    /// Callers of [`Connection::ping`] waiting for the echo, oldest first.
    pings: std::collections::VecDeque<tokio::sync::oneshot::Sender<()>>,
}

struct Inner {
    out: mpsc::UnboundedSender<Frame>,
    shared: Arc<Shared>,
    next: AtomicU64,
}

/// A multiplexed connection to one service endpoint. Cheap to clone.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

impl Connection {
    /// Connects over TCP to `addr` (`host:port`).
    pub async fn connect(addr: &str) -> Result<Connection, ClientError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Connection::over(stream))
    }

    /// Connects to a unix socket.
    pub async fn connect_unix(path: &std::path::Path) -> Result<Connection, ClientError> {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                addr: path.display().to_string(),
                source,
            })?;
        Ok(Connection::over(stream))
    }

    /// Runs the protocol over any byte stream; spawns the reader and writer tasks.
    pub fn over<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Connection {
        let (out, out_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        tokio::spawn(run_io(stream, shared.clone(), out_rx));
        Connection {
            inner: Arc::new(Inner {
                out,
                shared,
                next: AtomicU64::new(1),
            }),
        }
    }

    /// Invokes method `ty` on a fresh channel.
    pub fn open(&self, ty: u64, args: Vec<Value>) -> Result<Channel, ClientError> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.open_on(id, ty, args)
    }

    /// Claims channel `id` for replies going to `slot`.
    fn register(&self, id: u64, slot: Slot) -> Result<(), ClientError> {
        let mut t = self
            .inner
            .shared
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &t.closed {
            return Err(ClientError::Disconnected(why.clone()));
        }
        if t.channels.contains_key(&id) {
            return Err(ClientError::ChannelInUse(id));
        }
        t.channels.insert(id, slot);
        Ok(())
    }

    /// Invokes method `ty` on channel `id` chosen by the caller.
    pub fn open_on(&self, id: u64, ty: u64, args: Vec<Value>) -> Result<Channel, ClientError> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.register(id, Slot::Many(tx))?;
        let ch = Channel {
            id,
            inner: self.inner.clone(),
            rx,
        };
        ch.send(ty, args)?;
        Ok(ch)
    }

    /// Calls an `option_of` method: the value's args, or its error.
    pub async fn call(&self, ty: u64, args: Vec<Value>) -> Result<Vec<Value>, ClientError> {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.register(id, Slot::Once(tx))?;
        // Forgets the channel if this future is dropped before its reply came.
        let mut pending = Pending {
            id,
            shared: &self.inner.shared,
            armed: true,
        };
        self.send_frame(Frame::new(id, ty, args))?;
        let reply = rx.await;
        pending.armed = false;
        match reply {
            Ok(f) => option_reply(f),
            Err(_) => Err(ClientError::Disconnected(
                self.closed().unwrap_or_else(|| "reader stopped".into()),
            )),
        }
    }

    /// Sends a frame as is (control messages, tests).
    pub fn send_frame(&self, frame: Frame) -> Result<(), ClientError> {
        self.inner
            .out
            .send(frame)
            .map_err(|_| ClientError::Disconnected("writer stopped".into()))
    }

    /// Round trip on the control channel: resolves once the peer has read everything sent
    /// before it.
    pub async fn ping(&self) -> Result<(), ClientError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut t = self
                .inner
                .shared
                .table
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(why) = &t.closed {
                return Err(ClientError::Disconnected(why.clone()));
            }
            t.pings.push_back(tx);
        }
        self.send_frame(Frame::new(control::CHANNEL, control::PING, vec![]))?;
        rx.await
            .map_err(|_| ClientError::Disconnected(self.closed().unwrap_or_default()))
    }

    /// Why the connection ended, if it has.
    pub fn closed(&self) -> Option<String> {
        let t = self
            .inner
            .shared
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        t.closed.clone()
    }
}

struct Pending<'a> {
    id: u64,
    shared: &'a Shared,
    armed: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut t = self.shared.table.lock().unwrap_or_else(|p| p.into_inner());
            t.channels.remove(&self.id);
        }
    }
}

fn option_reply(f: Frame) -> Result<Vec<Value>, ClientError> {
    match f.ty {
        ids::VALUE => Ok(f.args),
        ids::ERROR => Err(RpcError::from_args(&f.args).into()),
        ty => Err(ClientError::UnexpectedReply {
            channel: f.channel,
            ty,
            args: Value::Array(f.args),
        }),
    }
}

/// One call's channel: send further messages, receive replies.
pub struct Channel {
    id: u64,
    inner: Arc<Inner>,
    rx: mpsc::UnboundedReceiver<Frame>,
}

impl Drop for Channel {
    fn drop(&mut self) {
        let mut t = self
            .inner
            .shared
            .table
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        t.channels.remove(&self.id);
    }
}

impl Channel {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn send(&self, ty: u64, args: Vec<Value>) -> Result<(), ClientError> {
        self.inner
            .out
            .send(Frame::new(self.id, ty, args))
            .map_err(|_| ClientError::Disconnected("writer stopped".into()))
    }

    /// A chunk of a streaming dispatch.
    pub fn write(&self, args: Vec<Value>) -> Result<(), ClientError> {
        self.send(ids::WRITE, args)
    }

    /// Ends a streaming dispatch.
    pub fn close(&self) -> Result<(), ClientError> {
        self.send(ids::CLOSE, Vec::new())
    }

    /// The next reply frame; `Err(Disconnected)` when the connection is gone.
    pub async fn recv(&mut self) -> Result<Frame, ClientError> {
        match self.rx.recv().await {
            Some(f) => Ok(f),
            None => {
                let t = self
                    .inner
                    .shared
                    .table
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                Err(ClientError::Disconnected(
                    t.closed.clone().unwrap_or_else(|| "reader stopped".into()),
                ))
            }
        }
    }

    /// An `option_of` reply: `value(args…)` or `error`.
    pub async fn value(mut self) -> Result<Vec<Value>, ClientError> {
        option_reply(self.recv().await?)
    }

    /// The next `stream_of` chunk: `Some(args)` for `write`, `None` after `close`.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<Value>>, ClientError> {
        let f = self.recv().await?;
        match f.ty {
            ids::WRITE => Ok(Some(f.args)),
            ids::ERROR => Err(RpcError::from_args(&f.args).into()),
            ids::CLOSE => Ok(None),
            ty => Err(ClientError::UnexpectedReply {
                channel: self.id,
                ty,
                args: Value::Array(f.args),
            }),
        }
    }
}

/// The connection's one I/O task: writes what callers queue and hands replies to their
/// channels, neither direction waiting for the other. Ends when the peer closes or every
/// handle is gone.
async fn run_io<S: AsyncRead + AsyncWrite>(
    stream: S,
    shared: Arc<Shared>,
    mut out_rx: mpsc::UnboundedReceiver<Frame>,
) {
    let (rd, wr) = tokio::io::split(stream);
    tokio::pin!(rd);
    tokio::pin!(wr);
    let decoder = Decoder::new(DEFAULT_MAX_FRAME);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut pending: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut written = 0;
    let mut frames = Vec::new();
    let why = loop {
        while pending.len() < 256 * 1024 {
            match out_rx.try_recv() {
                Ok(f) => f.encode(&mut pending),
                Err(_) => break,
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) => break "closed by the peer".to_string(),
                    Ok(_) => {}
                    Err(e) => break e.to_string(),
                }
                let end = loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(f)) => frames.push(f),
                        Ok(None) => break None,
                        Err(e) if e.error.recoverable() => {
                            tracing::debug!("slave client: skipping bad frame: {e}");
                        }
                        Err(e) => break Some(format!("bad frame from the peer: {e}")),
                    }
                };
                if let Some(why) = deliver(&shared, &mut frames).or(end) {
                    break why;
                }
            }
            r = wr.write(&pending[written..]), if written < pending.len() => match r {
                Ok(0) => break "connection closed while writing".to_string(),
                Err(e) => break e.to_string(),
                Ok(n) => {
                    written += n;
                    if written == pending.len() {
                        pending.clear();
                        written = 0;
                    }
                }
            },
            f = out_rx.recv(), if pending.is_empty() => match f {
                Some(f) => f.encode(&mut pending),
                None => {
                    // Every handle is gone; nobody waits for anything.
                    let _ = wr.shutdown().await;
                    break "connection dropped".to_string();
                }
            },
        }
    };
    let mut t = shared.table.lock().unwrap_or_else(|p| p.into_inner());
    t.closed = Some(why);
    t.channels.clear();
    t.pings.clear();
}

/// Hands decoded frames to their channels under one lock; `Some(reason)` on a goaway.
fn deliver(shared: &Shared, frames: &mut Vec<Frame>) -> Option<String> {
    if frames.is_empty() {
        return None;
    }
    let mut t = shared.table.lock().unwrap_or_else(|p| p.into_inner());
    for f in frames.drain(..) {
        if f.channel == control::CHANNEL {
            match f.ty {
                // Pings are ours, echoed: wake the oldest waiter.
                control::PING => {
                    if let Some(w) = t.pings.pop_front() {
                        let _ = w.send(());
                    }
                }
                control::GOAWAY => {
                    let err = f
                        .args
                        .first()
                        .and_then(Value::as_array)
                        .map(|a| RpcError::from_args(a).to_string())
                        .unwrap_or_else(|| "goaway".into());
                    return Some(format!("goaway from the peer: {err}"));
                }
                _ => {}
            }
            continue;
        }
        match t.channels.get(&f.channel) {
            Some(Slot::Many(tx)) => {
                let _ = tx.send(f);
            }
            Some(Slot::Once(_)) => {
                if let Some(Slot::Once(tx)) = t.channels.remove(&f.channel) {
                    let _ = tx.send(f);
                }
            }
            None => {}
        }
    }
    None
}
