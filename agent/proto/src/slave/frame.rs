//! The wire codec: a frame is the msgpack array `[channel, type, args, headers?]`.
//!
//! Decoding is incremental: [`Decoder::decode`] takes a growing byte buffer and returns a
//! frame once one is complete, leaving the rest (partial or further frames) in place. A
//! frame is first *scanned* (its extent found without allocating) so that its size limit is
//! enforced before it is buffered in full and nesting depth is bounded before the recursive
//! msgpack reader sees it.

use bytes::{Buf, BytesMut};
use rmpv::Value;

/// Largest frame accepted unless configured otherwise.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Deepest nesting of arrays/maps a frame may have; deeper input is rejected.
const MAX_DEPTH: usize = 64;

/// One message on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub channel: u64,
    /// Index of the message in the protocol the channel is currently in.
    pub ty: u64,
    pub args: Vec<Value>,
    pub headers: Vec<Header>,
}

/// A literal header, `[false, name, value]` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
}

impl Frame {
    pub fn new(channel: u64, ty: u64, args: Vec<Value>) -> Frame {
        Frame {
            channel,
            ty,
            args,
            headers: Vec::new(),
        }
    }

    /// Appends the frame's encoding (always the 4-element form) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        // Writes into a Vec cannot fail.
        let _ = rmp::encode::write_array_len(out, 4);
        let _ = rmp::encode::write_uint(out, self.channel);
        let _ = rmp::encode::write_uint(out, self.ty);
        let _ = rmp::encode::write_array_len(out, self.args.len() as u32);
        for a in &self.args {
            let _ = rmpv::encode::write_value(out, a);
        }
        let _ = rmp::encode::write_array_len(out, self.headers.len() as u32);
        for h in &self.headers {
            let _ = rmp::encode::write_array_len(out, 3);
            let _ = rmp::encode::write_bool(out, false);
            write_bytes(out, &h.name);
            write_bytes(out, &h.value);
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Text as msgpack str (what Cocaine sends), anything else as bin.
fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => {
            let _ = rmp::encode::write_str(out, s);
        }
        Err(_) => {
            let _ = rmp::encode::write_bin(out, b);
        }
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("invalid msgpack: byte 0x{byte:02x} at offset {offset} is not a valid marker")]
    InvalidMarker { byte: u8, offset: usize },
    #[error("msgpack nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("frame is not a msgpack array (got {0})")]
    NotArray(&'static str),
    #[error("frame has {0} elements; expected 3 or 4 ([channel, type, args, headers?])")]
    Arity(usize),
    #[error("frame field `{field}` must be {expected}, got {got}")]
    Field {
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error(
        "HPACK-indexed header {0} is not supported; send literal [false, name, value] headers"
    )]
    IndexedHeader(String),
    #[error("malformed header {0}: expected [false, name, value] with str/bin name and value")]
    BadHeader(String),
    #[error("undecodable msgpack: {0}")]
    Msgpack(String),
}

impl FrameError {
    /// Whether the byte stream can go on after this error (the bad frame's extent is known).
    pub fn recoverable(&self) -> bool {
        !matches!(
            self,
            FrameError::TooLarge { .. } | FrameError::InvalidMarker { .. } | FrameError::TooDeep
        )
    }
}

/// A frame that was well-formed msgpack but not a valid frame. The stream may go on; when
/// the channel could be read, the peer can be told on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct DecodeError {
    pub error: FrameError,
    /// The channel id, when the frame got that far.
    pub channel: Option<u64>,
}

impl From<FrameError> for DecodeError {
    fn from(error: FrameError) -> Self {
        DecodeError {
            error,
            channel: None,
        }
    }
}

/// Incremental frame decoder with a size limit.
#[derive(Debug, Clone)]
pub struct Decoder {
    max: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder {
    pub fn new(max_frame: usize) -> Decoder {
        Decoder { max: max_frame }
    }

    /// Takes one frame off the front of `buf`. `Ok(None)`: more bytes are needed. On an
    /// error that is [`FrameError::recoverable`] the bad frame has been consumed; on any
    /// other the stream is unusable and must be closed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        let len = match scan(buf, self.max)? {
            Some(len) => len,
            None => return Ok(None),
        };
        let bytes = buf.split_to(len);
        if let Some(f) = fast_frame(&bytes) {
            return Ok(Some(f));
        }
        let mut rd = &bytes[..];
        let value = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH + 1)
            .map_err(|e| FrameError::Msgpack(e.to_string()))?;
        frame_from_value(value).map(Some)
    }
}

