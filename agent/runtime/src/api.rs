//! The runtime's control socket: one JSON request per line, answered by zero or more
//! `{"progress": …}` lines and one `{"ok": …}` or `{"error": "…"}` line. The `sosna`
//! CLI (`run`, `ps`, `logs`, `kill`, `rm`, `pull`, `images`) is its client.
//!
//! A unix socket with file permissions is the access control: only root reaches it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{Runtime, TaskSpec};

/// Longest request line accepted; tasks are small.
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    Pull { reference: String },
    Images {},
    Rmi { reference: String },
    Gc {},
    Run { task: TaskSpec },
    Wait { id: String },
    Ps {},
    Logs { id: String },
    Kill { id: String, signal: i32 },
    Rm { id: String, force: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("agent: {0}")]
    Agent(String),
    #[error("bad reply from the agent: {0}")]
    Reply(String),
}

/// Binds the socket (root-only), replacing a stale one. Call inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListener, ApiError> {
    let io = |source| ApiError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Serves requests until the task is dropped.
pub async fn serve(listener: UnixListener, rt: Runtime) -> Result<(), ApiError> {
    loop {
        let (conn, _) = listener.accept().await.map_err(|source| ApiError::Io {
            path: "control socket".into(),
            source,
        })?;
        let rt = rt.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(conn, rt).await {
                tracing::debug!("api connection: {e}");
            }
        });
    }
}

async fn handle(conn: UnixStream, rt: Runtime) -> std::io::Result<()> {
    let (r, mut w) = conn.into_split();
    let mut reader = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if n > MAX_LINE {
            let e = json!({ "error": format!("bad request: longer than {MAX_LINE} bytes") });
            w.write_all(format!("{e}\n").as_bytes()).await?;
            return Ok(());
        }
        let reply = match serde_json::from_slice::<Request>(&line) {
            Ok(req) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
                let work = answer(&rt, req, tx);
                tokio::pin!(work);
                // Forward progress while the request runs.
                let result = loop {
                    tokio::select! {
                        r = &mut work => break r,
                        Some(p) = rx.recv() => {
                            w.write_all(format!("{}\n", json!({"progress": p})).as_bytes()).await?;
                        }
                    }
                };
                while let Ok(p) = rx.try_recv() {
                    w.write_all(format!("{}\n", json!({"progress": p})).as_bytes())
                        .await?;
                }
                match result {
                    Ok(v) => json!({ "ok": v }),
                    Err(e) => json!({ "error": e.to_string() }),
                }
            }
            Err(e) => json!({ "error": format!("bad request: {e}") }),
        };
        w.write_all(format!("{reply}\n").as_bytes()).await?;
    }
}

async fn answer(
    rt: &Runtime,
    req: Request,
    progress: tokio::sync::mpsc::UnboundedSender<Value>,
) -> Result<Value, super::RuntimeError> {
    Ok(match req {
        Request::Pull { reference } => {
            let report = move |ev: super::pull::PullEvent| {
                let _ = progress.send(serde_json::to_value(ev).unwrap_or(Value::Null));
            };
            json!(rt.pull(&reference, &report).await?)
        }
        Request::Images {} => json!(rt.images()?),
        Request::Rmi { reference } => json!(rt.remove_image(&reference)?),
        Request::Gc {} => json!(rt.gc()?),
        Request::Run { task } => json!(rt.run(task).await?),
        Request::Wait { id } => json!(rt.wait(&id).await?),
        Request::Ps {} => json!(rt.ps()),
        Request::Logs { id } => {
            let (out, err) = rt.logs(&id)?;
            json!({"stdout": String::from_utf8_lossy(&out), "stderr": String::from_utf8_lossy(&err)})
        }
        Request::Kill { id, signal } => json!(rt.kill(&id, signal)?),
        Request::Rm { id, force } => {
            rt.remove(&id, force).await?;
            Value::Null
        }
    })
}

/// A connection to the agent's socket.
pub struct Client {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    w: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ApiError> {
        let conn = UnixStream::connect(path)
            .await
            .map_err(|source| ApiError::Io {
                path: format!("{} (is the agent running?)", path.display()),
                source,
            })?;
        let (r, w) = conn.into_split();
        Ok(Client {
            lines: BufReader::new(r).lines(),
            w,
        })
    }

    /// Sends `req`; `progress` sees each progress line; returns the `ok` value.
    pub async fn call(
        &mut self,
        req: &Request,
        progress: &mut dyn FnMut(&Value),
    ) -> Result<Value, ApiError> {
        let io = |source| ApiError::Io {
            path: "agent socket".into(),
            source,
        };
        let line = serde_json::to_string(req).expect("requests serialize");
        self.w
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(io)?;
        loop {
            let line = self
                .lines
                .next_line()
                .await
                .map_err(io)?
                .ok_or_else(|| ApiError::Reply("connection closed".into()))?;
            let mut v: Value =
                serde_json::from_str(&line).map_err(|e| ApiError::Reply(e.to_string()))?;
            if let Some(p) = v.get("progress") {
                progress(p);
            } else if let Some(ok) = v.get_mut("ok") {
                return Ok(ok.take());
            } else if let Some(e) = v.get("error") {
                return Err(ApiError::Agent(e.as_str().unwrap_or_default().to_string()));
            } else {
                return Err(ApiError::Reply(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_strict() {
        let r: Request = serde_json::from_str(r#"{"op":"kill","id":"a","signal":9}"#).unwrap();
        assert!(matches!(r, Request::Kill { signal: 9, .. }));
        for bad in [
            r#"{"op":"format_disk"}"#,
            r#"{"op":"ps","x":1}"#,
            "[]",
            "garbage",
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }
}
