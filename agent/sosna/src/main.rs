//! The `sosna` binary. As PID 1 it is the image's init; otherwise a CLI and host daemon.

mod cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sosna::config::bus::BusConfig;
use sosna::config::{Config, Role, DEFAULT_PATH, EXAMPLE};
use sosna_bus::Identity;
use sosna_init::power::{signal_for, PowerRequest};
use sosna_market::miner::hubbook::{HubBook, BOOK_FILE};
use sosna_proto::task::{NetworkMode, Restart};
use sosna_runtime::api::{self, Request};
use sosna_runtime::{shim, ContainerInfo, Outcome, TaskSpec};

#[derive(Parser)]
#[command(
    name = "sosna",
    version,
    about = "sosna: rent out idle compute as a decentralized fog cloud",
    long_about = "sosna: rent out idle compute as a decentralized fog cloud.\n\n\
        Roles: miner (runs tasks in containers; the image's default), hub (finds miners, \
        dispatches, verifies, pays). As PID 1 on the sosna image this binary is the init \
        system; elsewhere it is this CLI."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent as a host daemon until SIGINT/SIGTERM.
    Daemon {
        /// Provisioning file (TOML). Absent default file means all defaults.
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// Override the file's role.
        #[arg(long, value_enum)]
        role: Option<Role>,
    },
    /// Work with provisioning files.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Run a container: pulls IMAGE if needed, waits for it and prints its output
    /// (exit status is the container's), or prints its id with --detach.
    Run(RunArgs),
    /// List containers.
    Ps {
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// Print a container's stdout and stderr so far.
    Logs {
        id: String,
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// Signal a running container (SIGKILL by default); it is not restarted.
    Kill {
        id: String,
        #[arg(long, short, default_value_t = 9)]
        signal: i32,
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// Delete a stopped container and its logs.
    Rm {
        id: String,
        /// Kill it first if it is running.
        #[arg(long, short)]
        force: bool,
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// Pull an image (registry/repo:tag or registry/repo@sha256:...).
    Pull {
        reference: String,
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// List pulled images.
    Images {
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// Forget an image; `sosna gc` then frees its space.
    Rmi {
        reference: String,
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// Delete blobs and layers no image or container uses.
    Gc {
        #[command(flatten)]
        agent: AgentSocket,
    },
    /// (internal) Supervise one container; started by the agent.
    #[command(hide = true)]
    Shim { dir: PathBuf },
    /// Call a slave-protocol service, e.g. `sosna call storage read apps key`.
    Call {
        /// The locator to resolve the service with.
        #[arg(long, default_value = "127.0.0.1:10053")]
        locator: String,
        /// Seconds to wait for the whole reply.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
        service: String,
        method: String,
        /// Arguments: JSON values, or plain strings when not JSON.
        args: Vec<String>,
    },
    /// Print the hub book: hubs heard on the bus and how far this miner trusts each.
    Hubs {
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print this node's bus identity (libp2p peer id, Ethereum address), creating it if new.
    BusId {
        #[arg(long, short, default_value = DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Hub operators: create this node's HubWallet.
    Hub {
        #[command(subcommand)]
        action: HubAction,
    },
    /// Buy a task run: escrow the price on the Market naming a hub, hand the hub the task,
    /// follow it, check the result against the digest committed on chain, and confirm.
    /// Prints the task's stdout; exits with its exit code.
    Buy(cli::market::BuyArgs),
    /// Fleet operators: OTA rollouts over the bus.
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Write a disk image to a block device (or file) and verify it by reading it back.
    /// Refuses a device that is mounted, holds the running system or is otherwise in use.
    Flash {
        /// The disk image, e.g. target/image/x86_64/disk.img.
        image: PathBuf,
        /// The whole device to overwrite, e.g. /dev/sdb (everything on it is lost).
        device: PathBuf,
    },
    /// Over-the-air updates of the disk image (through RAUC).
    Update {
        #[command(subcommand)]
        action: UpdateAction,
    },
    /// (internal) RAUC's custom boot backend; RAUC runs it as `rauc-backend`.
    #[command(hide = true)]
    RaucBackend {
        #[arg(allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// (internal) RAUC's post-install handler; RAUC runs it as `rauc-post-install`.
    #[command(hide = true)]
    RaucPostInstall,
    /// Ask PID 1 (on the sosna image) to power off.
    Poweroff,
    /// Ask PID 1 (on the sosna image) to reboot.
    Reboot,
}

#[derive(clap::Args)]
struct AgentSocket {
    /// The agent's control socket.
    #[arg(long, env = "SOSNA_SOCKET", default_value = "/run/sosna/agent.sock")]
    socket: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
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

#[derive(Subcommand)]
enum FleetAction {
    /// Sign a rollout notice for a bundle and publish it on sosna/updates/1 in waves,
    /// following the nodes' reports; halts past the failure threshold.
    Publish(cli::fleet::PublishArgs),
    /// Listen for the nodes' update reports and print versions and slot states.
    Status(cli::fleet::StatusArgs),
}

#[derive(Subcommand)]
enum HubAction {
    /// Create a HubWallet owned by this node's key through the HubFactory (which lists it
    /// in the Whitelist), fund it with a deposit, and print its address.
    Register(cli::market::RegisterArgs),
}

#[derive(Subcommand)]
enum UpdateAction {
    /// Install a signed RAUC bundle into the other slot (a path, or an http:// URL that
    /// is downloaded with resume); the next boot tries it.
    Install {
        bundle: String,
        /// Expected sha256 of the bundle (hex).
        #[arg(long)]
        sha256: Option<String>,
        /// Do nothing if this bundle (by sha256) was installed before.
        #[arg(long)]
        once: bool,
        /// Reboot into the new slot once installed.
        #[arg(long, conflicts_with = "poweroff")]
        reboot: bool,
        /// Power off once installed.
        #[arg(long)]
        poweroff: bool,
    },
    /// Show this image's version and the slots as RAUC sees them.
    Status,
    /// Mark the booted slot good (keep it) or bad (fall back on the next boot).
    Mark {
        #[arg(value_parser = ["good", "bad"])]
        state: String,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Validate a provisioning file; errors name the bad field.
    Check { file: PathBuf },
    /// Print a documented provisioning file with every default.
    Example,
}

fn main() -> anyhow::Result<()> {
    if std::process::id() == 1 {
        // The kernel passes unknown boot words as arguments; PID 1 ignores argv.
        sosna::pid1::run();
    }
    // RAUC runs this binary through symlinks named after its handler roles.
    let argv0 = std::env::args().next().unwrap_or_default();
    let role = std::path::Path::new(&argv0).file_name();
    let command = if role == Some("rauc-backend".as_ref()) {
        Command::RaucBackend {
            args: std::env::args().skip(1).collect(),
        }
    } else if role == Some("rauc-post-install".as_ref()) {
        Command::RaucPostInstall
    } else {
        Cli::parse().command
    };
    match command {
        Command::Daemon { config, role } => {
            let mut cfg = Config::load(&config)?;
            if let Some(role) = role {
                cfg.role = role;
            }
            sosna::daemon::run(&cfg)?;
        }
        Command::Config {
            action: ConfigAction::Check { file },
        } => {
            Config::load(&file)?;
            println!("{}: ok", file.display());
        }
        Command::Config {
            action: ConfigAction::Example,
        } => print!("{EXAMPLE}"),
        Command::Shim { dir } => {
            sosna_init::logging::init("warn");
            std::process::exit(shim::main(&dir));
        }
        Command::Run(args) => std::process::exit(run_container(args)?),
        Command::Ps { agent } => {
            let v = call(&agent, Request::Ps {}).await_blocking()?;
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
        }
        Command::Logs { id, agent } => {
            let v = call(&agent, Request::Logs { id }).await_blocking()?;
            print!("{}", v["stdout"].as_str().unwrap_or_default());
            eprint!("{}", v["stderr"].as_str().unwrap_or_default());
        }
        Command::Kill { id, signal, agent } => {
            let hit = call(
                &agent,
                Request::Kill {
                    id: id.clone(),
                    signal,
                },
            )
            .await_blocking()?;
            if hit != serde_json::Value::Bool(true) {
                anyhow::bail!("{id} is not running");
            }
        }
        Command::Rm { id, force, agent } => {
            call(&agent, Request::Rm { id, force }).await_blocking()?;
        }
        Command::Pull { reference, agent } => {
            let v = call_with(&agent, Request::Pull { reference }, &mut |p| {
                eprintln!("{p}");
            })
            .await_blocking()?;
            println!("{}", v["manifest"].as_str().unwrap_or_default());
        }
        Command::Images { agent } => {
            let v = call(&agent, Request::Images {}).await_blocking()?;
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
        }
        Command::Rmi { reference, agent } => {
            let had = call(
                &agent,
                Request::Rmi {
                    reference: reference.clone(),
                },
            )
            .await_blocking()?;
            if had != serde_json::Value::Bool(true) {
                anyhow::bail!("no image {reference}");
            }
        }
        Command::Gc { agent } => {
            let v = call(&agent, Request::Gc {}).await_blocking()?;
            println!("{v}");
        }
        Command::Call {
            locator,
            timeout,
            service,
            method,
            args,
        } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let timeout = std::time::Duration::from_secs(timeout);
            let call = sosna_slave::client::call_cli(&locator, &service, &method, &args);
            let lines = rt.block_on(async { tokio::time::timeout(timeout, call).await });
            let lines = lines.with_context(|| format!("no reply within {timeout:?}"))??;
            for line in lines {
                println!("{line}");
            }
        }
        Command::Hubs { config } => {
            let state = BusConfig::state_dir(&Config::load(&config)?.state_dir);
            let path = state.join(BOOK_FILE);
            let book =
                HubBook::load(&path).with_context(|| format!("hub book {}", path.display()))?;
            print!("{}", book.render());
        }
        Command::BusId { config } => {
            let state = BusConfig::state_dir(&Config::load(&config)?.state_dir);
            let id = Identity::load_or_create(&state).context("bus identity")?;
            println!("peer_id {}\naddress {}", id.peer_id(), id.address());
        }
        Command::Hub {
            action: HubAction::Register(args),
        } => cli::market::register(args).await_blocking()?,
        Command::Buy(args) => {
            sosna_init::logging::init("warn");
            std::process::exit(cli::market::buy(args).await_blocking()?)
        }
        Command::Fleet {
            action: FleetAction::Publish(args),
        } => std::process::exit(cli::fleet::publish(args).await_blocking()?),
        Command::Fleet {
            action: FleetAction::Status(args),
        } => cli::fleet::status(args).await_blocking()?,
        Command::Flash { image, device } => flash(&image, &device)?,
        Command::Poweroff => ask_init(PowerRequest::Poweroff)?,
        Command::Reboot => ask_init(PowerRequest::Reboot)?,
        Command::Update { action } => update(action)?,
        Command::RaucBackend { args } => {
            use sosna_ota::backend;
            let op = backend::Op::parse(&args)?;
            let esp = std::path::Path::new(sosna_ota::ESP);
            if let Some(out) = backend::run(esp, &op).with_context(|| format!("{args:?}"))? {
                println!("{out}");
            }
        }
        Command::RaucPostInstall => {
            let esp = std::path::Path::new(sosna_ota::ESP);
            sosna_ota::backend::post_install(esp, &|k| std::env::var(k).ok())?;
        }
    }
    Ok(())
}

fn update(action: UpdateAction) -> anyhow::Result<()> {
    use sosna_ota::cli;
    match action {
        UpdateAction::Install {
            bundle,
            sha256,
            once,
            reboot,
            poweroff,
        } => {
            let done = cli::install(&bundle, sha256.as_deref(), once).await_blocking()?;
            if matches!(done, cli::Installed::Done { .. }) {
                if reboot {
                    ask_init(PowerRequest::Reboot)?;
                } else if poweroff {
                    ask_init(PowerRequest::Poweroff)?;
                }
            }
        }
        UpdateAction::Status => print!("{}", cli::status().await_blocking()?),
        UpdateAction::Mark { state } => {
            println!("{}", cli::mark(state == "good").await_blocking()?)
        }
    }
    Ok(())
}

/// Runs a future on a small runtime: the CLI's calls are one request each.
trait Blocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(self)
    }
}
impl<F: std::future::Future> Blocking for F {}

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
fn run_container(a: RunArgs) -> anyhow::Result<i32> {
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

fn ask_init(req: PowerRequest) -> anyhow::Result<()> {
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    anyhow::ensure!(
        comm.trim() == "sosna" || comm.trim() == "init",
        "PID 1 is {:?}, not the sosna agent; refusing to signal it",
        comm.trim()
    );
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(1), signal_for(req))
        .context("signal PID 1")?;
    Ok(())
}

fn flash(image: &std::path::Path, device: &std::path::Path) -> anyhow::Result<()> {
    let mut last = (String::new(), 0u64);
    let r = sosna::flash::flash(image, device, &mut |phase, done, total| {
        // One line per phase and 10 %, not per chunk.
        let tenth = done * 10 / total.max(1);
        if (phase, tenth) != (last.0.as_str(), last.1) {
            eprintln!("{phase} {:>3} % ({done} of {total} bytes)", tenth * 10);
            last = (phase.to_owned(), tenth);
        }
    })
    .with_context(|| format!("flash {} to {}", image.display(), device.display()))?;
    println!(
        "flashed {} bytes to {} in {:.1} s, verified in {:.1} s, sha256 {}",
        r.bytes,
        device.display(),
        r.write_time.as_secs_f64(),
        r.verify_time.as_secs_f64(),
        r.sha256
    );
    Ok(())
}
