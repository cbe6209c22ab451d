//! Named namespaces are made as iproute2 makes them (issue 14). On a fresh boot, one test
//! run left namespaces that could no longer be entered (`setns`: EINVAL) or deleted
//! (EBUSY): they were bind-mounted onto `/run/netns/NAME` while `/run/netns` was a plain
//! directory, and the first `ip netns add` of the boot then mounted `/run/netns` over
//! itself, covering them.
//!
//! The boot is staged in a private mount namespace entered by one thread of this process
//! (`unshare(CLONE_NEWNS)` moves only the calling thread): every mount made private first,
//! then a fresh tmpfs on `/run`, where `/run/netns` does not exist yet. Nothing propagates
//! to the host's mounts, and the staged ones go away with the thread.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use sandbox_net::netns::{NETNS_RUN_DIR, NetNs};
use sandbox_net_testkit::netns;
use sandbox_net_testkit::scratch::unique_name;

/// The id of the mount an open file is on (`mnt_id` of its fdinfo).
fn mount_id(path: &str) -> u64 {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let info = format!("/proc/thread-self/fdinfo/{}", file.as_raw_fd());
    let info = File::open(&info).unwrap_or_else(|e| panic!("open {info}: {e}"));
    BufReader::new(info)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("mnt_id:").map(|v| v.trim().parse().ok()))
        .flatten()
        .unwrap_or_else(|| panic!("no mnt_id in the fdinfo of {path}"))
}

/// `ip netns ARGS...` (in this thread's mount namespace); panics with stderr on failure.
fn ip_netns(args: &[&str]) {
    let out = Command::new("ip")
        .arg("netns")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run ip netns: {e}"));
    assert!(
        out.status.success(),
        "ip netns {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Enter this thread into a private mount namespace whose `/run` is a fresh tmpfs.
fn stage_a_fresh_boot() {
    unshare(CloneFlags::CLONE_NEWNS).expect("unshare the mount namespace (this thread only)");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make every mount private");
    mount(
        Some("snt-staged-run"),
        "/run",
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .expect("mount a tmpfs on /run");
}

fn staged() {
    stage_a_fresh_boot();
    assert!(
        !Path::new(NETNS_RUN_DIR).exists(),
        "the staged /run has no netns directory yet"
    );

    let ours = unique_name("snt-boot");
    let made = netns::create(&ours).expect("create a namespace with the test kit");
    assert_ne!(
        mount_id(NETNS_RUN_DIR),
        mount_id("/run"),
        "{NETNS_RUN_DIR} is a mount point of its own, as iproute2 makes it"
    );

    // The first `ip netns add` of the boot.
    let theirs = unique_name("snt-boot-ip");
    ip_netns(&["add", &theirs]);
    assert!(Path::new(NETNS_RUN_DIR).join(&theirs).exists());

    // Ours can still be entered: the name opens the same namespace, and setns works.
    let path = Path::new(NETNS_RUN_DIR).join(&ours);
    let again = NetNs::open_path(&ours, &path).expect("open our namespace by its name");
    assert_eq!(
        again.id(),
        made.id(),
        "the name still leads to our namespace"
    );
    let inside = again
        .run(|| std::fs::metadata("/proc/thread-self/ns/net").map(|m| (m.dev(), m.ino())))
        .expect("enter our namespace (setns)")
        .expect("stat the netns the thread is in");
    assert_eq!(inside, (made.id().dev, made.id().ino), "setns entered it");
    drop(again);
    drop(made);

    // And deleted: unmounted, and its file removed.
    netns::delete(&ours).expect("delete our namespace");
    assert!(!path.exists(), "{} is gone", path.display());
    ip_netns(&["del", &theirs]);
    assert!(!Path::new(NETNS_RUN_DIR).join(&theirs).exists());
}

#[test]
fn a_namespace_made_before_the_first_ip_netns_add_of_a_boot_can_be_entered_and_deleted() {
    // A thread of its own: its mount namespace, and what was staged in it, end with it.
    let staged = std::thread::spawn(staged).join();
    if let Err(panic) = staged {
        std::panic::resume_unwind(panic);
    }
}
