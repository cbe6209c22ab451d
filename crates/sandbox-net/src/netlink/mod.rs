//! A small synchronous NETLINK_ROUTE client.
//!
//! [`Netlink`] owns one socket. A socket stays bound to the network namespace of the thread
//! that created it, so [`Netlink::open_in`] creates it while the calling thread is briefly
//! inside the target netns ([`NetNs::run`]) and hands it back: it can then be used from
//! any thread. The typed operations in the submodules build messages with
//! `netlink-packet-route` and decode answers by hand ([`attr`]), so that nothing a tenant
//! sets makes a decode fail; nothing outside this module sees raw bytes but
//! [`answers::decode`], the fuzz target's entry. Every request is counted, so tests and
//! benchmarks can check how many round trips an operation costs.

pub mod addr;
pub mod answers;
pub mod attr;
pub mod htb;
pub mod link;
pub mod neigh;
pub mod pneigh;
pub mod route;
pub mod tc;

use std::io;

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::netns::NetNs;

/// How often a dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is retried.
const DUMP_RETRIES: usize = 5;
/// Receive buffer: large enough for any single netlink datagram the kernel sends us.
const RECV_BUF: usize = 64 * 1024;

/// An error answered by the kernel, with its extended-ack text when it gave one.
#[derive(Debug)]
pub struct NlError {
    pub errno: i32,
    pub message: Option<String>,
}

impl NlError {
    /// The error as an `io::Error`, keeping the kernel's explanation in the text.
    pub fn into_io(self) -> io::Error {
        let base = io::Error::from_raw_os_error(self.errno);
        match self.message {
            Some(msg) => io::Error::new(base.kind(), format!("{base} ({msg})")),
            None => base,
        }
    }
}

/// A NETLINK_ROUTE socket bound to one network namespace.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    requests: u64,
    buf: Vec<u8>,
}

impl Netlink {
    /// Open a socket in the calling thread's network namespace.
    /// Connected to the kernel (port 0), so nothing but the kernel can send to it (a pod's
    /// process with CAP_NET_ADMIN could otherwise send it forged answers). `connect` also
    /// binds the socket to a port the kernel picks: no separate `bind` and `getsockname`
    /// (two syscalls per attach), as nothing here needs to know the port.
    pub fn open_here() -> io::Result<Self> {
        let socket = Socket::new(NETLINK_ROUTE)?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_ext_ack(true)?;
        socket.set_cap_ack(true)?;
        Ok(Netlink {
            socket,
            seq: 0,
            requests: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Open a socket inside `netns`; usable from any thread after.
    pub fn open_in(netns: &NetNs) -> crate::Result<Self> {
        netns.run(Netlink::open_here)?.map_err(|e| {
            crate::Error::kernel(
                format!("netns {}", netns.display()),
                "open netlink socket",
                e,
            )
        })
    }

    /// The socket itself, for ioctls that answer for its netns (see `tap::ifindex_via`).
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.socket)
    }

    /// The cookie of the netns this socket belongs to (see [`crate::netns::cookie_of`]);
    /// a socket option, not a request.
    pub fn netns_cookie(&self) -> io::Result<u64> {
        crate::netns::cookie_of(self.as_fd())
    }

    /// How many requests (acked operations and dumps) this socket has sent.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.requests += 1;
        self.socket.send(&out, 0)?;
        Ok(self.seq)
    }