/// Decodes exactly one frame from a complete buffer (tests, fuzzing, one-shot use).
pub fn decode_one(bytes: &[u8]) -> Result<Frame, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    match Decoder::new(usize::MAX).decode(&mut buf)? {
        Some(f) if buf.is_empty() => Ok(f),
        Some(_) => Err(FrameError::Msgpack(format!("{} trailing bytes", buf.len())).into()),
        None => Err(FrameError::Msgpack("truncated frame".into()).into()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "bool",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "str",
        Value::Binary(_) => "bin",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

/// The common shape, `[uint, uint, [args…], [headers…]?]`, read without building the
/// envelope as a value. `None` sends anything else down the general path, which names the
/// problem.
fn fast_frame(bytes: &[u8]) -> Option<Frame> {
    let mut rd = bytes;
    let n = rmp::decode::read_array_len(&mut rd).ok()?;
    if !(3..=4).contains(&n) {
        return None;
    }
    let channel = rmp::decode::read_int::<u64, _>(&mut rd).ok()?;
    let ty = rmp::decode::read_int::<u64, _>(&mut rd).ok()?;
    let argc = rmp::decode::read_array_len(&mut rd).ok()?;
    let mut args = Vec::with_capacity((argc as usize).min(1024));
    for _ in 0..argc {
        args.push(rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).ok()?);
    }
    let mut headers = Vec::new();
    if n == 4 {
        let hc = rmp::decode::read_array_len(&mut rd).ok()?;
        for _ in 0..hc {
            let h = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).ok()?;
            headers.push(header_from_value(h).ok()?);
        }
    }
    rd.is_empty().then_some(Frame {
        channel,
        ty,
        args,
        headers,
    })
}

fn frame_from_value(value: Value) -> Result<Frame, DecodeError> {
    let items = match value {
        Value::Array(items) => items,
        other => return Err(FrameError::NotArray(kind(&other)).into()),
    };
    if !(3..=4).contains(&items.len()) {
        return Err(FrameError::Arity(items.len()).into());
    }
    let mut it = items.into_iter();
    let field = |field, expected, v: &Value| FrameError::Field {
        field,
        expected,
        got: kind(v),
    };
    let channel = match it.next() {
        Some(Value::Integer(i)) if i.as_u64().is_some() => i.as_u64().unwrap_or_default(),
        Some(v) => return Err(field("channel", "an unsigned integer", &v).into()),
        None => return Err(FrameError::Arity(0).into()),
    };
    let with_channel = |error: FrameError| DecodeError {
        error,
        channel: Some(channel),
    };
    let ty = match it.next() {
        Some(Value::Integer(i)) if i.as_u64().is_some() => i.as_u64().unwrap_or_default(),
        Some(v) => return Err(with_channel(field("type", "an unsigned integer", &v))),
        None => return Err(with_channel(FrameError::Arity(1))),
    };
    let args = match it.next() {
        Some(Value::Array(a)) => a,
        Some(v) => return Err(with_channel(field("args", "an array", &v))),
        None => return Err(with_channel(FrameError::Arity(2))),
    };
    let headers = match it.next() {
        None => Vec::new(),
        Some(Value::Array(hs)) => hs
            .into_iter()
            .map(header_from_value)
            .collect::<Result<_, _>>()
            .map_err(with_channel)?,
        Some(v) => return Err(with_channel(field("headers", "an array", &v))),
    };
    Ok(Frame {
        channel,
        ty,
        args,
        headers,
    })
}

fn header_from_value(v: Value) -> Result<Header, FrameError> {
    let bytes = |v: &Value| match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Binary(b) => Some(b.clone()),
        _ => None,
    };
    match &v {
        Value::Integer(_) => Err(FrameError::IndexedHeader(v.to_string())),
        Value::Array(h) => match h.as_slice() {
            [Value::Boolean(false), name, value] => match (bytes(name), bytes(value)) {
                (Some(name), Some(value)) => Ok(Header { name, value }),
                _ => Err(FrameError::BadHeader(v.to_string())),
            },
            [Value::Boolean(true), ..] | [Value::Integer(_), ..] => {
                Err(FrameError::IndexedHeader(v.to_string()))
            }
            _ => Err(FrameError::BadHeader(v.to_string())),
        },
        _ => Err(FrameError::BadHeader(v.to_string())),
    }
}

