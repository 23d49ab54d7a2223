//! `sosna update …` on the device: install a bundle (a path or an http(s):// URL), show the
//! slots, mark the booted slot. Everything goes through RAUC over D-Bus.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fetch::{self, FetchError};
use crate::rauc::{Rauc, RaucError};

/// Where downloaded bundles are kept (on the state partition, so a download resumes
/// across reboots), one file per expected digest or URL so that a resume never mixes two.
const DOWNLOADS: &str = "/var/lib/sosna/ota";
const RAUC_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("download: {0}")]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Rauc(#[from] RaucError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    /// RAUC wrote the other slot and made it primary.
    Done { digest: String },
    /// `--once` and this bundle was installed before.
    Already { digest: String },
}

pub async fn install(
    source: &str,
    sha256: Option<&str>,
    once: bool,
) -> Result<Installed, UpdateError> {
    let installed = |digest: &str| Path::new(super::INSTALLED_DIR).join(digest).exists();
    if let Some(d) = sha256 {
        let digest = fetch::parse_digest(d)?;
        if once && installed(&digest) {
            eprintln!("update: bundle {digest} was installed before; nothing to do");
            return Ok(Installed::Already { digest });
        }
    }
    let downloaded = source.starts_with("http://") || source.starts_with("https://");
    let path = if downloaded {
        let key = match sha256 {
            Some(d) => fetch::parse_digest(d)?,
            None => {
                use sha2::Digest;
                format!("{:x}", sha2::Sha256::digest(source.as_bytes()))
            }
        };
        let dest = Path::new(DOWNLOADS).join(format!("{}.raucb", &key[..16]));
        std::fs::create_dir_all(DOWNLOADS).map_err(|source| UpdateError::Io {
            what: format!("create {DOWNLOADS}"),
            source,
        })?;
        eprintln!("update: downloading {source}");
        fetch::download(source, &dest, sha256).await?;
        dest
    } else {
        let p = PathBuf::from(source);
        if let Some(d) = sha256 {
            fetch::verify(&p, &fetch::parse_digest(d)?)?;
        }
        p
    };
    let digest = match sha256 {
        Some(d) => fetch::parse_digest(d)?,
        None => fetch::sha256_file(&path)?,
    };
    let marker = Path::new(super::INSTALLED_DIR).join(&digest);
    if once && installed(&digest) {
        if downloaded {
            let _ = std::fs::remove_file(&path);
        }
        eprintln!("update: bundle {digest} was installed before; nothing to do");
        return Ok(Installed::Already { digest });
    }
    let rauc = Rauc::connect(RAUC_WAIT).await?;
    eprintln!("update: installing {} through RAUC", path.display());
    let mut last = (-1, String::new());
    rauc.install(&path.to_string_lossy(), &mut |p| {
        if (p.percent, &p.message) != (last.0, &last.1) {
            last = (p.percent, p.message.clone());
            eprintln!("update: {:3}% {}", p.percent, p.message);
        }
    })
    .await?;
    let _ = std::fs::create_dir_all(super::INSTALLED_DIR);
    if let Err(e) = std::fs::write(&marker, b"") {
        eprintln!("update: record {}: {e}", marker.display());
    }
    if downloaded {
        let _ = std::fs::remove_file(&path);
    }
    let primary = rauc.primary().await.unwrap_or_default();
    eprintln!("update: installed bundle {digest}; slot {primary} boots next");
    Ok(Installed::Done { digest })
}

/// The slots as RAUC reports them, plus this image's version.
pub async fn status() -> Result<String, UpdateError> {
    let rauc = Rauc::connect(RAUC_WAIT).await?;
    let booted = rauc.booted().await?;
    let primary = rauc.primary().await?;
    let mut out = format!(
        "version: {}\nbooted: {booted}\nprimary: {primary}\n",
        super::version()
    );
    let mut slots = rauc.slots().await?;
    slots.sort_by(|a, b| a.name.cmp(&b.name));
    for s in slots {
        // Every field RAUC reports, sorted: what it knows depends on the slot's history.
        let mut fields: Vec<_> = s.fields.iter().collect();
        fields.sort();
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("{}: {}\n", s.name, fields.join(" ")));
    }
    Ok(out)
}

pub async fn mark(good: bool) -> Result<String, UpdateError> {
    let rauc = Rauc::connect(Duration::from_secs(10)).await?;
    Ok(rauc.mark_booted(good).await?)
}