    /// Receive datagrams until `each` says the exchange is complete, calling it with the
    /// type, flags and bytes (header included) of every message that answers `seq`.
    fn recv_raw_for(
        &mut self,
        seq: u32,
        mut each: impl FnMut(u16, u16, &[u8]) -> io::Result<bool>,
    ) -> io::Result<()> {
        loop {
            self.buf.clear();
            let n = loop {
                match self.socket.recv(&mut self.buf, 0) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n > self.buf.len() {
                return Err(io::Error::other("netlink datagram truncated"));
            }
            let mut done = false;
            for message in messages(&self.buf) {
                let m = message?;
                if m.seq == seq && each(m.message_type, m.flags, m.bytes)? {
                    done = true;
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Like `recv_raw_for`, with every answer decoded in full.
    fn recv_for(
        &mut self,
        seq: u32,
        mut each: impl FnMut(NetlinkMessage<RouteNetlinkMessage>) -> io::Result<bool>,
    ) -> io::Result<()> {
        self.recv_raw_for(seq, |_, _, bytes| {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                .map_err(|e| io::Error::other(format!("decode netlink reply: {e}")))?;
            each(msg)
        })
    }

    /// Send one request that expects an acknowledgement.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<(), NlError> {
        let seq = self
            .send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)
            .map_err(io_to_nl)?;
        let mut outcome = Ok(());
        self.recv_for(seq, |reply| match reply.payload {
            NetlinkPayload::Error(err) => {
                if let Some(code) = err.code {
                    outcome = Err(NlError {
                        errno: code.get().saturating_neg(),
                        message: ext_ack_message(reply.header.flags, &err.header),
                    });
                }
                Ok(true)
            }
            _ => Ok(false),
        })
        .map_err(io_to_nl)?;
        outcome
    }

    /// Get one object (a request without NLM_F_DUMP): the payload of the answer of type
    /// `answer_type` is handed to `parse`. The kernel's refusal (ENODEV for a link that does
    /// not exist, ...) is the error.
    pub fn get_with<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        answer_type: u16,
        parse: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, NlError> {
        let seq = self.send(msg, NLM_F_REQUEST).map_err(io_to_nl)?;
        let mut parse = Some(parse);
        let mut answer = None;
        let mut failure = None;
        self.recv_raw_for(seq, |message_type, flags, bytes| {
            let payload = &bytes[16..];
            match message_type {
                NLMSG_ERROR => {
                    failure = dump_end_error(message_type, flags, payload);
                    Ok(true)
                }
                t if t == answer_type => {
                    if let Some(parse) = parse.take() {
                        answer = Some(parse(payload).map_err(|e| {
                            io::Error::other(format!(
                                "decode netlink answer ({}): {e}",
                                answers::object(answer_type, payload)
                            ))
                        })?);
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .map_err(io_to_nl)?;
        match (failure, answer) {
            (Some(err), _) => Err(err),
            (None, Some(answer)) => Ok(answer),
            (None, None) => Err(NlError {
                errno: libc::EIO,
                message: Some("the kernel acknowledged a get without answering it".into()),
            }),
        }
    }

    /// Dump, handing the payload (what follows the netlink header) of each answer of type
    /// `answer_type` to `parse`, which keeps what it returns as `Some`. The scan uses this to
    /// decode only the attributes it reads, with the crate's parsers, instead of every
    /// attribute of every message. A dump interrupted by a concurrent change is retried.
    pub fn dump_with<T>(
        &mut self,
        msg: RouteNetlinkMessage,
        answer_type: u16,
        mut parse: impl FnMut(&[u8]) -> Result<Option<T>, DecodeError>,
    ) -> Result<Vec<T>, NlError> {
        for _ in 0..DUMP_RETRIES {
            let seq = self
                .send(msg.clone(), NLM_F_REQUEST | NLM_F_DUMP)
                .map_err(io_to_nl)?;
            let mut out = Vec::new();
            let mut interrupted = false;
            let mut failure = None;
            self.recv_raw_for(seq, |message_type, flags, bytes| {
                let payload = &bytes[16..];
                if flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match message_type {
                    // Both end the dump; both carry an errno first (0, or why it failed).
                    NLMSG_DONE | NLMSG_ERROR => {
                        failure = dump_end_error(message_type, flags, payload);
                        Ok(true)
                    }
                    t if t == answer_type => {
                        let parsed = parse(payload).map_err(|e| {
                            io::Error::other(format!(
                                "decode netlink dump answer ({}): {e}",
                                answers::object(answer_type, payload)
                            ))
                        })?;
                        out.extend(parsed);
                        Ok(false)
                    }
                    _ => Ok(false),
                }
            })
            .map_err(io_to_nl)?;
            if let Some(err) = failure {
                return Err(err);
            }
            if !interrupted {
                return Ok(out);
            }
            tracing::debug!("netlink dump interrupted by a concurrent change; retrying");
        }
        Err(NlError {
            errno: libc::EINTR,
            message: Some(format!(
                "dump kept being interrupted by concurrent changes ({DUMP_RETRIES} tries)"
            )),
        })
    }
}

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    pub message_type: u16,
    pub flags: u16,
    pub seq: u32,
    /// The whole message, its 16-byte header included.
    pub bytes: &'a [u8],
}

/// The messages of a datagram, in order; a length that does not fit is an error (and the
/// last item).
pub(crate) fn messages(datagram: &[u8]) -> impl Iterator<Item = io::Result<Message<'_>>> {
    let mut offset = 0;
    std::iter::from_fn(move || {
        let bytes = datagram.get(offset..).filter(|b| b.len() >= 16)?;
        let len = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < 16 || len > bytes.len() {
            offset = datagram.len();
            return Some(Err(io::Error::other("malformed netlink message length")));
        }
        offset += (len + 3) & !3;
        Some(Ok(Message {
            message_type: u16::from_ne_bytes([bytes[4], bytes[5]]),
            flags: u16::from_ne_bytes([bytes[6], bytes[7]]),
            seq: u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            bytes: &bytes[..len],
        }))
    })
}

fn io_to_nl(e: io::Error) -> NlError {
    NlError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        message: if e.raw_os_error().is_some() {
            None
        } else {
            Some(e.to_string())
        },
    }
}

/// The error that ends a dump: the errno that starts an NLMSG_DONE or NLMSG_ERROR payload,
/// when it is not 0, with the kernel's text when it gave one.
fn dump_end_error(message_type: u16, flags: u16, payload: &[u8]) -> Option<NlError> {
    let code = payload
        .get(..4)
        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    if code == 0 {
        return None;
    }
    let rest = payload.get(4..).unwrap_or(&[]);
    let message = if message_type == NLMSG_ERROR {
        ext_ack_message(flags, rest)
    } else {
        // NLMSG_DONE carries its attributes right after the errno.
        ext_ack_attributes(flags, rest)
    };
    Some(NlError {
        errno: code.saturating_neg(),
        message,
    })
}

/// With NETLINK_CAP_ACK the error payload is the original request's 16-byte header, then
/// (when NLM_F_ACK_TLVS is set) attributes; NLMSGERR_ATTR_MSG (1) carries the kernel's text.
fn ext_ack_message(flags: u16, payload: &[u8]) -> Option<String> {
    ext_ack_attributes(flags, payload.get(16..)?)
}

/// The kernel's text among extended-ack attributes (NLMSGERR_ATTR_MSG), when
/// NLM_F_ACK_TLVS says there are any.
fn ext_ack_attributes(flags: u16, mut attrs: &[u8]) -> Option<String> {
    const NLM_F_ACK_TLVS: u16 = 0x200;
    const NLMSGERR_ATTR_MSG: u16 = 1;
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &attrs[4..len];
            let text = text.split(|b| *b == 0).next().unwrap_or(text);
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_ack_text_is_extracted() {
        let mut payload = vec![0u8; 16];
        let text = b"Exclusivity flag on\0";
        let len = (4 + text.len()) as u16;
        payload.extend_from_slice(&len.to_ne_bytes());
        payload.extend_from_slice(&1u16.to_ne_bytes());
        payload.extend_from_slice(text);
        assert_eq!(
            ext_ack_message(0x200, &payload).as_deref(),
            Some("Exclusivity flag on")
        );
        assert_eq!(ext_ack_message(0, &payload), None);
    }

    #[test]
    fn a_dump_ending_with_an_errno_is_an_error() {
        let mut done = (-libc::EINTR).to_ne_bytes().to_vec();
        let text = b"Dump was interrupted\0";
        done.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        done.extend_from_slice(&1u16.to_ne_bytes());
        done.extend_from_slice(text);
        let err = dump_end_error(NLMSG_DONE, 0x200, &done).expect("an error");
        assert_eq!(err.errno, libc::EINTR);
        assert_eq!(err.message.as_deref(), Some("Dump was interrupted"));
        assert!(dump_end_error(NLMSG_DONE, 0, &0i32.to_ne_bytes()).is_none());
        // The fuzzer's first find: an errno that has no negation (i32::MIN) is no panic.
        let err = dump_end_error(NLMSG_DONE, 0, &i32::MIN.to_ne_bytes()).expect("an error");
        assert_eq!(err.errno, i32::MAX);
        assert!(dump_end_error(NLMSG_DONE, 0, &[]).is_none());
        let mut error = (-libc::EPERM).to_ne_bytes().to_vec();
        error.extend_from_slice(&[0u8; 16]);
        let err = dump_end_error(NLMSG_ERROR, 0, &error).expect("an error");
        assert_eq!((err.errno, err.message), (libc::EPERM, None));
    }

    #[test]
    fn ext_ack_tolerates_garbage() {
        let mut payload = vec![0u8; 16];
        payload.extend_from_slice(&[200, 0, 1, 0, b'x']);
        assert_eq!(ext_ack_message(0x200, &payload), None);
        assert_eq!(ext_ack_message(0x200, &[1, 2, 3]), None);
    }
}
