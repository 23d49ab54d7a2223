//! The slave protocol in-process over real sockets: byte-exact Cocaine 0.12 vectors, round
//! trips, 1,000 channels on one connection, streaming both ways, and bad input of every
//! kind answered with an error frame or a close, within a deadline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmpv::Value;
use sosna_proto::slave::frame::{Decoder, Frame};
use sosna_proto::slave::graph::{Method, Protocol};
use sosna_slave::client::{ClientError, Connection, LocatorClient, StorageClient};
use sosna_slave::session::{self, Call, Incoming, Service};
use sosna_slave::SlaveConfig;
use sosna_slave::{self as slave, Slave};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

async fn start_slave(dir: &std::path::Path) -> Slave {
    let cfg = SlaveConfig {
        listen: "127.0.0.1".parse().unwrap(),
        locator_port: 0,
        socket: dir.join("locator.sock").display().to_string(),
        ..SlaveConfig::default()
    };
    slave::start(&cfg, dir, Vec::new()).await.unwrap()
}

/// Reads frames from a raw socket until `want` of them arrived or the peer closed.
async fn read_frames(s: &mut TcpStream, want: usize) -> (Vec<Frame>, bool) {
    let d = Decoder::default();
    let mut buf = bytes::BytesMut::new();
    let mut frames = Vec::new();
    let read = async {
        loop {
            while let Some(f) = d.decode(&mut buf).unwrap() {
                frames.push(f);
            }
            if frames.len() >= want {
                return false;
            }
            if s.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                return true;
            }
        }
    };
    let closed = tokio::time::timeout(DEADLINE, read)
        .await
        .expect("no reply within the deadline");
    (frames, closed)
}

#[tokio::test]
async fn test_resolve_storage_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let slave = start_slave(dir.path()).await;
    let loc = LocatorClient::connect(&slave.locator_addr.to_string())
        .await
        .unwrap();
    let port = loc.resolve("storage").await.unwrap().endpoints[0].1;
    assert!(port >= 256, "a uint16 port encodes as cd xx xx");

    // resolve("storage") on channel 1, as any Cocaine client sends it (3- and 4-element).
    let request4 = unhex("94 01 00 91 a7 73746f72616765 90");
    let request3 = unhex("93 01 00 91 a7 73746f72616765");
    let option = "82 00 92 a5 76616c7565 80 01 92 a5 6572726f72 80"; // {0: ["value", {}], 1: ["error", {}]}
    let reply = unhex(&format!(
        "94 01 00 93 \
         91 92 a9 3132372e302e302e31 cd {port:04x} \
         01 \
         84 00 93 a4 72656164 80 {option} \
            01 93 a5 7772697465 80 {option} \
            02 93 a6 72656d6f7665 80 {option} \
            03 93 a4 66696e64 80 {option} \
         90"
    ));
    for request in [request4, request3] {
        let mut s = TcpStream::connect(slave.locator_addr).await.unwrap();
        s.write_all(&request).await.unwrap();
        let mut got = vec![0; reply.len()];
        tokio::time::timeout(DEADLINE, s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, reply, "reply bytes");
    }

    // An unknown name: error([2, 1], message) on the same channel.
    let mut s = TcpStream::connect(slave.locator_addr).await.unwrap();
    s.write_all(&unhex("94 07 00 91 a4 6e6f7065 90"))
        .await
        .unwrap(); // resolve("nope")
    let (frames, _) = read_frames(&mut s, 1).await;
    let f = &frames[0];
    assert_eq!((f.channel, f.ty), (7, 1));
    assert_eq!(f.args[0], Value::Array(vec![2.into(), 1.into()]));
    assert!(
        f.args[1].as_str().unwrap().contains("\"nope\""),
        "{:?}",
        f.args
    );
    slave.stop().await;
}