/// Finds the length of the msgpack value at the start of `buf` without decoding it.
/// `None`: incomplete. Errors on invalid markers, too deep nesting, or a value (complete or
/// announced) longer than `max`.
fn scan(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let too_large = |size: usize| FrameError::TooLarge { size, max };
    let mut pos = 0usize;
    // Values still to read at each open nesting level (the outermost: one value).
    let mut pending: Vec<u64> = Vec::with_capacity(8);
    pending.push(1);
    while let Some(top) = pending.last_mut() {
        if *top == 0 {
            pending.pop();
            continue;
        }
        *top -= 1;
        if pos > max {
            return Err(too_large(pos));
        }
        let Some(&marker) = buf.get(pos) else {
            return Ok(None);
        };
        // Bytes of length field, then what follows: payload bytes or child values.
        let (len_bytes, kind) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, Kind::Payload(0)),
            0x80..=0x8f => (0, Kind::Children(2 * u64::from(marker & 0x0f))),
            0x90..=0x9f => (0, Kind::Children(u64::from(marker & 0x0f))),
            0xa0..=0xbf => (0, Kind::Payload(u64::from(marker & 0x1f))),
            0xc1 => {
                return Err(FrameError::InvalidMarker {
                    byte: marker,
                    offset: pos,
                })
            }
            0xc4 | 0xd9 => (1, Kind::Sized(0)),
            0xc5 | 0xda => (2, Kind::Sized(0)),
            0xc6 | 0xdb => (4, Kind::Sized(0)),
            0xc7 => (1, Kind::Sized(1)),
            0xc8 => (2, Kind::Sized(1)),
            0xc9 => (4, Kind::Sized(1)),
            0xca => (0, Kind::Payload(4)),
            0xcb => (0, Kind::Payload(8)),
            0xcc | 0xd0 => (0, Kind::Payload(1)),
            0xcd | 0xd1 => (0, Kind::Payload(2)),
            0xce | 0xd2 => (0, Kind::Payload(4)),
            0xcf | 0xd3 => (0, Kind::Payload(8)),
            0xd4 => (0, Kind::Payload(2)),
            0xd5 => (0, Kind::Payload(3)),
            0xd6 => (0, Kind::Payload(5)),
            0xd7 => (0, Kind::Payload(9)),
            0xd8 => (0, Kind::Payload(17)),
            0xdc => (2, Kind::Array),
            0xdd => (4, Kind::Array),
            0xde => (2, Kind::Map),
            0xdf => (4, Kind::Map),
        };
        let start = pos + 1;
        let Some(field) = buf.get(start..start + len_bytes) else {
            return Ok(None);
        };
        let n = field.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        pos = start + len_bytes;
        let payload = match kind {
            Kind::Payload(p) => p,
            // Sized(extra): a length-prefixed payload plus `extra` bytes (an ext's type).
            Kind::Sized(extra) => n + extra,
            Kind::Children(c) => {
                push_level(&mut pending, c)?;
                0
            }
            Kind::Array => {
                push_level(&mut pending, n)?;
                0
            }
            Kind::Map => {
                push_level(&mut pending, 2 * n)?;
                0
            }
        };
        // Every child takes at least one byte, so an announced count bounds the size too.
        let announced = (pos as u64)
            .saturating_add(payload)
            .saturating_add(pending.last().copied().unwrap_or(0));
        if announced > max as u64 {
            return Err(too_large(usize::try_from(announced).unwrap_or(usize::MAX)));
        }
        pos += payload as usize;
        if pos > buf.len() {
            return Ok(None);
        }
    }
    if pos > max {
        return Err(too_large(pos));
    }
    Ok(Some(pos))
}

enum Kind {
    Payload(u64),
    Sized(u64),
    Children(u64),
    Array,
    Map,
}

fn push_level(pending: &mut Vec<u64>, children: u64) -> Result<(), FrameError> {
    if pending.len() > MAX_DEPTH {
        return Err(FrameError::TooDeep);
    }
    pending.push(children);
    Ok(())
}

