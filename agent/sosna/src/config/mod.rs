//! The provisioning file: `/etc/sosna/config.toml` by default, or the path given by
//! `sosna.config=` on the kernel command line.
//!
//! Every field has a default, so an absent file (or an empty one) boots a working miner.
//! Unknown fields are errors: a typo must not silently fall back to a default.
//!
//! Each section's type belongs to the crate it configures; this module composes them and
//! checks what spans sections.

pub mod bus;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sosna_init::net::{parse_cidr, NetworkConfig, UplinkMode};
use sosna_init::power::PowerConfig;
use sosna_init::supervisor::ServiceConfig;
use sosna_slave::SlaveConfig;

/// Where the agent looks when neither the command line nor the CLI names a file.
pub const DEFAULT_PATH: &str = sosna_init::cmdline::DEFAULT_CONFIG;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message names the offending key and shows the line.
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: field `{field}`: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// What this node does in the market.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs buyers' tasks in containers and earns tokens (the image's default).
    #[default]
    Miner,
    /// Gathers miners, takes buyers' deals, dispatches, verifies and pays.
    Hub,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Market role of this node.
    pub role: Role,
    /// Hostname to set at boot; empty means `sosna-<last 3 bytes of the first MAC>`.
    pub hostname: String,
    /// Directory for persistent agent state (keys, pulled images, storage service).
    pub state_dir: PathBuf,
    pub log: LogConfig,
    pub network: NetworkConfig,
    pub power: PowerConfig,
    /// SNTP servers PID 1 sets the clock from.
    pub time: sosna_init::clock::TimeConfig,
    pub runtime: RuntimeSection,
    pub slave: SlaveConfig,
    /// The Ethereum endpoint and deployment.
    pub chain: sosna_chain::ChainConfig,
    /// The P2P bus: discovery, hub announcements, the miners' trust flow.
    pub bus: bus::BusConfig,
    /// Which operators' signed OTA rollouts this node follows.
    pub rollout: sosna_ota::rollout::RolloutConfig,
    /// Helper daemons the agent starts and supervises, in order.
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            role: Role::Miner,
            hostname: String::new(),
            state_dir: PathBuf::from("/var/lib/sosna"),
            log: LogConfig::default(),
            network: NetworkConfig::default(),
            power: PowerConfig::default(),
            time: sosna_init::clock::TimeConfig::default(),
            runtime: RuntimeSection::default(),
            slave: SlaveConfig::default(),
            chain: sosna_chain::ChainConfig::default(),
            bus: bus::BusConfig::default(),
            rollout: sosna_ota::rollout::RolloutConfig::default(),
            services: Vec::new(),
        }
    }
}

/// The container runtime and its control socket.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// Run containers at all (a hub without local work may turn it off).
    pub enabled: bool,
    /// Control socket of the `sosna run/ps/logs/kill/rm/pull/images` commands.
    pub socket: PathBuf,
    /// Registries reached over plain HTTP (`host:port`); all others need HTTPS.
    pub insecure_registries: Vec<String>,
    /// Bytes of stdout and of stderr kept per container; the rest is counted and dropped.
    pub log_cap_bytes: u64,
    /// The most any one task gets, whoever sends it: a task's unset limit takes these,
    /// a larger one is refused.
    pub max_memory_bytes: u64,
    pub max_pids: i64,
    pub max_cpus: f64,
    pub max_wall_secs: u64,
    /// Size of a writable root's private layer.
    pub max_scratch_bytes: u64,
}

impl RuntimeSection {
    pub fn caps(&self) -> sosna_runtime::caps::TaskCaps {
        sosna_runtime::caps::TaskCaps {
            memory_bytes: self.max_memory_bytes,
            pids: self.max_pids,
            cpus: self.max_cpus,
            wall_secs: self.max_wall_secs,
            scratch_bytes: self.max_scratch_bytes,
        }
    }
}

