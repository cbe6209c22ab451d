//! The threads of a trial: the peer's generator, the guest's writers and readers, the
//! peer's UDP receiver. Each is pinned and counts what it moved.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::frames::{BATCH, VNET_HDR_LEN, is_ours};
use crate::kernel::{gettid, pin_to};
use crate::{R, fail};

/// What every worker thread shares with the coordinator.
pub struct Worker {
    pub tid: Arc<AtomicU64>,
    pub count: Arc<AtomicU64>,
    pub handle: JoinHandle<io::Result<()>>,
}

/// Spawn `work` pinned to `cpu`; it publishes its tid and counts into `count`.
pub fn spawn_worker(
    name: &str,
    cpu: usize,
    work: impl FnOnce(&AtomicU64) -> io::Result<()> + Send + 'static,
) -> R<Worker> {
    let tid = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let (t, c) = (tid.clone(), count.clone());
    let handle = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            pin_to(cpu)?;
            t.store(gettid() as u64, Ordering::SeqCst);
            work(&c)
        })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while tid.load(Ordering::SeqCst) == 0 {
        if handle.is_finished() || Instant::now() > deadline {
            return match handle.join() {
                Ok(Err(e)) => fail(format!("{name}: {e}")),
                _ => fail(format!("{name} did not start")),
            };
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(Worker { tid, count, handle })
}

/// Join the workers (already told to stop); their final counts. Failures go to `errors`.
pub fn join_all(workers: Vec<Worker>, what: &str, errors: &mut Vec<String>) -> Vec<u64> {
    workers
        .into_iter()
        .map(|w| {
            match w.handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("{what}: {e}")),
                Err(_) => errors.push(format!("{what} panicked")),
            }
            w.count.load(Ordering::SeqCst)
        })
        .collect()
}

pub fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOBUFS))
}

/// Blast `frames` with sendmmsg until `stop`.
pub fn af_packet_send(
    fd: OwnedFd,
    frames: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
    count: &AtomicU64,
) -> io::Result<()> {
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|i| {
            let f = &frames[i % frames.len()];
            libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            }
        })
        .collect();
    // SAFETY: mmsghdr is plain data; all-zero is valid (no name, no control).
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `msgs` points at BATCH iovecs over `frames`, all alive for the call.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) || e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as u64;
        count.store(sent, Ordering::Relaxed);
    }
    Ok(())
}

/// The guest's writer: one `write()` per frame (vnet header + frame) on one queue.
pub fn guest_write(
    fd: OwnedFd,
    frames: Vec<Vec<u8>>,
    stop: Arc<AtomicBool>,
    count: &AtomicU64,
) -> io::Result<()> {
    let bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut b = vec![0u8; VNET_HDR_LEN];
            b.extend_from_slice(f);
            b
        })
        .collect();
    let mut sent = 0u64;
    let mut pfd = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    }];
    while !stop.load(Ordering::Relaxed) {
        for b in &bufs {
            // SAFETY: writes from a buffer that outlives the call.
            let n = unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), b.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if !would_block(&e) {
                    return Err(e);
                }
                // SAFETY: polls one pollfd we own.
                unsafe { libc::poll(pfd.as_mut_ptr(), 1, 10) };
                continue;
            }
            sent += 1;
        }
        count.store(sent, Ordering::Relaxed);
    }
    Ok(())
}

/// The guest's reader: one `read()` per frame until the queue is empty, then `poll()`.
pub fn guest_read(fd: OwnedFd, stop: Arc<AtomicBool>, count: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; 65536 + VNET_HDR_LEN];
    let mut pfd = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    let mut got = 0u64;
    loop {
        let mut empty = false;
        for _ in 0..32 {
            // SAFETY: reads into a buffer we own, at most its length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if would_block(&e) {
                    empty = true;
                    break;
                }
                return Err(e);
            }
            let n = n as usize;
            if n > VNET_HDR_LEN && is_ours(&buf[VNET_HDR_LEN..n]) {
                got += 1;
            }
        }
        count.store(got, Ordering::Relaxed);
        if empty {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // SAFETY: polls one pollfd we own.
            unsafe { libc::poll(pfd.as_mut_ptr(), 1, 50) };
        }
    }
}

/// A UDP receiver (recvmmsg, 64 a call) until `stop`.
pub fn udp_receive(sock: UdpSocket, stop: Arc<AtomicBool>, count: &AtomicU64) -> io::Result<()> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut bufs = vec![[0u8; 2048]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; all-zero is valid.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut got = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `msgs` points at BATCH iovecs over `bufs`, all alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if would_block(&e) || e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as u64;
        count.store(got, Ordering::Relaxed);
    }
    Ok(())
}
