//! Writes the seed inputs that are built in code (signed envelopes, msgpack messages,
//! DHCP replies, layers, GPT headers…) into agent/fuzz/seeds/<target>/, deterministically:
//! fixed keys, a fixed clock, RFC 6979 signatures. Real files copied from the system live
//! beside them. Run: cargo run -p sosna-fuzz-targets --example gen_seeds

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256, U256};
use serde_json::json;
use sosna_fuzz_targets::fixed::{key, NOW_MS, PEER};
use sosna_market::miner::hubbook::HubBook;
use sosna_proto::attest::{self, Unit};
use sosna_proto::bus::envelope::{seal_body, Body};
use sosna_proto::bus::messages::*;
use sosna_proto::result::ResultBundle;
use sosna_proto::slave::frame::Frame;
use sosna_runtime::build::{Image, LayerBuilder};
use zbus::zvariant::{serialized::Context, to_bytes, OwnedValue, Value, LE};

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    std::fs::create_dir_all(&d).expect("seed directory");
    d
}

fn put(target: &str, name: &str, data: impl AsRef<[u8]>) {
    std::fs::write(dir(target).join(name), data).expect("write a seed");
}

fn spec_json() -> String {
    json!({
        "image": "10.0.2.2:5000/busybox@sha256:b950d843d0413d8bce441cb5b408fc52a5ceb789f354e4166379d7d162d1ff76",
        "args": ["sh", "-c", "seq 1 100000 | sha256sum"],
        "env": ["A=1"],
        "resources": {"memory_bytes": 67108864u64, "cpus": 1.0, "pids": 64, "cpu_shares": 512},
        "timeout_secs": 600,
    })
    .to_string()
}

