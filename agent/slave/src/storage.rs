//! The `storage` service: blobs by namespace and key, with tags, on the state directory.
//!
//! Layout: `<root>/<hex(namespace)>/<hex(key)>`, each file the msgpack `[blob, [tags…]]`.
//! Names are hex-encoded so no namespace or key can escape the root or collide with the
//! temporary files (`.tmp-*`) that make every write atomic (write, fsync, rename, fsync dir).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rmpv::Value;

use super::session::{Call, Service};
use sosna_proto::slave::error::{service as code, RpcError};
use sosna_proto::slave::graph::{Method, Protocol};

sosna_proto::protocol! {
    /// Storage protocol (version 1).
    pub enum StorageMethod = "storage", version 1 {
        /// `read(namespace, key) -> value(blob)`
        0 Read "read": Terminal -> Option,
        /// `write(namespace, key, blob, tags?) -> value()`
        1 Write "write": Terminal -> Option,
        /// `remove(namespace, key) -> value()`
        2 Remove "remove": Terminal -> Option,
        /// `find(namespace, tags) -> value([keys])`
        3 Find "find": Terminal -> Option,
    }
}

/// Longest namespace or key, in bytes (hex doubles it; file names stop at 255).
const MAX_NAME: usize = 120;
/// Largest stored object (value and tags, encoded).
pub const MAX_OBJECT: u64 = 1 << 20;
/// Most bytes the whole store may hold.
pub const QUOTA: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{what} {name:?} is empty or longer than {MAX_NAME} bytes")]
    BadName { what: &'static str, name: String },
    #[error("no key {key:?} in namespace {namespace:?}")]
    NotFound { namespace: String, key: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt object {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("object of {size} bytes is over the {MAX_OBJECT}-byte limit")]
    TooLarge { size: u64 },
    #[error("storage holds {used} bytes; {size} more would pass the {QUOTA}-byte quota")]
    Full { used: u64, size: u64 },
}

impl From<StorageError> for RpcError {
    fn from(e: StorageError) -> RpcError {
        let c = match e {
            StorageError::BadName { .. } | StorageError::TooLarge { .. } => code::INVALID_ARGUMENT,
            StorageError::Full { .. } => code::UNAVAILABLE,
            StorageError::NotFound { .. } => code::NOT_FOUND,
            StorageError::Io { .. } | StorageError::Corrupt { .. } => code::IO,
        };
        RpcError::service(c, e.to_string())
    }
}

/// Blocking store; the service runs it on the blocking pool.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    /// Writes are serialised so the quota check and the write are one step.
    writing: std::sync::Arc<std::sync::Mutex<()>>,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store {
            root: root.into(),
            writing: Default::default(),
        }
    }

    fn check<'a>(what: &'static str, name: &'a str) -> Result<&'a str, StorageError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(StorageError::BadName {
                what,
                name: name.chars().take(MAX_NAME + 3).collect(),
            });
        }
        Ok(name)
    }

    fn ns_dir(&self, ns: &str) -> Result<PathBuf, StorageError> {
        Ok(self.root.join(hex(Self::check("namespace", ns)?)))
    }

    fn path(&self, ns: &str, key: &str) -> Result<PathBuf, StorageError> {
        Ok(self.ns_dir(ns)?.join(hex(Self::check("key", key)?)))
    }

    fn load(path: &Path) -> Result<Option<(Value, Vec<String>)>, StorageError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", path)(e)),
        };
        let corrupt = |reason: String| StorageError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let v = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], 256)
            .map_err(|e| corrupt(e.to_string()))?;
        match v {
            Value::Array(mut a) if a.len() == 2 => {
                let tags = a
                    .pop()
                    .and_then(|t| match t {
                        Value::Array(t) => Some(t),
                        _ => None,
                    })
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect();
                Ok(a.pop().map(|blob| (blob, tags)))
            }
            other => Err(corrupt(format!("expected [blob, tags], got {other}"))),
        }
    }

    pub fn read(&self, ns: &str, key: &str) -> Result<Value, StorageError> {
        match Self::load(&self.path(ns, key)?)? {
            Some((blob, _)) => Ok(blob),
            None => Err(StorageError::NotFound {
                namespace: ns.into(),
                key: key.into(),
            }),
        }
    }

    pub fn write(
        &self,
        ns: &str,
        key: &str,
        blob: Value,
        tags: &[String],
    ) -> Result<(), StorageError> {
        let path = self.path(ns, key)?;
        let dir = self.ns_dir(ns)?;
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let doc = Value::Array(vec![
            blob,
            Value::Array(tags.iter().map(|t| Value::from(t.as_str())).collect()),
        ]);
        let mut bytes = Vec::new();
        let _ = rmpv::encode::write_value(&mut bytes, &doc);
        let size = bytes.len() as u64;
        if size > MAX_OBJECT {
            return Err(StorageError::TooLarge { size });
        }
        let _one_writer = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let replaced = std::fs::metadata(&path).map_or(0, |m| m.len());
        let used = self.used();
        if used.saturating_sub(replaced) + size > QUOTA {
            return Err(StorageError::Full { used, size });
        }
        sosna_durable::write_atomic(&path, &bytes, sosna_durable::Durability::Synced)
            .map_err(io("write", &path))
    }

    /// Bytes the store's objects take (a walk: the store is small by its quota).
    fn used(&self) -> u64 {
        let Ok(namespaces) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        namespaces
            .flatten()
            .filter_map(|ns| std::fs::read_dir(ns.path()).ok())
            .flat_map(|objects| objects.flatten())
            .filter_map(|o| o.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    pub fn remove(&self, ns: &str, key: &str) -> Result<(), StorageError> {
        let path = self.path(ns, key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::NotFound {
                namespace: ns.into(),
                key: key.into(),
            }),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }

    /// Keys in `ns` carrying every tag in `tags`, sorted.
    pub fn find(&self, ns: &str, tags: &[String]) -> Result<Vec<String>, StorageError> {
        let dir = self.ns_dir(ns)?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", &dir)(e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("list", &dir))?;
            let name = entry.file_name();
            let Some(key) = name.to_str().and_then(unhex) else {
                continue; // temporary files and strays
            };
            if let Some((_, have)) = Self::load(&entry.path())? {
                if tags.iter().all(|t| have.contains(t)) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// The store as a service on the wire.
pub struct StorageService(pub Arc<Store>);

fn str_arg(args: &[Value], i: usize, what: &str) -> Result<String, RpcError> {
    args.get(i)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| RpcError::invalid(format!("argument {i} ({what}) must be a str")))
}

fn tags_arg(args: &[Value], i: usize) -> Result<Vec<String>, RpcError> {
    match args.get(i) {
        None | Some(Value::Nil) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| RpcError::invalid(format!("argument {i} (tags) must be [str…]"))),
        Some(_) => Err(RpcError::invalid(format!(
            "argument {i} (tags) must be [str…]"
        ))),
    }
}

fn run(store: &Store, m: StorageMethod, args: Vec<Value>) -> Result<Vec<Value>, RpcError> {
    let ns = str_arg(&args, 0, "namespace")?;
    match m {
        StorageMethod::Read => Ok(vec![store.read(&ns, &str_arg(&args, 1, "key")?)?]),
        StorageMethod::Write => {
            let key = str_arg(&args, 1, "key")?;
            let blob = match args.get(2) {
                Some(b @ (Value::String(_) | Value::Binary(_))) => b.clone(),
                _ => return Err(RpcError::invalid("argument 2 (blob) must be a str or bin")),
            };
            store.write(&ns, &key, blob, &tags_arg(&args, 3)?)?;
            Ok(vec![])
        }
        StorageMethod::Remove => {
            store.remove(&ns, &str_arg(&args, 1, "key")?)?;
            Ok(vec![])
        }
        StorageMethod::Find => {
            let keys = store.find(&ns, &tags_arg(&args, 1)?)?;
            Ok(vec![Value::Array(
                keys.into_iter().map(Value::from).collect(),
            )])
        }
    }
}

impl Service for StorageService {
    fn protocol(&self) -> &'static Protocol {
        &StorageMethod::PROTOCOL
    }

    fn invoke(&self, method: &'static Method, args: Vec<Value>, call: Call) {
        let Some(m) = StorageMethod::from_id(method.id) else {
            return;
        };
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || call.reply.result(run(&store, m, args)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_the_store_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        let big = Value::Binary(vec![7; MAX_OBJECT as usize]);
        assert!(matches!(
            s.write("apps", "big", big, &[]),
            Err(StorageError::TooLarge { .. })
        ));
        let chunk = Value::Binary(vec![7; (MAX_OBJECT / 2) as usize]);
        let fits = (QUOTA / (MAX_OBJECT / 2)) as usize - 1;
        for i in 0..fits {
            s.write("apps", &i.to_string(), chunk.clone(), &[]).unwrap();
        }
        let full = s.write("apps", "one-more", chunk.clone(), &[]).unwrap_err();
        assert!(matches!(full, StorageError::Full { .. }), "{full}");
        // Replacing an object counts its old size back; nothing stored was lost.
        s.write("apps", "0", chunk.clone(), &[]).unwrap();
        assert_eq!(s.read("apps", &(fits - 1).to_string()).unwrap(), chunk);
    }

    #[test]
    fn store_round_trips_and_finds_by_tags() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path());
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        s.write("apps", "a/../../x", Value::from("one"), &t(&["red", "big"]))
            .unwrap();
        s.write("apps", "b", Value::Binary(vec![0, 1]), &t(&["red"]))
            .unwrap();
        assert_eq!(s.read("apps", "a/../../x").unwrap(), Value::from("one"));
        assert_eq!(
            s.find("apps", &t(&["red"])).unwrap(),
            vec!["a/../../x", "b"]
        );
        assert_eq!(
            s.find("apps", &t(&["red", "big"])).unwrap(),
            vec!["a/../../x"]
        );
        assert_eq!(s.find("none", &t(&[])).unwrap(), Vec::<String>::new());
        s.remove("apps", "b").unwrap();
        assert!(matches!(
            s.read("apps", "b"),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            s.remove("apps", "b"),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(s.read("", "b"), Err(StorageError::BadName { .. })));
        // Nothing escaped the root, and no temporary file was left behind.
        let ns = dir.path().join(hex("apps"));
        let names: Vec<_> = std::fs::read_dir(&ns)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![hex("a/../../x")]);
    }
}
