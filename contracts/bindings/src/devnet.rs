//! A local chain for fleet tests and the demo: anvil from the pinned npm toolchain, the
//! contracts deployed by `contracts/script/Deploy.s.sol`, and the few operator actions a
//! test needs (register a hub, pay a miner). Guests reach it as `10.0.2.2:<port>`.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Deployment, IHubFactory, IHubWallet, ISNM};
use alloy_network::EthereumWallet;
use alloy_primitives::{Address, Bytes, TxKind, U256};
use alloy_provider::{DynProvider, Provider, ProviderBuilder};
use alloy_rpc_types_eth::{TransactionInput, TransactionReceipt, TransactionRequest};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
#[error("devnet: {0}")]
pub struct DevnetError(String);

/// One SNM in wei.
pub const SNM: u128 = 1_000_000_000_000_000_000;

/// A running anvil with the system deployed on it. Dropping it stops anvil.
pub struct Devnet {
    _anvil: Anvil,
    pub port: u16,
    pub deployment: Deployment,
    /// The deployment JSON, as guests are given it.
    pub deployment_json: String,
    /// anvil's accounts: 0 deploys and holds the DAO's supply, 1.. are funded with SNM.
    pub keys: Vec<PrivateKeySigner>,
}

/// The anvil process and its scratch directory; dropping it stops anvil.
struct Anvil {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn err(what: impl Into<String>) -> DevnetError {
    DevnetError(what.into())
}

fn contracts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A loopback TCP port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Devnet {
    /// Starts anvil on a free loopback port and deploys the contracts, funding accounts
    /// 1..=`funded` with SNM.
    pub fn start(funded: usize) -> Result<Devnet, DevnetError> {
        let contracts = contracts_dir();
        // node_modules is installed by contracts/ci.sh; make sure it is there.
        let deps = Command::new("bash")
            .args(["-c", "source tools/ensure-deps.sh"])
            .current_dir(&contracts)
            .status()
            .map_err(|e| err(format!("contracts/tools/ensure-deps.sh: {e}")))?;
        if !deps.success() {
            return Err(err("contracts/tools/ensure-deps.sh failed"));
        }
        let bin = contracts.join("node_modules/.bin");
        let dir = tempfile::tempdir().map_err(|e| err(format!("tempdir: {e}")))?;
        let port = free_port().map_err(|e| err(format!("free port: {e}")))?;
        let config_out = dir.path().join("anvil.json");
        let log = File::create(dir.path().join("anvil.log")).map_err(|e| err(e.to_string()))?;
        let child = Command::new(bin.join("anvil"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--config-out")
            .arg(&config_out)
            .stdout(log.try_clone().map_err(|e| err(e.to_string()))?)
            .stderr(log)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| err(format!("spawn anvil: {e}")))?;
        let mut anvil = Anvil { child, port, dir };
        let keys = anvil.wait_ready(&config_out)?;
        let (deployment, deployment_json) = anvil.deploy(&bin, &keys, funded)?;
        Ok(Devnet {
            _anvil: anvil,
            port,
            deployment,
            deployment_json,
            keys,
        })
    }

    /// Stops anvil answering (SIGSTOP) while it keeps its port and state: to clients it is
    /// an endpoint that accepts connections and never replies.
    pub fn freeze(&self) -> Result<(), DevnetError> {
        self.signal(nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a frozen anvil carry on (SIGCONT).
    pub fn thaw(&self) -> Result<(), DevnetError> {
        self.signal(nix::sys::signal::Signal::SIGCONT)
    }

    fn signal(&self, sig: nix::sys::signal::Signal) -> Result<(), DevnetError> {
        let pid = nix::unistd::Pid::from_raw(self._anvil.child.id() as i32);
        nix::sys::signal::kill(pid, sig).map_err(|e| err(format!("{sig} anvil: {e}")))
    }

    /// Host-side RPC URL.
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The RPC URL a QEMU guest on user networking uses.
    pub fn guest_rpc_url(&self) -> String {
        format!("http://10.0.2.2:{}", self.port)
    }

    /// A provider that signs with `key`.
    pub fn provider(&self, key: &PrivateKeySigner) -> DynProvider {
        // reqwest is built without a bundled TLS provider (the agent picks one); plain
        // HTTP to anvil still needs one installed. Another caller may have done it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(key.clone()))
            .connect_http(self.rpc_url().parse().expect("loopback URL"))
            .erased()
    }

    /// Sends `call` to `to` signed by `key` and waits for a successful receipt.
    pub async fn send<C: SolCall>(
        &self,
        key: &PrivateKeySigner,
        to: Address,
        call: C,
    ) -> Result<TransactionReceipt, DevnetError> {
        let tx = TransactionRequest {
            to: Some(TxKind::Call(to)),
            input: TransactionInput::new(Bytes::from(call.abi_encode())),
            ..Default::default()
        };
        let receipt = self
            .provider(key)
            .send_transaction(tx)
            .await
            .map_err(|e| err(format!("{}: {e}", C::SIGNATURE)))?
            .get_receipt()
            .await
            .map_err(|e| err(format!("{} receipt: {e}", C::SIGNATURE)))?;
        if !receipt.status() {
            return Err(err(format!("{} reverted", C::SIGNATURE)));
        }
        Ok(receipt)
    }

    /// Registers a hub owned by `owner` through the HubFactory with `deposit` SNM wei in
    /// its wallet, as an operator would. Returns the HubWallet address.
    pub async fn register_hub(
        &self,
        owner: &PrivateKeySigner,
        multiaddr: &str,
        name: &str,
        deposit: U256,
    ) -> Result<Address, DevnetError> {
        let d = &self.deployment;
        let approve = ISNM::approveCall {
            spender: d.hub_factory,
            value: deposit,
        };
        self.send(owner, d.snm, approve).await?;
        let create = IHubFactory::createHubCall {
            multiaddr: multiaddr.into(),
            name: name.into(),
            deposit,
        };
        let receipt = self.send(owner, d.hub_factory, create).await?;
        receipt
            .inner
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<IHubFactory::HubCreated>().ok())
            .map(|l| l.inner.data.wallet)
            .ok_or_else(|| err("createHub emitted no HubCreated"))
    }

    /// Pays `miner` from the hub's wallet (signed by its owner).
    pub async fn pay(
        &self,
        owner: &PrivateKeySigner,
        wallet: Address,
        miner: Address,
        amount: U256,
    ) -> Result<(), DevnetError> {
        let call = IHubWallet::transferCall { miner, amount };
        self.send(owner, wallet, call).await.map(|_| ())
    }
}

impl Anvil {
    /// Waits until anvil has written its accounts and answers on its port.
    fn wait_ready(&mut self, config_out: &Path) -> Result<Vec<PrivateKeySigner>, DevnetError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(err(format!("anvil exited with {status}: {}", self.log())));
            }
            let ready = std::fs::read_to_string(config_out)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .filter(|_| std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok());
            if let Some(config) = ready {
                let keys = config["private_keys"]
                    .as_array()
                    .ok_or_else(|| err("anvil config has no private_keys"))?
                    .iter()
                    .map(|k| {
                        k.as_str()
                            .and_then(|k| k.parse().ok())
                            .ok_or_else(|| err(format!("bad anvil key {k}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(keys);
            }
            if Instant::now() > deadline {
                return Err(err(format!("anvil not ready after 30 s: {}", self.log())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("anvil.log")).unwrap_or_default()
    }

    /// Runs the deploy script. Serialised across processes: forge writes its cache and
    /// broadcast records inside contracts/.
    fn deploy(
        &self,
        bin: &Path,
        keys: &[PrivateKeySigner],
        funded: usize,
    ) -> Result<(Deployment, String), DevnetError> {
        let contracts = contracts_dir();
        let lock = File::create(contracts.join("cache/.devnet.lock"))
            .or_else(|_| File::create(self.dir.path().join("lock")))
            .map_err(|e| err(format!("deploy lock: {e}")))?;
        let _lock = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, e)| err(format!("deploy lock: {e}")))?;
        // forge may write only under deployments/ (foundry.toml's fs_permissions).
        let out = contracts.join(format!("deployments/devnet-{}.json", self.port));
        let fund: Vec<String> = keys[1..=funded.min(keys.len() - 1)]
            .iter()
            .map(|k| k.address().to_string())
            .collect();
        let key = format!("0x{}", alloy_primitives::hex::encode(keys[0].to_bytes()));
        let output = Command::new(bin.join("forge"))
            .args(["script", "script/Deploy.s.sol:Deploy", "--rpc-url"])
            .arg(format!("http://127.0.0.1:{}", self.port))
            .args(["--broadcast", "--slow", "--offline"])
            .env("PATH", path_with(bin))
            .env("DEPLOYER_KEY", key)
            .env("FUND_ACCOUNTS", fund.join(","))
            .env("DEPLOYMENT_FILE", &out)
            .current_dir(&contracts)
            .output()
            .map_err(|e| err(format!("spawn forge: {e}")))?;
        if !output.status.success() {
            let text =
                String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
            let tail: String = text
                .chars()
                .rev()
                .take(1500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(err(format!("forge script Deploy failed: ...{tail}")));
        }
        let json = std::fs::read_to_string(&out).map_err(|e| err(format!("read {out:?}: {e}")))?;
        let _ = std::fs::remove_file(&out);
        let deployment =
            Deployment::from_json(&json).map_err(|e| err(format!("deployment JSON: {e}")))?;
        Ok((deployment, json))
    }
}

fn path_with(bin: &Path) -> String {
    match std::env::var("PATH") {
        Ok(path) => format!("{}:{path}", bin.display()),
        Err(_) => bin.display().to_string(),
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
