//! What a Slave-protocol peer sends: frames on a TCP connection or a bus stream, the
//! stream's hello, and the values inside frames as the services and clients read them.

use bytes::BytesMut;
use rmpv::Value;
use sosna_proto::slave::error::RpcError;
use sosna_proto::slave::frame::{decode_one, Decoder, Frame};
use sosna_proto::slave::graph::parse_graph;
use sosna_proto::task::TaskSpec;
use sosna_slave::client::{endpoint_from_value, value_to_json, Resolved};

fn frames(data: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, String>> {
    let d = Decoder::new(4096);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => out.push(Ok(f.to_bytes())),
                Ok(None) => break,
                Err(e) => {
                    let fatal = !e.error.recoverable();
                    out.push(Err(e.to_string()));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    out
}

/// A split byte, then a byte stream: frames or errors, the same however the reads split
/// it, and decoded frames re-encode stably.
pub fn slave_frame(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = frames(data, data.len());
    let pieces = frames(data, usize::from(split % 16) + 1);
    assert_eq!(whole, pieces, "the read split changed the result");
    for bytes in whole.iter().flatten() {
        let f: Frame = decode_one(bytes).expect("a re-encoded frame decodes");
        assert_eq!(&f.to_bytes(), bytes, "encoding is stable");
    }
}

/// A bus stream's hello: the service name it asks for.
pub fn slave_hello(data: &[u8]) {
    let mut io = futures::io::Cursor::new(data);
    if let Ok(name) = futures::executor::block_on(sosna::slave_bus::read_service_name(&mut io)) {
        assert!(name.len() <= 255 * 3, "a name of {} bytes", name.len());
    }
}

/// A msgpack value as a frame's arguments: error replies, resolve answers, service
/// graphs, the CLI's JSON view, and an app profile (a task spec in msgpack).
pub fn slave_values(data: &[u8]) {
    let Ok(value) = rmpv::decode::read_value(&mut &data[..]) else {
        return;
    };
    let args = match &value {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    let e = RpcError::from_args(&args);
    let _ = e.to_string();
    if let Ok(r) = Resolved::from_args(args.clone()) {
        let _ = parse_graph(&r.graph);
    }
    let _ = parse_graph(&value);
    let _ = endpoint_from_value(&value);
    let _ = value_to_json(&value);
    if let Ok(task) = rmpv::ext::from_value::<TaskSpec>(value) {
        let _ = task.validate();
    }
}
