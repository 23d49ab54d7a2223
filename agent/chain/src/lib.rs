//! The node's Ethereum client (DESIGN §4): where the chain is (`[chain]`), a [`sender::Sender`]
//! that signs with the node's key and survives restarts and RPC outages without losing or
//! doubling a transaction, and an [`index::Indexer`] that keeps the market's events on the
//! state directory so a restart never rescans from genesis.

pub mod index;
pub mod journal;
pub mod logs;
pub mod sender;
mod tls;

use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy_provider::{DynProvider, Provider, ProviderBuilder};
use serde::Deserialize;
use sosna_contracts::Deployment;

/// Subdirectory of the agent's state directory holding the nonce journal and the index.
pub const STATE_SUBDIR: &str = "chain";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// Ethereum JSON-RPC URL over HTTP(S); empty means no chain. (WebSocket is left out:
    /// alloy's ws transport turns on rustls's aws-lc-rs backend, a large C build in the
    /// static binary; polling over HTTP is enough for a block every few seconds.)
    pub rpc_url: String,
    /// Deployment JSON written by contracts/script/Deploy.s.sol; required with rpc_url.
    pub deployment: String,
    /// Blocks on top of a transaction's block before it counts as done; events are indexed
    /// only this deep too.
    pub confirmations: u64,
    /// Longest wait between two retries while the RPC endpoint is down, in seconds.
    pub retry_max_secs: u64,
    /// Milliseconds between two polls for receipts and new blocks.
    pub poll_ms: u64,
    /// Seconds one RPC request may take before it counts as failed and is retried.
    pub timeout_secs: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            rpc_url: String::new(),
            deployment: String::new(),
            confirmations: 1,
            retry_max_secs: 30,
            poll_ms: 1000,
            timeout_secs: 10,
        }
    }
}

impl ChainConfig {
    /// Checks the section; the error names the field (`chain.` prefixed) and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.rpc_url.is_empty() {
            return Ok(());
        }
        let url = url::Url::parse(&self.rpc_url).map_err(|e| ("chain.rpc_url", e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((
                "chain.rpc_url",
                format!("scheme {:?} is not http or https", url.scheme()),
            ));
        }
        if self.deployment.is_empty() {
            return Err(("chain.deployment", "required with rpc_url".into()));
        }
        if self.confirmations == 0 {
            return Err(("chain.confirmations", "must be at least 1".into()));
        }
        for (field, value) in [
            ("chain.retry_max_secs", self.retry_max_secs),
            ("chain.poll_ms", self.poll_ms),
            ("chain.timeout_secs", self.timeout_secs),
        ] {
            if value == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        !self.rpc_url.is_empty()
    }

    /// Directory for the journal and the index.
    pub fn state_dir(state_dir: &Path) -> PathBuf {
        state_dir.join(STATE_SUBDIR)
    }

    pub fn retry(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(self.retry_max_secs),
        )
    }

    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("chain RPC URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{what}: {reason}")]
    Rpc { what: String, reason: String },
    #[error("decoding {what}: {reason}")]
    Decode { what: String, reason: String },
    #[error("{what} reverted: {reason}")]
    Reverted { what: String, reason: String },
    #[error("deployment file: {0}")]
    Deployment(#[from] sosna_contracts::DeploymentError),
    #[error("{what} is on chain {got}, the deployment is for chain {want}")]
    WrongChain { what: String, got: u64, want: u64 },
    #[error("chain state {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("{what}: nonce {nonce} was taken by another transaction of this key")]
    Superseded { what: String, nonce: u64 },
}

/// A provider for `url` over HTTP(S). Every request has a deadline: an endpoint that
/// accepts connections but never answers is an outage too, and retries must see it.
pub fn connect(url: &str, timeout: Duration) -> Result<DynProvider, ChainError> {
    crate::tls::ensure_provider();
    let bad = |reason: String| ChainError::Url {
        url: url.to_owned(),
        reason,
    };
    let parsed: url::Url = url
        .parse()
        .map_err(|e: url::ParseError| bad(e.to_string()))?;
    let http = alloy_transport_http::reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let local = parsed
        .host_str()
        .is_some_and(|h| h == "localhost" || h.starts_with("127."));
    let transport = alloy_transport_http::Http::with_client(http, parsed);
    let client = alloy_rpc_client::RpcClient::new(transport, local);
    Ok(ProviderBuilder::new().connect_client(client).erased())
}

/// Reads the deployment file named by the config.
pub fn deployment(cfg: &ChainConfig) -> Result<Deployment, ChainError> {
    Ok(Deployment::from_path(&cfg.deployment)?)
}

/// Exponential backoff between retries of a call to an endpoint that is down.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The next delay; each is twice the last, up to the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn config_errors_name_the_field() {
        let with = |f: fn(&mut ChainConfig)| {
            let mut c = ChainConfig {
                rpc_url: "http://127.0.0.1:8545".into(),
                deployment: "/etc/sosna/deployment.json".into(),
                ..ChainConfig::default()
            };
            f(&mut c);
            c.validate().map_err(|(field, _)| field)
        };
        assert_eq!(with(|_| {}), Ok(()));
        assert_eq!(with(|c| c.rpc_url = "ftp://x".into()), Err("chain.rpc_url"));
        assert_eq!(
            with(|c| c.rpc_url = "not a url".into()),
            Err("chain.rpc_url")
        );
        assert_eq!(with(|c| c.deployment.clear()), Err("chain.deployment"));
        assert_eq!(with(|c| c.confirmations = 0), Err("chain.confirmations"));
        assert!(ChainConfig::default().validate().is_ok());
    }
}
