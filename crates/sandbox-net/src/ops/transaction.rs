//! A change to a sandbox's kernel objects as one transaction: the new entries of its
//! journal applied in order and the change recorded, or, when any step fails, the entries
//! applied so far undone (in teardown order, each proven ours, as detach undoes them).
//! Attach, static attach, add-endpoint and set-rate's new limits all go through it.

use crate::endpoint::Backend;
use crate::failpoint::FailAt;
use crate::journal::{self, Entry};
use crate::netlink::Netlink;
use crate::state::{Lock, Phase, State, StateDir};
use crate::{Error, Result, macvtap, names};

/// Why a transaction did not go through.
pub(super) struct Failed {
    pub error: Error,
    /// The undo could not remove all it had to (logged): what is left is listed by the
    /// journal, which must be kept for detach.
    pub kept: bool,
}

/// Apply `state.journal[start..]` in order, then `finish` (what completes the change:
/// recording it). When a step fails, undo the entries applied so far and return the
/// failure, naming `object` (what the change is for: "sandbox ID") and the entry.
/// `fail_at` is the test hook's step among the new entries (their number: in `finish`).
pub(super) fn apply(
    nl: &mut Netlink,
    state: &mut State,
    start: usize,
    object: &str,
    fail_at: FailAt,
    finish: impl FnOnce(&mut Netlink, &mut State) -> Result<()>,
) -> std::result::Result<(), Failed> {
    let alias = names::owner_alias(&state.id);
    let total = state.journal.len() - start;
    let outcome = match journal::apply_at(nl, &mut state.journal[start..], &alias, fail_at) {
        Ok(()) => finish(nl, state).map_err(|e| (total, e)),
        Err(e) => {
            let error = match name_in_use(nl, &state.netns, &e.entry, e.error) {
                Ok(in_use) => in_use,
                Err(error) => {
                    Error::kernel(format!("{object}: {}", e.entry.describe()), e.step, error)
                }
            };
            Err((e.applied, error))
        }
    };
    let Err((applied, error)) = outcome else {
        return Ok(());
    };
    tracing::info!(id = %state.id, %error, applied, "undoing what was applied");
    let entries = &state.journal[start..start + applied];
    let kept = match journal::undo(nl, entries, &state.owner()) {
        Ok(_) => false,
        Err(e) => {
            tracing::error!(id = %state.id, object = %e.entry.describe(), error = %e.error,
                "rollback could not remove an object; the state file is kept so detach can retry");
            true
        }
    };
    Err(Failed { error, kept })
}

/// A device of ours that could not be created because its name is taken in the netns
/// (`EBUSY` from `TUNSETIFF` with `IFF_TUN_EXCL`, `EEXIST` from `RTM_NEWLINK`) as
/// [`Error::NameInUse`], naming the sandbox whose owner alias the device carries (the alias
/// is tenant data: only named, never trusted); any other failure is given back.
fn name_in_use(
    nl: &mut Netlink,
    netns: &str,
    entry: &Entry,
    error: std::io::Error,
) -> std::result::Result<Error, std::io::Error> {
    let kind = match entry {
        Entry::Tap { .. } => "tap",
        Entry::Macvtap { .. } => "macvtap",
        Entry::Ifb { .. } => "ifb",
        _ => return Err(error),
    };
    if !matches!(error.raw_os_error(), Some(libc::EBUSY | libc::EEXIST)) {
        return Err(error);
    }
    let name = entry.device().to_string();
    let by = match crate::netlink::link::get_by_name(nl, &name) {
        Ok(link) => link
            .and_then(|l| l.alias)
            .and_then(|alias| names::owner_of(&alias).map(str::to_string)),
        Err(e) => {
            tracing::debug!(device = %name, error = ?e, "the device in the way can't be looked up");
            None
        }
    };
    Ok(Error::NameInUse {
        kind,
        name,
        netns: netns.to_string(),
        by,
        source: error,
    })
}

/// The `finish` of an attach (or an added endpoint): report the character devices of the
/// new macvtaps (`state.journal[start..]`), then save the state as attached: appended to
/// the state file [`StateDir::create`] wrote under `created`'s lock (a new sandbox), else
/// saved whole.
pub(super) fn record_attached<'a>(
    store: &'a StateDir,
    created: Option<&'a mut Lock>,
    start: usize,
    fail_at: FailAt,
) -> impl FnOnce(&mut Netlink, &mut State) -> Result<()> + 'a {
    move |_, state| {
        let total = state.journal.len() - start;
        for entry in &state.journal[start..] {
            let Entry::Macvtap {
                name,
                ifindex: Some(index),
                ..
            } = entry
            else {
                continue;
            };
            let (major, minor) = macvtap::chardev(name, *index).map_err(|e| {
                Error::kernel(format!("macvtap {name}"), "read its character device", e)
            })?;
            let backend = state
                .endpoints
                .iter_mut()
                .map(|ep| &mut ep.backend)
                .find(|b| b.device() == Some(name.as_str()));
            if let Some(Backend::Macvtap { chardev, .. }) = backend {
                *chardev = Some(format!("{major}:{minor}"));
            }
        }
        fail_at.check(
            total,
            &format!("sandbox {}", state.id),
            "save attached state",
        )?;
        state.phase = Phase::Attached;
        match created {
            Some(lock) => store.save_next(lock, state),
            None => store.save(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netns::NetNs;
    use crate::tap;
    use sandbox_net_testkit::iproute::ip;
    use sandbox_net_testkit::scratch::ScratchNet;
    use std::path::Path;

    /// A tap name taken by another sandbox's device: the kernel's EBUSY for "create tap"
    /// is `NameInUse` naming that sandbox, not a `Kernel` error that reads like `Busy`.
    #[test]
    fn a_taken_tap_name_is_name_in_use_naming_the_other_sandbox() {
        let net = ScratchNet::new("snt-inuse").expect("scratch netns");
        let path = Path::new(crate::netns::NETNS_RUN_DIR).join(&net.pod_name);
        let ns = NetNs::open_path(&net.pod_name, &path).expect("open the pod netns");
        let mut nl = Netlink::open_in(&ns).expect("netlink");
        ns.run(|| tap::create_persistent("tap0_sn", 1, Default::default()))
            .expect("enter")
            .expect("create the other sandbox's tap");
        ip(
            &net.pod_name,
            &["link", "set", "tap0_sn", "alias", "sandbox-net:other"],
        );
        let busy = ns
            .run(|| tap::create_persistent("tap0_sn", 1, Default::default()))
            .expect("enter")
            .expect_err("the name is taken");
        assert_eq!(busy.raw_os_error(), Some(libc::EBUSY));
        let entry = Entry::Tap {
            name: "tap0_sn".into(),
            ifindex: None,
            queues: 1,
            mtu: 1500,
            owner: Default::default(),
            mac: None,
            tx_queue_len: None,
        };
        let e = name_in_use(&mut nl, "pod1", &entry, busy).expect("recognised");
        assert!(
            matches!(&e, Error::NameInUse { name, by: Some(by), .. } if name == "tap0_sn" && by == "other"),
            "{e:?}"
        );
        assert!(e.to_string().contains("by sandbox \"other\""), "{e}");
        assert_eq!(e.exit_code(), 1);
        // Any other failure is given back as it was.
        let other = std::io::Error::from_raw_os_error(libc::EPERM);
        assert!(name_in_use(&mut nl, "pod1", &entry, other).is_err());
    }
}
