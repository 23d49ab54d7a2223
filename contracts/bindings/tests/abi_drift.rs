//! The `sol!` bindings must match what forge compiled: every function selector, event topic
//! and error selector of each interface, exactly, and each implementation must provide them.
//!
//! Needs forge artifacts (`SOSNA_CONTRACTS_OUT`, which ci.sh sets after `forge build`) and
//! its anvil deployment, so these tests are ignored in a plain `cargo test` and contracts/ci.sh
//! runs them with `--ignored`; without what they need they fail, naming it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use alloy_primitives::{hex, keccak256};
use serde_json::Value;
use sosna_contracts::{
    artifact_path, creation_bytecode, Deployment, IHubFactory, IHubWallet, IMarket, IVerification,
    IWhitelist, IDAO, ISNM,
};

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var_os("SOSNA_CONTRACTS_OUT")
            .expect("SOSNA_CONTRACTS_OUT (contracts/ci.sh sets it after forge build)"),
    );
    assert!(
        dir.is_dir(),
        "SOSNA_CONTRACTS_OUT={} is not a directory",
        dir.display()
    );
    dir
}

/// The ABI of one compiled contract, as selector and topic sets.
struct Abi {
    functions: BTreeSet<[u8; 4]>,
    events: BTreeSet<[u8; 32]>,
    errors: BTreeSet<[u8; 4]>,
}

/// Canonical ABI type: tuples spelled out, array suffixes kept.
fn canonical(param: &Value) -> String {
    let ty = param["type"].as_str().expect("param type");
    match ty.strip_prefix("tuple") {
        Some(suffix) => {
            let parts: Vec<String> = param["components"]
                .as_array()
                .expect("components")
                .iter()
                .map(canonical)
                .collect();
            format!("({}){suffix}", parts.join(","))
        }
        None => ty.to_owned(),
    }
}

fn signature(item: &Value) -> String {
    let inputs: Vec<String> = item["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(canonical)
        .collect();
    format!(
        "{}({})",
        item["name"].as_str().expect("name"),
        inputs.join(",")
    )
}

fn load(out: &std::path::Path, contract: &str) -> Abi {
    let path = artifact_path(out, contract);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).expect("artifact JSON");
    let functions = json["methodIdentifiers"]
        .as_object()
        .expect("methodIdentifiers")
        .values()
        .map(|v| {
            let bytes = hex::decode(v.as_str().expect("selector")).expect("selector hex");
            bytes.try_into().expect("4-byte selector")
        })
        .collect();
    let mut events = BTreeSet::new();
    let mut errors = BTreeSet::new();
    for item in json["abi"].as_array().expect("abi") {
        match item["type"].as_str() {
            Some("event") => {
                events.insert(keccak256(signature(item).as_bytes()).0);
            }
            Some("error") => {
                let hash = keccak256(signature(item).as_bytes());
                errors.insert(hash.0[..4].try_into().unwrap());
            }
            _ => {}
        }
    }
    Abi {
        functions,
        events,
        errors,
    }
}

fn check(
    out: &std::path::Path,
    interface: &str,
    implementation: &str,
    functions: &[[u8; 4]],
    events: &[[u8; 32]],
    errors: &[[u8; 4]],
) {
    let bound = Abi {
        functions: functions.iter().copied().collect(),
        events: events.iter().copied().collect(),
        errors: errors.iter().copied().collect(),
    };
    let compiled = load(out, interface);
    assert_eq!(
        bound.functions, compiled.functions,
        "{interface}: function selectors drifted"
    );
    assert_eq!(
        bound.events, compiled.events,
        "{interface}: event topics drifted"
    );
    assert_eq!(
        bound.errors, compiled.errors,
        "{interface}: error selectors drifted"
    );
    let imp = load(out, implementation);
    assert!(
        bound.functions.is_subset(&imp.functions),
        "{implementation} lacks {interface} functions"
    );
    assert!(
        bound.events.is_subset(&imp.events),
        "{implementation} lacks {interface} events"
    );
    assert!(
        bound.errors.is_subset(&imp.errors),
        "{implementation} lacks {interface} errors"
    );
    println!(
        "{interface} / {implementation}: {} functions, {} events, {} errors match",
        functions.len(),
        events.len(),
        errors.len()
    );
}

#[test]
#[ignore = "needs forge artifacts: contracts/ci.sh runs it"]
fn test_bindings_match_forge_artifacts() {
    let out = out_dir();
    use IHubFactory::{IHubFactoryCalls, IHubFactoryEvents};
    use IHubWallet::{IHubWalletCalls, IHubWalletErrors, IHubWalletEvents};
    use IMarket::{IMarketCalls, IMarketErrors, IMarketEvents};
    use IVerification::{IVerificationCalls, IVerificationErrors, IVerificationEvents};
    use IWhitelist::{IWhitelistCalls, IWhitelistErrors, IWhitelistEvents};
    use IDAO::{IDAOCalls, IDAOErrors, IDAOEvents};
    use ISNM::{ISNMCalls, ISNMErrors, ISNMEvents};

    check(
        &out,
        "ISNM",
        "SNM",
        ISNMCalls::SELECTORS,
        ISNMEvents::SELECTORS,
        ISNMErrors::SELECTORS,
    );
    check(
        &out,
        "IHubWallet",
        "HubWallet",
        IHubWalletCalls::SELECTORS,
        IHubWalletEvents::SELECTORS,
        IHubWalletErrors::SELECTORS,
    );
    check(
        &out,
        "IHubFactory",
        "HubFactory",
        IHubFactoryCalls::SELECTORS,
        IHubFactoryEvents::SELECTORS,
        &[],
    );
    check(
        &out,
        "IWhitelist",
        "Whitelist",
        IWhitelistCalls::SELECTORS,
        IWhitelistEvents::SELECTORS,
        IWhitelistErrors::SELECTORS,
    );
    check(
        &out,
        "IDAO",
        "DAO",
        IDAOCalls::SELECTORS,
        IDAOEvents::SELECTORS,
        IDAOErrors::SELECTORS,
    );
    check(
        &out,
        "IMarket",
        "Market",
        IMarketCalls::SELECTORS,
        IMarketEvents::SELECTORS,
        IMarketErrors::SELECTORS,
    );
    check(
        &out,
        "IVerification",
        "Verification",
        IVerificationCalls::SELECTORS,
        IVerificationEvents::SELECTORS,
        IVerificationErrors::SELECTORS,
    );
}

#[test]
#[ignore = "needs forge artifacts: contracts/ci.sh runs it"]
fn test_creation_bytecode_loads() {
    let out = out_dir();
    for contract in ["SNM", "DAO", "Market", "Verification"] {
        let code = creation_bytecode(&out, contract).expect(contract);
        assert!(code.len() > 100, "{contract}: {} bytes", code.len());
    }
    assert!(creation_bytecode(&out, "NoSuchContract").is_err());
}

/// ci.sh points this at the JSON its anvil smoke deployment just wrote.
#[test]
#[ignore = "needs the anvil smoke deployment: contracts/ci.sh runs it"]
fn test_smoke_deployment_loads() {
    let path = std::env::var_os("SOSNA_DEPLOYMENT_JSON")
        .expect("SOSNA_DEPLOYMENT_JSON (contracts/ci.sh sets it after its smoke deployment)");
    let d = Deployment::from_path(&path).expect("deployment JSON");
    assert_ne!(d.chain_id, 0);
    let distinct: BTreeSet<_> = d.contracts().iter().map(|(_, a)| *a).collect();
    assert_eq!(distinct.len(), 7, "every contract has its own address");
}
