//! The server side of a connection: many channels over one byte stream (TCP or unix).
//!
//! The caller picks channel ids. The first message on a channel invokes the method whose id
//! is its type; methods with a streaming dispatch keep the channel open for the caller's
//! `write`/`error`/`close`. Channel 0 is the control channel: `0 revoke(channel, error)`
//! drops a channel, `1 settings` and `2 ping` are echoed back, `3 goaway(error)` ends the
//! session. A frame that cannot be read gets an error on its channel; when not even the
//! channel is known, or the stream cannot be resynchronised, the session answers with a
//! `goaway` carrying the error and closes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use rmpv::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use sosna_proto::slave::error::{protocol as code, RpcError};
use sosna_proto::slave::frame::{DecodeError, Decoder, Frame, FrameError, DEFAULT_MAX_FRAME};
use sosna_proto::slave::graph::{ids, Dispatch, Method, Protocol};

/// Control channel message ids (Cocaine's `control` protocol).
pub mod control {
    pub const CHANNEL: u64 = 0;
    pub const REVOKE: u64 = 0;
    pub const SETTINGS: u64 = 1;
    pub const PING: u64 = 2;
    pub const GOAWAY: u64 = 3;
}

/// A service reachable over sessions. `invoke` must not block: reply at once through
/// `call.reply`, or move the call into a spawned task.
pub trait Service: Send + Sync + 'static {
    fn protocol(&self) -> &'static Protocol;
    /// Whether `method` serves callers the node has not authenticated (remote TCP). Only
    /// methods that neither change state nor read private data may: none by default.
    fn open_to_strangers(&self, _method: &'static Method) -> bool {
        false
    }
    fn invoke(&self, method: &'static Method, args: Vec<Value>, call: Call);
}

/// One invocation: where replies go, and (for streaming methods) the caller's messages.
pub struct Call {
    pub reply: Reply,
    /// The caller's later messages; `Some` only for methods with a streaming dispatch.
    pub incoming: Option<mpsc::UnboundedReceiver<Incoming>>,
    /// The address the caller reached us at (TCP only): what this node looks like to it.
    pub local_addr: Option<SocketAddr>,
}

/// A caller's message on a streaming channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Write(Vec<Value>),
    Error(RpcError),
    Close,
}

/// The sending half of one channel's upstream.
#[derive(Debug, Clone)]
pub struct Reply {
    channel: u64,
    out: mpsc::UnboundedSender<Frame>,
}

impl Reply {
    pub fn channel(&self) -> u64 {
        self.channel
    }

    /// Sends a raw message; false once the connection is gone.
    pub fn send(&self, ty: u64, args: Vec<Value>) -> bool {
        self.out.send(Frame::new(self.channel, ty, args)).is_ok()
    }

    /// `option_of` success.
    pub fn value(self, args: Vec<Value>) {
        self.send(ids::VALUE, args);
    }

    /// `option_of`/`stream_of` failure.
    pub fn error(self, e: RpcError) {
        self.send(ids::ERROR, e.to_args());
    }

    /// Either of the above.
    pub fn result(self, r: Result<Vec<Value>, RpcError>) {
        match r {
            Ok(args) => self.value(args),
            Err(e) => self.error(e),
        }
    }

    /// `stream_of` chunk.
    pub fn write(&self, args: Vec<Value>) -> bool {
        self.send(ids::WRITE, args)
    }

    /// `stream_of` end.
    pub fn close(self) {
        self.send(ids::CLOSE, Vec::new());
    }
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub max_frame: usize,
    pub local_addr: Option<SocketAddr>,
    /// The caller is authenticated: on this machine (loopback, unix socket) or a bus peer
    /// the node trusts. Others reach only methods open to strangers.
    pub trusted: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            max_frame: DEFAULT_MAX_FRAME,
            local_addr: None,
            trusted: false,
        }
    }
}