fn messages() -> Vec<(&'static str, Message)> {
    let key = key();
    let me = key.address();
    let unit = Unit {
        hub: Address::repeat_byte(0x11),
        id: B256::repeat_byte(0x22),
        replicas: 3,
    };
    let bundle = ResultBundle {
        image: "sha256:b950d843d0413d8bce441cb5b408fc52a5ceb789f354e4166379d7d162d1ff76".into(),
        exit_code: 0,
        stdout: b"f3b6c9  -\n".to_vec(),
    };
    let domain = attest::domain(31337, Address::repeat_byte(0x33));
    let attestation = attest::sign(&key, &domain, &unit, bundle.digest()).expect("sign");
    let prices = PriceSchedule {
        cpu_core_hour: 1000,
        memory_gib_hour: 100,
        gpu_hour: 50_000,
    };
    let agreement = Agreement {
        prices,
        min_payout_usnm: 1_000_000,
        payout_every_secs: 3600,
    };
    vec![
        (
            "announcement",
            Message::HubAnnouncement(HubAnnouncement {
                multiaddrs: vec![
                    "/ip4/127.0.0.1/tcp/41065/p2p/12D3KooWEkfFKJbe3EabRn2zgnKykpWRzuotuG8sPx1Bh5ga9Nex".into(),
                    "/ip4/10.0.2.2/udp/4001/quic-v1".into(),
                ],
                owner: me,
                wallet: Address::repeat_byte(0x99),
                name: "fleet-hub".into(),
                prices,
                timestamp_ms: NOW_MS,
            }),
        ),
        (
            "question",
            Message::HubQuestion(HubQuestion {
                wallet: Address::repeat_byte(0x99),
                nonce: 7,
            }),
        ),
        (
            "verdict",
            Message::HubVerdict(HubVerdict {
                wallet: Address::repeat_byte(0x99),
                nonce: 7,
                asker: Address::repeat_byte(0x44),
                verdict: Verdict::Positive,
            }),
        ),
        ("metadata_request", Message::Request(Request::HubMetadata)),
        (
            "metadata",
            Message::Response(Response::HubMetadata(HubMetadata {
                owner: me,
                wallet: Address::repeat_byte(0x99),
                name: "fleet-hub".into(),
                multiaddrs: vec!["/ip4/127.0.0.1/tcp/41065".into()],
                agreement,
                version: "0.1.0".into(),
            })),
        ),
        ("join", Message::Request(Request::Join { miner: me })),
        ("joined", Message::Response(Response::Joined(agreement))),
        (
            "offer",
            Message::Request(Request::Offer(TaskOffer {
                unit,
                spec: spec_json(),
                pay_usnm: 2_000_000,
                deadline_ms: NOW_MS + 600_000,
            })),
        ),
        ("accepted", Message::Response(Response::Accepted)),
        (
            "report_done",
            Message::Request(Request::Report(TaskReport {
                unit: unit.id,
                outcome: TaskOutcome::Done {
                    image: bundle.image.clone(),
                    exit_code: 0,
                    stdout: bundle.stdout.clone(),
                    attestation,
                },
                pull_ms: 1200,
                run_ms: 800,
            })),
        ),
        (
            "report_failed",
            Message::Request(Request::Report(TaskReport {
                unit: unit.id,
                outcome: TaskOutcome::Failed("image not pinned".into()),
                pull_ms: 0,
                run_ms: 0,
            })),
        ),
        ("received", Message::Response(Response::Received)),
        (
            "submit",
            Message::Request(Request::Submit(JobSubmission {
                deal: U256::from(1),
                price: U256::from(10u128 * 10u128.pow(18)),
                deadline: NOW_MS / 1000 + 600,
                replicas: 3,
                spec: spec_json(),
            })),
        ),
        (
            "job_query",
            Message::Request(Request::Job {
                deal: U256::from(1),
            }),
        ),
        (
            "job_status",
            Message::Response(Response::Job(JobStatus {
                deal: U256::from(1),
                phase: JobPhase::Done,
                detail: "committed in block 20; 2 miners paid, 1 challenged".into(),
                result: Some(bundle.clone()),
                agree: vec![Address::repeat_byte(1), Address::repeat_byte(2)],
                disagree: vec![Address::repeat_byte(3)],
                txs: vec![("commit deal 1".into(), B256::repeat_byte(5))],
                timings: JobTimings {
                    dispatch_ms: 5,
                    pull_ms: 1200,
                    run_ms: 800,
                    verify_ms: 3,
                    settle_ms: 400,
                    settle_gas: 180_000,
                },
            })),
        ),
        (
            "refused",
            Message::Response(Response::Refused("no such unit pending".into())),
        ),
        (
            "rollout",
            Message::RolloutNotice(RolloutNotice {
                version: "0.2.0".into(),
                url: "http://10.0.2.2:8000/sosna-0.2.0.raucb".into(),
                sha256: B256::repeat_byte(0xab),
                size: 48 << 20,
                waves: vec![
                    Wave {
                        percent: 10,
                        start_ms: NOW_MS,
                    },
                    Wave {
                        percent: 100,
                        start_ms: NOW_MS + 3_600_000,
                    },
                ],
                halted: false,
                issued_ms: NOW_MS,
                allow_downgrade: false,
            }),
        ),
        (
            "rollout_downgrade",
            Message::RolloutNotice(RolloutNotice {
                version: "0.0.9".into(),
                url: "https://updates.example/sosna-0.0.9.raucb".into(),
                sha256: B256::repeat_byte(0xcd),
                size: 1,
                waves: vec![Wave {
                    percent: 100,
                    start_ms: NOW_MS,
                }],
                halted: false,
                issued_ms: NOW_MS + 1,
                allow_downgrade: true,
            }),
        ),
        (
            "update_report",
            Message::UpdateReport(UpdateReport {
                running: "0.1.0".into(),
                target: "0.2.0".into(),
                state: UpdateState::Installing,
                slot: "A booted, B good".into(),
                detail: "42%".into(),
            }),
        ),
    ]
}

fn bus_seeds() {
    let key = key();
    for (name, message) in messages() {
        let encoded = rmp_serde::to_vec(&message).expect("encode a message");
        put("bus_message", name, &encoded);
        let topic = message.topic();
        let body = Body {
            topic: topic.into(),
            peer: PEER.to_vec(),
            from: key.address(),
            timestamp_ms: NOW_MS,
            message,
        };
        let sealed = seal_body(&body, &key).expect("seal");
        put("envelope", name, &sealed);
        let topic_byte = [
            GOSSIP_TOPICS[0],
            GOSSIP_TOPICS[1],
            GOSSIP_TOPICS[2],
            TOPIC_RPC,
        ]
        .iter()
        .position(|t| *t == topic)
        .expect("a known topic") as u8;
        let mut signed = vec![topic_byte];
        signed.extend(rmp_serde::to_vec(&body).expect("encode a body"));
        put("envelope_signed", name, &signed);
        let mut frame = (sealed.len() as u32).to_be_bytes().to_vec();
        frame.extend(&sealed);
        put("rpc_frame", name, &frame);
    }
    // Not canonical: a map where the encoder writes an array.
    let mut odd = vec![0x81, 0xa4];
    odd.extend(b"body");
    odd.extend([0xc4, 0x01, 0x00]);
    put("envelope", "not_canonical", &odd);
    put("rpc_frame", "oversized", 0x0001_0001u32.to_be_bytes());
}

