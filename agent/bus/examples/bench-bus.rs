//! Propagation latency of a hub announcement over the bus: one hub and 100 peers in this
//! process over the memory transport (noise, yamux, gossipsub with validation and scoring,
//! signed envelopes verified at every hop). For each of 50 announcements, the time from
//! publishing until the last of the 100 peers has verified it; p50 and p99 over the 50.
//!
//!     cargo run --locked -q --release -p sosna-bus --example bench-bus
//!
//! Last line: `BENCH bus peers=100 p50_ms=<a> p99_ms=<b>`. Exits non-zero if a message
//! does not reach every peer within 10 s. Knobs: `BENCH_HEARTBEAT_MS` (gossipsub heartbeat,
//! default 1000), `BENCH_IDLE_SECS` (also report the idle network's CPU use).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use sosna_bus::BusEvent;
use sosna_proto::bus::envelope::now_ms;
use sosna_proto::bus::messages::{HubAnnouncement, Message, PriceSchedule};
use sosna_testkit::testnet::spawn_net_with;

const PEERS: usize = 100;
const MESSAGES: usize = 50;
const PER_MESSAGE: Duration = Duration::from_secs(10);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time (user + system) this process has used, in milliseconds.
fn cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    ticks * 10
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // Warnings only (slow peers, dropped events), unless RUST_LOG says otherwise.
    sosna_init::logging::init(&std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
    let setup = Instant::now();
    // Node 0 is the hub; nodes 1..=PEERS are the peers measured.
    let heartbeat = std::env::var("BENCH_HEARTBEAT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(1), Duration::from_millis);
    let mut net = spawn_net_with(PEERS + 1, 3, 0xbe7c4, heartbeat)
        .await
        .expect("spawn network");
    net.wait_for_mesh(Duration::from_secs(60))
        .await
        .expect("gossip mesh");
    println!(
        "network of {} nodes up and meshed in {} ms",
        PEERS + 1,
        setup.elapsed().as_millis()
    );
    let mut connected = 0;
    for node in &net.nodes {
        connected += node.bus.status().await.map_or(0, |s| s.connected);
    }
    println!(
        "average connected peers: {:.1}",
        connected as f64 / net.nodes.len() as f64
    );
    if let Ok(idle) = std::env::var("BENCH_IDLE_SECS") {
        let before = cpu_ms();
        tokio::time::sleep(Duration::from_secs(idle.parse().unwrap_or(5))).await;
        println!("idle: {} ms of CPU", cpu_ms() - before);
    }
    let cpu_start = cpu_ms();
    let hub = net.nodes[0].bus.clone();
    let owner = net.nodes[0].identity.address();
    let mut full: Vec<f64> = Vec::with_capacity(MESSAGES);
    let mut each: Vec<f64> = Vec::with_capacity(MESSAGES * PEERS);
    for n in 0..MESSAGES {
        let name = format!("bench-{n}");
        let announcement = HubAnnouncement {
            multiaddrs: vec![net.nodes[0].addr.to_string()],
            owner,
            wallet: Address::repeat_byte(0x42),
            name: name.clone(),
            prices: PriceSchedule::default(),
            timestamp_ms: now_ms(),
        };
        let start = Instant::now();
        hub.publish(Message::HubAnnouncement(announcement))
            .await
            .expect("publish");
        let mut got = HashSet::new();
        while got.len() < PEERS {
            let left = PER_MESSAGE.saturating_sub(start.elapsed());
            let Some((i, event)) = net.next_event(left).await else {
                eprintln!(
                    "message {n} reached {} of {PEERS} peers in {PER_MESSAGE:?}",
                    got.len()
                );
                std::process::exit(1);
            };
            match event {
                BusEvent::Message(v) => {
                    let ours = matches!(&v.message, Message::HubAnnouncement(a) if a.name == name);
                    if ours && got.insert(i) {
                        each.push(start.elapsed().as_secs_f64() * 1e3);
                    }
                }
                BusEvent::Rejected { error, .. } => {
                    eprintln!("peer {i} rejected an announcement: {error}");
                    std::process::exit(1);
                }
                BusEvent::Request(_) => {}
            }
        }
        full.push(start.elapsed().as_secs_f64() * 1e3);
    }
    println!("messages: {} ms of CPU", cpu_ms() - cpu_start);
    full.sort_by(f64::total_cmp);
    each.sort_by(f64::total_cmp);
    println!(
        "per delivery: p50 {:.2} ms, p99 {:.2} ms over {} deliveries",
        percentile(&each, 50.0),
        percentile(&each, 99.0),
        each.len()
    );
    println!(
        "BENCH bus peers={PEERS} p50_ms={:.2} p99_ms={:.2}",
        percentile(&full, 50.0),
        percentile(&full, 99.0)
    );
}
