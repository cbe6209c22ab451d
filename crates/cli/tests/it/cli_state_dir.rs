//! Issue #17, CLI items 2 and 6: a relative `--state-dir` is refused before anything runs
//! (it would name another directory from each working directory: attach in one, detach
//! in another found nothing and left the tap); a typo'd state dir is answered "no state
//! dir" by the read-only commands and created by none of them; a caller without root's
//! capabilities is told so before any state dir is created, by every command.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

/// Run the CLI in `cwd`; (exit code, stdout, stderr).
fn cli_in_cwd(cwd: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("SANDBOX_NET_STATE_DIR")
        .output()
        .expect("run the CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_relative_state_dir_is_refused_before_anything_is_created() {
    let net = scratch(1);
    let base = TempDir::new("snt-relative");
    let (a, b) = (base.join("a"), base.join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    let id = unique_name("rel");
    let (code, out, err) = cli_in_cwd(
        &a,
        &[
            "--state-dir",
            "state",
            "attach",
            "--netns",
            &net.pod_name,
            "--id",
            &id,
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("--state-dir state"), "{err}");
    assert!(err.contains("give an absolute path"), "{err}");
    assert!(!a.join("state").exists(), "nothing created");
    assert_eq!(
        link_names(&net.pod_name)
            .iter()
            .filter(|n| n.ends_with("_sn"))
            .count(),
        0,
        "nothing attached"
    );
    // The same from the environment, and for every command.
    for args in [&["status"][..], &["detach", "--id", &id][..]] {
        let out = Command::new(bin())
            .args(args)
            .current_dir(&b)
            .env("SANDBOX_NET_STATE_DIR", "state")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("give an absolute path"));
    }
    assert!(!b.join("state").exists());
}

#[test]
fn a_typo_state_dir_is_answered_no_state_dir_and_never_created() {
    let top = PathBuf::from("/tmp").join(unique_name("snt-typo"));
    let typo = top.join("a/typo/dir");
    let sd = typo.to_str().expect("utf-8");
    let (code, out, err) = cli(&["--state-dir", sd, "status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("no state dir {sd}")), "{err}");
    let (code, out, err) = cli(&["--state-dir", sd, "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "[]");
    for args in [
        &["status", "--id", "x"][..],
        &["guest-config", "--id", "x"][..],
        &["guest-config", "--id", "x", "--format", "cloud-init"][..],
        &["vmm-args", "--id", "x", "--vmm", "qemu"][..],
    ] {
        let mut full = vec!["--state-dir", sd];
        full.extend_from_slice(args);
        let (code, _, err) = cli(&full);
        assert_ne!(code, 0, "{args:?}");
        assert!(err.contains("not attached"), "{args:?}: {err}");
    }
    assert!(
        !top.exists(),
        "a read-only command created {}",
        top.display()
    );
}

#[test]
fn without_root_every_command_says_so_before_creating_anything() {
    let top = PathBuf::from("/tmp").join(unique_name("snt-nonroot"));
    let sd = top.join("state");
    let sd = sd.to_str().expect("utf-8");
    for args in [
        &["attach", "--netns", "x", "--id", "a"][..],
        &["add-endpoint", "--id", "a", "--iface", "eth0"][..],
        &["remove-endpoint", "--id", "a", "--iface", "eth0"][..],
        &["set-rate", "--id", "a", "--rx-rate", "1mbit"][..],
        &["detach", "--id", "a"][..],
        &["gc"][..],
        &["status"][..],
        &["status", "--id", "a"][..],
        &["guest-config", "--id", "a"][..],
        &["vmm-args", "--id", "a", "--vmm", "qemu"][..],
        &["watch", "--id", "a"][..],
        &["exec", "--id", "a", "--vmm", "qemu", "--", "true"][..],
        &["demo"][..],
    ] {
        let out = Command::new(bin())
            .arg("--state-dir")
            .arg(sd)
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run as nobody");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN") && err.contains("run as root"),
            "{args:?}: {err}"
        );
        assert!(!top.exists(), "{args:?} created {}", top.display());
    }
}
