//! The kernel pieces: the tcx drop program, the VMM's vnet header size, the AF_PACKET
//! sender, socket options and CPU pinning.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::frames::VNET_HDR_LEN;

/// `BPF_PROG_LOAD` attributes (the head of `union bpf_attr` this command reads).
#[repr(C)]
#[derive(Default)]
pub struct BpfProgLoad {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
}

/// `BPF_LINK_CREATE` attributes for a tcx link.
#[repr(C)]
#[derive(Default)]
pub struct BpfLinkCreate {
    pub prog_fd: u32,
    pub target_ifindex: u32,
    pub attach_type: u32,
    pub flags: u32,
    pub relative_fd: u32,
    pub _pad: u32,
    pub expected_revision: u64,
}

pub const BPF_PROG_LOAD: libc::c_long = 5;
pub const BPF_LINK_CREATE: libc::c_long = 28;
pub const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
pub const BPF_TCX_INGRESS: u32 = 46;

pub fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    // SAFETY: `attr` is a #[repr(C)] prefix of `union bpf_attr` for `cmd`, zeroed where
    // unused, and lives for the call; the kernel reads at most size_of::<T>() bytes.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a successful BPF_PROG_LOAD / BPF_LINK_CREATE returns a new fd we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Drop every frame at `ifindex`'s ingress (tcx link: `r0 = TC_ACT_SHOT; exit`), counted by
/// the device's rx_packets before it. Call inside the device's netns; the drop lasts as
/// long as the returned link fd.
pub fn tcx_drop(ifindex: u32) -> io::Result<OwnedFd> {
    // mov64 r0, 2 (TC_ACT_SHOT); exit
    let insns: [u64; 2] = [
        u64::from_le_bytes([0xb7, 0, 0, 0, 2, 0, 0, 0]),
        u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let license = b"GPL\0";
    let mut load = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_SCHED_CLS,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..BpfProgLoad::default()
    };
    load.prog_name[..7].copy_from_slice(b"dp_drop");
    let prog = sys_bpf(BPF_PROG_LOAD, &mut load)?;
    let mut link = BpfLinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_TCX_INGRESS,
        ..BpfLinkCreate::default()
    };
    sys_bpf(BPF_LINK_CREATE, &mut link)
}

pub fn tcx_error(e: io::Error) -> String {
    format!("the drop program at the counting veth's tcx ingress (bpf(2); Linux 6.6 or later): {e}")
}

/// `_IOW('T', 216, int)`
pub const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// Set the vnet header size a VMM uses (12 bytes, `virtio_net_hdr_v1`, as Firecracker).
pub fn set_vnet_hdr_len(fd: &OwnedFd) -> io::Result<()> {
    let len: libc::c_int = VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads an int through the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &len as *const libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// The send buffer of an unpaced generator. A frame a socket sent stays charged to its send
/// buffer until the kernel orphans or frees it: tun orphans frames as it queues them, but
/// the veth -> macvlan -> macvtap path keeps them charged until the guest reads them, so
/// with the default buffer (212 KiB, about 128 small frames unread) the generator would
/// wait for the guest and a macvtap queue could never overflow. Traffic from a NIC or a
/// remote host is not paced that way; 64 MiB lets every queue overflow first.
pub const UNPACED_SNDBUF: i32 = 64 << 20;

/// An AF_PACKET socket bound to `ifindex` for sending only (protocol 0: it receives
/// nothing), bypassing the qdisc, unpaced unless `paced`. Call inside the device's netns.
pub fn packet_sender(ifindex: u32, paced: bool) -> io::Result<OwnedFd> {
    let fd = sandbox_net_testkit::packet::bound(ifindex, 0)?;
    set_int_option(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_QDISC_BYPASS, 1)?;
    if !paced {
        set_int_option(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            UNPACED_SNDBUF,
        )?;
    }
    Ok(fd)
}

pub fn pin_to(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// setsockopt of an int option.
pub fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: i32,
) -> io::Result<()> {
    // SAFETY: setsockopt reads an int from a pointer that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
