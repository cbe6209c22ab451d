//! Applying, undoing and checking the entries of the l3 model (see `model::l3`): settings,
//! added addresses and routes, proxy neighbour entries, removed local routes.

use std::io;
use std::time::{Duration, Instant};

use super::ownership::Verdict;
use super::{Entry, StepError, UndoError, gone, nl_io};
use crate::netlink::addr::{self, Address};
use crate::netlink::link::Link;
use crate::netlink::pneigh::{self, PROTOCOL, ProxyEntry};
use crate::netlink::route::{self, Route};
use crate::netlink::{Netlink, NlError};
use crate::sysctl::{self, On};

/// RT_TABLE_LOCAL, RTN_LOCAL.
const TABLE_LOCAL: u32 = 255;
const RTN_LOCAL: u8 = 2;
/// IFA_F_TENTATIVE, IFA_F_DADFAILED.
const IFA_F_TENTATIVE: u32 = 0x40;
const IFA_F_DADFAILED: u32 = 0x08;
/// How long an undo waits for a restored IPv6 address to finish duplicate address
/// detection before it can be a route's preferred source again.
const DAD_WAIT: Duration = Duration::from_secs(5);

fn on(device: &str, index: Option<u32>) -> Option<On<'_>> {
    index.filter(|_| !device.is_empty()).map(|ifindex| On {
        name: device,
        ifindex,
    })
}

/// Apply one l3 entry on the device at `index` (None: a netns-wide setting).
pub(super) fn apply(nl: &mut Netlink, entry: &Entry, index: Option<u32>) -> Result<(), StepError> {
    match (entry, index) {
        (
            Entry::Sysctl {
                device,
                knob,
                value,
                ..
            },
            _,
        ) => sysctl::write(*knob, on(device, index), *value).map_err(|e| ("write setting", e)),
        (Entry::AddedAddress { address, .. }, Some(i)) => {
            addr::restore(nl, i, address).map_err(|e| ("add address", nl_io(e)))
        }
        (Entry::AddedRoute { route, .. }, Some(i)) => {
            route::restore(nl, route, i).map_err(|e| ("add route", nl_io(e)))
        }
        (Entry::ProxyNeighbour { device, ip, .. }, Some(i)) => {
            let there =
                pneigh::exists(nl, i, *ip).map_err(|e| ("look up proxy neighbour", nl_io(e)))?;
            if there {
                return Err((
                    "add proxy neighbour",
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "a proxy neighbour entry for {ip} on {device} exists already; sandbox-net does not share it"
                        ),
                    ),
                ));
            }
            pneigh::add(nl, i, *ip).map_err(|e| ("add proxy neighbour", nl_io(e)))
        }
        // A local route that is not there (the kernel withheld it, see
        // `model::l3::Routing::withheld_local_route`) is removed already.
        (Entry::RemovedLocalRoute { route, .. }, Some(i)) => match route::delete(nl, route, i) {
            Err(e) if e.errno == libc::ESRCH || e.errno == libc::ENOENT => Ok(()),
            other => other.map_err(|e| ("remove local route", nl_io(e))),
        },
        _ => Err((
            "apply",
            io::Error::other(format!("{} has no device to apply to", entry.describe())),
        )),
    }
}

