//! Pulling images from an OCI distribution registry into the [`Store`]: resolve the
//! reference (through a multi-arch index to this machine's platform), then fetch config and
//! layers, each verified against its digest, resuming interrupted downloads.

use std::str::FromStr;

use futures::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;

use super::store::{Digest, ImageRecord, Store, StoreError};

const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Manifests and configs are small; a larger one is a hostile or broken registry.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
const BLOB_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("bad image reference {reference:?}: {reason}")]
    BadReference { reference: String, reason: String },
    #[error("{reference}: registry: {reason}")]
    Registry { reference: String, reason: String },
    #[error("{reference}: no {arch} image in its index (it has: {available})")]
    NoPlatform {
        reference: String,
        arch: String,
        available: String,
    },
    #[error("{reference}: bad manifest: {reason}")]
    Manifest { reference: String, reason: String },
    #[error("{reference}: {source}")]
    Store {
        reference: String,
        source: StoreError,
    },
}

/// Progress of one pull, for operators watching a slow link.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PullEvent {
    Resolved {
        manifest: String,
        layers: usize,
        bytes: u64,
    },
    Layer {
        digest: String,
        bytes: u64,
        cached: bool,
    },
}

/// The registry client: plain HTTP only for registries listed as insecure; HTTPS trusts
/// the system CA bundle (the image carries Debian's).
pub fn client(insecure_registries: &[String]) -> Result<Client, PullError> {
    crate::tls::ensure_provider();
    // oci-client builds a default reqwest client internally, which panics when no CA
    // certificate loads: refuse here instead.
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| SYSTEM_BUNDLE.into());
    if !bundle.is_file() {
        return Err(PullError::Registry {
            reference: "(client)".into(),
            reason: format!(
                "no CA certificates at {} (install ca-certificates)",
                bundle.display()
            ),
        });
    }
    let config = ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure_registries.to_vec()),
        platform_resolver: None,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    Client::try_from(config).map_err(|e| PullError::Registry {
        reference: "(client)".into(),
        reason: error_chain(&e),
    })
}

pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The OCI architecture name of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub fn parse_reference(reference: &str) -> Result<Reference, PullError> {
    Reference::from_str(reference).map_err(|e| PullError::BadReference {
        reference: reference.into(),
        reason: e.to_string(),
    })
}

/// `reference` pinned to the digest of the manifest (or index) the registry serves for it
/// now: `registry/repository@sha256:…`. Already pinned references come back as they are,
/// unread. Whoever pulls the result gets exactly those bytes or an error.
pub async fn pin(client: &Client, reference: &str) -> Result<String, PullError> {
    let image = parse_reference(reference)?;
    if image.digest().is_some() {
        return Ok(reference.to_owned());
    }
    let (bytes, _) = client
        .pull_manifest_raw(&image, &RegistryAuth::Anonymous, MANIFEST_TYPES)
        .await
        .map_err(|e| registry_error(reference, &e))?;
    let digest = Digest::of(&bytes);
    let pinned = Reference::with_digest(
        image.registry().to_owned(),
        image.repository().to_owned(),
        digest.to_string(),
    );
    Ok(pinned.whole())
}