#[tokio::test]
async fn test_locator_and_storage_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let slave = start_slave(dir.path()).await;
    let addr = slave.locator_addr.to_string();
    let loc = LocatorClient::connect(&addr).await.unwrap();
    let uuid = loc.uuid().await.unwrap();
    assert_eq!(uuid, slave.locator.uuid());
    let cluster = loc.cluster().await.unwrap();
    assert_eq!(
        cluster,
        vec![(
            uuid.clone(),
            ("127.0.0.1".to_string(), slave.locator_addr.port())
        )]
    );

    // Over the unix socket too.
    let unix = Connection::connect_unix(&dir.path().join("locator.sock"))
        .await
        .unwrap();
    let via_unix = LocatorClient { conn: unix };
    assert_eq!(via_unix.uuid().await.unwrap(), uuid);

    // publish from a remote node, then resolve it.
    let graph = Value::Map(vec![]);
    loc.publish("remote-app", &[("10.1.2.3".into(), 4242)], 7, graph.clone())
        .await
        .unwrap();
    let r = loc.resolve("remote-app").await.unwrap();
    assert_eq!(
        (r.endpoints, r.version, r.graph),
        (vec![("10.1.2.3".to_string(), 4242)], 7, graph)
    );
    let e = loc.conn.call(4, vec!["bad".into()]).await.unwrap_err();
    assert!(e.to_string().contains("publish takes"), "{e}");

    let r = loc.resolve("storage").await.unwrap();
    let st = StorageClient {
        conn: Connection::connect(&format!("127.0.0.1:{}", r.endpoints[0].1))
            .await
            .unwrap(),
    };
    st.write("apps", "one", Value::from("blob-1"), &["a", "b"])
        .await
        .unwrap();
    st.write("apps", "two", Value::Binary(vec![0, 159, 146]), &["a"])
        .await
        .unwrap();
    assert_eq!(st.read("apps", "one").await.unwrap(), Value::from("blob-1"));
    assert_eq!(
        st.read("apps", "two").await.unwrap(),
        Value::Binary(vec![0, 159, 146])
    );
    assert_eq!(st.find("apps", &["a"]).await.unwrap(), vec!["one", "two"]);
    assert_eq!(st.find("apps", &["a", "b"]).await.unwrap(), vec!["one"]);
    st.remove("apps", "one").await.unwrap();
    match st.read("apps", "one").await.unwrap_err() {
        ClientError::Rpc(e) => {
            assert_eq!((e.category, e.code), (2, 1));
            assert!(e.message.contains("one"), "{e}");
        }
        other => panic!("{other}"),
    }
    // Wrong argument types name the argument.
    let e = st
        .conn
        .call(0, vec![Value::from(1), Value::from("k")])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("namespace"), "{e}");
    // The logging service answers verbosity and takes emit.
    let r = loc.resolve("logging").await.unwrap();
    let log = sosna_slave::client::ServiceClient::connect("logging", r)
        .await
        .unwrap();
    let v = log.call("verbosity", vec![]).await.unwrap();
    assert!(
        matches!(v, sosna_slave::client::Response::Value(ref a) if a[0].is_i64()),
        "{v:?}"
    );
    let none = log
        .call("emit", vec![1.into(), "app/test".into(), "hi".into()])
        .await
        .unwrap();
    assert_eq!(none, sosna_slave::client::Response::None);
    slave.stop().await;
}

sosna_proto::protocol! {
    enum EchoMethod = "echo", version 1 {
        0 Echo "echo": Terminal -> Option,
        1 Gather "gather": Terminal -> Option,
        2 Double "double": Streaming -> Stream,
        3 Count "count": Terminal -> Stream,
    }
}

/// Test service: `echo` answers at once; `gather` holds every call until `hold` of them are
/// pending, then answers all in reverse order; `double` streams back twice each write and
/// the total at close; `count(n)` streams 0..n.
struct Echo {
    hold: usize,
    held: Mutex<Vec<(i64, session::Reply)>>,
}

