//! The binary's market commands (`sosna hub register`, `sosna buy`): part of the `sosna`
//! binary, not the library, so errors are `anyhow` and the story goes to stderr.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy_primitives::utils::{format_ether, parse_ether};
use alloy_primitives::U256;
use anyhow::{bail, Context};
use libp2p::Multiaddr;
use sosna::config::bus::BusConfig;
use sosna::config::Config;
use sosna_bus::{swarm, Identity, SwarmSettings};
use sosna_chain::sender::Sender;
use sosna_chain::{self as chain, ChainConfig};
use sosna_contracts::Deployment;
use sosna_market::buyer::{BuyError, Buyer, HubAddr, Order};
use sosna_market::hub::hub_wallet;
use sosna_proto::bus::messages::JobPhase;
use sosna_runtime::TaskSpec;

#[derive(clap::Args)]
pub struct BuyArgs {
    /// Provisioning file: its [chain] section says where the chain is, and its state
    /// directory holds the buyer's key (`sosna bus-id` shows the address) and tx journal.
    #[arg(long, short, default_value = sosna::config::DEFAULT_PATH)]
    config: PathBuf,
    /// The hub's multiaddr, ending in /p2p/<peer id>.
    #[arg(long)]
    hub: Multiaddr,
    /// Most SNM the task may cost: escrowed on the Market, paid on confirmation.
    #[arg(long, default_value = "10", value_parser = parse_snm)]
    price: U256,
    /// Distinct miners to run the task; a strict majority decides the result.
    #[arg(long, default_value_t = 3)]
    replicas: u16,
    /// Seconds until the deal's deadline: without a result by then, the price comes back.
    #[arg(long, default_value_t = 600)]
    deadline: u64,
    /// Kill the task after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Memory limit in bytes (0: the miner's default).
    #[arg(long, default_value_t = 0)]
    memory: u64,
    /// CPU quota as a number of CPUs, e.g. 0.5 (0: no quota).
    #[arg(long, default_value_t = 0.0)]
    cpus: f64,
    /// Write the job's status, transactions and timings here as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    image: String,
    /// Program and arguments (default: the image's).
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct RegisterArgs {
    #[arg(long, short, default_value = sosna::config::DEFAULT_PATH)]
    config: PathBuf,
    /// Name shown to miners and listed in the Whitelist.
    #[arg(long)]
    name: String,
    /// Where miners reach the hub, listed in the Whitelist.
    #[arg(long)]
    multiaddr: String,
    /// SNM deposited into the new wallet, from which miners are paid.
    #[arg(long, default_value = "100", value_parser = parse_snm)]
    deposit: U256,
}

fn parse_snm(s: &str) -> Result<U256, String> {
    parse_ether(s).map_err(|e| format!("{s:?} is not an SNM amount like 10 or 0.5: {e}"))
}

fn snm(wei: U256) -> String {
    let text = format_ether(wei);
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed} SNM")
}

struct Node {
    identity: Identity,
    deployment: Deployment,
    sender: Sender,
}

async fn node(path: &Path) -> anyhow::Result<Node> {
    let config = Config::load(path)?;
    if !config.chain.enabled() {
        bail!(
            "{}: [chain] rpc_url and deployment are needed",
            path.display()
        );
    }
    let deployment = chain::deployment(&config.chain)?;
    let dir = BusConfig::state_dir(&config.state_dir);
    let identity = Identity::load_or_create(&dir).context("node key")?;
    let provider = chain::connect(&config.chain.rpc_url, config.chain.timeout())?;
    let sender = Sender::open(
        provider,
        identity.eth.clone(),
        &ChainConfig::state_dir(&config.state_dir),
        &config.chain,
    )
    .await?;
    Ok(Node {
        identity,
        deployment,
        sender,
    })
}

/// `sosna hub register`: prints the new wallet's address.
pub async fn register(a: RegisterArgs) -> anyhow::Result<()> {
    let n = node(&a.config).await?;
    eprintln!(
        "registering hub {:?} owned by {} with a deposit of {}",
        a.name,
        n.identity.address(),
        snm(a.deposit)
    );
    let (wallet, tx) =
        hub_wallet::register(&n.sender, &n.deployment, &a.multiaddr, &a.name, a.deposit).await?;
    eprintln!("HubWallet {wallet} created and whitelisted (tx {tx})");
    eprintln!("set [bus.hub] wallet = \"{wallet}\" and run `sosna daemon --role hub`");
    println!("{wallet}");
    Ok(())
}