/// Pulls `reference` for `arch` and records it; blobs already stored are not fetched again.
pub async fn pull(
    client: &Client,
    store: &Store,
    reference: &str,
    arch: &str,
    progress: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<ImageRecord, PullError> {
    let image = parse_reference(reference)?;
    let registry_err = |e: oci_client::errors::OciDistributionError| registry_error(reference, &e);
    let bad = |reason: String| PullError::Manifest {
        reference: reference.into(),
        reason,
    };
    let store_err = |source| PullError::Store {
        reference: reference.into(),
        source,
    };

    let (mut bytes, _) = client
        .pull_manifest_raw(&image, &RegistryAuth::Anonymous, MANIFEST_TYPES)
        .await
        .map_err(registry_err)?;
    let mut digest = Digest::of(&bytes);
    if let Some(pinned) = image.digest() {
        if digest.as_str() != pinned {
            return Err(bad(format!(
                "registry sent content hashing to {digest}, not the requested {pinned}"
            )));
        }
    }
    let mut doc = read_manifest(&bytes, arch);
    if let Ok(ManifestDoc::Index(chosen)) = doc {
        let by_digest = image.clone_with_digest(chosen.to_string());
        (bytes, _) = client
            .pull_manifest_raw(&by_digest, &RegistryAuth::Anonymous, MANIFEST_TYPES)
            .await
            .map_err(registry_err)?;
        digest = Digest::of(&bytes);
        if digest != chosen {
            return Err(bad(format!(
                "index names {chosen} but the registry sent content hashing to {digest}"
            )));
        }
        doc = read_manifest(&bytes, arch);
    }
    let manifest = match doc {
        Ok(ManifestDoc::Image(m)) => m,
        // An index that points at another index is not followed.
        Ok(ManifestDoc::Index(_)) => return Err(bad("an index inside an index".into())),
        Err(ManifestError::Bad(reason)) => return Err(bad(reason)),
        Err(ManifestError::NoPlatform(available)) => {
            return Err(PullError::NoPlatform {
                reference: reference.into(),
                arch: arch.into(),
                available,
            })
        }
        Err(ManifestError::Digest(source)) => return Err(store_err(source)),
    };
    let ImageManifest {
        config: (config_desc, config),
        layers: described,
        size,
    } = manifest;
    let (descs, layers): (Vec<OciDescriptor>, Vec<Digest>) = described.into_iter().unzip();
    progress(PullEvent::Resolved {
        manifest: digest.to_string(),
        layers: layers.len(),
        bytes: size,
    });

    store.put_blob(&digest, &bytes).map_err(store_err)?;
    fetch_blob(client, store, &image, &config_desc, &config)
        .await
        .map_err(|e| e.into_pull(reference))?;
    for (desc, d) in descs.iter().zip(&layers) {
        let cached = store.has_blob(d);
        if !cached {
            fetch_blob(client, store, &image, desc, d)
                .await
                .map_err(|e| e.into_pull(reference))?;
        }
        progress(PullEvent::Layer {
            digest: d.to_string(),
            bytes: desc.size.max(0) as u64,
            cached,
        });
    }
    let rec = ImageRecord {
        reference: reference.into(),
        manifest: digest,
        config,
        layers,
        size,
    };
    store.set_ref(&rec).map_err(store_err)?;
    Ok(rec)
}

/// The layers' total size as the manifest declares it: a registry's numbers, so negative
/// ones count as 0 and the sum saturates instead of overflowing.
fn declared_bytes(layers: &[OciDescriptor]) -> u64 {
    layers
        .iter()
        .map(|l| u64::try_from(l.size).unwrap_or(0))
        .fold(0, u64::saturating_add)
}

#[derive(serde::Deserialize)]
struct Manifest {
    config: OciDescriptor,
    #[serde(default)]
    layers: Vec<OciDescriptor>,
}

/// What a manifest document from a registry says, once checked.
#[derive(Debug)]
pub enum ManifestDoc {
    /// An index (or Docker manifest list): the digest of this platform's manifest.
    Index(Digest),
    Image(ImageManifest),
}

/// An image manifest: its config and layers with their digests checked, and the layers'
/// declared total size.
#[derive(Debug)]
pub struct ImageManifest {
    pub config: (OciDescriptor, Digest),
    pub layers: Vec<(OciDescriptor, Digest)>,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{0}")]
    Bad(String),
    /// An index without this platform; the text lists what it has.
    #[error("no image for this platform (it has: {0})")]
    NoPlatform(String),
    #[error(transparent)]
    Digest(StoreError),
}

/// Reads a manifest or index a registry sent, for a linux/`arch` machine. Pure, so the
/// fuzzer can feed it what a hostile registry might.
pub fn read_manifest(bytes: &[u8], arch: &str) -> Result<ManifestDoc, ManifestError> {
    let doc = parse_json(bytes).map_err(ManifestError::Bad)?;
    if doc.get("manifests").is_some() {
        return pick_platform(&doc, arch)
            .map(ManifestDoc::Index)
            .map_err(ManifestError::NoPlatform);
    }
    let manifest: Manifest =
        serde_json::from_value(doc).map_err(|e| ManifestError::Bad(e.to_string()))?;
    let digest = |d: &OciDescriptor| Digest::parse(&d.digest).map_err(ManifestError::Digest);
    let size = declared_bytes(&manifest.layers);
    let config = digest(&manifest.config)?;
    let layers = manifest
        .layers
        .into_iter()
        .map(|l| digest(&l).map(|d| (l, d)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ManifestDoc::Image(ImageManifest {
        config: (manifest.config, config),
        layers,
        size,
    }))
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, String> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(format!(
            "{} bytes, over the {MAX_MANIFEST_BYTES} limit",
            bytes.len()
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))
}

/// The digest of the linux/`arch` entry, or the list of platforms on offer.
fn pick_platform(index: &serde_json::Value, arch: &str) -> Result<Digest, String> {
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    let mut seen = Vec::new();
    for e in &entries {
        let os = e["platform"]["os"].as_str().unwrap_or("?");
        let a = e["platform"]["architecture"].as_str().unwrap_or("?");
        if os == "linux" && a == arch {
            if let Some(d) = e["digest"].as_str().and_then(|d| Digest::parse(d).ok()) {
                return Ok(d);
            }
        }
        seen.push(format!("{os}/{a}"));
    }
    Err(if seen.is_empty() {
        "nothing".into()
    } else {
        seen.join(", ")
    })
}

enum FetchError {
    Registry(String),
    Store(StoreError),
    TooBig { digest: Digest, declared: i64 },
}

impl FetchError {
    fn into_pull(self, reference: &str) -> PullError {
        match self {
            FetchError::Registry(reason) => PullError::Registry {
                reference: reference.into(),
                reason,
            },
            FetchError::Store(source) => PullError::Store {
                reference: reference.into(),
                source,
            },
            FetchError::TooBig { digest, declared } => PullError::Manifest {
                reference: reference.into(),
                reason: format!("blob {digest} is larger than its declared {declared} bytes"),
            },
        }
    }
}

/// Downloads one blob into the store, resuming after a broken connection.
async fn fetch_blob(
    client: &Client,
    store: &Store,
    image: &Reference,
    desc: &OciDescriptor,
    digest: &Digest,
) -> Result<(), FetchError> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let mut last = String::new();
    for attempt in 1..=BLOB_ATTEMPTS {
        let mut w = store.begin_blob(digest).map_err(FetchError::Store)?;
        let stream = if w.is_empty() {
            client.pull_blob_stream(image, desc).await
        } else {
            match client
                .pull_blob_stream_partial(image, desc, w.len(), None)
                .await
            {
                Ok(BlobResponse::Partial(s)) => Ok(s),
                Ok(BlobResponse::Full(s)) => {
                    w.restart().map_err(FetchError::Store)?;
                    Ok(s)
                }
                Err(e) => Err(e),
            }
        };
        let mut stream = match stream {
            Ok(s) => s.stream,
            Err(e) => {
                last = error_chain(&e);
                tracing::warn!("{digest}: attempt {attempt}: {last}");
                continue;
            }
        };
        let mut broken = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    w.write(&bytes).map_err(FetchError::Store)?;
                    if desc.size >= 0 && w.len() > desc.size as u64 {
                        drop(w);
                        let _ = std::fs::remove_file(
                            store
                                .root()
                                .join("incoming")
                                .join(format!("{}.partial", digest.hex())),
                        );
                        return Err(FetchError::TooBig {
                            digest: digest.clone(),
                            declared: desc.size,
                        });
                    }
                }
                Err(e) => {
                    broken = Some(error_chain(&e));
                    break;
                }
            }
        }
        // oci-client checks the digest too and reports a mismatch as a stream error after
        // the last byte: with every byte here, our own check gives the clear answer.
        let complete = desc.size >= 0 && w.len() == desc.size as u64;
        match broken {
            None => return w.finish().map(drop).map_err(FetchError::Store),
            Some(_) if complete => return w.finish().map(drop).map_err(FetchError::Store),
            Some(e) => {
                tracing::warn!(
                    "{digest}: attempt {attempt} broke off at {} bytes: {e}",
                    w.len()
                );
                last = e;
            }
        }
    }
    Err(FetchError::Registry(format!(
        "blob {digest}: gave up after {BLOB_ATTEMPTS} attempts: {last}"
    )))
}