impl Service for Echo {
    fn protocol(&self) -> &'static Protocol {
        &EchoMethod::PROTOCOL
    }

    fn invoke(&self, method: &'static Method, args: Vec<Value>, call: Call) {
        match EchoMethod::from_id(method.id).unwrap() {
            EchoMethod::Echo => call.reply.value(args),
            EchoMethod::Gather => {
                let mut held = self.held.lock().unwrap();
                held.push((args[0].as_i64().unwrap(), call.reply));
                if held.len() == self.hold {
                    for (i, r) in held.drain(..).rev() {
                        r.value(vec![Value::from(i)]);
                    }
                }
            }
            EchoMethod::Double => {
                let mut rx = call.incoming.unwrap();
                let reply = call.reply;
                tokio::spawn(async move {
                    let mut total = 0;
                    while let Some(m) = rx.recv().await {
                        match m {
                            Incoming::Write(a) => {
                                let x = a[0].as_i64().unwrap();
                                total += x;
                                reply.write(vec![Value::from(2 * x)]);
                            }
                            Incoming::Close => break,
                            Incoming::Error(e) => return reply.error(e),
                        }
                    }
                    reply.write(vec![Value::from(total)]);
                    reply.close();
                });
            }
            EchoMethod::Count => {
                let n = args.first().and_then(Value::as_u64).unwrap_or(0);
                for i in 0..n {
                    call.reply.write(vec![Value::from(i)]);
                }
                call.reply.close();
            }
        }
    }
}

async fn start_echo(
    hold: usize,
    max_frame: usize,
) -> (SocketAddr, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let svc: Arc<dyn Service> = Arc::new(Echo {
        hold,
        held: Mutex::new(Vec::new()),
    });
    tokio::spawn(session::serve_tcp(listener, svc, max_frame, rx));
    (addr, stop)
}

#[tokio::test]
async fn test_thousand_concurrent_channels_on_one_connection() {
    let (addr, _stop) = start_echo(1000, 1 << 20).await;
    let conn = Connection::connect(&addr.to_string()).await.unwrap();
    // No reply can come before all 1000 calls are pending on this one connection.
    let calls = (0..1000i64).map(|i| {
        let conn = conn.clone();
        async move {
            conn.call(EchoMethod::Gather.id(), vec![Value::from(i)])
                .await
        }
    });
    let replies = tokio::time::timeout(DEADLINE, futures::future::join_all(calls))
        .await
        .unwrap();
    for (i, r) in replies.into_iter().enumerate() {
        assert_eq!(
            r.unwrap(),
            vec![Value::from(i as i64)],
            "channel for call {i}"
        );
    }
}

#[tokio::test]
async fn test_streaming_both_ways() {
    let (addr, _stop) = start_echo(1, 1 << 20).await;
    let conn = Connection::connect(&addr.to_string()).await.unwrap();
    let mut ch = conn.open(EchoMethod::Double.id(), vec![]).unwrap();
    let mut expect = 0;
    for x in 1..=100i64 {
        ch.write(vec![Value::from(x)]).unwrap();
        let chunk = tokio::time::timeout(DEADLINE, ch.next_chunk())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(chunk, Some(vec![Value::from(2 * x)]));
        expect += x;
    }
    ch.close().unwrap();
    let total = tokio::time::timeout(DEADLINE, ch.next_chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(total, Some(vec![Value::from(expect)]));
    assert_eq!(
        ch.next_chunk().await.unwrap(),
        None,
        "close ends the stream"
    );

    // Server streams; an error from the caller ends a streaming call with that error.
    let mut ch = conn
        .open(EchoMethod::Count.id(), vec![Value::from(50u64)])
        .unwrap();
    for i in 0..50u64 {
        assert_eq!(ch.next_chunk().await.unwrap(), Some(vec![Value::from(i)]));
    }
    assert_eq!(ch.next_chunk().await.unwrap(), None);
    let mut ch = conn.open(EchoMethod::Double.id(), vec![]).unwrap();
    ch.send(
        1,
        vec![
            Value::Array(vec![9.into(), 9.into()]),
            "caller gave up".into(),
        ],
    )
    .unwrap();
    let e = tokio::time::timeout(DEADLINE, ch.next_chunk())
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("caller gave up"), "{e}");
    // A revoke on the control channel ends a streaming call too.
    let mut ch = conn.open(EchoMethod::Double.id(), vec![]).unwrap();
    conn.send_frame(Frame::new(
        0,
        0,
        vec![Value::from(ch.id()), Value::Array(vec![1.into(), 5.into()])],
    ))
    .unwrap();
    let e = tokio::time::timeout(DEADLINE, ch.next_chunk())
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
    tokio::time::timeout(DEADLINE, conn.ping())
        .await
        .unwrap()
        .unwrap();
}

