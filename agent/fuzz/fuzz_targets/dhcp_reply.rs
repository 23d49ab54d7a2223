//! DHCP datagrams from the wire: decode and lease extraction never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sosna_init::net::dhcp::{lease_from_ack, Transaction};

fuzz_target!(|data: &[u8]| {
    // xid 0 and a zero MAC, so fuzzed replies can match the transaction.
    let tx = Transaction::new(0, [0; 6]);
    if let Ok(Some((_, msg))) = tx.parse_reply(data) {
        let _ = lease_from_ack(&msg);
    }
});
