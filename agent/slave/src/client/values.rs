//! Values from and to JSON for the command line, and `sosna call`.

use super::*;

/// A command-line argument as a value: JSON when it parses, else the plain string.
pub fn value_from_arg(arg: &str) -> Value {
    match serde_json::from_str::<serde_json::Value>(arg) {
        Ok(j) => value_from_json(j),
        Err(_) => Value::from(arg),
    }
}

fn value_from_json(j: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match j {
        J::Null => Value::Nil,
        J::Bool(b) => Value::from(b),
        J::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, f) => Value::F64(f.unwrap_or_default()),
        },
        J::String(s) => Value::from(s),
        J::Array(a) => Value::Array(a.into_iter().map(value_from_json).collect()),
        J::Object(o) => Value::Map(
            o.into_iter()
                .map(|(k, v)| (Value::from(k), value_from_json(v)))
                .collect(),
        ),
    }
}

/// A value as JSON for printing: bin as text when it is UTF-8, map keys as strings.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Nil => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => i
            .as_u64()
            .map(J::from)
            .or_else(|| i.as_i64().map(J::from))
            .unwrap_or(J::Null),
        Value::F32(f) => J::from(f64::from(*f)),
        Value::F64(f) => J::from(*f),
        Value::String(s) => J::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => J::String(s.to_string()),
            Err(_) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        },
        Value::Array(a) => J::Array(a.iter().map(value_to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k.as_str() {
                        Some(s) => s.to_string(),
                        None => k.to_string(),
                    };
                    (key, value_to_json(v))
                })
                .collect(),
        ),
        Value::Ext(t, b) => J::from(format!("ext({t}, {b:?})")),
    }
}

/// `sosna call`: resolves `service`, calls `method` with `args` (JSON or plain strings),
/// and returns the reply's values as JSON lines (one per stream chunk).
pub async fn call_cli(
    svc: &ServiceClient,
    method: &str,
    args: &[String],
) -> Result<Vec<String>, ClientError> {
    let args = args.iter().map(|a| value_from_arg(a)).collect();
    let line =
        |vs: &[Value]| serde_json::Value::Array(vs.iter().map(value_to_json).collect()).to_string();
    Ok(match svc.call(method, args).await? {
        Response::None => Vec::new(),
        Response::Value(vs) => vec![line(&vs)],
        Response::Stream(chunks) => chunks.iter().map(|c| line(c)).collect(),
    })
}
