//! The `sosna` binary. As PID 1 it is the image's init; otherwise a CLI and host daemon.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sosna_agent::bus::hubbook::{HubBook, BOOK_FILE};
use sosna_agent::bus::{BusConfig, Identity};
use sosna_agent::config::{Config, Role, DEFAULT_PATH, EXAMPLE};
use sosna_agent::power::{signal_for, PowerRequest};

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
    Run {
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
    /// Ask PID 1 (on the sosna image) to power off.
    Poweroff,
    /// Ask PID 1 (on the sosna image) to reboot.
    Reboot,
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
        sosna_agent::init::run();
    }
    match Cli::parse().command {
        Command::Run { config, role } => {
            let mut cfg = Config::load(&config)?;
            if let Some(role) = role {
                cfg.role = role;
            }
            sosna_agent::daemon::run(&cfg)?;
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
        Command::Poweroff => ask_init(PowerRequest::Poweroff)?,
        Command::Reboot => ask_init(PowerRequest::Reboot)?,
    }
    Ok(())
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
