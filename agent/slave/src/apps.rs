//! The runtime as the Slave protocol's `node` service: apps are named containers. A
//! profile is a task (the same fields as `TaskSpec`, as a msgpack map); `pause_app` kills
//! and removes the app's container.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rmpv::Value;

use sosna_runtime::{Runtime, TaskSpec};

use crate::node::{AppError, Apps};

pub struct RuntimeApps {
    rt: Runtime,
    /// App name → container id.
    names: Mutex<BTreeMap<String, String>>,
}

impl RuntimeApps {
    pub fn new(rt: Runtime) -> RuntimeApps {
        RuntimeApps {
            rt,
            names: Mutex::new(BTreeMap::new()),
        }
    }

    fn id_of(&self, name: &str) -> Result<String, AppError> {
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| AppError::NotFound(name.into()))
    }

    fn running(&self, id: &str) -> bool {
        self.rt.ps().iter().any(|c| c.id == id && c.running)
    }
}

fn runtime_err(e: sosna_runtime::RuntimeError) -> AppError {
    AppError::Runtime(e.to_string())
}

impl Apps for RuntimeApps {
    async fn start(&self, name: &str, profile: Value) -> Result<(), AppError> {
        let task: TaskSpec = rmpv::ext::from_value(profile)
            .map_err(|e| AppError::Invalid(format!("profile: {e}")))?;
        if let Ok(id) = self.id_of(name) {
            if self.running(&id) {
                return Err(AppError::AlreadyRunning(name.into()));
            }
            // A finished earlier run makes way for the new one.
            let _ = self.rt.remove(&id, true).await;
        }
        let id = self.rt.run(task).await.map_err(|e| match e {
            sosna_runtime::RuntimeError::Task(t) => AppError::Invalid(t.to_string()),
            other => runtime_err(other),
        })?;
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.into(), id);
        Ok(())
    }

    async fn stop(&self, name: &str) -> Result<(), AppError> {
        let id = self.id_of(name)?;
        self.rt.remove(&id, true).await.map_err(runtime_err)?;
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, AppError> {
        Ok(self
            .names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect())
    }

    async fn info(&self, name: &str) -> Result<Value, AppError> {
        let id = self.id_of(name)?;
        let info = self
            .rt
            .ps()
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| AppError::NotFound(name.into()))?;
        // Through JSON, so fields arrive as a map with names, not a positional array.
        let json = serde_json::to_value(&info).map_err(|e| AppError::Runtime(e.to_string()))?;
        rmpv::ext::to_value(&json).map_err(|e| AppError::Runtime(e.to_string()))
    }
}