impl Default for RuntimeSection {
    fn default() -> Self {
        let caps = sosna_runtime::caps::TaskCaps::default();
        RuntimeSection {
            enabled: true,
            socket: PathBuf::from("/run/sosna/agent.sock"),
            insecure_registries: Vec::new(),
            log_cap_bytes: 1 << 20,
            max_memory_bytes: caps.memory_bytes,
            max_pids: caps.pids,
            max_cpus: caps.cpus,
            max_wall_secs: caps.wall_secs,
            max_scratch_bytes: caps.scratch_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter: `error`, `warn`, `info`, `debug`, `trace`, or directives like `sosna_market=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Parses and validates a provisioning file's text; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Reads `path`; a missing file at the default location means "all defaults".
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) =>
            {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        if !self.hostname.is_empty() && !valid_hostname(&self.hostname) {
            return Err(invalid(
                "hostname",
                format!(
                    "{:?} is not a hostname (1-63 of a-z, 0-9, '-', not starting or ending with '-')",
                    self.hostname
                ),
            ));
        }
        if !self.state_dir.is_absolute() {
            return Err(invalid("state_dir", "must be an absolute path".into()));
        }
        if self.time.servers.iter().any(|s| s.trim().is_empty()) {
            return Err(invalid("time.servers", "an empty server name".into()));
        }
        if let Err(e) = self.runtime.caps().check() {
            return Err(invalid("runtime", e.to_string()));
        }
        if !self.runtime.socket.is_absolute() {
            return Err(invalid("runtime.socket", "must be an absolute path".into()));
        }
        for r in &self.runtime.insecure_registries {
            if r.is_empty() || r.contains('/') {
                return Err(invalid(
                    "runtime.insecure_registries",
                    format!("{r:?} is not host[:port]"),
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", e.to_string()));
        }
        let net = &self.network;
        if net.mode == UplinkMode::Static {
            parse_cidr(&net.address).map_err(|r| invalid("network.address", r.to_string()))?;
        } else if !net.address.is_empty() {
            return Err(invalid(
                "network.address",
                "only used with mode = \"static\"".into(),
            ));
        }
        if net.dhcp_timeout_secs == 0 {
            return Err(invalid(
                "network.dhcp_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        for link in &net.links {
            if link.interface.is_empty() || link.interface == net.interface {
                return Err(invalid(
                    "network.link.interface",
                    format!(
                        "{:?} must name another interface than the uplink",
                        link.interface
                    ),
                ));
            }
            parse_cidr(&link.address)
                .map_err(|r| invalid("network.link.address", r.to_string()))?;
        }
        let slave = &self.slave;
        if slave.max_frame_bytes < 64 {
            return Err(invalid(
                "slave.max_frame_bytes",
                "must be at least 64".into(),
            ));
        }
        if slave.health_interval_ms < 10 {
            return Err(invalid(
                "slave.health_interval_ms",
                "must be at least 10".into(),
            ));
        }
        if let Some(bad) = slave.gateway_peers.iter().find(|p| {
            p.rsplit_once(':')
                .is_none_or(|(h, port)| h.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(invalid(
                "slave.gateway_peers",
                format!("{bad:?} is not host:port"),
            ));
        }
        if let Some(bad) = slave
            .trusted_peers
            .iter()
            .find(|p| p.parse::<libp2p::PeerId>().is_err())
        {
            return Err(invalid(
                "slave.trusted_peers",
                format!("{bad:?} is not a peer id (see `sosna bus-id`)"),
            ));
        }
        self.chain
            .validate()
            .map_err(|(field, reason)| invalid(field, reason))?;
        self.bus
            .validate(self.role == Role::Hub)
            .map_err(|(field, reason)| invalid(field, reason))?;
        self.rollout
            .validate()
            .map_err(|(field, reason)| invalid(field, reason))?;
        let mut names = std::collections::HashSet::new();
        for svc in &self.services {
            if svc.name.is_empty() || !names.insert(svc.name.as_str()) {
                return Err(invalid(
                    "service.name",
                    format!("{:?} is empty or used twice", svc.name),
                ));
            }
            match svc.command.first() {
                Some(p) if p.starts_with('/') => {}
                _ => {
                    return Err(invalid(
                        "service.command",
                        format!(
                            "service {:?}: first element must be an absolute program path",
                            svc.name
                        ),
                    ))
                }
            }
            if let Some(bad) = svc.env.iter().find(|e| !e.contains('=')) {
                return Err(invalid(
                    "service.env",
                    format!("service {:?}: {bad:?} is not KEY=value", svc.name),
                ));
            }
            if svc.max_fast_crashes == 0 {
                return Err(invalid(
                    "service.max_fast_crashes",
                    format!("service {:?}: must be at least 1", svc.name),
                ));
            }
            if svc.backoff_ms > svc.max_backoff_ms {
                return Err(invalid(
                    "service.backoff_ms",
                    format!("service {:?}: larger than max_backoff_ms", svc.name),
                ));
            }
        }
        Ok(())
    }
}

fn valid_hostname(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A documented provisioning file with every field at its default; `sosna config example`.
pub const EXAMPLE: &str = include_str!("example.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use sosna_init::supervisor::RestartPolicy;
    use std::net::Ipv4Addr;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_a_default_miner() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.role, Role::Miner);
        assert_eq!(c.network.mode, UplinkMode::Dhcp);
    }

    #[test]
    fn example_matches_defaults() {
        // The documented example must stay in step with the code's defaults.
        assert_eq!(parse(EXAMPLE).unwrap(), Config::default());
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse("[network]\nmdoe = \"dhcp\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mdoe"), "{err}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err = parse("[power]\nstop_timeout_secs = \"five\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("stop_timeout_secs"), "{err}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let err = parse("role = \"buyer\"\n").unwrap_err().to_string();
        assert!(err.contains("role") || err.contains("buyer"), "{err}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            ("hostname = \"Bad_Host\"", "hostname"),
            ("state_dir = \"relative\"", "state_dir"),
            ("[log]\nlevel = \"=[\"", "log.level"),
            (
                "[network]\nmode = \"static\"\naddress = \"10.0.0.1\"",
                "network.address",
            ),
            ("[network]\naddress = \"10.0.0.1/8\"", "network.address"),
            (
                "[[network.link]]\ninterface = \"eth1\"\naddress = \"10.77.0.1\"",
                "network.link.address",
            ),
            (
                "[[network.link]]\ninterface = \"\"\naddress = \"10.77.0.1/24\"",
                "network.link.interface",
            ),
            ("[bus]\nchain_poll_secs = 0", "bus.chain_poll_secs"),
            ("[bus]\nlisten = [\"tcp/4001\"]", "bus.listen"),
            (
                "[bus]\nbootstrap = [\"/ip4/10.0.0.1/tcp/4001\"]",
                "bus.bootstrap",
            ),
            ("[chain]\nrpc_url = \"http://127.0.0.1:8545\"", "chain.deployment"),
            ("[chain]\nrpc_url = \"ws://127.0.0.1:8545\"", "chain.rpc_url"),
            (
                "role = \"hub\"\n[bus]\nenabled = true",
                "bus.hub.wallet",
            ),
            (
                "[slave]\ngateway_peers = [\"nohost\"]",
                "slave.gateway_peers",
            ),
            ("[slave]\nmax_frame_bytes = 3", "slave.max_frame_bytes"),
            (
                "[[service]]\nname = \"a\"\ncommand = [\"rel\"]",
                "service.command",
            ),
            (
                "[[service]]\nname = \"a\"\ncommand = [\"/x\"]\n[[service]]\nname = \"a\"\ncommand = [\"/y\"]",
                "service.name",
            ),
            (
                "[[service]]\nname = \"a\"\ncommand = [\"/x\"]\nenv = [\"NOEQUALS\"]",
                "service.env",
            ),
        ];
        for (text, field) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{text:?} gave {err}");
        }
    }

    #[test]
    fn full_static_config_parses() {
        let c = parse(
            r#"
role = "hub"
hostname = "rig-7"
[network]
mode = "static"
interface = "eth1"
address = "192.168.1.20/24"
gateway = "192.168.1.1"
dns = ["1.1.1.1"]
[[service]]
name = "helper"
command = ["/bin/helper", "--flag"]
restart = "on-failure"
"#,
        )
        .unwrap();
        assert_eq!(c.role, Role::Hub);
        assert_eq!(
            parse_cidr(&c.network.address).unwrap(),
            (Ipv4Addr::new(192, 168, 1, 20), 24)
        );
        assert_eq!(c.services[0].restart, RestartPolicy::OnFailure);
        assert_eq!(c.services[0].max_fast_crashes, 5);
    }

    #[test]
    fn missing_named_file_is_an_error() {
        let err = Config::load(Path::new("/nonexistent/sosna.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }
}
