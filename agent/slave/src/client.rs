//! Async client: resolve a service through a locator, connect, call methods by name, and
//! read values or streams. One [`Connection`] multiplexes any number of channels.

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

/// What `resolve` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub endpoints: Vec<(String, u16)>,
    pub version: u64,
    pub graph: Value,
}

impl Resolved {
    /// Reads `[endpoints, version, graph]`.
    pub fn from_args(args: Vec<Value>) -> Result<Resolved, ClientError> {
        let bad = |args: &[Value]| ClientError::Malformed {
            what: "resolve",
            got: Value::Array(args.to_vec()),
        };
        let endpoints = args
            .first()
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&args))?
            .iter()
            .map(endpoint_from_value)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(&args))?;
        let version = args
            .get(1)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(&args))?;
        let graph = args.get(2).cloned().ok_or_else(|| bad(&args))?;
        Ok(Resolved {
            endpoints,
            version,
            graph,
        })
    }
}

/// `[host, port]`.
pub fn endpoint_from_value(v: &Value) -> Option<(String, u16)> {
    let a = v.as_array()?;
    let host = a.first()?.as_str()?.to_string();
    let port = u16::try_from(a.get(1)?.as_u64()?).ok()?;
    Some((host, port))
}

pub fn endpoint_to_value(host: &str, port: u16) -> Value {
    Value::Array(vec![Value::from(host), Value::from(port)])
}

/// `host:port`, bracketing IPv6 hosts.
pub fn endpoint_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Typed client for a locator (plain or gateway).
#[derive(Clone)]
pub struct LocatorClient {
    pub conn: Connection,
}

impl LocatorClient {
    pub async fn connect(addr: &str) -> Result<LocatorClient, ClientError> {
        Ok(LocatorClient {
            conn: Connection::connect(addr).await?,
        })
    }

    pub async fn resolve(&self, name: &str) -> Result<Resolved, ClientError> {
        let args = self
            .conn
            .call(LocatorMethod::Resolve.id(), vec![Value::from(name)])
            .await?;
        Resolved::from_args(args)
    }

    /// uuid → `[host, port]` of every node this locator knows, itself included.
    pub async fn cluster(&self) -> Result<Vec<(String, (String, u16))>, ClientError> {
        let args = self.conn.call(LocatorMethod::Cluster.id(), vec![]).await?;
        let bad = || ClientError::Malformed {
            what: "cluster",
            got: Value::Array(args.clone()),
        };
        args.first()
            .and_then(Value::as_map)
            .ok_or_else(bad)?
            .iter()
            .map(|(k, v)| Some((k.as_str()?.to_string(), endpoint_from_value(v)?)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)
    }

    pub async fn uuid(&self) -> Result<String, ClientError> {
        let args = self.conn.call(LocatorMethod::Uuid.id(), vec![]).await?;
        match args.first().and_then(Value::as_str) {
            Some(s) => Ok(s.to_string()),
            None => Err(ClientError::Malformed {
                what: "uuid",
                got: Value::Array(args),
            }),
        }
    }

    /// Announces a service running elsewhere.
    pub async fn publish(
        &self,
        name: &str,
        endpoints: &[(String, u16)],
        version: u64,
        graph: Value,
    ) -> Result<(), ClientError> {
        let eps = endpoints
            .iter()
            .map(|(h, p)| endpoint_to_value(h, *p))
            .collect();
        self.conn
            .call(
                LocatorMethod::Publish.id(),
                vec![
                    Value::from(name),
                    Value::Array(eps),
                    Value::Array(vec![Value::from(version), graph]),
                ],
            )
            .await?;
        Ok(())
    }
}

/// A resolved service: its connection and the methods its graph names.
#[derive(Clone)]
pub struct ServiceClient {
    pub name: String,
    pub conn: Connection,
    pub version: u64,
    pub methods: Vec<RemoteMethod>,
}

/// What a call returned: one value, or a stream's chunks.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// The method has no reply (sent, nothing to wait for).
    None,
    Value(Vec<Value>),
    Stream(Vec<Vec<Value>>),
}

impl ServiceClient {
    /// Resolves `name` through the locator at `locator` and connects to the first
    /// endpoint that accepts.
    pub async fn resolve(locator: &str, name: &str) -> Result<ServiceClient, ClientError> {
        let loc = LocatorClient::connect(locator).await?;
        let r = loc.resolve(name).await?;
        ServiceClient::connect(name, r).await
    }

