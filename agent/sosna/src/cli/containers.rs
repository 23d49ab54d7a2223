//! Containers on the local agent: `sosna run|ps|logs|kill|rm|pull|images|rmi|gc`, one
//! request each over the agent's control socket.

use std::path::PathBuf;

use sosna_proto::task::{NetworkMode, Restart};
use sosna_runtime::api::{self, Request};
use sosna_runtime::{ContainerInfo, Outcome, TaskSpec};

use super::Blocking;

#[derive(clap::Args)]
pub struct AgentSocket {
    /// The agent's control socket.
    #[arg(long, env = "SOSNA_SOCKET", default_value = "/run/sosna/agent.sock")]
    pub socket: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    image: String,
    /// Program and arguments (default: the image's entrypoint and cmd).
    #[arg(last = true)]
    command: Vec<String>,
    /// Print the id and return instead of waiting.
    #[arg(long, short)]
    detach: bool,
    /// Extra environment, KEY=value.
    #[arg(long, short)]
    env: Vec<String>,
    #[arg(long, short)]
    workdir: Option<String>,
    /// uid[:gid]
    #[arg(long, short)]
    user: Option<String>,
    /// Memory limit, e.g. 64m, 1g (bytes without a suffix).
    #[arg(long, short, value_parser = parse_size)]
    memory: Option<u64>,
    /// Most processes at once.
    #[arg(long)]
    pids: Option<i64>,
    /// CPU quota as a number of CPUs, e.g. 0.5.
    #[arg(long)]
    cpus: Option<f64>,
    /// Kill the container after this many seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Let the container write to its root filesystem.
    #[arg(long)]
    writable: bool,
    /// Writable tmpfs mounted at this path.
    #[arg(long)]
    tmpfs: Vec<String>,
    /// never | on-failure | always
    #[arg(long, default_value = "never", value_parser = parse_restart)]
    restart: Restart,
    /// none (loopback only) | nat (a veth to the host, NATed out of its uplink)
    #[arg(long, default_value = "none")]
    network: NetworkMode,
    #[command(flatten)]
    agent: AgentSocket,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.trim_end_matches('b').chars().last() {
        Some('k') => (&lower[..lower.find('k').unwrap_or(0)], 1u64 << 10),
        Some('m') => (&lower[..lower.find('m').unwrap_or(0)], 1 << 20),
        Some('g') => (&lower[..lower.find('g').unwrap_or(0)], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a size like 512k, 64m or 1g"))
}

fn parse_restart(s: &str) -> Result<Restart, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("{s:?}: expected never, on-failure or always"))
}

async fn call(agent: &AgentSocket, req: Request) -> anyhow::Result<serde_json::Value> {
    call_with(agent, req, &mut |_| {}).await
}

async fn call_with(
    agent: &AgentSocket,
    req: Request,
    progress: &mut dyn FnMut(&serde_json::Value),
) -> anyhow::Result<serde_json::Value> {
    let mut client = api::Client::connect(&agent.socket).await?;
    Ok(client.call(&req, progress).await?)
}

