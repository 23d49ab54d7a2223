//! Slave frame decoder: any bytes, fed in any split, give frames or errors, never a panic;
//! the split does not change the result, and decoded frames re-encode stably.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sosna_proto::slave::frame::{decode_one, Decoder, Frame};

fn run(data: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, String>> {
    let d = Decoder::new(4096);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(f)) => out.push(Ok(f.to_bytes())),
                Ok(None) => break,
                Err(e) => {
                    let fatal = !e.error.recoverable();
                    out.push(Err(e.to_string()));
                    if fatal {
                        return out;
                    }
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = run(data, data.len());
    let pieces = run(data, usize::from(split % 16) + 1);
    assert_eq!(whole, pieces, "the read split changed the result");
    for bytes in whole.iter().flatten() {
        let f: Frame = decode_one(bytes).expect("re-encoded frame decodes");
        assert_eq!(&f.to_bytes(), bytes, "encoding is stable");
    }
});
