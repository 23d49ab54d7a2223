//! Downloads a bundle over HTTPS (or plain HTTP, for a LAN mirror) into a file, resuming
//! with a `Range` request after a dropped connection, and checks its sha256. The bundle's
//! signature is what makes it trusted (RAUC checks it); TLS keeps what is fetched private
//! and the digest catches a wrong or truncated file early. HTTPS trusts the system's CA
//! bundle, plus an extra root where a fleet runs its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

const ATTEMPTS: u32 = 5;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bad bundle URL {0:?}: expected http(s)://HOST[:PORT]/PATH")]
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
    #[error("HTTP client: {0}")]
    Client(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FetchError {
    let what = what.into();
    move |source| FetchError::Io { what, source }
}

/// Checks that `url` is an `http://` or `https://` URL with a host and no credentials.
pub fn parse_url(url: &str) -> Result<reqwest::Url, FetchError> {
    let bad = || FetchError::Url(url.into());
    let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
    let fine = matches!(parsed.scheme(), "http" | "https")
        && parsed.host_str().is_some_and(|h| !h.is_empty())
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && !url.contains(char::is_whitespace);
    if fine {
        Ok(parsed)
    } else {
        Err(bad())
    }
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

/// The client: system roots, plus `extra_root` (PEM) if given.
fn client(extra_root: Option<&[u8]>) -> Result<reqwest::Client, FetchError> {
    sosna_runtime::tls::ensure_provider();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(IO_TIMEOUT)
        .read_timeout(IO_TIMEOUT)
        .user_agent("sosna");
    if let Some(pem) = extra_root {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| FetchError::Client(format!("extra root: {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| FetchError::Client(e.to_string()))
}

/// Downloads `url` into `dest`, continuing a partial file, and checks `sha256`.
pub async fn download(url: &str, dest: &Path, sha256: Option<&str>) -> Result<(), FetchError> {
    download_trusting(url, dest, sha256, None).await
}

/// [`download`], also trusting the CA certificate `extra_root` (PEM) for HTTPS.
pub async fn download_trusting(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    extra_root: Option<&[u8]>,
) -> Result<(), FetchError> {
    let expected = sha256.map(parse_digest).transpose()?;
    let target = parse_url(url)?;
    let client = client(extra_root)?;
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        match get_once(&client, &target, dest).await {
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

/// The whole chain of an error: reqwest's own message hides the TLS reason.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn get_once(
    client: &reqwest::Client,
    url: &reqwest::Url,
    dest: &Path,
) -> Result<(), FetchError> {
    let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    let http = |what: String| FetchError::Http {
        url: url.to_string(),
        what,
    };
    let mut request = client.get(url.clone());
    if have > 0 {
        request = request.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut response = request.send().await.map_err(|e| http(chain(&e)))?;
    let append = match response.status().as_u16() {
        200 => false,
        206 => true,
        416 if have > 0 => return Ok(()), // the file is already whole
        other => return Err(http(format!("HTTP status {other}"))),
    };
    let length = response.content_length();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(dest)
        .map_err(io(format!("open {}", dest.display())))?;
    let mut got = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| http(chain(&e)))? {
        std::io::Write::write_all(&mut file, &chunk)
            .map_err(io(format!("write {}", dest.display())))?;
        got += chunk.len() as u64;
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
            parse_url("http://10.0.2.2:8000/b/v2.raucb").unwrap().port(),
            Some(8000)
        );
        parse_url("https://updates.example/b.raucb").unwrap();
        for bad in [
            "ftp://x",
            "http://",
            "http://u@h/x",
            "http://h/a b",
            "file:///x",
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
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
                    if let Some(r) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
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

    /// HTTPS against a real TLS server (`openssl s_server -WWW`) whose certificate a test
    /// CA issued: trusted with that CA as the extra root, refused without it.
    #[tokio::test]
    async fn https_downloads_trust_the_given_root_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .current_dir(d)
                .args(args)
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-days",
                    "2",
                    "-subj",
                    "/CN=fetch test CA",
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-subj",
                    "/CN=127.0.0.1",
                    "-keyout",
                    "srv.key",
                    "-out",
                    "srv.csr",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "srv.pem",
        ]);
        let www = d.join("www");
        std::fs::create_dir(&www).unwrap();
        let body: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(www.join("b.raucb"), &body).unwrap();
        let digest = format!("{:x}", Sha256::digest(&body));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = std::process::Command::new("openssl")
            .current_dir(&www)
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(d.join("srv.pem"))
            .arg("-key")
            .arg(d.join("srv.key"))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "s_server never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("https://127.0.0.1:{port}/b.raucb");
        let ca = std::fs::read(d.join("ca.pem")).unwrap();
        let dest = d.join("got.raucb");
        let fetched = download_trusting(&url, &dest, Some(&digest), Some(&ca)).await;
        let untrusted = download(&url, &d.join("other.raucb"), None).await;
        let _ = server.kill();
        let _ = server.wait();
        fetched.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        let e = untrusted.unwrap_err().to_string();
        assert!(e.contains("certificate") || e.contains("issuer"), "{e}");
    }
}