/// `sosna run`: returns the exit status to leave with.
pub fn run(a: RunArgs) -> anyhow::Result<i32> {
    let mut task = TaskSpec {
        image: a.image,
        args: a.command,
        env: a.env,
        workdir: a.workdir.unwrap_or_default(),
        user: a.user.unwrap_or_default(),
        timeout_secs: a.timeout.unwrap_or(0),
        writable_rootfs: a.writable,
        tmpfs: a.tmpfs,
        restart: a.restart,
        network: a.network,
        ..Default::default()
    };
    if let Some(m) = a.memory {
        task.resources.memory_bytes = m;
    }
    if let Some(p) = a.pids {
        task.resources.pids = p;
    }
    if let Some(c) = a.cpus {
        task.resources.cpus = c;
    }
    task.validate()?;
    async {
        let mut client = api::Client::connect(&a.agent.socket).await?;
        let id = client.call(&Request::Run { task }, &mut |_| {}).await?;
        let id = id.as_str().unwrap_or_default().to_string();
        if a.detach {
            println!("{id}");
            return Ok(0);
        }
        let outcome = client
            .call(&Request::Wait { id: id.clone() }, &mut |_| {})
            .await?;
        let outcome: Outcome = serde_json::from_value(outcome)?;
        let logs = client
            .call(&Request::Logs { id: id.clone() }, &mut |_| {})
            .await?;
        print!("{}", logs["stdout"].as_str().unwrap_or_default());
        eprint!("{}", logs["stderr"].as_str().unwrap_or_default());
        if let Some(e) = &outcome.error {
            anyhow::bail!("container {id}: {e}");
        }
        if outcome.oom_killed || outcome.timed_out || outcome.signal.is_some() {
            eprintln!("container {id}: {outcome}");
        }
        Ok(outcome
            .exit_code
            .unwrap_or_else(|| 128 + outcome.signal.unwrap_or(0)))
    }
    .await_blocking()
}

pub fn ps(agent: &AgentSocket) -> anyhow::Result<()> {
    let v = call(agent, Request::Ps {}).await_blocking()?;
    let list: Vec<ContainerInfo> = serde_json::from_value(v)?;
    println!(
        "{:<16}  {:<8}  {:>8}  {:<28}  IMAGE",
        "ID", "STATE", "RESTARTS", "OUTCOME"
    );
    for c in list {
        let state = if c.running { "running" } else { "exited" };
        let outcome = c.outcome.map(|o| o.to_string()).unwrap_or_default();
        println!(
            "{:<16}  {state:<8}  {:>8}  {outcome:<28}  {}",
            c.id, c.restarts, c.image
        );
    }
    Ok(())
}

pub fn logs(agent: &AgentSocket, id: String) -> anyhow::Result<()> {
    let v = call(agent, Request::Logs { id }).await_blocking()?;
    print!("{}", v["stdout"].as_str().unwrap_or_default());
    eprint!("{}", v["stderr"].as_str().unwrap_or_default());
    Ok(())
}

pub fn kill(agent: &AgentSocket, id: String, signal: i32) -> anyhow::Result<()> {
    let hit = call(
        agent,
        Request::Kill {
            id: id.clone(),
            signal,
        },
    )
    .await_blocking()?;
    if hit != serde_json::Value::Bool(true) {
        anyhow::bail!("{id} is not running");
    }
    Ok(())
}

pub fn rm(agent: &AgentSocket, id: String, force: bool) -> anyhow::Result<()> {
    call(agent, Request::Rm { id, force }).await_blocking()?;
    Ok(())
}

pub fn pull(agent: &AgentSocket, reference: String) -> anyhow::Result<()> {
    let v = call_with(agent, Request::Pull { reference }, &mut |p| {
        eprintln!("{p}");
    })
    .await_blocking()?;
    println!("{}", v["manifest"].as_str().unwrap_or_default());
    Ok(())
}

pub fn images(agent: &AgentSocket) -> anyhow::Result<()> {
    let v = call(agent, Request::Images {}).await_blocking()?;
    let list: Vec<sosna_runtime::store::ImageRecord> = serde_json::from_value(v)?;
    println!("{:<12}  {:>10}  REFERENCE", "MANIFEST", "SIZE");
    for i in list {
        println!(
            "{:<12}  {:>10}  {}",
            i.manifest.short(),
            i.size,
            i.reference
        );
    }
    Ok(())
}

pub fn rmi(agent: &AgentSocket, reference: String) -> anyhow::Result<()> {
    let had = call(
        agent,
        Request::Rmi {
            reference: reference.clone(),
        },
    )
    .await_blocking()?;
    if had != serde_json::Value::Bool(true) {
        anyhow::bail!("no image {reference}");
    }
    Ok(())
}

pub fn gc(agent: &AgentSocket) -> anyhow::Result<()> {
    let v = call(agent, Request::Gc {}).await_blocking()?;
    println!("{v}");
    Ok(())
}