/// Sends `bad` then a valid echo call on channel 50; returns the frames that came back and
/// whether the server closed the connection.
async fn send_bad(addr: SocketAddr, bad: &[u8], want: usize) -> (Vec<Frame>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bad).await.unwrap();
    s.write_all(&Frame::new(50, 0, vec![Value::from("alive")]).to_bytes())
        .await
        .unwrap();
    read_frames(&mut s, want).await
}

fn error_of(f: &Frame) -> (u64, u64, String) {
    let pair = f.args[0].as_array().expect("[category, code]");
    (
        pair[0].as_u64().unwrap(),
        pair[1].as_u64().unwrap(),
        f.args[1].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn test_bad_frames_give_errors_or_close_never_hang() {
    let (addr, _stop) = start_echo(1, 1024).await;
    let alive = Frame::new(50, 0, vec![Value::from("alive")]);

    // Recoverable: an error frame on the bad frame's channel, then the connection goes on.
    let recoverable: [(&[u8], u64, u64, &str); 4] = [
        // [3, "x", []]: wrongly-typed message type
        (&[0x93, 3, 0xa1, b'x', 0x90], 3, 2, "`type`"),
        // [4, 9, []]: no method 9
        (&[0x93, 4, 9, 0x90], 4, 3, "no method with id 9"),
        // [5, 0, 7]: args not an array
        (&[0x93, 5, 0, 7], 5, 2, "`args`"),
        // [6, 0, [], [[true, 62, "v"]]]: HPACK-indexed header
        (
            &[0x94, 6, 0, 0x90, 0x91, 0x93, 0xc3, 62, 0xa1, b'v'],
            6,
            2,
            "HPACK",
        ),
    ];
    for (bad, channel, code, text) in recoverable {
        let (frames, closed) = send_bad(addr, bad, 2).await;
        assert!(!closed, "{bad:x?} closed the connection");
        let (cat, c, msg) = error_of(&frames[0]);
        assert_eq!(
            (frames[0].channel, frames[0].ty, cat, c),
            (channel, 1, 1, code),
            "{msg}"
        );
        assert!(msg.contains(text), "{bad:x?}: {msg}");
        assert_eq!(
            frames[1], alive,
            "the connection still works after {bad:x?}"
        );
    }

    // Fatal: a goaway carrying the reason, then the server closes.
    let mut oversized = vec![0x93, 1, 0, 0x91, 0xda, 0x08, 0x00];
    oversized.extend(vec![b'a'; 2048]);
    let fatal: [(&[u8], u64, &str); 4] = [
        (&oversized, 1, "exceeds the 1024-byte limit"),
        (&[0x94, 1, 0xc1, 0x90, 0x90], 2, "not a valid marker"),
        (b"hello, world", 2, "not a msgpack array"),
        (&[0x92, 1, 0], 2, "2 elements"),
    ];
    for (bad, code, text) in fatal {
        let (frames, closed) = send_bad(addr, bad, usize::MAX).await;
        assert!(closed, "{bad:x?} did not close");
        let goaway = frames
            .iter()
            .find(|f| f.channel == 0 && f.ty == 3)
            .expect("goaway");
        let (cat, c, msg) = error_of(&Frame::new(
            0,
            3,
            goaway.args[0].as_array().unwrap().clone(),
        ));
        assert_eq!((cat, c), (1, code), "{msg}");
        assert!(msg.contains(text), "{bad:x?}: {msg}");
    }

    // Truncated: half a frame, then the caller stops writing; the server must close.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let whole = alive.to_bytes();
    s.write_all(&whole[..whole.len() / 2]).await.unwrap();
    s.shutdown().await.unwrap();
    let (frames, closed) = read_frames(&mut s, usize::MAX).await;
    assert!(closed && frames.is_empty(), "{frames:?}");

    // A client sees a server-side goaway as a clear disconnect, not a hang.
    let conn = Connection::connect(&addr.to_string()).await.unwrap();
    let ch = conn.open(0, vec![Value::from("x".repeat(2000))]).unwrap();
    let e = tokio::time::timeout(DEADLINE, ch.value())
        .await
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("exceeds the 1024-byte limit"), "{e}");
}
