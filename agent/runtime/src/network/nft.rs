//! The few nfnetlink messages and nf_tables expressions this module needs
//! (constants from `linux/netfilter/nf_tables.h` and `nfnetlink.h`).

use super::*;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_IPV4: u8 = 2;

pub const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
pub const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;

pub const NF_INET_LOCAL_IN: u32 = 1;
pub const NF_INET_FORWARD: u32 = 2;
pub const NF_INET_POST_ROUTING: u32 = 4;
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;
pub const NFT_CMP_EQ: u32 = 0;
pub const NFT_CMP_NEQ: u32 = 1;
pub const NFT_META_IIFNAME: u32 = 6;
/// `1 << (IP_CT_ESTABLISHED + 1) | 1 << (IP_CT_RELATED + 1)`, in host byte order.
pub const CT_ESTABLISHED_RELATED: u32 = 0b110;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_CT_STATE: u32 = 0;

/// An nf_tables expression; all of them work in register 1.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Load `len` bytes at `offset` of the network header.
    Payload(u32, u32),
    Meta(u32),
    CtState,
    /// `reg &= mask` (xor 0).
    Bitwise(Vec<u8>),
    Cmp(u32, Vec<u8>),
    Verdict(u32),
    Masquerade,
}

fn attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    pad(buf);
}

