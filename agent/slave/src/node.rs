//! The `node` service: start, stop, list and describe apps (containers). It is written
//! against the [`Apps`] trait so that the container runtime plugs in without this module
//! knowing it.

use std::future::Future;
use std::sync::Arc;

use rmpv::Value;

use super::session::{Call, Service};
use sosna_proto::slave::error::{service as code, RpcError};
use sosna_proto::slave::graph::{Method, Protocol};

sosna_proto::protocol! {
    /// Node protocol (Cocaine's names; `pause_app` stops an app).
    pub enum NodeMethod = "node", version 2 {
        /// `start_app(name, profile) -> value()`
        0 StartApp "start_app": Terminal -> Option,
        /// `pause_app(name) -> value()`
        1 PauseApp "pause_app": Terminal -> Option,
        /// `list() -> value([names])`
        2 List "list": Terminal -> Option,
        /// `info(name) -> value({…})`
        3 Info "info": Terminal -> Option,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("no app {0:?}")]
    NotFound(String),
    #[error("app {0:?} is already running")]
    AlreadyRunning(String),
    #[error("invalid app request: {0}")]
    Invalid(String),
    #[error("container runtime: {0}")]
    Runtime(String),
}

impl From<AppError> for RpcError {
    fn from(e: AppError) -> RpcError {
        let c = match e {
            AppError::NotFound(_) => code::NOT_FOUND,
            AppError::AlreadyRunning(_) | AppError::Invalid(_) => code::INVALID_ARGUMENT,
            AppError::Runtime(_) => code::UNAVAILABLE,
        };
        RpcError::service(c, e.to_string())
    }
}

/// What the node service needs from a container runtime.
pub trait Apps: Send + Sync + 'static {
    /// Starts app `name` as described by `profile` (a msgpack map).
    fn start(
        &self,
        name: &str,
        profile: Value,
    ) -> impl Future<Output = Result<(), AppError>> + Send;
    /// Stops app `name`.
    fn stop(&self, name: &str) -> impl Future<Output = Result<(), AppError>> + Send;
    /// Names of the apps, sorted.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, AppError>> + Send;
    /// A description of app `name` (state, profile, …) as a msgpack map.
    fn info(&self, name: &str) -> impl Future<Output = Result<Value, AppError>> + Send;
}

pub struct NodeService<A>(pub Arc<A>);

fn name_arg(args: &[Value]) -> Result<String, RpcError> {
    args.first()
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| RpcError::invalid("argument 0 (app name) must be a non-empty str"))
}

async fn run<A: Apps>(apps: &A, m: NodeMethod, args: Vec<Value>) -> Result<Vec<Value>, RpcError> {
    match m {
        NodeMethod::StartApp => {
            let name = name_arg(&args)?;
            let profile = args.get(1).cloned().unwrap_or(Value::Map(vec![]));
            apps.start(&name, profile).await?;
            Ok(vec![])
        }
        NodeMethod::PauseApp => {
            apps.stop(&name_arg(&args)?).await?;
            Ok(vec![])
        }
        NodeMethod::List => {
            let names = apps.list().await?;
            Ok(vec![Value::Array(
                names.into_iter().map(Value::from).collect(),
            )])
        }
        NodeMethod::Info => Ok(vec![apps.info(&name_arg(&args)?).await?]),
    }
}

impl<A: Apps> Service for NodeService<A> {
    fn protocol(&self) -> &'static Protocol {
        &NodeMethod::PROTOCOL
    }

    fn invoke(&self, method: &'static Method, args: Vec<Value>, call: Call) {
        let Some(m) = NodeMethod::from_id(method.id) else {
            return;
        };
        let apps = self.0.clone();
        tokio::spawn(async move { call.reply.result(run(&*apps, m, args).await) });
    }
}

#[cfg(test)]
pub(crate) mod memory {
    //! An in-memory [`Apps`] for tests.
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct MemoryApps {
        apps: Mutex<BTreeMap<String, (Value, bool)>>,
    }

