//! Errors as they travel on the wire: `error([category, code], message)`.

use rmpv::Value;

/// Category of framing and dispatch errors raised by the session itself.
pub const CATEGORY_PROTOCOL: u64 = 1;
/// Category of errors raised by a service's method.
pub const CATEGORY_SERVICE: u64 = 2;

/// Codes within [`CATEGORY_PROTOCOL`].
pub mod protocol {
    pub const FRAME_TOO_LARGE: u64 = 1;
    pub const MALFORMED_FRAME: u64 = 2;
    pub const UNKNOWN_METHOD: u64 = 3;
    pub const UNEXPECTED_MESSAGE: u64 = 4;
    pub const REVOKED: u64 = 5;
}

/// Codes within [`CATEGORY_SERVICE`].
pub mod service {
    pub const NOT_FOUND: u64 = 1;
    pub const INVALID_ARGUMENT: u64 = 2;
    pub const IO: u64 = 3;
    pub const UNAVAILABLE: u64 = 4;
    pub const INTERNAL: u64 = 5;
    /// The caller may not use this method (an unauthenticated remote caller).
    pub const DENIED: u64 = 6;
}

/// An error reply: the `[category, code]` pair and a human-readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[{category}, {code}] {message}")]
pub struct RpcError {
    pub category: u64,
    pub code: u64,
    pub message: String,
}

impl RpcError {
    pub fn new(category: u64, code: u64, message: impl Into<String>) -> RpcError {
        RpcError {
            category,
            code,
            message: message.into(),
        }
    }

    pub fn protocol(code: u64, message: impl Into<String>) -> RpcError {
        RpcError::new(CATEGORY_PROTOCOL, code, message)
    }

    pub fn service(code: u64, message: impl Into<String>) -> RpcError {
        RpcError::new(CATEGORY_SERVICE, code, message)
    }

    pub fn invalid(message: impl Into<String>) -> RpcError {
        RpcError::service(service::INVALID_ARGUMENT, message)
    }

    pub fn not_found(message: impl Into<String>) -> RpcError {
        RpcError::service(service::NOT_FOUND, message)
    }

    pub fn denied(message: impl Into<String>) -> RpcError {
        RpcError::service(service::DENIED, message)
    }

    /// The error message's args: `[[category, code], message]`.
    pub fn to_args(&self) -> Vec<Value> {
        vec![
            Value::Array(vec![Value::from(self.category), Value::from(self.code)]),
            Value::from(self.message.as_str()),
        ]
    }

    /// Reads `[[category, code], message?]`; anything else becomes a malformed-reply error.
    pub fn from_args(args: &[Value]) -> RpcError {
        let pair = args.first().and_then(Value::as_array);
        let num = |i: usize| pair.and_then(|p| p.get(i)).and_then(Value::as_u64);
        let message = args
            .get(1)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        match (num(0), num(1)) {
            (Some(category), Some(code)) => RpcError {
                category,
                code,
                message,
            },
            _ => RpcError::protocol(
                protocol::MALFORMED_FRAME,
                format!("malformed error reply {}", Value::Array(args.to_vec())),
            ),
        }
    }
}
