//! Resolving services through a locator, and endpoints as the wire carries them.

use super::*;

/// What `resolve` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub endpoints: Vec<(String, u16)>,
    pub version: u64,
    pub graph: Value,
}

impl Resolved {
    /// Reads `[endpoints, version, graph]`.
    pub fn from_args(args: Vec<Value>) -> Result<Resolved, ClientError> {
        let bad = |args: &[Value]| ClientError::Malformed {
            what: "resolve",
            got: Value::Array(args.to_vec()),
        };
        let endpoints = args
            .first()
            .and_then(Value::as_array)
            .ok_or_else(|| bad(&args))?
            .iter()
            .map(endpoint_from_value)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| bad(&args))?;
        let version = args
            .get(1)
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(&args))?;
        let graph = args.get(2).cloned().ok_or_else(|| bad(&args))?;
        Ok(Resolved {
            endpoints,
            version,
            graph,
        })
    }
}

/// `[host, port]`.
pub fn endpoint_from_value(v: &Value) -> Option<(String, u16)> {
    let a = v.as_array()?;
    let host = a.first()?.as_str()?.to_string();
    let port = u16::try_from(a.get(1)?.as_u64()?).ok()?;
    Some((host, port))
}

pub fn endpoint_to_value(host: &str, port: u16) -> Value {
    Value::Array(vec![Value::from(host), Value::from(port)])
}

/// `host:port`, bracketing IPv6 hosts.
pub fn endpoint_addr(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Typed client for a locator (plain or gateway).
#[derive(Clone)]
pub struct LocatorClient {
    pub conn: Connection,
}

impl LocatorClient {
    pub async fn connect(addr: &str) -> Result<LocatorClient, ClientError> {
        Ok(LocatorClient {
            conn: Connection::connect(addr).await?,
        })
    }

    pub async fn resolve(&self, name: &str) -> Result<Resolved, ClientError> {
        let args = self
            .conn
            .call(LocatorMethod::Resolve.id(), vec![Value::from(name)])
            .await?;
        Resolved::from_args(args)
    }

    /// uuid → `[host, port]` of every node this locator knows, itself included.
    pub async fn cluster(&self) -> Result<Vec<(String, (String, u16))>, ClientError> {
        let args = self.conn.call(LocatorMethod::Cluster.id(), vec![]).await?;
        let bad = || ClientError::Malformed {
            what: "cluster",
            got: Value::Array(args.clone()),
        };
        args.first()
            .and_then(Value::as_map)
            .ok_or_else(bad)?
            .iter()
            .map(|(k, v)| Some((k.as_str()?.to_string(), endpoint_from_value(v)?)))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)
    }

    pub async fn uuid(&self) -> Result<String, ClientError> {
        let args = self.conn.call(LocatorMethod::Uuid.id(), vec![]).await?;
        match args.first().and_then(Value::as_str) {
            Some(s) => Ok(s.to_string()),
            None => Err(ClientError::Malformed {
                what: "uuid",
                got: Value::Array(args),
            }),
        }
    }

    /// Announces a service running elsewhere.
    pub async fn publish(
        &self,
        name: &str,
        endpoints: &[(String, u16)],
        version: u64,
        graph: Value,
    ) -> Result<(), ClientError> {
        let eps = endpoints
            .iter()
            .map(|(h, p)| endpoint_to_value(h, *p))
            .collect();
        self.conn
            .call(
                LocatorMethod::Publish.id(),
                vec![
                    Value::from(name),
                    Value::Array(eps),
                    Value::Array(vec![Value::from(version), graph]),
                ],
            )
            .await?;
        Ok(())
    }
}