fn hub_book_seeds() {
    let mut book = HubBook::default();
    for (name, m) in messages() {
        if let (Message::HubAnnouncement(a), "announcement") = (&m, name) {
            book.observe(
                a,
                "12D3KooWEkfFKJbe3EabRn2zgnKykpWRzuotuG8sPx1Bh5ga9Nex",
                NOW_MS,
            )
            .expect("a new hub");
            book.record_verdict(&a.wallet, Address::repeat_byte(1), Verdict::Positive, 1);
            book.set_joined(&a.wallet);
            let mut other = a.clone();
            other.owner = Address::repeat_byte(0x77);
            book.refuse(
                &other,
                "12D3KooWother",
                "the chain names another owner".into(),
                NOW_MS,
            );
        }
    }
    let _ = key;
    put(
        "hub_book",
        "one_hub.json",
        serde_json::to_vec_pretty(&book).expect("json"),
    );
    put("hub_book", "empty.json", b"{\"hubs\":{}}");
}

fn dhcp_reply(kind: u8, with_lease: bool) -> Vec<u8> {
    let mut b = vec![0u8; 240];
    b[0] = 2; // BOOTREPLY
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    b[16..20].copy_from_slice(&[10, 0, 2, 15]); // yiaddr
    b[28..34].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    b[236..240].copy_from_slice(&[99, 130, 83, 99]);
    b.extend([53, 1, kind]);
    b.extend([54, 4, 10, 0, 2, 2]);
    if with_lease {
        b.extend([1, 4, 255, 255, 255, 0]);
        b.extend([3, 4, 10, 0, 2, 2]);
        b.extend([6, 8, 10, 0, 2, 3, 1, 1, 1, 1]);
        b.extend([51, 4, 0, 1, 81, 128]);
    }
    b.push(255);
    b
}

fn dhcp_seeds() {
    put("dhcp_reply", "offer", dhcp_reply(2, false));
    put("dhcp_reply", "ack", dhcp_reply(5, true));
    put("dhcp_reply", "nak", dhcp_reply(6, false));
}

fn layer_seeds() {
    let (gz, _) = LayerBuilder::default()
        .dir("bin")
        .file("bin/hello", b"#!/bin/sh\necho hi\n".to_vec(), 0o755)
        .symlink("bin/sh", "busybox")
        .file("etc/.wh.passwd", Vec::new(), 0o644)
        .file("var/.wh..wh..opq", Vec::new(), 0o644)
        .finish();
    put("layer_tar", "gzip.tar.gz", &gz);
    let tar = {
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut out).expect("gunzip our own layer");
        out
    };
    put("layer_tar", "plain.tar", &tar);
    put(
        "layer_tar",
        "zstd.tar.zst",
        zstd::encode_all(&tar[..], 3).expect("zstd"),
    );
    // The tar crate's builder refuses these names, so the headers are written by hand.
    let mut evil = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in [
        ("../../evil", tar::EntryType::Regular, "", &b"x"[..]),
        ("up", tar::EntryType::Symlink, "../../..", &b""[..]),
        ("up/escape", tar::EntryType::Regular, "", &b"y"[..]),
        ("/abs", tar::EntryType::Regular, "", &b"z"[..]),
        ("hard", tar::EntryType::Link, "/etc/shadow", &b""[..]),
    ] {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        evil.append(&h, data).expect("in-memory tar");
    }
    let evil = evil.into_inner().expect("in-memory tar");
    put("layer_tar", "escapes.tar", &evil);
}

