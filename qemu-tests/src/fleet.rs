//! A whole sosna fleet on one machine, for the fleet test, the demo and the end-to-end
//! benchmark: anvil with the contracts deployed, an OCI registry holding the task image, a
//! hub (the real `sosna daemon --role hub` on the host), miner VMs booted from the image on
//! a shared L2 segment, and the buyer (the real `sosna buy`). Each step is told through
//! `say`, so the demo can print the story the test checks.
//!
//! The host side runs the x86_64 agent built for the image (static, so it runs here).

use std::future::IntoFuture;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes, U256};
use alloy_provider::Provider;
use alloy_sol_types::SolCall;
use sosna_contracts::devnet::{Devnet, SNM};
use sosna_contracts::{IVerification, ISNM};
use sosna_runtime::build::{self, busybox_layer, Image as OciImage};
use sosna_runtime::pull;
use sosna_testkit::registry::LocalRegistry;

use crate::{HarnessError, Image, Lan, Overlay, Vm, VmConfig};

/// Tells one step of the story.
pub type Say = Arc<dyn Fn(&str) + Send + Sync>;

/// SNM each miner keeps staked with Verification.
pub const STAKE_SNM: u64 = 5;
/// SNM the hub deposits into its wallet, from which miners are paid.
pub const DEPOSIT_SNM: u64 = 100;
/// Repository and tag of the task image in the fleet's registry.
pub const TASK_IMAGE: &str = "busybox:fleet";

const BOOT: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error("{0}")]
    Setup(String),
}

fn setup(what: impl std::fmt::Display) -> FleetError {
    FleetError::Setup(what.to_string())
}

/// The host's `sosna`: `$SOSNA_AGENT`, else the static x86_64 agent the image build made.
pub fn host_agent() -> Result<PathBuf, FleetError> {
    if let Some(p) = std::env::var_os("SOSNA_AGENT") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let agent = target.join("x86_64-unknown-linux-gnu/release/sosna");
    if agent.exists() {
        Ok(agent)
    } else {
        Err(setup(format!(
            "{} is missing: build the x86_64 image first (./dev image x86_64)",
            agent.display()
        )))
    }
}

pub struct FleetOptions {
    pub miners: usize,
    /// Miners (by index) that report forged results.
    pub cheaters: Vec<usize>,
}

pub struct Miner {
    pub name: String,
    pub address: Address,
    pub cheat: bool,
    pub vm: Vm,
}

/// Someone's SNM on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holding {
    pub balance: U256,
    pub stake: U256,
    /// Reserved for them by the hub's wallet and not yet withdrawn.
    pub owed: U256,
}

/// Everyone's SNM at one moment.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub buyer: U256,
    pub wallet: U256,
    pub miners: Vec<Holding>,
}

/// What `sosna buy` did.
pub struct Bought {
    pub stdout: Vec<u8>,
    pub exit_code: i32,
    /// Its `--report` JSON.
    pub report: serde_json::Value,
    pub elapsed: Duration,
}

pub struct Fleet {
    pub chain: Devnet,
    pub wallet: Address,
    pub hub_owner: Address,
    pub buyer: Address,
    /// The hub as the buyer dials it.
    pub hub_multiaddr: String,
    /// The task image as the miners pull it.
    pub task_image: String,
    pub miners: Vec<Miner>,
    agent: PathBuf,
    dir: tempfile::TempDir,
    hub: Option<Child>,
    _registry: LocalRegistry,
    lan: Lan,
    say: Say,
    rt: tokio::runtime::Runtime,
}

fn free_port() -> Result<u16, FleetError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(setup)?;
    Ok(l.local_addr().map_err(setup)?.port())
}

