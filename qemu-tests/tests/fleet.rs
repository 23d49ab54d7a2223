//! The marketplace across a QEMU fleet: anvil and a registry on the host, the hub as a
//! host `sosna daemon`, three miner VMs booted from the image on a shared segment (one of
//! them forging results), and a buyer running a replicated task with `sosna buy`. Checked:
//! the result bytes, the vote, and the chain (balances, stakes, reserved pay, withdrawals,
//! the deal closed by the buyer's confirmation).

use std::time::Duration;

use alloy_primitives::U256;
use sha2::{Digest, Sha256};
use sosna_contracts::devnet::SNM;
use sosna_qemu_tests::fleet::{Fleet, FleetOptions, STAKE_SNM};
use sosna_qemu_tests::Image;

const SCRIPT: &str = "seq 1 100000 | sha256sum";

fn expected() -> Vec<u8> {
    let input: String = (1..=100_000).map(|n| format!("{n}\n")).collect();
    format!("{:x}  -\n", Sha256::digest(input.as_bytes())).into_bytes()
}

#[test]
fn test_a_replicated_task_is_verified_paid_and_the_forger_slashed() {
    let image = Image::built().unwrap();
    let say = std::sync::Arc::new(|line: &str| println!("{line}"));
    let opts = FleetOptions {
        miners: 3,
        cheaters: vec![1],
    };
    let fleet = Fleet::start(&image, &opts, say).unwrap();
    let before = fleet.ledger().unwrap();
    let price = 10u64;
    let bought = fleet.buy(3, price, SCRIPT).unwrap();
    assert_eq!(bought.exit_code, 0);
    assert_eq!(
        String::from_utf8_lossy(&bought.stdout),
        String::from_utf8_lossy(&expected())
    );

    // The vote: the two honest miners agreed, the forger was outvoted.
    let status = &bought.report["status"];
    let listed = |key: &str| -> Vec<String> {
        let mut v: Vec<String> = status[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_lowercase())
            .collect();
        v.sort();
        v
    };
    let cheater = fleet.miners[1].address;
    let mut honest: Vec<String> = [0, 2]
        .iter()
        .map(|i| fleet.miners[*i].address.to_string().to_lowercase())
        .collect();
    honest.sort();
    assert_eq!(listed("agree"), honest);
    assert_eq!(listed("disagree"), vec![cheater.to_string().to_lowercase()]);
    assert_eq!(status["txs"].as_array().unwrap().len(), 3, "{status}");

    // The chain: the buyer paid the price to the hub's wallet; honest miners withdrew
    // their share; the forger got nothing and lost its stake.
    fleet.wait_withdrawn(Duration::from_secs(120)).unwrap();
    let after = fleet.ledger().unwrap();
    let wei = |snm: u64| U256::from(snm) * U256::from(SNM);
    let pay_each = wei(price) * U256::from(60) / U256::from(100) / U256::from(3);
    assert_eq!(before.buyer - after.buyer, wei(price));
    assert_eq!(
        after.wallet,
        before.wallet + wei(price) - pay_each * U256::from(2)
    );
    for (i, (b, a)) in before.miners.iter().zip(&after.miners).enumerate() {
        if i == 1 {
            assert_eq!(a.stake, U256::ZERO, "the forger keeps no stake");
            assert_eq!(a.balance, b.balance, "the forger is not paid");
        } else {
            assert_eq!(a.stake, wei(STAKE_SNM));
            assert_eq!(
                a.balance,
                b.balance + pay_each,
                "miner {i} withdrew its pay"
            );
        }
        assert_eq!(a.owed, U256::ZERO);
    }
    let log = fleet.hub_log();
    assert!(log.contains("settled"), "{log}");
}
