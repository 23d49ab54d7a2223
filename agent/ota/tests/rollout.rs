//! Rollouts over in-process swarms: nodes follow only their operator's signed notices,
//! take the update in their wave (by the stable position of their peer id), report where
//! they stand, and stop when the operator halts. The updater here records what it is asked
//! to install; the real one (RAUC on the disk image) is exercised by the QEMU OTA tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{Address, B256};
use sosna_bus::{BusEvent, Identity};
use sosna_ota::health::SlotHealth;
use sosna_ota::rollout::publish::Tally;
use sosna_ota::rollout::{position, InstallError, InstallFuture, RolloutSettings, Updater};
use sosna_proto::bus::envelope::now_ms;
use sosna_proto::bus::messages::{Message, RolloutNotice, UpdateReport, UpdateState, Wave};
use sosna_testkit::testnet::{spawn_node, wait_until, LocalNode};

/// Records installs; fails them when told to.
struct Recorder {
    running: &'static str,
    fail: bool,
    installs: Mutex<Vec<String>>,
}

impl Updater for Recorder {
    fn running(&self) -> String {
        self.running.into()
    }
    fn slots(&self) -> String {
        "A booted, B good".into()
    }
    fn install(&self, notice: &RolloutNotice) -> InstallFuture {
        self.installs.lock().unwrap().push(notice.url.clone());
        let fail = self.fail;
        Box::pin(async move {
            if fail {
                Err(InstallError::Task("disk on fire".into()))
            } else {
                Ok(())
            }
        })
    }
}

fn notice(url: &str, waves: Vec<Wave>, halted: bool) -> RolloutNotice {
    RolloutNotice {
        version: "2".into(),
        url: url.into(),
        sha256: B256::repeat_byte(7),
        size: 1234,
        waves,
        halted,
        issued_ms: now_ms(),
        allow_downgrade: false,
    }
}

/// Collects every update report the node hears into a tally.
fn collect(mut events: tokio::sync::mpsc::Receiver<BusEvent>) -> Arc<Mutex<Tally>> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let t = tally.clone();
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let BusEvent::Message(v) = e {
                if let Message::UpdateReport(r) = v.message {
                    t.lock().unwrap().record(v.from, r);
                }
            }
        }
    });
    tally
}

/// Runs the node side of rollouts on `node`, fed with its bus messages, following
/// `operator`'s notices.
fn follow(
    node: &LocalNode,
    mut events: tokio::sync::mpsc::Receiver<BusEvent>,
    operator: &LocalNode,
    recorder: Arc<Recorder>,
    health: tokio::sync::watch::Receiver<SlotHealth>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let BusEvent::Message(v) = e {
                let _ = tx.send(v).await;
            }
        }
    });
    tokio::spawn(sosna_ota::rollout::run(
        node.bus.clone(),
        rx,
        RolloutSettings {
            operators: vec![operator.identity.address()],
            report_every: Duration::from_millis(300),
        },
        recorder,
        health,
        stop,
    ));
}

/// An operator and one node following it, running `running`, with `health` as its
/// slot's verdict.
struct One {
    operator: LocalNode,
    tally: Arc<Mutex<Tally>>,
    stop: tokio::sync::watch::Sender<bool>,
    node: LocalNode,
    recorder: Arc<Recorder>,
}

async fn one_node(running: &'static str, health: tokio::sync::watch::Receiver<SlotHealth>) -> One {
    let (operator, op_events) = spawn_node(Identity::ephemeral()).unwrap();
    let tally = collect(op_events);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (node, events) = spawn_node(Identity::ephemeral()).unwrap();
    node.bus.dial(operator.addr.clone()).await.unwrap();
    let recorder = Arc::new(Recorder {
        running,
        fail: false,
        installs: Mutex::default(),
    });
    follow(&node, events, &operator, recorder.clone(), health, stop_rx);
    One {
        operator,
        tally,
        stop,
        node,
        recorder,
    }
}

/// Publishes `notice` as `operator` until `node`'s report satisfies `done`.
async fn publish_until(
    what: &str,
    operator: &LocalNode,
    notice: &RolloutNotice,
    tally: &Arc<Mutex<Tally>>,
    node: Address,
    done: impl Fn(&UpdateReport) -> bool,
) {
    wait_until(what, Duration::from_secs(30), || async {
        let _ = operator
            .bus
            .publish(Message::RolloutNotice(notice.clone()))
            .await;
        report_of(tally, node).is_some_and(|r| done(&r))
    })
    .await
    .unwrap();
}

