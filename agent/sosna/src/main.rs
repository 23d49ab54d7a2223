//! The `sosna` binary. As PID 1 it is the image's init; otherwise a CLI and host daemon.

mod cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sosna::config::{Config, Role, DEFAULT_PATH, EXAMPLE};
use sosna_init::power::PowerRequest;
use sosna_runtime::shim;

use cli::containers::{self, AgentSocket, RunArgs};
use cli::update::UpdateAction;
use cli::Blocking;

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
        /// Call the node at this bus address (`/ip4/…/tcp/4001/p2p/<peer id>`) instead, as
        /// this node's key; the node must trust it (`[slave] trusted_peers`).
        #[arg(long)]
        peer: Option<String>,
        /// Provisioning file whose state holds this node's bus key (with `--peer`).
        #[arg(long, default_value = DEFAULT_PATH)]
        config: PathBuf,
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
        Command::Run(args) => std::process::exit(containers::run(args)?),
        Command::Ps { agent } => containers::ps(&agent)?,
        Command::Logs { id, agent } => containers::logs(&agent, id)?,
        Command::Kill { id, signal, agent } => containers::kill(&agent, id, signal)?,
        Command::Rm { id, force, agent } => containers::rm(&agent, id, force)?,
        Command::Pull { reference, agent } => containers::pull(&agent, reference)?,
        Command::Images { agent } => containers::images(&agent)?,
        Command::Rmi { reference, agent } => containers::rmi(&agent, reference)?,
        Command::Gc { agent } => containers::gc(&agent)?,
        Command::Call {
            locator,
            peer,
            config,
            timeout,
            service,
            method,
            args,
        } => {
            let target = cli::slave::Target {
                locator: &locator,
                peer: peer.as_deref(),
                config: &config,
            };
            cli::slave::call(target, timeout, &service, &method, &args)?
        }
        Command::Hubs { config } => cli::bus::hubs(&config)?,
        Command::BusId { config } => cli::bus::bus_id(&config)?,
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
        Command::Flash { image, device } => cli::flash::flash(&image, &device)?,
        Command::Poweroff => cli::power::ask_init(PowerRequest::Poweroff)?,
        Command::Reboot => cli::power::ask_init(PowerRequest::Reboot)?,
        Command::Update { action } => cli::update::update(action)?,
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
