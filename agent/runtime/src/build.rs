//! Building small OCI images from files in memory and pushing them to a registry: how the
//! project makes its own test and demo images (busybox-based), single- or multi-arch.
//! Layers are deterministic: sorted entries, zero timestamps, root ownership.

use std::collections::BTreeMap;
use std::io::Write;

use oci_client::{Client, Reference};
use serde_json::json;

use super::pull::{error_chain, parse_reference, PullError};
use super::store::Digest;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

enum Node {
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
    Dir,
}

/// One layer's contents; paths are relative to the image root.
#[derive(Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Node>,
}

impl LayerBuilder {
    pub fn file(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.insert(
            path.trim_start_matches('/').into(),
            Node::File {
                data: data.into(),
                mode,
            },
        );
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.insert(
            path.trim_start_matches('/').into(),
            Node::Symlink(target.into()),
        );
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.entries
            .insert(path.trim_start_matches('/').into(), Node::Dir);
        self
    }

    /// The layer as a gzip-compressed tar and the digest of the uncompressed tar (diff id).
    pub fn finish(self) -> (Vec<u8>, Digest) {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, node) in &self.entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(0);
            h.set_uid(0);
            h.set_gid(0);
            match node {
                Node::File { data, mode } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    tar.append_data(&mut h, path, &data[..])
                        .expect("in-memory tar");
                }
                Node::Symlink(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    tar.append_link(&mut h, path, target)
                        .expect("in-memory tar");
                }
                Node::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    tar.append_data(&mut h, path, &[][..])
                        .expect("in-memory tar");
                }
            }
        }
        let tar = tar.into_inner().expect("in-memory tar");
        let diff_id = Digest::of(&tar);
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("in-memory gzip");
        (gz.finish().expect("in-memory gzip"), diff_id)
    }
}

/// One platform's image.
pub struct Image {
    /// OCI architecture: `amd64`, `arm64`.
    pub arch: String,
    /// Gzip layers with their diff ids, bottom first ([`LayerBuilder::finish`]).
    pub layers: Vec<(Vec<u8>, Digest)>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
}

impl Image {
    /// The image's config blob.
    pub fn config_json(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": self.arch,
            "os": "linux",
            "config": {"Cmd": self.cmd, "Env": self.env},
            "rootfs": {"type": "layers",
                       "diff_ids": self.layers.iter().map(|(_, d)| d).collect::<Vec<_>>()},
        }))
        .expect("json")
    }

    /// The image's manifest over `config` (from [`Image::config_json`]) and its layers.
    pub fn manifest_json(&self, config: &[u8]) -> Vec<u8> {
        let layers: Vec<_> = (self.layers.iter())
            .map(|(blob, _)| {
                json!({"mediaType": LAYER_GZIP, "digest": Digest::of(blob), "size": blob.len()})
            })
            .collect();
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": Digest::of(config), "size": config.len()},
            "layers": layers,
        }))
        .expect("json")
    }
}

/// Pushes `images` under `reference`: one image as a plain manifest, several as an index.
/// Returns the digest the reference now points at.
pub async fn push(client: &Client, reference: &str, images: &[Image]) -> Result<Digest, PullError> {
    let target = parse_reference(reference)?;
    let err = |e: oci_client::errors::OciDistributionError| PullError::Registry {
        reference: reference.into(),
        reason: error_chain(&e),
    };
    let mut entries = Vec::new();
    for image in images {
        for (blob, _) in &image.layers {
            let d = Digest::of(blob);
            client
                .push_blob(&target, blob.clone(), d.as_str())
                .await
                .map_err(err)?;
        }
        let config = image.config_json();
        let cd = Digest::of(&config);
        client
            .push_blob(&target, config.clone(), cd.as_str())
            .await
            .map_err(err)?;
        let manifest = image.manifest_json(&config);
        let md = Digest::of(&manifest);
        let at = if images.len() == 1 {
            target.clone()
        } else {
            target.clone_with_digest(md.to_string())
        };
        put_manifest(client, &at, manifest.clone(), MANIFEST)
            .await
            .map_err(err)?;
        entries.push(
            json!({"mediaType": MANIFEST, "digest": md, "size": manifest.len(),
                            "platform": {"os": "linux", "architecture": image.arch}}),
        );
        if images.len() == 1 {
            return Ok(md);
        }
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX, "manifests": entries,
    }))
    .expect("json");
    put_manifest(client, &target, index.clone(), INDEX)
        .await
        .map_err(err)?;
    Ok(Digest::of(&index))
}

async fn put_manifest(
    client: &Client,
    at: &Reference,
    body: Vec<u8>,
    media_type: &'static str,
) -> Result<String, oci_client::errors::OciDistributionError> {
    client
        .push_manifest_raw(at, body, http::HeaderValue::from_static(media_type))
        .await
}

/// A busybox image: the static busybox binary with its applets linked into /bin.
pub fn busybox_layer(busybox: Vec<u8>, applets: &[&str]) -> LayerBuilder {
    let mut l = LayerBuilder::default()
        .dir("bin")
        .dir("etc")
        .dir("tmp")
        .dir("proc")
        .dir("sys")
        .dir("dev")
        .file("bin/busybox", busybox, 0o755)
        .file(
            "etc/passwd",
            "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
            0o644,
        );
    for a in applets {
        l = l.symlink(&format!("bin/{a}"), "busybox");
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_deterministic_and_unpackable() {
        let make = || {
            LayerBuilder::default()
                .file("b/x", "x", 0o644)
                .symlink("a", "b/x")
                .dir("b")
                .finish()
        };
        let (one, d1) = make();
        let (two, d2) = make();
        assert_eq!(one, two);
        assert_eq!(d1, d2);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blob"), &one).unwrap();
        super::super::unpack::unpack_layer(&dir.path().join("blob"), &dir.path().join("l"))
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("l/a")).unwrap(), b"x");
    }
}
