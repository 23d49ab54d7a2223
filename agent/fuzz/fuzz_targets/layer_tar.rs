//! Layer blobs from a registry: any bytes unpack or fail cleanly, and never write outside
//! the layer directory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sosna_runtime::unpack::unpack_layer;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = dir.path().join("blob");
    std::fs::write(&blob, data).expect("write blob");
    let jail = dir.path().join("jail");
    std::fs::create_dir(&jail).expect("jail");
    let _ = unpack_layer(&blob, &jail.join("layer"));
    // Only the blob, the jail and nothing else may exist beside each other.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "wrote outside the layer: {names:?}");
});
