//! Task specs, which buyers write: as JSON through a hub and on the runtime's local socket.

use sosna_runtime::api::Request;
use sosna_runtime::caps::TaskCaps;
use sosna_runtime::pull::parse_reference;
use sosna_runtime::spec::{build, ImageDefaults};
use sosna_runtime::TaskSpec;

/// A control-socket request line: a request or an error, and a task in it validates or
/// names the bad field.
pub fn runtime_request(data: &[u8]) {
    if let Ok(Request::Run { task }) = serde_json::from_slice::<Request>(data) {
        let _ = task.validate();
    }
}

/// A buyer's spec as the desk and the worker take it: validate, pin check, the image
/// reference, the node's caps, then the OCI runtime spec it becomes.
pub fn task_spec(data: &[u8]) {
    let Ok(mut task) = serde_json::from_slice::<TaskSpec>(data) else {
        return;
    };
    if task.validate().is_err() {
        return;
    }
    let _ = task.pinned_digest();
    let _ = parse_reference(&task.image);
    let caps = TaskCaps {
        memory_bytes: 1 << 30,
        pids: 256,
        cpus: 2.0,
        wall_secs: 3600,
        scratch_bytes: 1 << 30,
    };
    if caps.apply(&mut task).is_err() {
        return;
    }
    let image = ImageDefaults {
        entrypoint: vec!["/bin/sh".into()],
        cmd: vec!["-c".into(), "true".into()],
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let _ = build("fuzz", &task, &image, "/sosna/fuzz");
}