/// Serves one connection until the peer closes it, sends `goaway`, breaks the protocol
/// beyond recovery, or `shutdown` turns true.
pub async fn serve<S>(
    stream: S,
    service: Arc<dyn Service>,
    opts: SessionOptions,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (out, mut out_rx) = mpsc::unbounded_channel();
    let decoder = Decoder::new(opts.max_frame);
    let mut state = Session {
        service,
        out,
        streams: HashMap::new(),
        local_addr: opts.local_addr,
        trusted: opts.trusted,
    };
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Encoded replies not yet written, and how much of them has been.
    let mut pending: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut written = 0;
    // One task reads and writes, so a synchronous reply goes out without a task switch;
    // neither direction waits for the other, and reading pauses while output backs up.
    'session: loop {
        while pending.len() < HIGH_WATER {
            match out_rx.try_recv() {
                Ok(f) => f.encode(&mut pending),
                Err(_) => break,
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        tokio::select! {
            r = rd.read_buf(&mut buf), if pending.len() < HIGH_WATER => {
                match r {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!("slave session read: {e}");
                        break;
                    }
                }
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(frame)) => {
                            if !state.on_frame(frame) {
                                break 'session;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            if !state.on_bad_frame(e) {
                                break 'session;
                            }
                        }
                    }
                }
            }
            r = wr.write(&pending[written..]), if written < pending.len() => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    written += n;
                    if written == pending.len() {
                        pending.clear();
                        written = 0;
                    }
                }
            },
            f = out_rx.recv(), if pending.is_empty() => {
                if let Some(f) = f {
                    f.encode(&mut pending);
                }
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    // Streaming handlers see their callers go; replies still in flight go out, within
    // DRAIN: a handler that holds its channel open forever does not hold the connection.
    drop(state);
    let drain = async {
        loop {
            if written < pending.len() {
                wr.write_all(&pending[written..]).await?;
                pending.clear();
                written = 0;
            }
            match out_rx.recv().await {
                Some(f) => f.encode(&mut pending),
                None => return wr.shutdown().await,
            }
        }
    };
    match tokio::time::timeout(DRAIN, drain).await {
        Ok(Err(e)) => tracing::debug!("slave session write: {e}"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!("slave session: replies still pending after {DRAIN:?}; closing"),
    }
}

/// Encoded output above which a session stops reading requests until it has written.
const HIGH_WATER: usize = 256 * 1024;

/// How long replies still in flight may take to go out after the read side ended.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

struct Session {
    service: Arc<dyn Service>,
    out: mpsc::UnboundedSender<Frame>,
    streams: HashMap<u64, mpsc::UnboundedSender<Incoming>>,
    local_addr: Option<SocketAddr>,
    trusted: bool,
}

impl Session {
    fn reply(&self, channel: u64) -> Reply {
        Reply {
            channel,
            out: self.out.clone(),
        }
    }

    fn goaway(&self, err: RpcError) {
        let _ = self.out.send(Frame::new(
            control::CHANNEL,
            control::GOAWAY,
            vec![Value::Array(err.to_args())],
        ));
    }

    /// Answers a frame that could not be decoded; false ends the session.
    fn on_bad_frame(&mut self, e: DecodeError) -> bool {
        tracing::debug!("slave session: bad frame: {e}");
        let code = match e.error {
            FrameError::TooLarge { .. } => code::FRAME_TOO_LARGE,
            _ => code::MALFORMED_FRAME,
        };
        let err = RpcError::protocol(code, e.error.to_string());
        match e.channel {
            Some(ch) if e.error.recoverable() && ch != control::CHANNEL => {
                self.streams.remove(&ch);
                self.reply(ch).error(err);
                true
            }
            _ => {
                self.goaway(err);
                false
            }
        }
    }

    /// Handles one frame; false ends the session.
    fn on_frame(&mut self, frame: Frame) -> bool {
        let Frame {
            channel, ty, args, ..
        } = frame;
        if channel == control::CHANNEL {
            return self.on_control(ty, args);
        }
        if let Some(tx) = self.streams.get(&channel) {
            let msg = match ty {
                ids::WRITE => Incoming::Write(args),
                ids::ERROR => Incoming::Error(RpcError::from_args(&args)),
                ids::CLOSE => Incoming::Close,
                other => {
                    self.streams.remove(&channel);
                    self.reply(channel).error(RpcError::protocol(
                        code::UNEXPECTED_MESSAGE,
                        format!("message type {other} is not write(0), error(1) or close(2) on streaming channel {channel}"),
                    ));
                    return true;
                }
            };
            let last = !matches!(msg, Incoming::Write(_));
            // A handler that stopped listening just drops what comes after.
            let _ = tx.send(msg);
            if last {
                self.streams.remove(&channel);
            }
            return true;
        }
        let protocol = self.service.protocol();
        let Some(method) = protocol.method(ty) else {
            self.reply(channel).error(RpcError::protocol(
                code::UNKNOWN_METHOD,
                format!("service {:?} has no method with id {ty}", protocol.name),
            ));
            return true;
        };
        if !self.trusted && !self.service.open_to_strangers(method) {
            tracing::warn!(
                "slave: refused {}.{} to an unauthenticated remote caller",
                protocol.name,
                method.name
            );
            self.reply(channel).error(RpcError::denied(format!(
                "{}.{} is served on this machine and to trusted bus peers only",
                protocol.name, method.name
            )));
            return true;
        }
        let incoming = match method.dispatch {
            Dispatch::Terminal => None,
            Dispatch::Streaming => {
                let (tx, rx) = mpsc::unbounded_channel();
                self.streams.insert(channel, tx);
                Some(rx)
            }
        };
        let call = Call {
            reply: self.reply(channel),
            incoming,
            local_addr: self.local_addr,
        };
        self.service.invoke(method, args, call);
        true
    }

    fn on_control(&mut self, ty: u64, args: Vec<Value>) -> bool {
        match ty {
            control::REVOKE => {
                if let Some(ch) = args.first().and_then(Value::as_u64) {
                    if let Some(tx) = self.streams.remove(&ch) {
                        let _ = tx.send(Incoming::Error(RpcError::protocol(
                            code::REVOKED,
                            format!("channel {ch} revoked by the caller"),
                        )));
                    }
                }
                true
            }
            control::SETTINGS | control::PING => {
                let _ = self.out.send(Frame::new(control::CHANNEL, ty, Vec::new()));
                true
            }
            control::GOAWAY => false,
            other => {
                self.goaway(RpcError::protocol(
                    code::UNKNOWN_METHOD,
                    format!("unknown control message {other} on channel 0"),
                ));
                false
            }
        }
    }
}

/// Most connections one listener serves at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 256;

/// Accepts TCP connections for `service` until `shutdown` turns true.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    service: Arc<dyn Service>,
    max_frame: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let opts = SessionOptions {
                    max_frame,
                    local_addr: stream.local_addr().ok(),
                    trusted: peer.ip().to_canonical().is_loopback(),
                };
                let (service, shutdown) = (service.clone(), shutdown.clone());
                tokio::spawn(async move {
                    serve(stream, service, opts, shutdown).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("slave {}: accept: {e}", service.protocol().name);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts unix-socket connections for `service` until `shutdown` turns true.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    service: Arc<dyn Service>,
    max_frame: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let opts = SessionOptions {
                    max_frame,
                    local_addr: None,
                    trusted: true,
                };
                let (service, shutdown) = (service.clone(), shutdown.clone());
                tokio::spawn(async move {
                    serve(stream, service, opts, shutdown).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!("slave {}: accept: {e}", service.protocol().name);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
