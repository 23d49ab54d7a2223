//! A small DHCPv4 client (RFC 2131): DISCOVER → OFFER → REQUEST → ACK over a UDP socket
//! bound to the uplink. Messages are encoded and decoded by `dhcproto`; this module only
//! holds the exchange and turns an ACK into a [`Lease`].
//!
//! Written here because no maintained async Rust DHCP *client* crate fits a static PID 1.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use tokio::net::UdpSocket;

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("DHCP socket on {iface}: {source}")]
    Socket {
        iface: String,
        source: std::io::Error,
    },
    #[error("send DHCP message: {0}")]
    Send(std::io::Error),
    #[error("no DHCP {expected} within {waited:?}")]
    Timeout {
        expected: &'static str,
        waited: Duration,
    },
    #[error("server refused the address (DHCPNAK)")]
    Nak,
    #[error("malformed DHCP reply: {0}")]
    Malformed(String),
}

/// What the server granted.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub lease_time: Duration,
    pub renew_after: Duration,
}

/// One transaction's messages.
pub struct Transaction {
    xid: u32,
    mac: [u8; 6],
}

impl Transaction {
    pub fn new(xid: u32, mac: [u8; 6]) -> Transaction {
        Transaction { xid, mac }
    }

    fn base(&self, kind: MessageType) -> Message {
        let mut msg = empty_request();
        msg.set_xid(self.xid).set_chaddr(&self.mac);
        // We have no address yet, so ask servers to broadcast their replies.
        msg.set_flags(Flags::default().set_broadcast());
        let opts = msg.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ParameterRequestList(vec![
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
            OptionCode::AddressLeaseTime,
            OptionCode::Renewal,
        ]));
        msg
    }

    /// DISCOVER, optionally asking for the address we had before.
    pub fn discover(&self, previous: Option<Ipv4Addr>) -> Vec<u8> {
        let mut msg = self.base(MessageType::Discover);
        if let Some(ip) = previous {
            msg.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        }
        encode(&msg)
    }

    /// REQUEST for an offered address from the server that offered it.
    pub fn request(&self, offered: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
        let mut msg = self.base(MessageType::Request);
        msg.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(offered));
        msg.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        encode(&msg)
    }

    /// Decodes a datagram. `Ok(None)` means "not for this transaction" (other clients'
    /// traffic, or a stray type), which the caller skips.
    pub fn parse_reply(&self, bytes: &[u8]) -> Result<Option<(MessageType, Message)>, DhcpError> {
        check_option_lengths(bytes)?;
        let msg = Message::decode(&mut Decoder::new(bytes))
            .map_err(|e| DhcpError::Malformed(e.to_string()))?;
        // The MAC is read from the raw header (chaddr at offset 28), not `msg.chaddr()`:
        // dhcproto 0.15 slices its 16-byte array by the sender's `hlen` byte and panics when
        // a reply claims more than 16, and any host on the LAN may send such a reply.
        if msg.opcode() != Opcode::BootReply
            || msg.xid() != self.xid
            || bytes.get(CHADDR..CHADDR + 6) != Some(&self.mac[..])
        {
            return Ok(None);
        }
        let kind = msg
            .opts()
            .msg_type()
            .ok_or_else(|| DhcpError::Malformed("no message type option".into()))?;
        Ok(Some((kind, msg)))
    }
}

/// Offset of the options, after the BOOTP header and the magic cookie.
const OPTIONS: usize = 240;

/// Refuses options whose length dhcproto 0.15 trusts without checking: it asserts on them
/// in debug builds and subtracts past zero for two of them (found by fuzzing,
/// `dhcp_reply`). Options are walked as dhcproto walks them, consecutive pieces of one
/// option joined (RFC 3396); a truncated tail is left to dhcproto's own error.
fn check_option_lengths(bytes: &[u8]) -> Result<(), DhcpError> {
    fn check(code: u8, len: usize) -> Result<(), DhcpError> {
        let (ok, want) = match code {
            80 => (len == 0, "0"),           // rapid commit
            81 => (len >= 3, "at least 3"),  // client FQDN
            94 => (len == 3, "3"),           // client network interface
            151 => (len >= 1, "at least 1"), // bulk leasequery status code
            152..=155 => (len == 4, "4"),    // bulk leasequery times
            _ => (true, ""),
        };
        if ok {
            Ok(())
        } else {
            Err(DhcpError::Malformed(format!(
                "option {code} is {len} bytes long, expected {want}"
            )))
        }
    }
    let Some(mut rest) = bytes.get(OPTIONS..) else {
        return Ok(());
    };
    let mut open: Option<(u8, usize)> = None;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 || code == 255 {
            if let Some((c, len)) = open.take() {
                check(c, len)?;
            }
            if code == 255 {
                break;
            }
            rest = tail;
            continue;
        }
        let Some((&len, tail)) = tail.split_first() else {
            break;
        };
        open = match open {
            Some((c, total)) if c == code => Some((c, total + usize::from(len))),
            Some((c, total)) => {
                check(c, total)?;
                Some((code, usize::from(len)))
            }
            None => Some((code, usize::from(len))),
        };
        rest = tail.get(usize::from(len)..).unwrap_or_default();
    }
    match open {
        Some((c, len)) => check(c, len),
        None => Ok(()),
    }
}

