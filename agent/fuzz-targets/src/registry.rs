//! What a registry sends: its auth challenge and token, manifests and indexes, image
//! configs and layer blobs. A registry is anyone a buyer names in an image reference.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use http_auth::parser::ChallengeParser;
use oci_client::token_cache::{RegistryToken, RegistryTokenType};
use oci_client::{Client, Reference, RegistryOperation};
use sosna_runtime::pull::{read_manifest, ManifestDoc};
use sosna_runtime::spec::{build, ImageDefaults};
use sosna_runtime::unpack::unpack_layer;
use sosna_runtime::TaskSpec;

/// An image config: defaults or an error, and whatever parses becomes a spec or an error.
pub fn image_config(data: &[u8]) {
    if let Ok(image) = ImageDefaults::from_config(data) {
        let task = TaskSpec {
            image: "fuzz".into(),
            ..Default::default()
        };
        let _ = build("fuzz", &task, &image, "/sosna/fuzz");
    }
}

/// A scratch directory for the whole run, in memory where the machine has /dev/shm: a
/// fresh directory on disk per input costs more than the unpacking it hosts.
fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a scratch directory")
    })
    .path()
}

/// A layer blob (tar, gzip or zstd): it unpacks or fails cleanly, and never writes outside
/// the layer directory.
pub fn layer_tar(data: &[u8]) {
    let run: PathBuf = scratch().join(format!("run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    std::fs::create_dir(&run).expect("the run directory");
    let blob = run.join("blob");
    std::fs::write(&blob, data).expect("write the blob");
    let jail = run.join("jail");
    std::fs::create_dir(&jail).expect("the jail");
    let _ = unpack_layer(&blob, &jail.join("layer"));
    let mut names: Vec<_> = std::fs::read_dir(&run)
        .expect("list the run directory")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["blob", "jail"], "wrote outside the layer");
    let mut inside: Vec<_> = std::fs::read_dir(&jail)
        .expect("list the jail")
        .map(|e| e.expect("an entry").file_name())
        .collect();
    inside.retain(|n| n != "layer");
    assert!(inside.is_empty(), "wrote beside the layer: {inside:?}");
    std::fs::remove_dir_all(&run).expect("clean up the run directory");
}

/// A manifest or index, for both architectures the image ships for.
pub fn oci_manifest(data: &[u8]) {
    for arch in ["amd64", "arm64"] {
        match read_manifest(data, arch) {
            Ok(ManifestDoc::Image(m)) => {
                let declared = m
                    .layers
                    .iter()
                    .map(|(d, _)| u64::try_from(d.size).unwrap_or(0))
                    .fold(0u64, u64::saturating_add);
                assert_eq!(m.size, declared, "size is the layers' saturating sum");
            }
            Ok(ManifestDoc::Index(_)) | Err(_) => {}
        }
    }
}

fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(|| sosna_runtime::pull::client(&[]).expect("a registry client"))
}

/// A `WWW-Authenticate` header, a newline, then the token endpoint's JSON answer: the
/// challenge is read as the registry client reads it (the Bearer realm and service), and
/// the token goes into the client's cache, which reads a JWT's unverified expiry.
pub fn registry_auth(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (header, token) = text.split_once('\n').unwrap_or((&text, ""));
    for challenge in ChallengeParser::new(header).take(64).flatten() {
        if challenge.scheme.eq_ignore_ascii_case("bearer") {
            for (name, value) in &challenge.params {
                if name.eq_ignore_ascii_case("realm") || name.eq_ignore_ascii_case("service") {
                    let _ = value.to_unescaped();
                }
            }
        }
    }
    if let Ok(t) = serde_json::from_str::<RegistryToken>(token) {
        let _ = t.bearer_token();
        let reference: Reference = "registry.invalid/fuzz:1"
            .parse()
            .expect("a fixed reference");
        futures::executor::block_on(client().tokens.insert(
            &reference,
            RegistryOperation::Pull,
            RegistryTokenType::Bearer(t),
        ));
    }
}