/// Names the common case plainly: the registry does not have it.
pub(crate) fn registry_error(reference: &str, e: &dyn std::error::Error) -> PullError {
    let reason = error_chain(e);
    let lower = reason.to_lowercase();
    let missing = [
        "manifest unknown",
        "name unknown",
        "blob unknown",
        "not found",
    ]
    .iter()
    .any(|m| lower.contains(m));
    PullError::Registry {
        reference: reference.into(),
        reason: if missing {
            format!("not found ({reason})")
        } else {
            reason
        },
    }
}

/// An error and its causes on one line: reqwest hides the useful part ("connection
/// refused") in the source chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three layers claiming `i64::MAX` bytes each (a registry's numbers) saturate the
    /// total instead of overflowing it; negative sizes count as nothing.
    #[test]
    fn declared_sizes_saturate() {
        let layer = |size| OciDescriptor {
            size,
            ..Default::default()
        };
        let huge = vec![layer(i64::MAX), layer(i64::MAX), layer(i64::MAX)];
        assert_eq!(declared_bytes(&huge), u64::MAX);
        assert_eq!(declared_bytes(&[layer(-5), layer(7)]), 7);
    }

    #[test]
    fn index_picks_linux_arch_or_lists_what_exists() {
        let d = Digest::of(b"x");
        let index = serde_json::json!({"manifests": [
            {"digest": Digest::of(b"w").to_string(), "platform": {"os": "windows", "architecture": "amd64"}},
            {"digest": d.to_string(), "platform": {"os": "linux", "architecture": "arm64"}},
        ]});
        assert_eq!(pick_platform(&index, "arm64").unwrap(), d);
        assert_eq!(
            pick_platform(&index, "amd64").unwrap_err(),
            "windows/amd64, linux/arm64"
        );
    }

    #[test]
    fn references_are_checked() {
        assert!(parse_reference("127.0.0.1:5000/busybox:1").is_ok());
        let e = parse_reference("UPPER/Case:tag").unwrap_err().to_string();
        assert!(e.contains("bad image reference"), "{e}");
    }
}