/// An empty BOOTREQUEST, made by decoding rather than with `Message::new`: that one draws
/// a random xid from the OS RNG, which blocks until the kernel's CRNG is seeded — seconds
/// or more on a fresh VM without an RNG device, all of it on the boot path.
/// Offset of `chaddr` in a BOOTP header.
const CHADDR: usize = 28;

fn empty_request() -> Message {
    let mut raw = [0u8; 241];
    raw[0] = 1; // op = BOOTREQUEST
    raw[1] = 1; // htype = ethernet
    raw[236..240].copy_from_slice(&[99, 130, 83, 99]); // DHCP magic cookie
    raw[240] = 255; // end of options
    Message::decode(&mut Decoder::new(&raw)).expect("a fixed, valid BOOTP header decodes")
}

fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(300);
    // Encoding an in-memory message we built ourselves cannot fail.
    msg.encode(&mut Encoder::new(&mut buf))
        .expect("encoding a DHCP message into a Vec");
    buf
}

/// The server's identifier from an OFFER.
fn server_of(msg: &Message) -> Result<Ipv4Addr, DhcpError> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Ok(*ip),
        _ => Err(DhcpError::Malformed(
            "offer without server identifier".into(),
        )),
    }
}

/// Turns an ACK into a lease; names the option that is missing or wrong.
pub fn lease_from_ack(msg: &Message) -> Result<Lease, DhcpError> {
    let opts = msg.opts();
    let address = msg.yiaddr();
    if address.is_unspecified() || address.is_broadcast() {
        return Err(DhcpError::Malformed(format!(
            "ack offers address {address}"
        )));
    }
    let prefix = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => mask_to_prefix(*mask)
            .ok_or_else(|| DhcpError::Malformed(format!("subnet mask {mask} is not contiguous")))?,
        _ => 24, // RFC 2131 leaves it optional; /24 is what every small LAN uses
    };
    let router = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => d.clone(),
        _ => Vec::new(),
    };
    let server = server_of(msg).unwrap_or(msg.siaddr());
    let lease_time = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(s)) => Duration::from_secs(u64::from(*s)),
        _ => return Err(DhcpError::Malformed("ack without lease time".into())),
    };
    let renew_after = match opts.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(s)) => Duration::from_secs(u64::from(*s)).min(lease_time),
        _ => lease_time / 2,
    };
    Ok(Lease {
        address,
        prefix,
        router,
        dns,
        server,
        lease_time,
        renew_after,
    })
}

fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

fn open_socket(iface: &str) -> std::io::Result<UdpSocket> {
    let fd: OwnedFd = socket::socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true)?;
    // Bound to the device, broadcasts leave through it even before it has an address.
    socket::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(iface))?;
    socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)),
    )?;
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);

/// Sends `packet` and waits for a reply of `want` type, retransmitting with a doubling
/// interval (1 s, 2 s, 4 s …) until `deadline`.
async fn exchange(
    sock: &UdpSocket,
    tx: &Transaction,
    packet: &[u8],
    want: MessageType,
    name: &'static str,
    deadline: tokio::time::Instant,
) -> Result<Message, DhcpError> {
    let started = tokio::time::Instant::now();
    let mut interval = Duration::from_secs(1);
    let mut buf = vec![0u8; 1500];
    loop {
        sock.send_to(packet, SERVER)
            .await
            .map_err(DhcpError::Send)?;
        let resend_at = (tokio::time::Instant::now() + interval).min(deadline);
        loop {
            let recv = tokio::time::timeout_at(resend_at, sock.recv_from(&mut buf)).await;
            let Ok(recv) = recv else { break };
            let Ok((n, from)) = recv else { continue };
            tracing::debug!("DHCP: {n} bytes from {from}");
            match tx.parse_reply(&buf[..n]) {
                Ok(Some((MessageType::Nak, _))) => return Err(DhcpError::Nak),
                Ok(Some((kind, msg))) if kind == want => return Ok(msg),
                Ok(_) => {}
                Err(e) => tracing::debug!("ignoring DHCP datagram: {e}"),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DhcpError::Timeout {
                expected: name,
                waited: started.elapsed(),
            });
        }
        interval = (interval * 2).min(Duration::from_secs(8));
    }
}

/// Runs one full DISCOVER/REQUEST exchange on `iface`.
pub async fn acquire(
    iface: &str,
    mac: [u8; 6],
    previous: Option<Ipv4Addr>,
    timeout: Duration,
) -> Result<Lease, DhcpError> {
    let sock = open_socket(iface).map_err(|source| DhcpError::Socket {
        iface: iface.to_owned(),
        source,
    })?;
    let deadline = tokio::time::Instant::now() + timeout;
    let tx = Transaction::new(rand_xid(), mac);
    let offer = exchange(
        &sock,
        &tx,
        &tx.discover(previous),
        MessageType::Offer,
        "offer",
        deadline,
    )
    .await?;
    let server = server_of(&offer)?;
    let request = tx.request(offer.yiaddr(), server);
    let ack = exchange(&sock, &tx, &request, MessageType::Ack, "ack", deadline).await?;
    lease_from_ack(&ack)
}