    impl Apps for MemoryApps {
        async fn start(&self, name: &str, profile: Value) -> Result<(), AppError> {
            let mut apps = self.apps.lock().unwrap();
            if apps.get(name).is_some_and(|(_, running)| *running) {
                return Err(AppError::AlreadyRunning(name.into()));
            }
            if !profile.is_map() {
                return Err(AppError::Invalid(format!(
                    "profile must be a map, got {profile}"
                )));
            }
            apps.insert(name.into(), (profile, true));
            Ok(())
        }
        async fn stop(&self, name: &str) -> Result<(), AppError> {
            match self.apps.lock().unwrap().get_mut(name) {
                Some((_, running)) => {
                    *running = false;
                    Ok(())
                }
                None => Err(AppError::NotFound(name.into())),
            }
        }
        async fn list(&self) -> Result<Vec<String>, AppError> {
            Ok(self.apps.lock().unwrap().keys().cloned().collect())
        }
        async fn info(&self, name: &str) -> Result<Value, AppError> {
            let apps = self.apps.lock().unwrap();
            let (profile, running) = apps
                .get(name)
                .ok_or_else(|| AppError::NotFound(name.into()))?;
            Ok(Value::Map(vec![
                (
                    Value::from("state"),
                    Value::from(if *running { "running" } else { "stopped" }),
                ),
                (Value::from("profile"), profile.clone()),
            ]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory::MemoryApps;
    use super::*;
    use crate::client::Connection;
    use crate::session::{serve, SessionOptions};

    #[tokio::test]
    async fn node_service_over_the_wire() {
        let (a, b) = tokio::io::duplex(4096);
        let (_stop, rx) = tokio::sync::watch::channel(false);
        let svc: Arc<dyn Service> = Arc::new(NodeService(Arc::new(MemoryApps::default())));
        let trusted = SessionOptions {
            trusted: true,
            ..SessionOptions::default()
        };
        tokio::spawn(serve(a, svc, trusted, rx));
        let c = Connection::over(b);
        let start = NodeMethod::StartApp.id();
        let profile = Value::Map(vec![(Value::from("image"), Value::from("alpine"))]);
        c.call(start, vec!["web".into(), profile.clone()])
            .await
            .unwrap();
        let e = c
            .call(start, vec!["web".into(), profile])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("already running"), "{e}");
        let list = c.call(NodeMethod::List.id(), vec![]).await.unwrap();
        assert_eq!(list, vec![Value::Array(vec!["web".into()])]);
        c.call(NodeMethod::PauseApp.id(), vec!["web".into()])
            .await
            .unwrap();
        let info = c
            .call(NodeMethod::Info.id(), vec!["web".into()])
            .await
            .unwrap();
        assert!(info[0].to_string().contains("\"stopped\""), "{}", info[0]);
        let e = c
            .call(NodeMethod::Info.id(), vec!["nope".into()])
            .await
            .unwrap_err();
        match e {
            crate::client::ClientError::Rpc(r) => {
                assert_eq!((r.category, r.code), (2, code::NOT_FOUND));
                assert!(r.message.contains("nope"));
            }
            other => panic!("{other}"),
        }
        let e = c
            .call(NodeMethod::Info.id(), vec![Value::from(5)])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("app name"), "{e}");
    }

    #[tokio::test]
    async fn an_unauthenticated_caller_starts_nothing() {
        let (a, b) = tokio::io::duplex(4096);
        let (_stop, rx) = tokio::sync::watch::channel(false);
        let apps = Arc::new(MemoryApps::default());
        let svc: Arc<dyn Service> = Arc::new(NodeService(apps.clone()));
        tokio::spawn(serve(a, svc, SessionOptions::default(), rx));
        let c = Connection::over(b);
        let profile = Value::Map(vec![(Value::from("image"), Value::from("alpine"))]);
        let e = c
            .call(NodeMethod::StartApp.id(), vec!["web".into(), profile])
            .await
            .unwrap_err();
        match e {
            crate::client::ClientError::Rpc(r) => assert_eq!(r.code, code::DENIED, "{r}"),
            other => panic!("{other}"),
        }
        assert!(apps.list().await.unwrap().is_empty(), "an app was started");
    }
}
