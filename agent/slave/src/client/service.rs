//! A resolved service called by method name, and the storage service's typed client.

use super::*;

/// A resolved service: its connection and the methods its graph names.
#[derive(Clone)]
pub struct ServiceClient {
    pub name: String,
    pub conn: Connection,
    pub version: u64,
    pub methods: Vec<RemoteMethod>,
}

/// What a call returned: one value, or a stream's chunks.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// The method has no reply (sent, nothing to wait for).
    None,
    Value(Vec<Value>),
    Stream(Vec<Vec<Value>>),
}

impl ServiceClient {
    /// Resolves `name` through the locator at `locator` and connects to the first
    /// endpoint that accepts.
    pub async fn resolve(locator: &str, name: &str) -> Result<ServiceClient, ClientError> {
        let loc = LocatorClient::connect(locator).await?;
        let r = loc.resolve(name).await?;
        ServiceClient::connect(name, r).await
    }

    /// The service `name` described by `r`, over a connection already open to it (a bus
    /// stream, say).
    pub fn over(name: &str, conn: Connection, r: &Resolved) -> ServiceClient {
        ServiceClient {
            name: name.to_string(),
            conn,
            version: r.version,
            methods: parse_graph(&r.graph),
        }
    }

    pub async fn connect(name: &str, r: Resolved) -> Result<ServiceClient, ClientError> {
        let mut last = ClientError::NoEndpoints(name.to_string());
        for (host, port) in &r.endpoints {
            match Connection::connect(&endpoint_addr(host, *port)).await {
                Ok(conn) => {
                    return Ok(ServiceClient {
                        name: name.to_string(),
                        conn,
                        version: r.version,
                        methods: parse_graph(&r.graph),
                    })
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub fn method(&self, name: &str) -> Result<&RemoteMethod, ClientError> {
        self.methods
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ClientError::NoSuchMethod {
                service: self.name.clone(),
                method: name.to_string(),
                known: self
                    .methods
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Opens a channel with `method`, for streaming both ways.
    pub fn open(&self, method: &str, args: Vec<Value>) -> Result<Channel, ClientError> {
        let m = self.method(method)?;
        self.conn.open(m.id, args)
    }

    /// Calls `method` and collects its whole reply.
    pub async fn call(&self, method: &str, args: Vec<Value>) -> Result<Response, ClientError> {
        let m = self.method(method)?.clone();
        let mut ch = self.conn.open(m.id, args)?;
        if !m.replies {
            // Nothing comes back; a ping proves the message was read.
            drop(ch);
            self.conn.ping().await?;
            return Ok(Response::None);
        }
        if !m.streams {
            return ch.value().await.map(Response::Value);
        }
        let mut chunks = Vec::new();
        while let Some(c) = ch.next_chunk().await? {
            chunks.push(c);
        }
        Ok(Response::Stream(chunks))
    }
}

/// Typed client for the storage service.
#[derive(Clone)]
pub struct StorageClient {
    pub conn: Connection,
}

impl StorageClient {
    pub async fn read(&self, ns: &str, key: &str) -> Result<Value, ClientError> {
        let args = self
            .conn
            .call(StorageMethod::Read.id(), vec![ns.into(), key.into()])
            .await?;
        args.into_iter().next().ok_or(ClientError::Malformed {
            what: "read",
            got: Value::Nil,
        })
    }

    pub async fn write(
        &self,
        ns: &str,
        key: &str,
        blob: Value,
        tags: &[&str],
    ) -> Result<(), ClientError> {
        let tags = Value::Array(tags.iter().map(|t| Value::from(*t)).collect());
        self.conn
            .call(
                StorageMethod::Write.id(),
                vec![ns.into(), key.into(), blob, tags],
            )
            .await?;
        Ok(())
    }

    pub async fn remove(&self, ns: &str, key: &str) -> Result<(), ClientError> {
        self.conn
            .call(StorageMethod::Remove.id(), vec![ns.into(), key.into()])
            .await?;
        Ok(())
    }

    pub async fn find(&self, ns: &str, tags: &[&str]) -> Result<Vec<String>, ClientError> {
        let tags = Value::Array(tags.iter().map(|t| Value::from(*t)).collect());
        let args = self
            .conn
            .call(StorageMethod::Find.id(), vec![ns.into(), tags])
            .await?;
        let bad = || ClientError::Malformed {
            what: "find",
            got: Value::Array(args.clone()),
        };
        args.first()
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|k| k.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)
    }
}
