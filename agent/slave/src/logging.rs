//! The `logging` service: callers' log lines land in the agent's own log via `tracing`.

use rmpv::Value;

use super::session::{Call, Service};
use sosna_proto::slave::error::RpcError;
use sosna_proto::slave::graph::{Method, Protocol};

sosna_proto::protocol! {
    /// Logging protocol (Cocaine's, version 2; `set_verbosity` is not served: the agent's
    /// filter comes from its provisioning file).
    pub enum LoggingMethod = "logging", version 2 {
        /// `emit(priority, source, message, attributes?)`, no reply. Priorities: 0 debug,
        /// 1 info, 2 warning, 3 error.
        0 Emit "emit": Terminal -> None,
        /// `verbosity() -> value(priority)`: the lowest priority that is recorded.
        1 Verbosity "verbosity": Terminal -> Option,
    }
}

pub struct LoggingService;

fn emit(args: &[Value]) -> Result<(), RpcError> {
    let bad = || {
        RpcError::invalid(format!(
            "emit takes (priority: int, source: str, message: str, attributes?); got {}",
            Value::Array(args.to_vec())
        ))
    };
    let prio = args.first().and_then(Value::as_i64).ok_or_else(bad)?;
    let source = args.get(1).and_then(Value::as_str).ok_or_else(bad)?;
    let message = args.get(2).and_then(Value::as_str).ok_or_else(bad)?;
    let attrs = match args.get(3) {
        None | Some(Value::Nil) => String::new(),
        Some(v) => format!(" {v}"),
    };
    match prio {
        i64::MIN..=0 => tracing::debug!(target: "slave::app", "[{source}] {message}{attrs}"),
        1 => tracing::info!(target: "slave::app", "[{source}] {message}{attrs}"),
        2 => tracing::warn!(target: "slave::app", "[{source}] {message}{attrs}"),
        _ => tracing::error!(target: "slave::app", "[{source}] {message}{attrs}"),
    }
    Ok(())
}

fn verbosity() -> i64 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::TRACE | LevelFilter::DEBUG => 0,
        LevelFilter::INFO => 1,
        LevelFilter::WARN => 2,
        _ => 3,
    }
}

impl Service for LoggingService {
    fn protocol(&self) -> &'static Protocol {
        &LoggingMethod::PROTOCOL
    }

    fn invoke(&self, method: &'static Method, args: Vec<Value>, call: Call) {
        match LoggingMethod::from_id(method.id) {
            Some(LoggingMethod::Emit) => {
                // No reply channel in the protocol: a malformed emit is only logged.
                if let Err(e) = emit(&args) {
                    tracing::warn!("slave logging: {e}");
                }
            }
            Some(LoggingMethod::Verbosity) => call.reply.value(vec![Value::from(verbosity())]),
            None => {}
        }
    }
}
