//! Content-addressed storage under the state directory: blobs by sha256, unpacked layers
//! by their blob's digest, and which reference names which manifest.
//!
//! Every write goes to a temporary name and is renamed into place only once complete and
//! verified, so a crash leaves nothing half-written under a final name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("bad digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    BadDigest(String),
    #[error("digest mismatch for {expected}: content hashes to {actual}")]
    Mismatch { expected: Digest, actual: Digest },
    #[error("{path}: corrupt index: {source}")]
    Index {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A sha256 content digest (`sha256:<hex>`), validated on construction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest, StoreError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| StoreError::BadDigest(s.into()))?;
        let ok = hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(StoreError::BadDigest(s.into()));
        }
        Ok(Digest(s.to_string()))
    }

    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    fn from_hasher(h: Sha256) -> Digest {
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        Digest(format!("sha256:{hex}"))
    }

    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as operators see image and layer ids.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = StoreError;
    fn try_from(s: String) -> Result<Digest, StoreError> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// What a pulled reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub reference: String,
    pub manifest: Digest,
    pub config: Digest,
    /// Bottom layer first, as in the manifest.
    pub layers: Vec<Digest>,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

const REFS: &str = "refs.json";
/// Unpacked layers, owners shifted into the tasks' id range ([`crate::idmap`]).
const LAYERS: &str = "layers-shifted";

impl Store {
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let root = root.into();
        for sub in ["blobs/sha256", "incoming", LAYERS] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        // Layers unpacked before tasks ran in a user namespace have host owners; they are
        // unpacked again, shifted, from their blobs.
        let _ = fs::remove_dir_all(root.join("layers"));
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub fn layer_dir(&self, d: &Digest) -> PathBuf {
        self.root.join(LAYERS).join(d.hex())
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        fs::read(&p).map_err(io_err(&p))
    }

    /// Stores bytes already in memory (manifests, configs), verified against `d`.
    pub fn put_blob(&self, d: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let actual = Digest::of(bytes);
        if &actual != d {
            return Err(StoreError::Mismatch {
                expected: d.clone(),
                actual,
            });
        }
        if self.has_blob(d) {
            return Ok(());
        }
        let tmp = self
            .root
            .join("incoming")
            .join(format!("{}.small", d.hex()));
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        let dst = self.blob_path(d);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Opens (or resumes) a download of blob `d`. Bytes already on disk from an interrupted
    /// attempt are re-hashed so the final check covers the whole blob.
    pub fn begin_blob(&self, d: &Digest) -> Result<BlobWriter, StoreError> {
        let path = self
            .root
            .join("incoming")
            .join(format!("{}.partial", d.hex()));
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut len = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            len += n as u64;
        }
        Ok(BlobWriter {
            expected: d.clone(),
            path,
            file,
            hasher,
            len,
            dst: self.blob_path(d),
        })
    }

    pub fn refs(&self) -> Result<BTreeMap<String, ImageRecord>, StoreError> {
        let path = self.root.join(REFS);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Index {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn image(&self, reference: &str) -> Result<Option<ImageRecord>, StoreError> {
        Ok(self.refs()?.remove(reference))
    }

    pub fn set_ref(&self, rec: &ImageRecord) -> Result<(), StoreError> {
        let mut refs = self.refs()?;
        refs.insert(rec.reference.clone(), rec.clone());
        self.write_refs(&refs)
    }

    pub fn remove_ref(&self, reference: &str) -> Result<bool, StoreError> {
        let mut refs = self.refs()?;
        let had = refs.remove(reference).is_some();
        self.write_refs(&refs)?;
        Ok(had)
    }

    fn write_refs(&self, refs: &BTreeMap<String, ImageRecord>) -> Result<(), StoreError> {
        let path = self.root.join(REFS);
        let json = serde_json::to_vec_pretty(refs).expect("records serialize");
        sosna_durable::write_atomic(&path, &json, sosna_durable::Durability::Synced)
            .map_err(io_err(&path))
    }

    /// Deletes blobs and unpacked layers no reference (and no digest in `pinned`, e.g.
    /// layers under running containers) points at, and abandoned downloads.
    pub fn gc(&self, pinned: &BTreeSet<Digest>) -> Result<GcReport, StoreError> {
        let mut keep: BTreeSet<Digest> = pinned.clone();
        for rec in self.refs()?.into_values() {
            keep.insert(rec.manifest);
            keep.insert(rec.config);
            keep.extend(rec.layers);
        }
        let mut report = GcReport::default();
        for (dir, is_layer) in [("blobs/sha256", false), (LAYERS, true)] {
            let dir = self.root.join(dir);
            for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let used = Digest::parse(&format!("sha256:{name}"))
                    .map(|d| keep.contains(&d))
                    .unwrap_or(false);
                if used {
                    continue;
                }
                let p = entry.path();
                if is_layer {
                    fs::remove_dir_all(&p).map_err(io_err(&p))?;
                    report.layers += 1;
                } else {
                    report.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(&p).map_err(io_err(&p))?;
                    report.blobs += 1;
                }
            }
        }
        let incoming = self.root.join("incoming");
        for entry in fs::read_dir(&incoming).map_err(io_err(&incoming))? {
            let p = entry.map_err(io_err(&incoming))?.path();
            let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir_all(&p));
        }
        Ok(report)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    pub blobs: usize,
    pub layers: usize,
    pub bytes: u64,
}

/// A blob being downloaded; see [`Store::begin_blob`].
pub struct BlobWriter {
    expected: Digest,
    path: PathBuf,
    file: File,
    hasher: Sha256,
    len: u64,
    dst: PathBuf,
}

impl BlobWriter {
    /// Bytes already present (the offset to resume from).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Throws away what was written (the server ignored our range request).
    pub fn restart(&mut self) -> Result<(), StoreError> {
        self.file.set_len(0).map_err(io_err(&self.path))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }

