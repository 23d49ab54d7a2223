//! The deployment JSON written by `contracts/script/Deploy.s.sol`.

use std::path::{Path, PathBuf};

use alloy_primitives::Address;
use serde_json::{Map, Value};

/// Addresses of one deployed system and the chain it lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    pub chain_id: u64,
    pub deployer: Address,
    pub snm: Address,
    pub dao: Address,
    pub hub_factory: Address,
    pub hub_wallet_implementation: Address,
    pub whitelist: Address,
    pub market: Address,
    pub verification: Address,
}

/// Why a deployment file could not be used; field errors name the JSON key.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("reading deployment file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("deployment JSON is malformed")]
    Parse(#[from] serde_json::Error),
    #[error("deployment JSON is not an object")]
    NotAnObject,
    #[error("deployment field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("deployment field `{field}` is not an address: {value}")]
    InvalidAddress { field: &'static str, value: String },
    #[error("deployment field `{field}` is not a chain id: {value}")]
    InvalidChainId { field: &'static str, value: String },
}

impl Deployment {
    /// Reads and validates a deployment file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, DeploymentError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| DeploymentError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses and validates deployment JSON.
    pub fn from_json(text: &str) -> Result<Self, DeploymentError> {
        let value: Value = serde_json::from_str(text)?;
        let obj = value.as_object().ok_or(DeploymentError::NotAnObject)?;
        Ok(Self {
            chain_id: chain_id(obj, "chainId")?,
            deployer: address(obj, "deployer")?,
            snm: address(obj, "snm")?,
            dao: address(obj, "dao")?,
            hub_factory: address(obj, "hubFactory")?,
            hub_wallet_implementation: address(obj, "hubWalletImplementation")?,
            whitelist: address(obj, "whitelist")?,
            market: address(obj, "market")?,
            verification: address(obj, "verification")?,
        })
    }

    /// Every contract address with its JSON key (the deployer excluded).
    pub fn contracts(&self) -> [(&'static str, Address); 7] {
        [
            ("snm", self.snm),
            ("dao", self.dao),
            ("hubFactory", self.hub_factory),
            ("hubWalletImplementation", self.hub_wallet_implementation),
            ("whitelist", self.whitelist),
            ("market", self.market),
            ("verification", self.verification),
        ]
    }
}

fn field<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a Value, DeploymentError> {
    obj.get(field)
        .ok_or(DeploymentError::MissingField { field })
}

fn address(obj: &Map<String, Value>, field: &'static str) -> Result<Address, DeploymentError> {
    let value = self::field(obj, field)?;
    value
        .as_str()
        .and_then(|s| s.parse::<Address>().ok())
        .filter(|a| !a.is_zero())
        .ok_or_else(|| DeploymentError::InvalidAddress {
            field,
            value: value.to_string(),
        })
}

fn chain_id(obj: &Map<String, Value>, field: &'static str) -> Result<u64, DeploymentError> {
    let value = self::field(obj, field)?;
    // forge writes a number; accept a decimal string too, as hand-written files use.
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|id| *id != 0)
    .ok_or_else(|| DeploymentError::InvalidChainId {
        field,
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "chainId": 31337,
        "deployer": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "snm": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "dao": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
        "hubFactory": "0xCafac3dD18aC6c6e92c921884f9E4176737C052c",
        "hubWalletImplementation": "0x4D17b728F3E78e62Ac86D585bE00738Eae7528C6",
        "whitelist": "0xAe367415f4BDe0aDEE3e59C35221d259f517413E",
        "market": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
        "verification": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"
    }"#;

    fn with(key: &str, value: Value) -> String {
        let mut v: Value = serde_json::from_str(GOOD).unwrap();
        match value {
            Value::Null => v.as_object_mut().unwrap().remove(key),
            other => v.as_object_mut().unwrap().insert(key.to_owned(), other),
        };
        v.to_string()
    }

    #[test]
    fn test_parses_forge_output() {
        let d = Deployment::from_json(GOOD).unwrap();
        assert_eq!(d.chain_id, 31337);
        assert_eq!(
            d.market,
            "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
                .parse::<Address>()
                .unwrap()
        );
        assert_eq!(d.contracts().len(), 7);
    }

    #[test]
    fn test_missing_field_is_named() {
        let err = Deployment::from_json(&with("market", Value::Null)).unwrap_err();
        assert!(
            matches!(err, DeploymentError::MissingField { field: "market" }),
            "{err}"
        );
        assert_eq!(err.to_string(), "deployment field `market` is missing");
    }

    #[test]
    fn test_bad_address_is_named() {
        let err = Deployment::from_json(&with("whitelist", "0x1234".into())).unwrap_err();
        assert!(
            matches!(
                err,
                DeploymentError::InvalidAddress {
                    field: "whitelist",
                    ..
                }
            ),
            "{err}"
        );
        let zero = format!("{:#x}", Address::ZERO);
        let err = Deployment::from_json(&with("dao", zero.into())).unwrap_err();
        assert!(
            matches!(err, DeploymentError::InvalidAddress { field: "dao", .. }),
            "{err}"
        );
    }

    #[test]
    fn test_bad_chain_id_is_named() {
        let err = Deployment::from_json(&with("chainId", "abc".into())).unwrap_err();
        assert!(
            matches!(
                err,
                DeploymentError::InvalidChainId {
                    field: "chainId",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            Deployment::from_json(&with("chainId", "5".into()))
                .unwrap()
                .chain_id,
            5
        );
    }

    #[test]
    fn test_not_json_or_not_object() {
        assert!(matches!(
            Deployment::from_json("{"),
            Err(DeploymentError::Parse(_))
        ));
        assert!(matches!(
            Deployment::from_json("[]"),
            Err(DeploymentError::NotAnObject)
        ));
    }
}