fn report_of(tally: &Arc<Mutex<Tally>>, node: Address) -> Option<UpdateReport> {
    tally.lock().unwrap().nodes.get(&node).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_waves_follow_the_operator_only_and_stop_when_halted() {
    let (operator, op_events) = spawn_node(Identity::ephemeral()).unwrap();
    let (stranger, _) = spawn_node(Identity::ephemeral()).unwrap();
    stranger.bus.dial(operator.addr.clone()).await.unwrap();
    let tally = collect(op_events);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (_healthy, good) = tokio::sync::watch::channel(SlotHealth::Good);

    // Five nodes; the one placed first in the fleet fails its install, and the first wave
    // takes the two lowest positions. The second wave starts in an hour.
    let mut spawned = Vec::new();
    for _ in 0..5 {
        let (node, events) = spawn_node(Identity::ephemeral()).unwrap();
        node.bus.dial(operator.addr.clone()).await.unwrap();
        spawned.push((node, events));
    }
    let mut positions: Vec<u8> = spawned
        .iter()
        .map(|(n, _)| position(&n.bus.peer_id(), "2"))
        .collect();
    let lowest = positions.iter().copied().min().unwrap();
    positions.sort();
    let cut = positions[1] + 1;
    let in_first = |p: u8| p < cut;
    assert!(positions.iter().any(|p| !in_first(*p)), "someone waits");
    let mut nodes: Vec<(LocalNode, Arc<Recorder>)> = Vec::new();
    let mut failing_taken = false;
    for (node, events) in spawned {
        let fail = !failing_taken && position(&node.bus.peer_id(), "2") == lowest;
        failing_taken |= fail;
        let recorder = Arc::new(Recorder {
            running: "1",
            fail,
            installs: Mutex::default(),
        });
        follow(
            &node,
            events,
            &operator,
            recorder.clone(),
            good.clone(),
            stop_rx.clone(),
        );
        nodes.push((node, recorder));
    }
    let everyone: Vec<(Address, u8)> = nodes
        .iter()
        .map(|(n, _)| (n.identity.address(), position(&n.bus.peer_id(), "2")))
        .collect();
    let waves = vec![
        Wave {
            percent: cut,
            start_ms: 0,
        },
        Wave {
            percent: 100,
            start_ms: now_ms() + 3_600_000,
        },
    ];

    // A stranger's notice is ignored; the operator's is followed.
    let forged = notice("http://evil.example/b.raucb", waves.clone(), false);
    let real = notice("http://fleet.example/b.raucb", waves, false);
    wait_until(
        "every node to report on the operator's rollout",
        Duration::from_secs(30),
        || async {
            let _ = stranger
                .bus
                .publish(Message::RolloutNotice(forged.clone()))
                .await;
            let _ = operator
                .bus
                .publish(Message::RolloutNotice(real.clone()))
                .await;
            everyone.iter().all(|(a, _)| {
                report_of(&tally, *a)
                    .is_some_and(|r| r.target == "2" && r.state != UpdateState::Installing)
            })
        },
    )
    .await
    .unwrap();
    let recorders: Vec<&Arc<Recorder>> = nodes.iter().map(|(_, r)| r).collect();
    for ((address, pos), recorder) in everyone.iter().zip(&recorders) {
        let installs = recorder.installs.lock().unwrap().clone();
        let report = report_of(&tally, *address).unwrap();
        if in_first(*pos) {
            assert_eq!(installs, vec!["http://fleet.example/b.raucb".to_string()]);
            let want = if recorder.fail {
                UpdateState::Failed
            } else {
                UpdateState::Rebooting
            };
            assert_eq!(report.state, want, "{report:?}");
        } else {
            assert!(installs.is_empty(), "position {pos} installed {installs:?}");
            assert_eq!(report.state, UpdateState::Waiting, "{report:?}");
            assert!(report.detail.contains("wave starts in"), "{report:?}");
        }
        assert_eq!(report.slot, "A booted, B good");
    }
    assert_eq!(recorders.iter().filter(|r| r.fail).count(), 1);
    assert!(tally.lock().unwrap().should_halt(&real, 0));

    // Halted, with every wave started: nobody else installs.
    let halted = notice(
        "http://fleet.example/b.raucb",
        vec![Wave {
            percent: 100,
            start_ms: 0,
        }],
        true,
    );
    let waiting: Vec<Address> = everyone
        .iter()
        .filter(|(_, p)| !in_first(*p))
        .map(|(a, _)| *a)
        .collect();
    wait_until(
        "the waiting nodes to see the halt",
        Duration::from_secs(30),
        || async {
            let _ = operator
                .bus
                .publish(Message::RolloutNotice(halted.clone()))
                .await;
            waiting
                .iter()
                .all(|a| report_of(&tally, *a).is_some_and(|r| r.detail.contains("halted")))
        },
    )
    .await
    .unwrap();
    for ((_, pos), recorder) in everyone.iter().zip(&recorders) {
        if !in_first(*pos) {
            assert!(recorder.installs.lock().unwrap().is_empty());
        }
    }
    let _ = stop.send(true);
}

/// A node that rebooted into the rollout's release stays "rebooting" (checking health)
/// until its slot's health check passes, then "good"; a failed check is reported as a
/// failure, and nothing is installed either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_new_release_is_good_only_once_its_health_check_passes() {
    let (operator, op_events) = spawn_node(Identity::ephemeral()).unwrap();
    let tally = collect(op_events);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (node, events) = spawn_node(Identity::ephemeral()).unwrap();
        node.bus.dial(operator.addr.clone()).await.unwrap();
        let recorder = Arc::new(Recorder {
            running: "2",
            fail: false,
            installs: Mutex::default(),
        });
        let (verdict, health) = tokio::sync::watch::channel(SlotHealth::Checking);
        follow(
            &node,
            events,
            &operator,
            recorder.clone(),
            health,
            stop_rx.clone(),
        );
        nodes.push((node.identity.address(), recorder, verdict, node));
    }
    let now = notice(
        "http://fleet.example/b.raucb",
        vec![Wave {
            percent: 100,
            start_ms: 0,
        }],
        false,
    );
    let state_of = |a: Address| report_of(&tally, a).map(|r| r.state);
    let publish = || async {
        let _ = operator
            .bus
            .publish(Message::RolloutNotice(now.clone()))
            .await;
    };
    wait_until(
        "both nodes to report checking health",
        Duration::from_secs(30),
        || async {
            publish().await;
            nodes.iter().all(|(a, ..)| {
                report_of(&tally, *a).is_some_and(|r| {
                    r.state == UpdateState::Rebooting && r.detail.contains("checking health")
                })
            })
        },
    )
    .await
    .unwrap();

    nodes[0].2.send_replace(SlotHealth::Good);
    nodes[1]
        .2
        .send_replace(SlotHealth::Bad("no peer connected".into()));
    wait_until(
        "the verdicts to be reported",
        Duration::from_secs(30),
        || async {
            state_of(nodes[0].0) == Some(UpdateState::Good)
                && state_of(nodes[1].0) == Some(UpdateState::Failed)
        },
    )
    .await
    .unwrap();
    let failed = report_of(&tally, nodes[1].0).unwrap();
    assert!(failed.detail.contains("no peer connected"), "{failed:?}");
    for (_, recorder, ..) in &nodes {
        assert!(recorder.installs.lock().unwrap().is_empty());
    }
    let _ = stop.send(true);
}