/// Takes every complete frame off `buf`, for callers that want a batch.
pub fn drain(decoder: &Decoder, buf: &mut BytesMut) -> Vec<Result<Frame, DecodeError>> {
    let mut out = Vec::new();
    loop {
        match decoder.decode(buf) {
            Ok(Some(f)) => out.push(Ok(f)),
            Ok(None) => break,
            Err(e) => {
                let fatal = !e.error.recoverable();
                out.push(Err(e));
                if fatal {
                    buf.advance(buf.len());
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn resolve_request_vector() {
        let f = Frame::new(1, 0, vec![Value::from("storage")]);
        assert_eq!(
            hex(&f.to_bytes()),
            "940100 91a773746f72616765 90".replace(' ', "")
        );
        assert_eq!(decode_one(&f.to_bytes()).unwrap(), f);
    }

    #[test]
    fn three_element_frames_decode() {
        let f = decode_one(&[0x93, 0x05, 0x02, 0x90]).unwrap();
        assert_eq!(f, Frame::new(5, 2, vec![]));
    }

    #[test]
    fn literal_headers_round_trip_and_indexed_are_rejected() {
        let mut f = Frame::new(7, 1, vec![Value::from(1)]);
        f.headers.push(Header {
            name: b"trace_id".to_vec(),
            value: vec![0xff, 0, 1],
        });
        assert_eq!(decode_one(&f.to_bytes()).unwrap(), f);
        // [7, 0, [], [[true, 80, "x"]]] and [7, 0, [], [80]]: HPACK-indexed forms.
        for bytes in [
            &[0x94, 7, 0, 0x90, 0x91, 0x93, 0xc3, 80, 0xa1, b'x'][..],
            &[0x94, 7, 0, 0x90, 0x91, 80][..],
        ] {
            let e = decode_one(bytes).unwrap_err();
            assert!(matches!(e.error, FrameError::IndexedHeader(_)), "{e}");
            assert_eq!(e.channel, Some(7));
            assert!(e.error.recoverable());
        }
    }

    #[test]
    fn partial_and_many_frames_per_read() {
        let a = Frame::new(1, 0, vec![Value::from("a")]);
        let b = Frame::new(2, 6, vec![]);
        let mut all = a.to_bytes();
        all.extend(b.to_bytes());
        let d = Decoder::default();
        // Byte by byte: nothing until each frame is complete.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in &all {
            buf.extend_from_slice(&[*byte]);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, vec![a.clone(), b.clone()]);
        // All at once.
        let mut buf = BytesMut::from(&all[..]);
        let got: Vec<_> = drain(&d, &mut buf)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, vec![a, b]);
        assert!(buf.is_empty());
    }

    #[test]
    fn size_limit_is_enforced_before_buffering() {
        let d = Decoder::new(64);
        // A str32 announcing 1 GiB: rejected from its 6-byte prefix alone.
        let mut buf = BytesMut::from(&[0x94, 1, 0, 0x91, 0xdb, 0x40, 0, 0, 0][..]);
        let e = d.decode(&mut buf).unwrap_err();
        assert!(
            matches!(e.error, FrameError::TooLarge { max: 64, .. }),
            "{e}"
        );
        assert!(!e.error.recoverable());
        assert!(e.to_string().contains("exceeds the 64-byte limit"), "{e}");
        // An array announcing 2^32-1 elements, too.
        let mut buf = BytesMut::from(&[0xdd, 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            d.decode(&mut buf).unwrap_err().error,
            FrameError::TooLarge { .. }
        ));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let cases: [(&[u8], &str); 5] = [
            (&[0xa1, b'x'], "not a msgpack array"),
            (&[0x92, 1, 2], "2 elements"),
            (&[0x93, 0xa1, b'x', 0, 0x90], "`channel`"),
            (&[0x93, 1, 0xff, 0x90], "`type`"),
            (&[0x93, 1, 0, 0x80], "`args`"),
        ];
        for (bytes, want) in cases {
            let e = decode_one(bytes).unwrap_err();
            assert!(e.to_string().contains(want), "{bytes:x?}: {e}");
        }
    }

    #[test]
    fn garbage_and_deep_nesting_are_fatal_errors() {
        let e = decode_one(&[0x94, 0xc1]).unwrap_err();
        assert_eq!(
            e.error,
            FrameError::InvalidMarker {
                byte: 0xc1,
                offset: 1
            }
        );
        let deep = vec![0x91; 10_000];
        let e = decode_one(&deep).unwrap_err();
        assert_eq!(e.error, FrameError::TooDeep);
    }

    #[test]
    fn scan_agrees_with_rmpv_on_every_kind() {
        let v = Value::Array(vec![
            Value::Nil,
            Value::from(true),
            Value::from(-5),
            Value::from(300u64),
            Value::from(u64::MAX),
            Value::from(i64::MIN),
            Value::F32(1.5),
            Value::F64(2.5),
            Value::from("x".repeat(40)),
            Value::from("y".repeat(300)),
            Value::Binary(vec![1; 70_000]),
            Value::Ext(3, vec![1, 2, 3, 4]),
            Value::Ext(3, vec![9; 20]),
            Value::Map(vec![(
                Value::from(1),
                Value::Array(vec![Value::from(2); 20]),
            )]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &v).unwrap();
        assert_eq!(scan(&bytes, usize::MAX).unwrap(), Some(bytes.len()));
        for cut in [1, 5, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(scan(&bytes[..cut], usize::MAX).unwrap(), None, "cut {cut}");
        }
    }
}
