//! A miner running buyers' tasks through the real runtime: images from a local registry,
//! containers through libcontainer, results as bundles whose digests replicas compare.
//! Needs root, like the runtime's own tests.

/// The agent binary, which is the containers' shim.
const SHIM: &str = env!("CARGO_BIN_EXE_sosna");

use std::time::Duration;

use sosna_market::miner::work::{execute, WorkError};
use sosna_proto::task::TaskSpec;
use sosna_testkit::fixture::fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tasks_run_into_bundles_replicas_can_compare() {
    let f = fixture(SHIM).await;
    let (rt, reference) = (&f.rt, &f.reference);
    let task = |script: &str| TaskSpec {
        image: reference.clone(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        timeout_secs: 20,
        ..TaskSpec::default()
    };

    // Two replicas of one task: same bundle, same digest.
    let a = execute(rt, task("seq 1 5 | wc -l; echo done"))
        .await
        .unwrap();
    let b = execute(rt, task("seq 1 5 | wc -l; echo done"))
        .await
        .unwrap();
    assert_eq!(a.exit_code, 0);
    assert_eq!(String::from_utf8_lossy(&a.stdout), "5\ndone\n");
    assert_eq!(a.digest(), b.digest());
    // stderr is not part of the result; the exit code is.
    let noisy = execute(rt, task("seq 1 5 | wc -l; echo done; echo $$ >&2"))
        .await
        .unwrap();
    assert_eq!(noisy.digest(), a.digest());
    let failed = execute(rt, task("echo done; exit 3")).await.unwrap();
    assert_eq!(failed.exit_code, 3);
    assert_ne!(failed.digest(), a.digest());

    // No result to vote on: too much output, or killed by the timeout.
    let big = execute(rt, task("yes | head -c 100000")).await.unwrap_err();
    assert!(
        matches!(big, WorkError::TooLarge { cap: 65536, .. }),
        "{big}"
    );
    let mut slow = task("sleep 30");
    slow.timeout_secs = 1;
    let killed = tokio::time::timeout(Duration::from_secs(30), execute(rt, slow))
        .await
        .expect("the timeout ends the task")
        .unwrap_err();
    assert!(
        matches!(&killed, WorkError::Killed(why) if why == "timeout"),
        "{killed}"
    );
    // A reference that does not exist is an error, not a result.
    let mut missing = task("true");
    missing.image = format!("{}/nothing:here", f.registry_host);
    assert!(execute(rt, missing).await.is_err());

    // Every task container is gone afterwards.
    assert!(rt.ps().is_empty(), "{:?}", rt.ps());
}

/// A hub and three miners on in-memory swarms; each miner joined the hub and runs tasks
/// through the real runtime. One miner forges its results: the hub decides by the other
/// two, names the forger, and every result it keeps is signed by its miner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_hub_dispatches_replicas_and_outvotes_a_forger() {
    use sosna_bus::Identity;
    use sosna_market::hub::announce::{self as hub, HubSettings};
    use sosna_market::hub::dispatch::Dispatcher;
    use sosna_market::miner::hubbook::{Capacity, HubBook, BOOK_FILE};
    use sosna_market::miner::join::{self as miner, MinerSettings};
    use sosna_market::miner::worker::Worker;
    use sosna_proto::attest::{self, Unit};
    use sosna_proto::bus::messages::{Agreement, PriceSchedule, Request, Response, TaskOffer};
    use sosna_testkit::testnet::{spawn_node, wait_until};

    let f = fixture(SHIM).await;
    let wallet = alloy_primitives::Address::repeat_byte(0x77);
    let domain = attest::domain(31337, alloy_primitives::Address::repeat_byte(0x99));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (hub_node, hub_events) = spawn_node(Identity::ephemeral()).unwrap();
    let dispatcher = Dispatcher::new(hub_node.bus.clone(), domain.clone());
    let agreement = Agreement {
        prices: PriceSchedule::default(),
        min_payout_usnm: 1,
        payout_every_secs: 60,
    };
    tokio::spawn(hub::run_with_dispatcher(
        hub_node.bus.clone(),
        hub_events,
        HubSettings {
            wallet,
            name: "hub".into(),
            announce: Vec::new(),
            interval: Duration::from_millis(300),
            agreement,
        },
        Some(dispatcher.clone()),
        stop_rx.clone(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut miners = Vec::new();
    let mut books = Vec::new();
    for i in 0..3 {
        let (node, events) = spawn_node(Identity::ephemeral()).unwrap();
        node.bus.dial(hub_node.addr.clone()).await.unwrap();
        let cheat = i == 1;
        let worker = Worker::new(
            node.bus.clone(),
            f.rt.clone(),
            node.identity.eth.clone(),
            domain.clone(),
            1,
        );
        let worker = if cheat { worker.forging() } else { worker };
        let book_path = dir.path().join(format!("m{i}")).join(BOOK_FILE);
        let settings = MinerSettings {
            strict_whitelist: false,
            min_positive_verdicts: 1,
            join: Some(wallet),
            resources: Capacity {
                cores: 1,
                memory_gib: 1,
                gpus: 0,
            },
            poll: Duration::from_millis(200),
            ask_every: Duration::from_secs(60),
            book_path: book_path.clone(),
            min_voice_stake: alloy_primitives::U256::from(1),
        };
        tokio::spawn(miner::run_with_worker(
            node.bus.clone(),
            events,
            None,
            settings,
            Some(worker),
            stop_rx.clone(),
        ));
        books.push(book_path);
        miners.push(node);
    }
    wait_until(
        "all miners to join the hub",
        Duration::from_secs(30),
        || async {
            books
                .iter()
                .all(|p| HubBook::load(p).is_ok_and(|b| b.get(&wallet).is_some_and(|e| e.joined)))
        },
    )
    .await
    .unwrap();

    // The hub's desk pins images at intake; here the test plays the desk.
    let client = sosna_runtime::pull::client(std::slice::from_ref(&f.registry_host)).unwrap();
    let pinned = sosna_runtime::pull::pin(&client, &f.reference)
        .await
        .unwrap();
    assert!(pinned.contains("@sha256:"), "{pinned}");
    let spec = serde_json::json!({
        "image": pinned,
        "args": ["sh", "-c", "seq 1 10 | wc -l"],
        "timeout_secs": 30,
    })
    .to_string();
    let unit = Unit {
        hub: wallet,
        id: alloy_primitives::B256::repeat_byte(0x05),
        replicas: 3,
    };
    let result = dispatcher
        .run_unit(unit, &spec, 1_000_000, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&result.bundle.stdout), "10\n");
    assert_eq!(result.bundle.exit_code, 0);
    // What ran, signed and voted on, is the pinned image.
    assert_eq!(
        Some(result.bundle.image.as_str()),
        pinned.split_once('@').map(|p| p.1)
    );
    let forger = miners[1].identity.address();
    assert_eq!(result.disagree, vec![forger]);
    let mut honest: Vec<_> = [0, 2]
        .iter()
        .map(|i| miners[*i].identity.address())
        .collect();
    honest.sort();
    assert_eq!(result.agree, honest);
    assert_eq!(result.attestations.len(), 3);
    for a in &result.attestations {
        attest::check(&domain, &unit, a).unwrap();
    }
    // A spec naming its image by tag alone is neither dispatched by the hub nor taken by a
    // miner: replicas could run different images.
    let by_tag = spec.replace(&pinned, &f.reference);
    let err = dispatcher
        .run_unit(
            Unit {
                id: alloy_primitives::B256::repeat_byte(0x06),
                ..unit
            },
            &by_tag,
            1,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not pinned"), "{err}");
    let offer = TaskOffer {
        unit: Unit {
            id: alloy_primitives::B256::repeat_byte(0x07),
            ..unit
        },
        spec: by_tag,
        pay_usnm: 1,
        deadline_ms: sosna_proto::bus::envelope::now_ms() + 60_000,
    };
    let (_, answer) = hub_node
        .bus
        .request(
            miners[0].identity.peer_id(),
            vec![miners[0].addr.clone()],
            Request::Offer(offer),
        )
        .await
        .unwrap();
    assert!(
        matches!(&answer, Response::Refused(r) if r.contains("not pinned")),
        "{answer:?}"
    );
    // An offer for a wallet the miner did not join is refused.
    let stranger = Unit {
        hub: alloy_primitives::Address::repeat_byte(0x01),
        ..unit
    };
    let err = dispatcher
        .run_unit(stranger, &spec, 1, Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("every joined miner was asked (3), none took it"),
        "{err}"
    );
    let _ = stop.send(true);
}