/// Transaction ids only need to differ between clients on one segment: mix MAC and time.
fn rand_xid() -> u32 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.subsec_nanos() ^ (now.as_secs() as u32).rotate_left(16) ^ std::process::id()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// Builds what a server would answer, from the client's own request.
    fn reply(tx: &Transaction, kind: MessageType, opts: Vec<DhcpOption>) -> Vec<u8> {
        let mut m = Message::decode(&mut Decoder::new(&tx.discover(None))).unwrap();
        m.set_opcode(Opcode::BootReply);
        m.set_yiaddr(Ipv4Addr::new(10, 0, 2, 15));
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        for o in opts {
            m.opts_mut().insert(o);
        }
        encode(&m)
    }

    #[test]
    fn discover_asks_for_broadcast_replies_and_the_options_we_use() {
        let tx = Transaction::new(7, MAC);
        let m = Message::decode(&mut Decoder::new(
            &tx.discover(Some(Ipv4Addr::new(10, 0, 2, 15))),
        ))
        .unwrap();
        assert!(m.flags().broadcast());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(m.xid(), 7);
        assert!(matches!(
            m.opts().get(OptionCode::RequestedIpAddress),
            Some(DhcpOption::RequestedIpAddress(_))
        ));
    }

    #[test]
    fn ack_becomes_a_lease() {
        let tx = Transaction::new(9, MAC);
        let bytes = reply(
            &tx,
            MessageType::Ack,
            vec![
                DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
                DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]),
                DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 2, 3)]),
                DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)),
                DhcpOption::AddressLeaseTime(86400),
            ],
        );
        let (kind, msg) = tx.parse_reply(&bytes).unwrap().unwrap();
        assert_eq!(kind, MessageType::Ack);
        let lease = lease_from_ack(&msg).unwrap();
        assert_eq!(lease.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(lease.dns, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!(lease.renew_after, Duration::from_secs(43200));
    }

    /// A reply for our transaction and MAC whose `hlen` byte claims more than chaddr's 16
    /// bytes: found by fuzzing (`dhcp_reply`); it used to panic inside dhcproto, in PID 1.
    #[test]
    fn a_reply_with_an_oversized_hardware_length_does_not_panic() {
        let tx = Transaction::new(5, MAC);
        let mut bytes = reply(&tx, MessageType::Offer, vec![]);
        bytes[2] = 200; // hlen
        let parsed = std::panic::catch_unwind(|| tx.parse_reply(&bytes).map(|r| r.is_some()));
        let parsed = parsed.expect("parsing an oversized hlen must not panic");
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    /// Options whose length dhcproto trusts (found by fuzzing, `dhcp_reply`): an error
    /// naming the option, not a debug assertion or an underflow.
    #[test]
    fn options_of_impossible_lengths_are_refused_by_name() {
        let tx = Transaction::new(6, MAC);
        for (code, data) in [
            (153u8, vec![5u8]),
            (151, vec![]),
            (81, vec![1, 2]),
            (80, vec![1]),
            (94, vec![1, 2]),
        ] {
            let mut bytes = reply(&tx, MessageType::Ack, vec![]);
            let end = bytes.len() - 1; // before the end option
            let mut opt = vec![code, data.len() as u8];
            opt.extend(&data);
            bytes.splice(end..end, opt);
            let parsed = std::panic::catch_unwind(|| tx.parse_reply(&bytes));
            let err = parsed.expect("no panic").unwrap_err().to_string();
            assert!(err.contains(&format!("option {code} is")), "{err}");
        }
        // The same options at their right lengths still parse.
        let mut bytes = reply(&tx, MessageType::Ack, vec![]);
        let end = bytes.len() - 1;
        bytes.splice(end..end, [153u8, 4, 0, 0, 0, 1, 80, 0]);
        assert!(tx.parse_reply(&bytes).unwrap().is_some());
    }

    #[test]
    fn other_transactions_are_skipped_and_garbage_is_an_error() {
        let ours = Transaction::new(1, MAC);
        let theirs = Transaction::new(2, MAC);
        let bytes = reply(&theirs, MessageType::Offer, vec![]);
        assert!(ours.parse_reply(&bytes).unwrap().is_none());
        let err = ours.parse_reply(&[1, 2, 3]).unwrap_err();
        assert!(err.to_string().starts_with("malformed DHCP reply"), "{err}");
    }

    #[test]
    fn ack_without_lease_time_is_rejected_by_name() {
        let tx = Transaction::new(3, MAC);
        let (_, msg) = tx
            .parse_reply(&reply(&tx, MessageType::Ack, vec![]))
            .unwrap()
            .unwrap();
        assert!(lease_from_ack(&msg)
            .unwrap_err()
            .to_string()
            .contains("lease time"));
    }

    #[test]
    fn masks_convert_to_prefixes() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