/// `sosna buy`: returns the task's exit code.
pub async fn buy(a: BuyArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let n = node(&a.config).await?;
    let Some(peer) = swarm::peer_of(&a.hub) else {
        bail!("--hub {} has no /p2p/<peer id>", a.hub);
    };
    let spec = TaskSpec {
        image: a.image.clone(),
        args: a.command.clone(),
        timeout_secs: a.timeout,
        resources: sosna_proto::task::Resources {
            memory_bytes: a.memory,
            cpus: a.cpus,
            ..Default::default()
        },
        ..Default::default()
    };
    spec.validate()?;
    let order = Order {
        spec,
        price: a.price,
        replicas: a.replicas,
        deadline_secs: a.deadline,
    };
    // A client-only swarm: it dials the hub and listens nowhere.
    let settings = SwarmSettings {
        listen: Vec::new(),
        mdns: false,
        request_timeout: Duration::from_secs(20),
        ..SwarmSettings::default()
    };
    let (bus, _events) = swarm::spawn(&n.identity, settings)?;
    let hub = HubAddr {
        peer,
        addrs: vec![a.hub.clone()],
    };
    let buyer = Buyer {
        sender: &n.sender,
        deployment: &n.deployment,
        bus: &bus,
    };
    let wallet = buyer.hub_wallet(&hub).await?;
    eprintln!(
        "buyer {} opens a deal with hub {wallet} for at most {}: {} replicas of `{}`, deadline in {} s",
        n.sender.address(),
        snm(a.price),
        a.replicas,
        std::iter::once(a.image.as_str())
            .chain(a.command.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        a.deadline
    );
    let opened = buyer.open(wallet, &order).await?;
    for tx in &opened.txs {
        eprintln!("  {}: tx {} (block {})", tx.label, tx.hash, tx.block);
    }
    let deal = opened.deal.clone();
    eprintln!("deal {} is open; the price is in escrow", deal.id);
    buyer.submit(&hub, &deal, &order).await?;
    eprintln!("the hub took the task");
    let followed = buyer
        .follow(&hub, &deal, Duration::from_millis(500), |s| {
            eprintln!("  {:<8} {}", phase(s.phase), s.detail)
        })
        .await;
    let status = match followed {
        Ok(s) => s,
        Err(BuyError::Failed(why)) => bail!("the hub gave up: {why}"),
        Err(BuyError::Deadline(why)) => {
            eprintln!("no result by the deadline ({why}); cancelling the deal");
            let tx = refund(&buyer, &deal).await?;
            bail!(
                "deal {} cancelled, {} refunded (tx {})",
                deal.id,
                snm(a.price),
                tx
            );
        }
        Err(e) => return Err(e.into()),
    };
    for (what, hash) in &status.txs {
        eprintln!("  hub's {what}: tx {hash}");
    }
    let result = status
        .result
        .clone()
        .context("the hub says done but sent no result")?;
    let confirmed = buyer.accept(&deal, opened.block, &result).await?;
    eprintln!(
        "result digest {} matches the digest committed on chain",
        result.digest()
    );
    eprintln!(
        "confirmed deal {} (tx {}): {} paid to hub {wallet}",
        deal.id,
        confirmed.hash,
        snm(a.price)
    );
    let t = status.timings;
    let total_ms = started.elapsed().as_millis() as u64;
    eprintln!(
        "phases: dispatch {} ms, pull {} ms, run {} ms, verify {} ms, settle {} ms; total {} ms",
        t.dispatch_ms, t.pull_ms, t.run_ms, t.verify_ms, t.settle_ms, total_ms
    );
    if let Some(path) = &a.report {
        let buyer_gas: u64 =
            opened.txs.iter().map(|t| t.gas_used).sum::<u64>() + confirmed.gas_used;
        let report = serde_json::json!({
            "deal": deal.id.to_string(),
            "wallet": wallet,
            "status": status,
            "buyer_txs": opened.txs.iter().chain([&confirmed]).map(|t| (t.label.clone(), t.hash)).collect::<Vec<_>>(),
            "buyer_gas": buyer_gas,
            "hub_gas": t.settle_gas,
            "total_ms": total_ms,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    use std::io::Write;
    std::io::stdout().write_all(&result.stdout)?;
    Ok(result.exit_code)
}

fn phase(p: JobPhase) -> &'static str {
    match p {
        JobPhase::Running => "running",
        JobPhase::Settling => "settling",
        JobPhase::Done => "done",
        JobPhase::Failed => "failed",
    }
}

/// Cancels once the chain's clock is past the deadline (the Market refuses before).
async fn refund(
    buyer: &Buyer<'_>,
    deal: &sosna_market::hub::settle::Deal,
) -> anyhow::Result<String> {
    let mut last = String::new();
    for _ in 0..30 {
        match buyer.cancel(deal).await {
            Ok(tx) => return Ok(tx.hash.to_string()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    bail!("cancelling deal {}: {last}", deal.id)
}