    /// Verifies the digest and moves the blob into place. On a mismatch the partial file is
    /// deleted: its bytes are wrong, resuming from them would fail again.
    pub fn finish(self) -> Result<u64, StoreError> {
        let actual = Digest::from_hasher(self.hasher);
        if actual != self.expected {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::Mismatch {
                expected: self.expected,
                actual,
            });
        }
        self.file.sync_all().map_err(io_err(&self.path))?;
        fs::rename(&self.path, &self.dst).map_err(io_err(&self.dst))?;
        Ok(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_validated() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        for bad in [
            "",
            "sha256:",
            "md5:abc",
            "sha256:XYZ",
            &d.as_str().to_uppercase(),
        ] {
            let e = Digest::parse(bad).unwrap_err().to_string();
            assert!(e.contains("bad digest"), "{bad}: {e}");
        }
    }

    #[test]
    fn blobs_resume_verify_and_land_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = vec![7u8; 100_000];
        let d = Digest::of(&data);
        let mut w = store.begin_blob(&d).unwrap();
        w.write(&data[..30_000]).unwrap();
        drop(w); // interrupted
        assert!(!store.has_blob(&d), "a partial blob must not be visible");
        let mut w = store.begin_blob(&d).unwrap();
        assert_eq!(w.len(), 30_000);
        w.write(&data[30_000..]).unwrap();
        assert_eq!(w.finish().unwrap(), 100_000);
        assert_eq!(store.read_blob(&d).unwrap(), data);

        let wrong = Digest::of(b"other");
        let mut w = store.begin_blob(&wrong).unwrap();
        w.write(b"not it").unwrap();
        let e = w.finish().unwrap_err().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        assert!(!store.has_blob(&wrong));
        assert_eq!(
            fs::read_dir(dir.path().join("incoming")).unwrap().count(),
            0
        );
    }

    #[test]
    fn gc_keeps_referenced_and_pinned_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let put = |b: &[u8]| {
            let d = Digest::of(b);
            store.put_blob(&d, b).unwrap();
            d
        };
        let (m, c, l, pinned, junk) = (put(b"m"), put(b"c"), put(b"l"), put(b"p"), put(b"j"));
        fs::create_dir_all(store.layer_dir(&l)).unwrap();
        fs::create_dir_all(store.layer_dir(&junk)).unwrap();
        store
            .set_ref(&ImageRecord {
                reference: "r/x:1".into(),
                manifest: m.clone(),
                config: c.clone(),
                layers: vec![l.clone()],
                size: 3,
            })
            .unwrap();
        let report = store.gc(&BTreeSet::from([pinned.clone()])).unwrap();
        assert_eq!((report.blobs, report.layers), (1, 1));
        for d in [&m, &c, &l, &pinned] {
            assert!(store.has_blob(d));
        }
        assert!(!store.has_blob(&junk));
        assert!(store.layer_dir(&l).is_dir());
        assert!(!store.layer_dir(&junk).exists());
        assert!(store.remove_ref("r/x:1").unwrap());
        store.gc(&BTreeSet::new()).unwrap();
        assert!(!store.has_blob(&m));
    }
}