fn write(path: &Path, data: impl AsRef<[u8]>, mode: u32) -> Result<(), FleetError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(setup)?;
    }
    std::fs::write(path, data).map_err(|e| setup(format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(setup)
}

/// `wei` as SNM for people, e.g. "2.5 SNM".
pub fn snm(wei: U256) -> String {
    let text = alloy_primitives::utils::format_ether(wei);
    format!("{} SNM", text.trim_end_matches('0').trim_end_matches('.'))
}

impl Fleet {
    /// Brings the whole fleet up; returns once every miner joined the hub and staked.
    pub fn start(image: &Image, opts: &FleetOptions, say: Say) -> Result<Fleet, FleetError> {
        let agent = host_agent()?;
        let dir = tempfile::tempdir().map_err(setup)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(setup)?;

        // Keys: 1 is the buyer, 2 the hub's owner, 3.. the miners; all funded with SNM.
        let chain = Devnet::start(2 + opts.miners).map_err(setup)?;
        let d = chain.deployment;
        say(&format!(
            "chain: anvil at {} (chain id {}); contracts deployed: SNM {}, Market {}, HubFactory {}, Verification {}",
            chain.rpc_url(),
            d.chain_id,
            d.snm,
            d.market,
            d.hub_factory,
            d.verification
        ));
        let deployment = dir.path().join("deployment.json");
        write(&deployment, &chain.deployment_json, 0o644)?;

        let registry = LocalRegistry::start(&dir.path().join("registry")).map_err(setup)?;
        let busybox = image.arch.busybox()?;
        let applets = ["sh", "echo", "seq", "wc", "sha256sum", "hostname", "cat"];
        let (layer, diff) = busybox_layer(busybox, &applets).finish();
        let oci = OciImage {
            arch: image.arch.oci().into(),
            layers: vec![(layer, diff)],
            cmd: vec!["/bin/sh".into()],
            env: vec![],
        };
        let client = pull::client(&[registry.host()]).map_err(setup)?;
        let reference = format!("{}/{TASK_IMAGE}", registry.host());
        rt.block_on(build::push(&client, &reference, &[oci]))
            .map_err(setup)?;
        // The hub (here, on the host) cannot reach the registry the way the miners do: the
        // buyer names the image by digest, which the hub takes as pinned.
        let pinned = rt.block_on(pull::pin(&client, &reference)).map_err(setup)?;
        let digest = pinned.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let repository = TASK_IMAGE.split(':').next().unwrap_or(TASK_IMAGE);
        let task_image = format!("10.0.2.2:{}/{repository}@{digest}", registry.port());
        say(&format!(
            "registry: {reference} pushed (miners pull it as {task_image})"
        ));

        let mut fleet = Fleet {
            wallet: Address::ZERO,
            hub_owner: chain.keys[2].address(),
            buyer: chain.keys[1].address(),
            hub_multiaddr: String::new(),
            task_image,
            miners: Vec::new(),
            agent,
            hub: None,
            _registry: registry,
            lan: Lan::new().map_err(setup)?,
            say,
            rt,
            chain,
            dir,
        };
        fleet.start_hub(&deployment)?;
        fleet.write_buyer(&deployment)?;
        for i in 0..opts.miners {
            let cheat = opts.cheaters.contains(&i);
            let miner = fleet.boot_miner(image, i, cheat)?;
            fleet.miners.push(miner);
        }
        fleet.wait_for_miners()?;
        Ok(fleet)
    }

    fn say(&self, line: &str) {
        (self.say)(line)
    }

    fn sosna(&self, args: &[&str]) -> Result<(String, String), FleetError> {
        let out = Command::new(&self.agent)
            .args(args)
            .output()
            .map_err(|e| setup(format!("{}: {e}", self.agent.display())))?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        if !out.status.success() {
            return Err(setup(format!("sosna {args:?}: {}\n{stderr}", out.status)));
        }
        Ok((stdout, stderr))
    }

    /// Registers the hub with the real CLI, then runs it as a host daemon.
    fn start_hub(&mut self, deployment: &Path) -> Result<(), FleetError> {
        let state = self.dir.path().join("hub");
        let key = self.chain.keys[2].to_bytes().to_vec();
        write(&state.join("bus/eth.key"), key, 0o600)?;
        let chain = format!(
            "[chain]\nrpc_url = \"{}\"\ndeployment = \"{}\"\npoll_ms = 200\n",
            self.chain.rpc_url(),
            deployment.display()
        );
        let base = format!(
            "state_dir = \"{}\"\n[log]\nlevel = \"info\"\n[runtime]\nenabled = false\n[slave]\nenabled = false\n{chain}",
            state.display()
        );
        let register = self.dir.path().join("hub-register.toml");
        write(&register, &base, 0o644)?;
        let register = register.to_string_lossy().into_owned();
        let (id, _) = self.sosna(&["bus-id", "--config", &register])?;
        let peer = id
            .lines()
            .find_map(|l| l.strip_prefix("peer_id "))
            .ok_or_else(|| setup(format!("bus-id printed {id:?}")))?
            .to_owned();
        let port = free_port()?;
        let announce = format!("/ip4/10.0.2.2/tcp/{port}/p2p/{peer}");
        let (wallet, told) = self.sosna(&[
            "hub",
            "register",
            "--config",
            &register,
            "--name",
            "fleet-hub",
            "--multiaddr",
            &announce,
            "--deposit",
            &DEPOSIT_SNM.to_string(),
        ])?;
        for line in told.lines() {
            self.say(&format!("hub: {line}"));
        }
        self.wallet = wallet
            .trim()
            .parse()
            .map_err(|e| setup(format!("hub register printed {wallet:?}: {e}")))?;

        let config = self.dir.path().join("hub.toml");
        write(
            &config,
            format!(
                "role = \"hub\"\n{base}[bus]\nenabled = true\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/{port}\"]\n\
                 [bus.hub]\nwallet = \"{}\"\nname = \"fleet-hub\"\nannounce = [\"{announce}\"]\n\
                 announce_interval_secs = 2\ncpu_core_hour = 5000\nmemory_gib_hour = 1000\n\
                 miner_share_percent = 60\ntask_timeout_secs = 300\n",
                self.wallet
            ),
            0o644,
        )?;
        let log = self.dir.path().join("hub.log");
        let file = std::fs::File::create(&log).map_err(setup)?;
        let child = Command::new(&self.agent)
            .args(["daemon", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .process_group(0)
            .spawn()
            .map_err(setup)?;
        self.hub = Some(child);
        self.hub_multiaddr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}");
        self.follow_hub_log(log.clone());
        wait_for(
            "the hub to take deals",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                if let Some(status) = self.hub.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(setup(format!(
                        "the hub daemon exited ({status}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    )));
                }
                Ok(std::fs::read_to_string(&log).is_ok_and(|t| t.contains("takes deals")))
            },
        )?;
        self.say(&format!(
            "hub: `sosna daemon --role hub` listening at {}",
            self.hub_multiaddr
        ));
        Ok(())
    }

    /// Tells the hub's market and join lines as they are logged.
    fn follow_hub_log(&self, log: PathBuf) {
        let say = self.say.clone();
        std::thread::spawn(move || {
            let mut seen = 0usize;
            loop {
                let Ok(text) = std::fs::read_to_string(&log) else {
                    return; // the fleet is gone
                };
                if text.len() > seen {
                    let end = text[..].rfind('\n').map_or(seen, |i| i + 1).max(seen);
                    for line in text[seen..end].lines() {
                        for key in ["market: ", "bus: miner "] {
                            if let Some(i) = line.find(key) {
                                say(&format!("hub: {}", &line[i..]));
                            }
                        }
                    }
                    seen = end;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    }

    fn write_buyer(&self, deployment: &Path) -> Result<(), FleetError> {
        let state = self.dir.path().join("buyer");
        write(
            &state.join("bus/eth.key"),
            self.chain.keys[1].to_bytes(),
            0o600,
        )?;
        write(
            &self.dir.path().join("buyer.toml"),
            format!(
                "state_dir = \"{}\"\n[chain]\nrpc_url = \"{}\"\ndeployment = \"{}\"\npoll_ms = 200\n",
                state.display(),
                self.chain.rpc_url(),
                deployment.display()
            ),
            0o644,
        )
    }

    fn boot_miner(&self, image: &Image, i: usize, cheat: bool) -> Result<Miner, FleetError> {
        let name = format!("miner-{}", i + 1);
        let key = &self.chain.keys[3 + i];
        let hub_port = self
            .hub_multiaddr
            .split('/')
            .nth(4)
            .ok_or_else(|| setup("hub multiaddr without a port"))?;
        let peer = self.hub_multiaddr.rsplit('/').next().unwrap_or_default();
        let registry = self.task_image.split('/').next().unwrap_or_default();
        let config = format!(
            r#"
hostname = "{name}"
[[network.link]]
interface = "eth1"
address = "10.78.0.{n}/24"
[runtime]
insecure_registries = ["{registry}"]
[chain]
rpc_url = "{rpc}"
deployment = "/etc/sosna/deployment.json"
poll_ms = 500
[bus]
enabled = true
listen = ["/ip4/0.0.0.0/tcp/4001"]
bootstrap = ["/ip4/10.0.2.2/tcp/{hub_port}/p2p/{peer}"]
join = "{wallet}"
stake = {stake}
chain_poll_secs = 2
ask_every_secs = 4
min_positive_verdicts = 1
test_fault_wrong_result = {cheat}
"#,
            n = 10 + i,
            rpc = self.chain.guest_rpc_url(),
            wallet = self.wallet,
            stake = STAKE_SNM * 1_000_000,
        );
        let overlay = Overlay::default()
            .file("/etc/sosna/config.toml", 0o644, config)
            .file(
                "/etc/sosna/deployment.json",
                0o644,
                self.chain.deployment_json.clone(),
            )
            .file("/var/lib/sosna/bus/eth.key", 0o600, key.to_bytes().to_vec());
        let vm = Vm::boot(
            VmConfig::new(image.clone())
                .overlay(overlay)
                .on_lan(&self.lan)
                .append("sosna.fatal_delay=1"),
        )?;
        self.say(&format!(
            "{name}: booting the sosna image ({:?}, {}) as miner {}{}",
            image.arch,
            crate::accel(image),
            key.address(),
            if cheat {
                " (fault injection: reports forged results)"
            } else {
                ""
            }
        ));
        Ok(Miner {
            name,
            address: key.address(),
            cheat,
            vm,
        })
    }

    fn wait_for_miners(&mut self) -> Result<(), FleetError> {
        let wallet = self.wallet.to_string();
        for i in 0..self.miners.len() {
            let m = &mut self.miners[i];
            let text =
                m.vm.wait_until(&format!("{} to join the hub", m.name), BOOT, |t| {
                    t.lines()
                        .any(|l| l.contains("bus: joined hub") && l.contains(&wallet))
                })?;
            let ready = text
                .lines()
                .find(|l| l.contains("READY"))
                .unwrap_or_default()
                .to_owned();
            let joined = text
                .lines()
                .find(|l| l.contains("bus: joined hub"))
                .and_then(|l| l.find("bus: joined hub").map(|i| l[i..].to_owned()))
                .unwrap_or_default();
            let name = m.name.clone();
            let elapsed = m.vm.elapsed();
            if !ready.is_empty() {
                self.say(&format!("{name}: {}", ready.trim()));
            }
            self.say(&format!(
                "{name}: {joined} after {:.1} s",
                elapsed.as_secs_f64()
            ));
        }
        let want = U256::from(STAKE_SNM) * U256::from(SNM);
        for i in 0..self.miners.len() {
            let address = self.miners[i].address;
            wait_for(
                &format!("{} to stake", self.miners[i].name),
                Duration::from_secs(120),
                Duration::from_millis(500),
                || Ok(self.holding(address)?.stake >= want),
            )?;
            self.say(&format!(
                "{}: staked {} with Verification",
                self.miners[i].name,
                snm(want)
            ));
        }
        Ok(())
    }

    fn view<C: SolCall>(&self, to: Address, call: C) -> Result<C::Return, FleetError> {
        let provider =
            sosna_chain::connect(&self.chain.rpc_url(), Duration::from_secs(5)).map_err(setup)?;
        let tx = alloy_rpc_types_eth::TransactionRequest::default()
            .to(to)
            .input(Bytes::from(call.abi_encode()).into());
        let out = self
            .rt
            .block_on(provider.call(tx).into_future())
            .map_err(setup)?;
        C::abi_decode_returns(&out).map_err(setup)
    }

    fn balance(&self, who: Address) -> Result<U256, FleetError> {
        self.view(
            self.chain.deployment.snm,
            ISNM::balanceOfCall { account: who },
        )
    }

    pub fn holding(&self, who: Address) -> Result<Holding, FleetError> {
        let d = self.chain.deployment;
        Ok(Holding {
            balance: self.balance(who)?,
            stake: self
                .view(d.verification, IVerification::stakeOfCall { miner: who })?
                .amount,
            owed: self.view(
                d.snm,
                ISNM::allowanceCall {
                    owner: self.wallet,
                    spender: who,
                },
            )?,
        })
    }

    pub fn ledger(&self) -> Result<Ledger, FleetError> {
        Ok(Ledger {
            buyer: self.balance(self.buyer)?,
            wallet: self.balance(self.wallet)?,
            miners: self
                .miners
                .iter()
                .map(|m| self.holding(m.address))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Tells the ledger as a table.
    pub fn tell_ledger(&self, title: &str, l: &Ledger) {
        self.say(&format!("{title}:"));
        self.say(&format!("  buyer      {}  {}", self.buyer, snm(l.buyer)));
        self.say(&format!("  hub wallet {}  {}", self.wallet, snm(l.wallet)));
        for (m, h) in self.miners.iter().zip(&l.miners) {
            self.say(&format!(
                "  {:<10} {}  {}, staked {}, owed {}",
                m.name,
                m.address,
                snm(h.balance),
                snm(h.stake),
                snm(h.owed)
            ));
        }
    }

    /// Runs `sosna buy` against the hub, telling its progress line by line.
    pub fn buy(&self, replicas: u16, price_snm: u64, script: &str) -> Result<Bought, FleetError> {
        let report = self.dir.path().join("report.json");
        let _ = std::fs::remove_file(&report);
        let config = self.dir.path().join("buyer.toml");
        let started = Instant::now();
        let mut child = Command::new(&self.agent)
            .arg("buy")
            .arg("--config")
            .arg(&config)
            .args(["--hub", &self.hub_multiaddr])
            .args(["--replicas", &replicas.to_string()])
            .args(["--price", &price_snm.to_string()])
            .args(["--deadline", "600", "--timeout", "120"])
            .arg("--report")
            .arg(&report)
            .arg(&self.task_image)
            .args(["--", "sh", "-c", script])
            // A terminal's Ctrl-C is the demo's to handle, not the buyer's.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(setup)?;
        let mut stdout = child.stdout.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = stdout.read_to_end(&mut out);
            out
        });
        let mut told = String::new();
        for line in BufReader::new(child.stderr.take().expect("piped"))
            .lines()
            .map_while(Result::ok)
        {
            self.say(&format!("buyer: {line}"));
            told.push_str(&line);
            told.push('\n');
        }
        let status = child.wait().map_err(setup)?;
        let stdout = reader.join().unwrap_or_default();
        let elapsed = started.elapsed();
        let exit_code = status
            .code()
            .ok_or_else(|| setup(format!("sosna buy: {status}")))?;
        let report = match std::fs::read(&report) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(setup)?,
            Err(_) => {
                return Err(setup(format!(
                    "sosna buy exited {exit_code} without a report:\n{told}"
                )))
            }
        };
        Ok(Bought {
            stdout,
            exit_code,
            report,
            elapsed,
        })
    }

    /// Waits until every miner has withdrawn what it is owed.
    pub fn wait_withdrawn(&self, timeout: Duration) -> Result<(), FleetError> {
        wait_for(
            "the miners to withdraw their pay",
            timeout,
            Duration::from_millis(500),
            || {
                for m in &self.miners {
                    if !self.holding(m.address)?.owed.is_zero() {
                        return Ok(false);
                    }
                }
                Ok(true)
            },
        )
    }

    /// The hub daemon's log so far.
    pub fn hub_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hub.log")).unwrap_or_default()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(mut hub) = self.hub.take() {
            let pid = nix::unistd::Pid::from_raw(hub.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = hub.wait();
        }
    }
}

/// Polls `done` every `every` until it holds, fails, or `timeout` passes.
fn wait_for(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut done: impl FnMut() -> Result<bool, FleetError>,
) -> Result<(), FleetError> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: timeout,
            }
            .into());
        }
        std::thread::sleep(every);
    }
}

/// Stops every child process of this one (VMs, anvil, the registry, the hub), politely
/// first: for a Ctrl-C that must not leave a fleet behind.
pub fn stop_children() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let me = std::process::id().to_string();
    let children: Vec<Pid> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                // The command may contain spaces; fields resume after the last ')'.
                s.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    == Some(&me)
            })
        })
        .map(Pid::from_raw)
        .collect();
    for &pid in &children {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for &pid in &children {
        while Instant::now() < deadline {
            match nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => break,
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
}
