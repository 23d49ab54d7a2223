//! The binary's fleet commands (`sosna fleet publish`, `sosna fleet status`): the
//! operator's side of OTA rollouts. Part of the `sosna` binary, not the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use sosna::config::bus::BusConfig;
use sosna::config::{Config, DEFAULT_PATH};
use sosna_bus::Verified;
use sosna_bus::{swarm, BusEvent, Identity};
use sosna_ota::rollout::publish::{digest_file, waves, Tally};
use sosna_proto::bus::envelope::now_ms;
use sosna_proto::bus::messages::{Message, RolloutNotice, UpdateState};

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The operator's provisioning file: its [bus] says how to reach the fleet, and its
    /// state directory holds the key nodes must list in [rollout] operators.
    #[arg(long, short, default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// The signed RAUC bundle, as nodes will download it (its sha256 and size are sent).
    bundle: PathBuf,
    /// Where nodes download the bundle (http or https).
    #[arg(long)]
    url: String,
    /// The release the bundle installs.
    #[arg(long)]
    version: String,
    /// Cumulative percent of the fleet in each wave.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    waves: Vec<u8>,
    /// Seconds between the starts of two waves.
    #[arg(long, default_value_t = 600)]
    wave_secs: u64,
    /// Halt the rollout once more nodes than this report failure.
    #[arg(long, default_value_t = 0)]
    max_failures: usize,
    /// Finish once this many nodes run the new version (else run until Ctrl-C).
    #[arg(long)]
    expect: Option<usize>,
    /// Seconds between two repeats of the notice (nodes that join late hear it).
    #[arg(long, default_value_t = 5)]
    every: u64,
    /// The version is older than what nodes run, on purpose: nodes refuse it otherwise.
    #[arg(long)]
    allow_downgrade: bool,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[arg(long, short, default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Seconds to listen for nodes' reports (they report every [rollout] report_secs).
    #[arg(long, default_value_t = 15)]
    secs: u64,
}

fn operator(config: &std::path::Path) -> anyhow::Result<(Config, Identity)> {
    let config = Config::load(config)?;
    let identity = Identity::load_or_create(&BusConfig::state_dir(&config.state_dir))
        .context("operator key")?;
    Ok((config, identity))
}

fn report_of(event: BusEvent) -> Option<(Verified, sosna_proto::bus::messages::UpdateReport)> {
    match event {
        BusEvent::Message(v) => match &v.message {
            Message::UpdateReport(r) => {
                let r = r.clone();
                Some((v, r))
            }
            _ => None,
        },
        _ => None,
    }
}

/// `sosna fleet publish`: returns the exit code (1 if the rollout was halted).
pub async fn publish(a: PublishArgs) -> anyhow::Result<i32> {
    let (config, identity) = operator(&a.config)?;
    let (sha256, size) = digest_file(&a.bundle)?;
    let mut notice = RolloutNotice {
        version: a.version.clone(),
        url: a.url.clone(),
        sha256,
        size,
        waves: waves(&a.waves, now_ms(), Duration::from_secs(a.wave_secs))?,
        halted: false,
        issued_ms: now_ms(),
        allow_downgrade: a.allow_downgrade,
    };
    Message::RolloutNotice(notice.clone())
        .check(identity.address())
        .map_err(|e| anyhow::anyhow!("notice: {e}"))?;
    let (bus, mut events) = swarm::spawn(&identity, config.bus.swarm())?;
    eprintln!(
        "publishing {} ({size} bytes, sha256 {sha256}) signed by operator {}; waves {:?} every {} s",
        a.version,
        identity.address(),
        a.waves,
        a.wave_secs
    );
    let mut tick = tokio::time::interval(Duration::from_secs(a.every.max(1)));
    let mut tally = Tally::default();
    let mut halted_repeats = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                print!("{}", tally.render());
                return Ok(0);
            }
            _ = tick.tick() => {
                if let Err(e) = bus.publish(Message::RolloutNotice(notice.clone())).await {
                    eprintln!("  (not published yet: {e})");
                }
                if notice.halted {
                    halted_repeats += 1;
                    if halted_repeats > 3 {
                        print!("{}", tally.render());
                        return Ok(1);
                    }
                }
            }
            event = events.recv() => {
                let Some(event) = event else { anyhow::bail!("the bus stopped") };
                let Some((v, report)) = report_of(event) else { continue };
                if !tally.record(v.from, report.clone()) {
                    continue;
                }
                eprintln!(
                    "  {}: {} {:?} {}",
                    v.from, report.running, report.state, report.detail
                );
                if tally.should_halt(&notice, a.max_failures) {
                    eprintln!(
                        "halting: {} nodes failed (more than {})",
                        tally.count(&notice.version, UpdateState::Failed),
                        a.max_failures
                    );
                    notice.halted = true;
                    notice.issued_ms = now_ms();
                    tick.reset_immediately();
                }
                let good = tally.count(&notice.version, UpdateState::Good);
                if a.expect.is_some_and(|n| good >= n) {
                    print!("{}", tally.render());
                    eprintln!("{good} nodes run {}", notice.version);
                    return Ok(0);
                }
            }
        }
    }
}

/// `sosna fleet status`: listens for reports, then prints them.
pub async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let (config, identity) = operator(&a.config)?;
    let (_bus, mut events) = swarm::spawn(&identity, config.bus.swarm())?;
    let mut tally = Tally::default();
    let until = tokio::time::Instant::now() + Duration::from_secs(a.secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => break,
            event = events.recv() => {
                let Some(event) = event else { break };
                if let Some((v, report)) = report_of(event) {
                    tally.record(v.from, report);
                }
            }
        }
    }
    print!("{}", tally.render());
    Ok(())
}
