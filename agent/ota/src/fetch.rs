//! Downloads a bundle over plain HTTP into a file, resuming with a `Range` request after
//! a dropped connection, and checks its sha256. The bundle's signature is what makes it
//! trusted (RAUC checks it); the digest catches a wrong or truncated file early.
//! Plain HTTP/1.1 over tokio keeps this small; bundles come from a LAN or a CDN mirror.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const ATTEMPTS: u32 = 5;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad bundle URL {0:?}: expected http://HOST[:PORT]/PATH")]
    Url(String),
    #[error("GET {url}: {what}")]
    Http { url: String, what: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("bad sha256 {0:?}: expected 64 hex digits")]
    BadDigest(String),
    #[error("{path}: sha256 is {found}, expected {expected}")]
    Mismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    let what = what.into();
    move |source| FetchError::Io { what, source }
}

/// `http://host[:port]/path` split into the address to dial, the Host header and path.
pub fn parse_url(url: &str) -> Result<(String, String, String), FetchError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| FetchError::Url(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(char::is_whitespace) {
        return Err(FetchError::Url(url.into()));
    }
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority.to_owned(), path.to_owned()))
}

/// Checks a sha256 given as hex.
pub fn parse_digest(hex: &str) -> Result<String, FetchError> {
    let h = hex.trim().to_ascii_lowercase();
    if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(h)
    } else {
        Err(FetchError::BadDigest(hex.into()))
    }
}

/// Downloads `url` into `dest`, continuing a partial file, and checks `sha256`.
pub async fn download(url: &str, dest: &Path, sha256: Option<&str>) -> Result<(), FetchError> {
    let expected = sha256.map(parse_digest).transpose()?;
    let target = parse_url(url)?;
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        match get_once(url, &target, dest).await {
            Ok(()) => {
                last = None;
                break;
            }
            Err(e) => {
                tracing::warn!("download attempt {attempt}/{ATTEMPTS}: {e}");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
    }
    if let Some(e) = last {
        return Err(e);
    }
    match expected {
        Some(expected) => verify(dest, &expected).inspect_err(|_| {
            // A wrong download must not be resumed from next time.
            let _ = std::fs::remove_file(dest);
        }),
        None => Ok(()),
    }
}

/// Checks `path` against a sha256.
pub fn verify(path: &Path, expected: &str) -> Result<(), FetchError> {
    let found = sha256_file(path)?;
    if found != expected {
        return Err(FetchError::Mismatch {
            path: path.into(),
            found,
            expected: expected.into(),
        });
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = std::fs::File::open(path).map_err(io(format!("open {}", path.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(io(format!("read {}", path.display())))?;
    Ok(format!("{:x}", h.finalize()))
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, FetchError> {
    match tokio::time::timeout(IO_TIMEOUT, f).await {
        Ok(r) => r.map_err(io(what)),
        Err(_) => Err(FetchError::Io {
            what: what.into(),
            source: std::io::ErrorKind::TimedOut.into(),
        }),
    }
}

async fn get_once(
    url: &str,
    (addr, host, path): &(String, String, String),
    dest: &Path,
) -> Result<(), FetchError> {
    let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    let http = |what: String| FetchError::Http {
        url: url.into(),
        what,
    };
    let stream = timed(
        &format!("connect {addr}"),
        tokio::net::TcpStream::connect(addr),
    )
    .await?;
    let mut stream = BufReader::new(stream);
    let range = if have > 0 {
        format!("Range: bytes={have}-\r\n")
    } else {
        String::new()
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sosna\r\n{range}Connection: close\r\n\r\n"
    );
    timed("send request", stream.get_mut().write_all(req.as_bytes())).await?;

    let mut line = String::new();
    timed("read status", stream.read_line(&mut line)).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| http(format!("malformed status line {:?}", line.trim_end())))?;
    let mut length = None;
    loop {
        line.clear();
        let n = timed("read headers", stream.read_line(&mut line)).await?;
        let h = line.trim_end();
        if n == 0 || h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = Some(
                    v.parse::<u64>()
                        .map_err(|_| http(format!("bad Content-Length {v:?}")))?,
                );
            } else if k == "transfer-encoding" && !v.eq_ignore_ascii_case("identity") {
                return Err(http(format!("unsupported Transfer-Encoding {v:?}")));
            }
        }
    }
    let append = match status {
        200 => false,
        206 => true,
        416 if have > 0 => return Ok(()), // the file is already whole
        other => return Err(http(format!("HTTP status {other}"))),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(dest)
        .map_err(io(format!("open {}", dest.display())))?;
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = timed("read body", stream.read(&mut buf)).await?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut file, &buf[..n])
            .map_err(io(format!("write {}", dest.display())))?;
        got += n as u64;
    }
    file.sync_all()
        .map_err(io(format!("sync {}", dest.display())))?;
    match length {
        Some(len) if got < len => Err(http(format!(
            "connection closed after {got} of {len} bytes"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            parse_url("http://10.0.2.2:8000/b/v2.raucb").unwrap(),
            (
                "10.0.2.2:8000".into(),
                "10.0.2.2:8000".into(),
                "/b/v2.raucb".into()
            )
        );
        assert_eq!(parse_url("http://mirror").unwrap().0, "mirror:80");
        for bad in [
            "https://x/y",
            "ftp://x",
            "http://",
            "http://u@h/x",
            "http://h/a b",
        ] {
            assert!(matches!(parse_url(bad), Err(FetchError::Url(_))), "{bad}");
        }
        assert!(parse_digest("zz").is_err());
        assert_eq!(parse_digest(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
    }

    /// A server that drops the first connection half-way: the second request resumes
    /// with a Range and the digest checks out.
    #[tokio::test]
    async fn a_dropped_download_resumes() {
        use tokio::io::AsyncWriteExt;
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let digest = format!("{:x}", Sha256::digest(&body));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = body.clone();
        let server = tokio::spawn(async move {
            let mut ranges = Vec::new();
            for round in 0..3 {
                let (s, _) = listener.accept().await.unwrap();
                let mut s = BufReader::new(s);
                let mut from = 0usize;
                let mut line = String::new();
                loop {
                    line.clear();
                    s.read_line(&mut line).await.unwrap();
                    if line.trim().is_empty() {
                        break;
                    }
                    if let Some(r) = line.strip_prefix("Range: bytes=") {
                        from = r.trim().trim_end_matches('-').parse().unwrap();
                    }
                }
                ranges.push(from);
                let rest = &served[from..];
                let head = if from > 0 {
                    "206 Partial Content"
                } else {
                    "200 OK"
                };
                let hdr = format!("HTTP/1.1 {head}\r\nContent-Length: {}\r\n\r\n", rest.len());
                s.get_mut().write_all(hdr.as_bytes()).await.unwrap();
                let cut = if round == 0 {
                    rest.len() / 3
                } else {
                    rest.len()
                };
                s.get_mut().write_all(&rest[..cut]).await.unwrap();
            }
            ranges
        });
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("b.raucb");
        let url = format!("http://127.0.0.1:{port}/b.raucb");
        download(&url, &dest, Some(&digest)).await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        let e = verify(&dest, &"0".repeat(64)).unwrap_err();
        assert!(
            e.to_string().contains(&format!("sha256 is {digest}")),
            "{e}"
        );
        let e = download(&url, &dest, Some(&"0".repeat(64)))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("expected 0000"), "{e}");
        assert!(
            !dest.exists(),
            "a download with the wrong digest is not kept"
        );
        // The third request asked for what follows the whole file: nothing.
        assert_eq!(server.await.unwrap(), [0, body.len() / 3, body.len()]);
    }
}