    pub async fn connect(name: &str, r: Resolved) -> Result<ServiceClient, ClientError> {
        let mut last = ClientError::NoEndpoints(name.to_string());
        for (host, port) in &r.endpoints {
            match Connection::connect(&endpoint_addr(host, *port)).await {
                Ok(conn) => {
                    return Ok(ServiceClient {
                        name: name.to_string(),
                        conn,
                        version: r.version,
                        methods: parse_graph(&r.graph),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn method(&self, name: &str) -> Result<&RemoteMethod, ClientError> {
        self.methods
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ClientError::NoSuchMethod {
                service: self.name.clone(),
                method: name.to_string(),
                known: self
                    .methods
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Opens a channel with `method`, for streaming both ways.
    pub fn open(&self, method: &str, args: Vec<Value>) -> Result<Channel, ClientError> {
        let m = self.method(method)?;
        self.conn.open(m.id, args)
    }

    /// Calls `method` and collects its whole reply.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Response, ClientError> {
        let m = self.method(method)?.clone();
        let mut ch = self.conn.open(m.id, args)?;
        if !m.replies {
            // Nothing comes back; a ping proves the message was read.
            drop(ch);
            self.conn.ping().await?;
            return Ok(Response::None);
        }
        if !m.streams {
            return ch.value().await.map(Response::Value);
        }
        let mut chunks = Vec::new();
        while let Some(c) = ch.next_chunk().await? {
            chunks.push(c);
        }
        Ok(Response::Stream(chunks))
    }
}

/// Typed client for the storage service.
#[derive(Clone)]
pub struct StorageClient {
    pub conn: Connection,
}

impl StorageClient {
    pub async fn read(&self, ns: &str, key: &str) -> Result<Value, ClientError> {
        let args = self
            .conn
            .call(StorageMethod::Read.id(), vec![ns.into(), key.into()])
            .await?;
        args.into_iter().next().ok_or(ClientError::Malformed {
            what: "read",
            got: Value::Nil,
        })
    }

    pub async fn write(
        &self,
        ns: &str,
        key: &str,
        blob: Value,
        tags: &[&str],
    ) -> Result<(), ClientError> {
        let tags = Value::Array(tags.iter().map(|t| Value::from(*t)).collect());
        self.conn
            .call(
                StorageMethod::Write.id(),
                vec![ns.into(), key.into(), blob, tags],
            )
            .await?;
        Ok(())
    }

    pub async fn remove(&self, ns: &str, key: &str) -> Result<(), ClientError> {
        self.conn
            .call(StorageMethod::Remove.id(), vec![ns.into(), key.into()])
            .await?;
        Ok(())
    }

    pub async fn find(&self, ns: &str, tags: &[&str]) -> Result<Vec<String>, ClientError> {
        let tags = Value::Array(tags.iter().map(|t| Value::from(*t)).collect());
        let args = self
            .conn
            .call(StorageMethod::Find.id(), vec![ns.into(), tags])
            .await?;
        let bad = || ClientError::Malformed {
            what: "find",
            got: Value::Array(args.clone()),
        };
        args.first()
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|k| k.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)
    }
}

/// A command-line argument as a value: JSON when it parses, else the plain string.
pub fn value_from_arg(arg: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(arg) {
        Ok(j) => value_from_json(j),
        Err(_) => Value::from(arg),
    }
}

fn value_from_json(j: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Nil,
        J::Bool(b) => Value::from(b),
        J::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, f) => Value::F64(f.unwrap_or_default()),
        },
        J::String(s) => Value::from(s),
        J::Array(a) => Value::Array(a.into_iter().map(value_from_json).collect()),
        J::Object(o) => Value::Map(
            o.into_iter()
                .map(|(k, v)| (Value::from(k), value_from_json(v)))
                .collect(),
        ),
    }
}

/// A value as JSON for printing: bin as text when it is UTF-8, map keys as strings.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => i
            .as_u64()
            .map(J::from)
            .or_else(|| i.as_i64().map(J::from))
            .unwrap_or(J::Null),
        Value::F32(f) => J::from(f64::from(*f)),
        Value::F64(f) => J::from(*f),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => J::String(s.to_string()),
            Err(_) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        },
        Value::Array(a) => J::Array(a.iter().map(value_to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k.as_str() {
                        Some(s) => s.to_string(),
                        None => k.to_string(),
                    };
                    (key, value_to_json(v))
                })
                .collect(),
        ),
        Value::Ext(t, b) => J::from(format!("ext({t}, {b:?})")),
    }
}

/// `sosna call`: resolves `service`, calls `method` with `args` (JSON or plain strings),
/// and returns the reply's values as JSON lines (one per stream chunk).
pub async fn call_cli(
    locator: &str,
    service: &str,
    method: &str,
    args: &[String],
) -> Result<Vec<String>, ClientError> {
    let svc = ServiceClient::resolve(locator, service).await?;
    let args = args.iter().map(|a| value_from_arg(a)).collect();
    let line =
        |vs: &[Value]| serde_json::Value::Array(vs.iter().map(value_to_json).collect()).to_string();
    Ok(match svc.call(method, args).await? {
        Response::None => Vec::new(),
        Response::Value(vs) => vec![line(&vs)],
        Response::Stream(chunks) => chunks.iter().map(|c| line(c)).collect(),
    })
}
