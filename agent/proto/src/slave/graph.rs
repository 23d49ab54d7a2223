//! Dispatch graphs: each service's protocol is declared once with [`protocol!`]; the same
//! declaration gives the Rust method enum the service matches on and the msgpack graph the
//! locator hands to clients in any language.
//!
//! A graph (root) is `{id: [name, dispatch|nil, upstream|nil]}`. `dispatch` is what the
//! caller may send next on the channel, `upstream` what the service sends back; each is
//! `{id: [name, node|nil]}`, where nil keeps the current protocol and `{}` ends it.

use rmpv::Value;

/// What the caller may send after the invoking message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispatch {
    /// Nothing: one message per call.
    Terminal,
    /// A stream: `0 write(args)` (repeatable), `1 error`, `2 close`.
    Streaming,
}

/// What the service sends back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// `option_of`: `0 value(args…)` or `1 error([category, code], message)`, then done.
    Option,
    /// `stream_of`: `0 write(args)` repeatedly, then `1 error` or `2 close`.
    Stream,
    /// No reply at all.
    None,
}

/// Message ids of `option_of` and `stream_of` replies (and of streaming dispatch).
pub mod ids {
    pub const VALUE: u64 = 0;
    pub const WRITE: u64 = 0;
    pub const ERROR: u64 = 1;
    pub const CLOSE: u64 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    pub id: u64,
    pub name: &'static str,
    pub dispatch: Dispatch,
    pub upstream: Upstream,
}

/// A service's protocol: its name (as resolved), version and methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    pub name: &'static str,
    pub version: u64,
    pub methods: &'static [Method],
}

impl Protocol {
    pub fn method(&self, id: u64) -> Option<&'static Method> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// The msgpack dispatch graph, as `resolve` returns it.
    pub fn graph(&self) -> Value {
        Value::Map(
            self.methods
                .iter()
                .map(|m| {
                    let dispatch = match m.dispatch {
                        Dispatch::Terminal => Value::Map(vec![]),
                        Dispatch::Streaming => stream_node(),
                    };
                    let upstream = match m.upstream {
                        Upstream::Option => {
                            Value::Map(vec![leaf(ids::VALUE, "value"), leaf(ids::ERROR, "error")])
                        }
                        Upstream::Stream => stream_node(),
                        Upstream::None => Value::Map(vec![]),
                    };
                    (
                        Value::from(m.id),
                        Value::Array(vec![Value::from(m.name), dispatch, upstream]),
                    )
                })
                .collect(),
        )
    }
}

fn leaf(id: u64, name: &str) -> (Value, Value) {
    (
        Value::from(id),
        Value::Array(vec![Value::from(name), Value::Map(vec![])]),
    )
}

/// `{0: ["write", nil], 1: ["error", {}], 2: ["close", {}]}`.
fn stream_node() -> Value {
    Value::Map(vec![
        (
            Value::from(ids::WRITE),
            Value::Array(vec![Value::from("write"), Value::Nil]),
        ),
        leaf(ids::ERROR, "error"),
        leaf(ids::CLOSE, "close"),
    ])
}

/// A method as learnt from a graph at run time (dynamic clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMethod {
    pub id: u64,
    pub name: String,
    /// Whether the reply is a stream (`write`… then `close`) rather than one value.
    pub streams: bool,
    /// Whether the caller may keep writing after the invocation.
    pub accepts_writes: bool,
    /// Whether any reply comes at all (`emit`-like methods have none).
    pub replies: bool,
}

/// Reads a root graph; entries that do not have the documented shape are skipped.
pub fn parse_graph(graph: &Value) -> Vec<RemoteMethod> {
    let Some(entries) = graph.as_map() else {
        return Vec::new();
    };
    let has_close = |node: Option<&Value>| {
        node.and_then(Value::as_map).is_some_and(|m| {
            m.iter().any(|(_, v)| {
                v.as_array().and_then(|a| a.first()).and_then(Value::as_str) == Some("close")
            })
        })
    };
    entries
        .iter()
        .filter_map(|(id, entry)| {
            let a = entry.as_array()?;
            Some(RemoteMethod {
                id: id.as_u64()?,
                name: a.first()?.as_str()?.to_string(),
                accepts_writes: has_close(a.get(1)),
                streams: has_close(a.get(2)),
                replies: a
                    .get(2)
                    .and_then(Value::as_map)
                    .is_some_and(|m| !m.is_empty()),
            })
        })
        .collect()
}

/// Declares a protocol: a `Copy` enum of its methods plus `PROTOCOL`, `from_id` and `id`.
///
/// ```ignore
/// protocol! {
///     /// The storage service.
///     pub enum StorageMethod = "storage", version 1 {
///         0 Read "read": Terminal -> Option,
///     }
/// }
/// ```
#[macro_export]
macro_rules! protocol {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Enum:ident = $name:literal, version $version:literal {
            $($(#[$vmeta:meta])* $id:literal $Variant:ident $alias:literal : $dispatch:ident -> $upstream:ident,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $Enum {
            $($(#[$vmeta])* $Variant,)*
        }

        impl $Enum {
            pub const PROTOCOL: $crate::slave::graph::Protocol = $crate::slave::graph::Protocol {
                name: $name,
                version: $version,
                methods: &[$($crate::slave::graph::Method {
                    id: $id,
                    name: $alias,
                    dispatch: $crate::slave::graph::Dispatch::$dispatch,
                    upstream: $crate::slave::graph::Upstream::$upstream,
                },)*],
            };

            pub fn from_id(id: u64) -> Option<Self> {
                match id {
                    $($id => Some(Self::$Variant),)*
                    _ => None,
                }
            }

            pub fn id(self) -> u64 {
                match self {
                    $(Self::$Variant => $id,)*
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::protocol! {
        enum Demo = "demo", version 2 {
            0 Get "get": Terminal -> Option,
            3 Watch "watch": Terminal -> Stream,
            5 Upload "upload": Streaming -> Option,
        }
    }

    #[test]
    fn graph_and_enum_come_from_one_declaration() {
        assert_eq!(Demo::from_id(3), Some(Demo::Watch));
        assert_eq!(Demo::from_id(1), None);
        assert_eq!(Demo::Upload.id(), 5);
        let g = Demo::PROTOCOL.graph();
        assert_eq!(
            g.to_string(),
            "{0: [\"get\", {}, {0: [\"value\", {}], 1: [\"error\", {}]}], \
             3: [\"watch\", {}, {0: [\"write\", nil], 1: [\"error\", {}], 2: [\"close\", {}]}], \
             5: [\"upload\", {0: [\"write\", nil], 1: [\"error\", {}], 2: [\"close\", {}]}, \
             {0: [\"value\", {}], 1: [\"error\", {}]}]}"
        );
        let parsed = parse_graph(&g);
        assert_eq!(parsed.len(), 3);
        assert!(parsed[1].streams && !parsed[1].accepts_writes);
        assert!(!parsed[2].streams && parsed[2].accepts_writes);
        assert_eq!(parsed[2].name, "upload");
    }
}