fn registry_seeds() {
    let (gz, diff) = LayerBuilder::default()
        .file("hello", b"hi".to_vec(), 0o644)
        .finish();
    let image = Image {
        arch: "amd64".into(),
        layers: vec![(gz, diff)],
        cmd: vec!["/hello".into()],
        env: vec!["PATH=/bin".into()],
    };
    let config = image.config_json();
    put("image_config", "built.json", &config);
    put(
        "image_config",
        "full.json",
        json!({"architecture": "arm64", "os": "linux", "config": {
            "Entrypoint": ["/entry"], "Cmd": ["-v"], "Env": ["A=1", "B=two"],
            "WorkingDir": "/work", "User": "1000:1000"}})
        .to_string(),
    );
    put(
        "oci_manifest",
        "manifest.json",
        image.manifest_json(&config),
    );
    let entry = |arch: &str, os: &str, byte: char| {
        json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
               "digest": format!("sha256:{}", byte.to_string().repeat(64)), "size": 500,
               "platform": {"architecture": arch, "os": os}})
    };
    put(
        "oci_manifest",
        "index.json",
        json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
               "manifests": [entry("amd64", "linux", 'a'), entry("arm64", "linux", 'b'),
                             entry("amd64", "windows", 'c')]})
        .to_string(),
    );
    put(
        "oci_manifest",
        "docker_list.json",
        json!({"schemaVersion": 2,
               "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
               "manifests": [entry("ppc64le", "linux", 'd')]})
        .to_string(),
    );
    put(
        "oci_manifest",
        "docker_v2.json",
        json!({"schemaVersion": 2,
               "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                          "digest": format!("sha256:{}", "e".repeat(64)), "size": 1470},
               "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                           "digest": format!("sha256:{}", "f".repeat(64)),
                           "size": i64::MAX}]})
        .to_string(),
    );
    let jwt = |claims: &str| {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            b.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
            b.encode(claims),
            b.encode("sig")
        )
    };
    let auth = [
        (
            "bearer",
            format!(
                "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/busybox:pull\"\n{}",
                json!({"token": jwt(r#"{"exp":1796083500}"#)})
            ),
        ),
        (
            "access_token",
            format!(
                "Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\"\n{}",
                json!({"access_token": "djE6b3BhcXVlLWdoY3ItdG9rZW4="})
            ),
        ),
        (
            "several",
            format!(
                "Basic realm=\"registry\", Bearer realm=\"https://r.example/t\" , Digest realm=\"x\", nonce=\"a\\\"b\"\n{}",
                json!({"token": jwt(r#"{"sub":"anonymous"}"#)})
            ),
        ),
        ("basic_only", "Basic realm=\"Registry Realm\"\n".to_string()),
    ];
    for (name, text) in auth {
        put("registry_auth", name, text);
    }
}

fn rauc_seeds() {
    // Ordered maps: a HashMap would encode its fields in a different order every run.
    let slot = |fields: &[(&str, Value<'static>)]| -> BTreeMap<String, OwnedValue> {
        fields
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    OwnedValue::try_from(v.try_clone().expect("a plain value"))
                        .expect("an owned value"),
                )
            })
            .collect()
    };
    let status: Vec<(String, BTreeMap<String, OwnedValue>)> = vec![
        (
            "rootfs.0".into(),
            slot(&[
                ("bootname", Value::from("A")),
                ("class", Value::from("rootfs")),
                ("state", Value::from("booted")),
                ("boot-status", Value::from("good")),
                ("bundle.version", Value::from("0.1.0")),
                ("size", Value::from(268_435_456u64)),
                ("installed.count", Value::from(3u32)),
                ("activated.count", Value::from(2u32)),
            ]),
        ),
        (
            "rootfs.1".into(),
            slot(&[
                ("bootname", Value::from("B")),
                ("class", Value::from("rootfs")),
                ("state", Value::from("inactive")),
                ("boot-status", Value::from("bad")),
                ("device", Value::from("/dev/vda3")),
                ("mountpoint", Value::Value(Box::new(Value::from(true)))),
            ]),
        ),
    ];
    let ctxt = Context::new_dbus(LE, 0);
    put(
        "rauc_reply",
        "slot_status",
        to_bytes(ctxt, &status)
            .expect("encode a slot status")
            .bytes(),
    );
    put(
        "rauc_reply",
        "progress",
        to_bytes(
            ctxt,
            &(42i32, "Copying image to rootfs.1".to_string(), 2i32),
        )
        .expect("encode progress")
        .bytes(),
    );
}

fn gpt(sector: usize) -> Vec<u8> {
    let mut disk = vec![0u8; sector * 6];
    let h = &mut disk[sector..sector + 92];
    h[0..8].copy_from_slice(b"EFI PART");
    h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
    h[12..16].copy_from_slice(&92u32.to_le_bytes());
    h[72..80].copy_from_slice(&2u64.to_le_bytes());
    h[80..84].copy_from_slice(&4u32.to_le_bytes());
    h[84..88].copy_from_slice(&128u32.to_le_bytes());
    for (i, label) in ["efi", "rootfs.0", "rootfs.1"].iter().enumerate() {
        let at = 2 * sector + i * 128;
        let e = &mut disk[at..at + 128];
        e[0..16].copy_from_slice(&[0xaf; 16]);
        e[16..32].copy_from_slice(&[i as u8 + 1; 16]);
        e[32..40].copy_from_slice(&(2048u64 * (i as u64 + 1)).to_le_bytes());
        e[40..48].copy_from_slice(&(2048u64 * (i as u64 + 2) - 1).to_le_bytes());
        for (j, c) in label.encode_utf16().enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&c.to_le_bytes());
        }
    }
    disk
}

fn slave_seeds() {
    let frames: Vec<(&str, Frame)> = vec![
        (
            "resolve",
            Frame::new(1, 0, vec![rmpv::Value::Array(vec!["storage".into()])]),
        ),
        (
            "storage_write",
            Frame::new(
                3,
                1,
                vec![rmpv::Value::Array(vec![
                    "collection".into(),
                    "key".into(),
                    rmpv::Value::Binary(b"value".to_vec()),
                    rmpv::Value::Array(vec!["tag".into()]),
                ])],
            ),
        ),
        ("choke", Frame::new(1, 2, vec![])),
        (
            "error",
            Frame::new(
                1,
                1,
                vec![
                    rmpv::Value::Array(vec![1.into(), 6.into()]),
                    "denied".into(),
                ],
            ),
        ),
    ];
    for (name, f) in &frames {
        let mut data = vec![3u8];
        data.extend(f.to_bytes());
        put("slave_frame", name, &data);
    }
    let mut stream = vec![7u8];
    for (_, f) in &frames {
        stream.extend(f.to_bytes());
    }
    put("slave_frame", "stream", &stream);
    put("slave_frame", "garbage_then_frame", {
        let mut d = vec![1u8, 0xc1, 0xc1, 0x93];
        d.extend(frames[0].1.to_bytes());
        d
    });
    let resolved = rmpv::Value::Array(vec![
        rmpv::Value::Array(vec![rmpv::Value::Array(vec![
            "127.0.0.1".into(),
            10053.into(),
        ])]),
        1.into(),
        rmpv::Value::Map(vec![
            (
                0.into(),
                rmpv::Value::Array(vec![
                    "read".into(),
                    rmpv::Value::Map(vec![]),
                    rmpv::Value::Map(vec![
                        (
                            0.into(),
                            rmpv::Value::Array(vec!["value".into(), rmpv::Value::Nil]),
                        ),
                        (
                            1.into(),
                            rmpv::Value::Array(vec!["error".into(), rmpv::Value::Nil]),
                        ),
                    ]),
                ]),
            ),
            (
                1.into(),
                rmpv::Value::Array(vec![
                    "write".into(),
                    rmpv::Value::Map(vec![]),
                    rmpv::Value::Map(vec![]),
                ]),
            ),
        ]),
    ]);
    let enc = |v: &rmpv::Value| {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).expect("encode a value");
        out
    };
    put("slave_values", "resolved", enc(&resolved));
    put(
        "slave_values",
        "error",
        enc(&rmpv::Value::Array(vec![
            rmpv::Value::Array(vec![1.into(), 6.into()]),
            "denied: this method is for trusted peers".into(),
        ])),
    );
    let profile = rmpv::ext::to_value(
        serde_json::from_str::<sosna_proto::task::TaskSpec>(&spec_json()).expect("our spec"),
    )
    .expect("a profile value");
    put("slave_values", "profile", enc(&profile));
    for (name, hello) in [
        ("locator", &b"\x07locator"[..]),
        ("storage", b"\x07storage"),
        ("empty", b"\x00"),
        ("short", b"\x10node"),
    ] {
        put("slave_hello", name, hello);
    }
}