/// Undo one l3 entry on the device at `index`, proven ours.
pub(super) fn undo(nl: &mut Netlink, entry: &Entry, index: u32) -> io::Result<()> {
    let result = match entry {
        Entry::Sysctl {
            device,
            knob,
            original,
            ..
        } => {
            // None: a setting of a device sandbox-net made, which goes with it.
            let Some(original) = original else {
                return Ok(());
            };
            return match sysctl::write(*knob, on(device, Some(index)), *original) {
                // The device is gone (a renamed one was found not ours before).
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        Entry::AddedAddress { address, .. } => {
            addr::delete(nl, index, address.addr, address.prefix_len)
        }
        Entry::AddedRoute { route, .. } => route::delete(nl, route, index),
        Entry::ProxyNeighbour { ip, .. } => pneigh::delete(nl, index, *ip),
        Entry::RemovedLocalRoute {
            address,
            route,
            sourced,
            ..
        } => return restore_local(nl, index, address, route, sourced),
        _ => return Ok(()),
    };
    undone(result)
}

/// Nothing there any more counts as undone (an address already gone: EADDRNOTAVAIL).
fn undone(result: Result<(), NlError>) -> io::Result<()> {
    match result {
        Err(e) if gone(e.errno) || e.errno == libc::EADDRNOTAVAIL => Ok(()),
        other => other.map_err(nl_io),
    }
}

/// Put back the local route of `address` (see `Entry::RemovedLocalRoute`).
fn restore_local(
    nl: &mut Netlink,
    index: u32,
    address: &Address,
    route: &Route,
    sourced: &[Route],
) -> io::Result<()> {
    if address.addr.is_ipv4() {
        return undone(route::restore(nl, route, index));
    }
    match addr::delete(nl, index, address.addr, address.prefix_len) {
        Ok(()) => {}
        // The address is gone (its owner removed it): its local route went with it.
        Err(e) if gone(e.errno) || e.errno == libc::EADDRNOTAVAIL => return Ok(()),
        Err(e) => return Err(nl_io(e)),
    }
    addr::restore(nl, index, address).map_err(nl_io)?;
    if sourced.is_empty() {
        return Ok(());
    }
    wait_usable(nl, index, address)?;
    for r in sourced {
        route::replace(nl, r, index).map_err(nl_io)?;
    }
    Ok(())
}

/// Wait until `address` on `index` has finished duplicate address detection.
fn wait_usable(nl: &mut Netlink, index: u32, address: &Address) -> io::Result<()> {
    let deadline = Instant::now() + DAD_WAIT;
    loop {
        let flags = addr::dump(nl)
            .map_err(nl_io)?
            .into_iter()
            .find(|a| a.ifindex == index && a.addr == address.addr)
            .map(|a| a.flags);
        match flags {
            Some(f) if f & IFA_F_DADFAILED != 0 => {
                return Err(io::Error::other(format!(
                    "restored address {} failed duplicate address detection",
                    address.addr
                )));
            }
            Some(f) if f & IFA_F_TENTATIVE == 0 => return Ok(()),
            None => return Ok(()),
            Some(_) if Instant::now() > deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "restored address {} still tentative after {DAD_WAIT:?}",
                        address.addr
                    ),
                ));
            }
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Whether an l3 entry's change is in force (see `journal::in_force`); `link` is the
/// device it lives on, when it is there. Reads settings from inside the netns.
pub(super) fn in_force(
    entry: &Entry,
    link: Option<&Link>,
    addresses: &[Address],
    routes: &[Route],
    proxies: &[ProxyEntry],
) -> bool {
    match (entry, link) {
        (
            Entry::Sysctl {
                device,
                knob,
                value,
                ..
            },
            link,
        ) if device.is_empty() || link.is_some() => {
            sysctl::read(*knob, on(device, link.map(|l| l.index))).is_ok_and(|v| v == *value)
        }
        (_, None) => false,
        (Entry::AddedAddress { address, .. }, Some(l)) => addresses.iter().any(|a| {
            a.ifindex == l.index && a.addr == address.addr && a.prefix_len == address.prefix_len
        }),
        (Entry::AddedRoute { route, .. }, Some(l)) => routes.iter().any(|r| {
            r.oif == Some(l.index)
                && r.dst == route.dst
                && r.dst_len == route.dst_len
                && r.table == route.table
        }),
        (Entry::ProxyNeighbour { ip, .. }, Some(l)) => {
            proxies.iter().any(|p| p.ifindex == l.index && p.ip == *ip)
        }
        (Entry::RemovedLocalRoute { address, .. }, Some(l)) => !routes.iter().any(|r| {
            r.table == TABLE_LOCAL
                && r.kind == RTN_LOCAL
                && r.oif == Some(l.index)
                && r.dst == Some(address.addr)
        }),
        _ => false,
    }
}

/// Refine undo's verdicts on settings by their value now: one that is back at its
/// original (never applied, or put back) is done; one that someone else changed is not
/// ours any more (left alone, named); a netns-wide one is kept while a proxy neighbour
/// entry of sandbox-net other than this undo's own remains (another attachment of the
/// netns relies on it). `order` and `verdicts` are the undo's, in step.
pub(super) fn refine(
    nl: &mut Netlink,
    order: &[&Entry],
    verdicts: &mut [Option<Verdict>],
) -> Result<(), UndoError> {
    let mut others: Option<Vec<ProxyEntry>> = None;
    for (entry, verdict) in order.iter().zip(verdicts.iter_mut()) {
        let Entry::Sysctl {
            device,
            knob,
            value,
            original: Some(original),
            ..
        } = entry
        else {
            continue;
        };
        let Some(Verdict::Ours(index)) = *verdict else {
            continue;
        };
        let at = on(device, Some(index));
        let name = knob.name(at.map(|o| o.name));
        let current = match sysctl::read(*knob, at) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                *verdict = Some(Verdict::Gone);
                continue;
            }
            // Unreadable: the undo's write says why, if it fails too.
            Err(_) => continue,
        };
        if current == *original {
            *verdict = Some(Verdict::Gone);
        } else if current != *value {
            *verdict = Some(Verdict::NotOurs(format!(
                "{name} is {current} now, not the {value} sandbox-net set (it was {original}): someone else changed it"
            )));
        } else if entry.netns_wide() {
            let others = match &mut others {
                Some(o) => o,
                None => {
                    let dumped = pneigh::dump(nl).map_err(|e| UndoError {
                        entry: Box::new((*entry).clone()),
                        error: io::Error::other(format!(
                            "dump proxy neighbours to see whether another attachment relies on {name}: {}",
                            e.into_io()
                        )),
                    })?;
                    others.insert(not_this_undos(dumped, order))
                }
            };
            if let Some(other) = others.first() {
                tracing::info!(setting = %name, proxy = %other.ip, ifindex = other.ifindex,
                    "kept: another attachment of this netns relies on it");
                *verdict = Some(Verdict::Gone);
            }
        }
    }
    Ok(())
}

/// The proxy entries of sandbox-net (its protocol) that this undo does not remove.
fn not_this_undos(dumped: Vec<ProxyEntry>, order: &[&Entry]) -> Vec<ProxyEntry> {
    dumped
        .into_iter()
        .filter(|p| p.protocol == Some(PROTOCOL))
        .filter(|p| {
            !order.iter().any(|e| {
                matches!(e, Entry::ProxyNeighbour { ifindex: Some(i), ip, .. }
                    if *i == p.ifindex && *ip == p.ip)
            })
        })
        .collect()
}
