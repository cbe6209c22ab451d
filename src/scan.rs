//! Read the whole network configuration of a netns with exactly four dumps: links,
//! addresses, routes and neighbours, however many interfaces there are.

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

/// Take the four dumps.
pub fn scan(nl: &mut Netlink) -> Result<Snapshot, ScanError> {
    let err = |dump| move |error| ScanError { dump, error };
    Ok(Snapshot {
        links: link::dump(nl).map_err(err("dump links"))?,
        addresses: addr::dump(nl).map_err(err("dump addresses"))?,
        routes: route::dump(nl).map_err(err("dump routes"))?,
        neighbours: neigh::dump(nl).map_err(err("dump neighbours"))?,
    })
}