fn task_seeds() {
    put("task_spec", "buyer.json", spec_json());
    put(
        "task_spec",
        "full.json",
        json!({"image": "busybox:latest", "args": ["/bin/true"], "env": [],
               "user": "1000:1000", "workdir": "/tmp", "network": "nat",
               "resources": {"memory_bytes": 1073741824u64, "cpus": 0.5, "pids": 16},
               "writable_rootfs": true, "tmpfs": ["/run"], "restart": "on-failure"})
        .to_string(),
    );
    put(
        "runtime_request",
        "run.json",
        format!("{{\"op\":\"run\",\"task\":{}}}", spec_json()),
    );
    for (name, line) in [
        ("ps", r#"{"op":"ps"}"#),
        (
            "pull",
            r#"{"op":"pull","reference":"10.0.2.2:5000/busybox:fleet"}"#,
        ),
        ("kill", r#"{"op":"kill","id":"a","signal":9}"#),
        ("logs", r#"{"op":"logs","id":"df076016d36d68e5"}"#),
        ("rm", r#"{"op":"rm","id":"df076016d36d68e5","force":true}"#),
    ] {
        put("runtime_request", name, line);
    }
}

fn main() {
    bus_seeds();
    hub_book_seeds();
    dhcp_seeds();
    layer_seeds();
    registry_seeds();
    rauc_seeds();
    slave_seeds();
    task_seeds();
    put("gpt_table", "gpt512.img", gpt(512));
    put("gpt_table", "gpt4096.img", gpt(4096));
    let mut out = std::io::stdout();
    writeln!(out, "seeds written under agent/fuzz/seeds").expect("stdout");
}
