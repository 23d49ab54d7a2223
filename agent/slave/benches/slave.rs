//! Slave protocol throughput: small request/reply calls per second on loopback, over one
//! connection and over 16, against the floor of a raw TCP echo of the same request bytes
//! driven the same way (same connections, same number of requests in flight).
//!
//! `cargo bench -p sosna-slave --bench slave` (options: `-- --secs N --window W --rounds R`;
//! defaults 1 s, 16 calls in flight per connection, median of 3 alternating rounds). The
//! server and the client each run on one thread. The last line is
//! `BENCH slave calls_per_s=<c> floor_per_s=<f> ratio=<c/f>` for 16 connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmpv::Value;
use sosna_proto::slave::frame::Frame;
use sosna_proto::slave::graph::{Method, Protocol};
use sosna_slave::client::Connection;
use sosna_slave::session::{self, Call, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

sosna_proto::protocol! {
    enum BenchMethod = "bench", version 1 {
        0 Echo "echo": Terminal -> Option,
    }
}

struct Echo;

impl Service for Echo {
    fn protocol(&self) -> &'static Protocol {
        &BenchMethod::PROTOCOL
    }
    fn invoke(&self, _: &'static Method, args: Vec<Value>, call: Call) {
        call.reply.value(args);
    }
}

fn payload() -> Vec<Value> {
    vec![Value::from("ping")]
}

/// Runs `f` on a fresh single-threaded runtime in its own thread.
fn on_thread<F, Fut>(f: F) -> std::thread::JoinHandle<Fut::Output>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future,
    Fut::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f())
    })
}

fn start_slave_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    on_thread(move || async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        tx.send(l.local_addr().expect("addr")).expect("send");
        let (_keep, stop) = tokio::sync::watch::channel(false);
        session::serve_tcp(l, Arc::new(Echo), 1 << 20, stop).await;
    });
    rx.recv().expect("server address")
}

fn start_echo_server() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    on_thread(move || async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        tx.send(l.local_addr().expect("addr")).expect("send");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    rx.recv().expect("server address")
}

/// Calls per second through the client library: `window` calls in flight per connection,
/// each completed one replaced by a new one (one task per connection).
fn run_slave(addr: SocketAddr, conns: usize, window: usize, secs: f64) -> f64 {
    use futures::stream::{FuturesUnordered, StreamExt};
    on_thread(move || async move {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let conn = Connection::connect(&addr.to_string())
                .await
                .expect("connect");
            let (done, stop) = (done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let call = || conn.call(BenchMethod::Echo.id(), payload());
                let mut inflight: FuturesUnordered<_> = (0..window).map(|_| call()).collect();
                while let Some(r) = inflight.next().await {
                    assert_eq!(r.expect("call"), payload());
                    done.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    inflight.push(call());
                }
            }));
        }
        measure(&done, &stop, secs, tasks).await
    })
    .join()
    .expect("client thread")
}

/// Replies per second from a raw echo of the same request bytes, `window` in flight per
/// connection: every whole reply read is answered with one new request.
fn run_floor(addr: SocketAddr, conns: usize, window: usize, secs: f64) -> f64 {
    let request = Frame::new(1000, BenchMethod::Echo.id(), payload()).to_bytes();
    on_thread(move || async move {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let _ = s.set_nodelay(true);
            let (done, stop, request) = (done.clone(), stop.clone(), request.clone());
            tasks.push(tokio::spawn(async move {
                s.write_all(&request.repeat(window)).await.expect("write");
                let mut buf = vec![0u8; 64 * 1024];
                let mut partial = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let n = s.read(&mut buf).await.expect("read");
                    partial += n;
                    let whole = partial / request.len();
                    partial %= request.len();
                    if whole > 0 {
                        done.fetch_add(whole as u64, Ordering::Relaxed);
                        s.write_all(&request.repeat(whole)).await.expect("write");
                    }
                }
            }));
        }
        measure(&done, &stop, secs, tasks).await
    })
    .join()
    .expect("client thread")
}

async fn measure(
    done: &AtomicU64,
    stop: &AtomicBool,
    secs: f64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> f64 {
    // Warm up, then count over the measured interval only.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start_count = done.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let n = done.load(Ordering::Relaxed) - start_count;
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut secs = 1.0;
    let mut window = 16;
    let mut rounds = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |d: f64| args.next().and_then(|v| v.parse().ok()).unwrap_or(d);
        match a.as_str() {
            "--secs" => secs = num(secs),
            "--window" => window = num(window as f64) as usize,
            "--rounds" => rounds = num(rounds as f64) as usize,
            _ => {} // cargo bench passes --bench
        }
    }
    let slave = start_slave_server();
    let echo = start_echo_server();
    let mut last = (0.0, 0.0);
    for conns in [1, 16] {
        // Alternate slave and floor runs so that load from elsewhere hits both alike.
        let (mut cs, mut fs) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            cs.push(run_slave(slave, conns, window, secs));
            fs.push(run_floor(echo, conns, window, secs));
        }
        let (c, f) = (median(cs), median(fs));
        println!(
            "slave conns={conns} window={window} (median of {rounds}): calls_per_s={c:.0} floor_per_s={f:.0} ratio={:.3}",
            c / f
        );
        last = (c, f);
    }
    let (c, f) = last;
    println!(
        "BENCH slave calls_per_s={c:.0} floor_per_s={f:.0} ratio={:.3}",
        c / f
    );
}
