//! Every decoder a stranger can feed, as a plain `fn(&[u8])` that must not panic on any
//! input (and asserts what must hold when it does not fail). The cargo-fuzz binaries in
//! `agent/fuzz` are one line each around these; `tests/replay.rs` runs every committed
//! seed and regression input through them on stable Rust, so a known crasher fails
//! `cargo test`.

pub mod boot;
pub mod bus;
pub mod registry;
pub mod slave;
pub mod task;
pub mod updates;

/// Fixed inputs the targets share, so runs are reproducible.
pub mod fixed;

/// A target's body: any bytes, no panic.
pub type Target = fn(&[u8]);

/// Every target, by the name its cargo-fuzz binary and corpus directories have.
pub const TARGETS: &[(&str, Target)] = &[
    ("boot_text", boot::boot_text),
    ("bus_message", bus::bus_message),
    ("config", boot::config),
    ("dhcp_reply", boot::dhcp_reply),
    ("envelope", bus::envelope),
    ("envelope_signed", bus::envelope_signed),
    ("gpt_table", boot::gpt_table),
    ("hub_book", bus::hub_book),
    ("image_config", registry::image_config),
    ("layer_tar", registry::layer_tar),
    ("modules_dep", boot::modules_dep),
    ("oci_manifest", registry::oci_manifest),
    ("rauc_reply", updates::rauc_reply),
    ("registry_auth", registry::registry_auth),
    ("rpc_frame", bus::rpc_frame),
    ("runtime_request", task::runtime_request),
    ("slave_frame", slave::slave_frame),
    ("slave_hello", slave::slave_hello),
    ("slave_values", slave::slave_values),
    ("task_spec", task::task_spec),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}