/// A node whose own boot is still on trial installs nothing (its other slot is the way
/// back); once the check passes it takes its wave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_node_on_trial_waits_for_its_health_check_before_installing() {
    let (verdict, health) = tokio::sync::watch::channel(SlotHealth::Checking);
    let One {
        operator,
        tally,
        stop,
        node,
        recorder,
    } = one_node("1", health).await;
    let now = notice(
        "http://fleet.example/c.raucb",
        vec![Wave {
            percent: 100,
            start_ms: 0,
        }],
        false,
    );
    let me = node.identity.address();
    publish_until("the node to wait", &operator, &now, &tally, me, |r| {
        r.state == UpdateState::Waiting && r.detail.contains("health check")
    })
    .await;
    assert!(recorder.installs.lock().unwrap().is_empty());

    verdict.send_replace(SlotHealth::Good);
    wait_until("the install", Duration::from_secs(30), || async {
        report_of(&tally, me).is_some_and(|r| r.state == UpdateState::Rebooting)
    })
    .await
    .unwrap();
    assert_eq!(
        *recorder.installs.lock().unwrap(),
        vec!["http://fleet.example/c.raucb".to_string()]
    );
    let _ = stop.send(true);
}

/// A signed notice for an older release than the node runs (a replayed notice, say) is
/// refused unless the operator allowed the downgrade in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_downgrade_notice_is_refused_unless_allowed() {
    let (_verdict, health) = tokio::sync::watch::channel(SlotHealth::Good);
    let One {
        operator,
        tally,
        stop,
        node,
        recorder,
    } = one_node("3", health).await;
    let everyone = vec![Wave {
        percent: 100,
        start_ms: 0,
    }];
    let old = notice("http://fleet.example/old.raucb", everyone.clone(), false);
    let me = node.identity.address();
    publish_until("the node to refuse", &operator, &old, &tally, me, |r| {
        r.state == UpdateState::Waiting && r.detail.contains("does not allow a downgrade")
    })
    .await;
    assert!(recorder.installs.lock().unwrap().is_empty(), "it installed");

    let allowed = RolloutNotice {
        allow_downgrade: true,
        issued_ms: now_ms(),
        ..notice("http://fleet.example/back.raucb", everyone, false)
    };
    publish_until(
        "the allowed downgrade",
        &operator,
        &allowed,
        &tally,
        me,
        |r| r.state == UpdateState::Rebooting,
    )
    .await;
    assert_eq!(
        *recorder.installs.lock().unwrap(),
        vec!["http://fleet.example/back.raucb".to_string()]
    );
    let _ = stop.send(true);
}