fn pad(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn be32(buf: &mut Vec<u8>, ty: u16, v: u32) {
    attr(buf, ty, &v.to_be_bytes());
}

fn string(buf: &mut Vec<u8>, ty: u16, s: &str) {
    let mut z = s.as_bytes().to_vec();
    z.push(0);
    attr(buf, ty, &z);
}

fn nested(buf: &mut Vec<u8>, ty: u16, body: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    body(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

/// NFTA_DATA_VALUE inside the nested attribute `ty`.
fn data(buf: &mut Vec<u8>, ty: u16, value: &[u8]) {
    nested(buf, ty, |b| attr(b, 1, value));
}

pub fn encode_expr(buf: &mut Vec<u8>, e: &Expr) {
    let name = match e {
        Expr::Payload(..) => "payload",
        Expr::Meta(_) => "meta",
        Expr::CtState => "ct",
        Expr::Bitwise(_) => "bitwise",
        Expr::Cmp(..) => "cmp",
        Expr::Verdict(_) => "immediate",
        Expr::Masquerade => "masq",
    };
    // NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA { … } }
    nested(buf, 1, |b| {
        string(b, 1, name);
        if *e == Expr::Masquerade {
            return;
        }
        nested(b, 2, |d| match e {
            Expr::Payload(offset, len) => {
                be32(d, 1, NFT_REG_1);
                be32(d, 2, NFT_PAYLOAD_NETWORK_HEADER);
                be32(d, 3, *offset);
                be32(d, 4, *len);
            }
            Expr::Meta(key) => {
                be32(d, 1, NFT_REG_1);
                be32(d, 2, *key);
            }
            Expr::CtState => {
                be32(d, 1, NFT_REG_1);
                be32(d, 2, NFT_CT_STATE);
            }
            Expr::Bitwise(mask) => {
                be32(d, 1, NFT_REG_1);
                be32(d, 2, NFT_REG_1);
                be32(d, 3, mask.len() as u32);
                data(d, 4, mask);
                data(d, 5, &vec![0; mask.len()]);
            }
            Expr::Cmp(op, value) => {
                be32(d, 1, NFT_REG_1);
                be32(d, 2, *op);
                data(d, 3, value);
            }
            Expr::Verdict(code) => {
                be32(d, 1, NFT_REG_VERDICT);
                // NFTA_IMMEDIATE_DATA { NFTA_DATA_VERDICT { NFTA_VERDICT_CODE } }
                nested(d, 2, |v| nested(v, 2, |c| be32(c, 1, *code)));
            }
            Expr::Masquerade => unreachable!(),
        });
    });
}

/// A transaction: the kernel applies all of its messages or none.
pub struct Batch {
    buf: Vec<u8>,
    seq: u32,
    ops: Vec<(u32, String)>,
}

impl Batch {
    pub fn begin() -> Batch {
        let mut b = Batch {
            buf: Vec::new(),
            seq: 0,
            ops: Vec::new(),
        };
        b.msg(NFNL_MSG_BATCH_BEGIN, 0, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        b
    }

    fn msg(
        &mut self,
        ty: u16,
        flags: u16,
        family: u8,
        res_id: u16,
        body: impl FnOnce(&mut Vec<u8>),
    ) -> u32 {
        self.seq += 1;
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf
            .extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        // struct nfgenmsg
        self.buf.extend_from_slice(&[family, 0]);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        body(&mut self.buf);
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        self.seq
    }

    fn op(&mut self, msg: u16, flags: u16, what: String, body: impl FnOnce(&mut Vec<u8>)) {
        let ty = (NFNL_SUBSYS_NFTABLES << 8) | msg;
        let seq = self.msg(ty, NLM_F_ACK | flags, NFPROTO_IPV4, 0, body);
        self.ops.push((seq, what));
    }

    pub fn table(&mut self, msg: u16, name: &str) {
        let verb = if msg == NFT_MSG_DELTABLE {
            "delete"
        } else {
            "add"
        };
        self.op(msg, NLM_F_CREATE, format!("{verb} table ip {name}"), |b| {
            string(b, 1, name)
        });
    }

    pub fn chain(&mut self, table: &str, name: &str, kind: &str, hook: u32, priority: i32) {
        self.op(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            format!("add chain {table} {name}"),
            |b| {
                string(b, 1, table);
                string(b, 3, name);
                nested(b, 4, |h| {
                    be32(h, 1, hook);
                    be32(h, 2, priority as u32);
                });
                be32(b, 5, NF_ACCEPT);
                string(b, 7, kind);
            },
        );
    }

    pub fn rule(&mut self, table: &str, chain: &str, exprs: &[Expr]) {
        let what = format!("add rule {table} {chain} #{}", self.ops.len());
        self.op(NFT_MSG_NEWRULE, NLM_F_CREATE | 0x800, what, |b| {
            string(b, 1, table);
            string(b, 2, chain);
            nested(b, 4, |l| {
                for e in exprs {
                    encode_expr(l, e);
                }
            });
        });
    }

    pub fn finish(mut self) -> Wire {
        self.msg(NFNL_MSG_BATCH_END, 0, 0, NFNL_SUBSYS_NFTABLES, |_| {});
        Wire {
            bytes: self.buf,
            ops: self.ops,
        }
    }
}

/// A lone query for table `name` (queries travel outside batches).
pub fn get_table(name: &str) -> Wire {
    let mut b = Batch {
        buf: Vec::new(),
        seq: 0,
        ops: Vec::new(),
    };
    b.op(NFT_MSG_GETTABLE, 0, format!("get table ip {name}"), |m| {
        string(m, 1, name)
    });
    Wire {
        bytes: b.buf,
        ops: b.ops,
    }
}

/// A finished batch: its bytes, and which message each acked sequence number was.
pub struct Wire {
    pub bytes: Vec<u8>,
    pub ops: Vec<(u32, String)>,
}

/// Sends a batch and waits for every message's ack; the first error names its message.
pub fn send(batch: &Wire) -> Result<(), NetworkError> {
    let (wire, ops) = (&batch.bytes, &batch.ops);
    let fail = |op: &str| {
        let op = op.to_string();
        move |source| NetworkError::Nftables { op, source }
    };
    // SAFETY: plain socket syscalls on a descriptor we own from here on.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if fd < 0 {
        return Err(fail("open netlink socket")(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: Duration::from_secs(5).as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: valid option pointer and length.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    // SAFETY: zeroed sockaddr_nl addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: wire and kernel are valid for the given lengths.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            wire.as_ptr().cast(),
            wire.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(fail("send batch")(io::Error::last_os_error()));
    }
    let mut pending: Vec<u32> = ops.iter().map(|(s, _)| *s).collect();
    let mut buf = vec![0u8; 1 << 16];
    while !pending.is_empty() {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(fail("wait for the kernel's answer")(
                io::Error::last_os_error(),
            ));
        }
        for (seq, errno) in acks(&buf[..n as usize]) {
            let what = ops
                .iter()
                .find(|(s, _)| *s == seq)
                .map_or("batch", |(_, w)| w.as_str());
            if errno != 0 {
                return Err(fail(what)(io::Error::from_raw_os_error(-errno)));
            }
            pending.retain(|s| *s != seq);
        }
    }
    Ok(())
}

/// (sequence number, error) of each NLMSG_ERROR in a datagram; error 0 is an ack.
pub fn acks(mut buf: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes(buf[0..4].try_into().expect("4")) as usize;
        let ty = u16::from_ne_bytes(buf[4..6].try_into().expect("2"));
        let seq = u32::from_ne_bytes(buf[8..12].try_into().expect("4"));
        if len < 16 || len > buf.len() {
            break;
        }
        if ty == NLMSG_ERROR && len >= 20 {
            out.push((seq, i32::from_ne_bytes(buf[16..20].try_into().expect("4"))));
        }
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}
