//! Read the network configuration of a netns: the whole of it with exactly four dumps
//! (links, addresses, routes and neighbours) however many interfaces there are, or only
//! what choosing the endpoints needs when the guest is not described (see
//! [`crate::ops::AttachOptions::describe_guest`]).

use crate::netlink::addr::{self, Address};
use crate::netlink::link::{self, Link};
use crate::netlink::neigh::{self, Neighbour};
use crate::netlink::route::{self, Route};
use crate::netlink::{Netlink, NlError};

/// Everything a scan read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub neighbours: Vec<Neighbour>,
}

impl Snapshot {
    pub fn link(&self, index: u32) -> Option<&Link> {
        self.links.iter().find(|l| l.index == index)
    }

    pub fn addresses_of(&self, index: u32) -> impl Iterator<Item = &Address> {
        self.addresses.iter().filter(move |a| a.ifindex == index)
    }
}

/// Which dump failed, for error messages.
#[derive(Debug)]
pub struct ScanError {
    pub dump: &'static str,
    pub error: NlError,
}

fn failed(dump: &'static str) -> impl Fn(NlError) -> ScanError {
    move |error| ScanError { dump, error }
}

/// Take the four dumps.
pub fn scan(nl: &mut Netlink) -> Result<Snapshot, ScanError> {
    let mut snapshot = links_and_addresses(nl)?;
    snapshot.routes = route::dump(nl).map_err(failed("dump routes"))?;
    snapshot.neighbours = neigh::dump(nl).map_err(failed("dump neighbours"))?;
    Ok(snapshot)
}

/// Links and addresses only (two dumps): enough to tell the configured interfaces.
pub fn links_and_addresses(nl: &mut Netlink) -> Result<Snapshot, ScanError> {
    Ok(Snapshot {
        links: link::dump(nl).map_err(failed("dump links"))?,
        addresses: addr::dump(nl).map_err(failed("dump addresses"))?,
        ..Snapshot::default()
    })
}

/// The named links only, one request each (a name the netns does not have is left out).
pub fn named_links(nl: &mut Netlink, names: &[String]) -> Result<Snapshot, ScanError> {
    let mut links = Vec::with_capacity(names.len());
    for name in names {
        links.extend(link::get_by_name(nl, name).map_err(failed("read a link by name"))?);
    }
    Ok(Snapshot {
        links,
        ..Snapshot::default()
    })
}
