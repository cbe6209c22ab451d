//! What is measured: the joins, directions, consumers, and the plan of a run.

use std::time::Duration;

use sandbox_net::{Model, tap};

/// How the pod's interface reaches the guest's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// No tap: frames counted (and dropped) at the pod's veth, or sent from it. The ceiling.
    Reference,
    /// A model attached by the library.
    Model(Model),
}

/// The joins measured, in table order. A new model is measured by adding it here; the
/// trial code only needs its endpoint to be a tap or a macvtap whose queues
/// `vmm::open_endpoint_queues` opens, and the frames' addresses for a routed model
/// ([`Join::routed`]).
pub const JOINS: &[Join] = &[
    Join::Reference,
    Join::Model(Model::Tcfilter),
    Join::Model(Model::Macvtap),
    Join::Model(Model::L3),
];

impl Join {
    pub fn name(self) -> &'static str {
        match self {
            Join::Reference => "reference",
            Join::Model(m) => m.as_str(),
        }
    }

    /// The joins named in `list` (comma-separated: `reference` and model names), in
    /// [`JOINS`] order, the reference always among them (every ratio divides by it).
    pub fn parse_list(list: &str) -> Result<Vec<Join>, String> {
        let mut named = vec![Join::Reference];
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let join = JOINS
                .iter()
                .copied()
                .find(|j| j.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = JOINS.iter().map(|j| j.name()).collect();
                    format!("unknown join {name:?} (known: {})", known.join(", "))
                })?;
            named.push(join);
        }
        Ok(JOINS
            .iter()
            .copied()
            .filter(|j| named.contains(j))
            .collect())
    }

    /// Whether the pod's IP stack routes the frames (l3): each side addresses its frames to
    /// its gateway's MAC, not to the far end's.
    pub fn routed(self) -> bool {
        self == Join::Model(Model::L3)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Peer -> pod veth -> join -> the guest's queue(s).
    ToGuest,
    /// The guest's queue(s) -> join -> pod veth -> peer.
    FromGuest,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::ToGuest => "to_guest",
            Direction::FromGuest => "from_guest",
        }
    }
}

/// What consumes frames at the peer (from_guest); to_guest frames are consumed by the guest's
/// readers (or, for the reference, counted and dropped at the pod's veth).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// Counted (rx_packets) and dropped at the receiving veth's tc ingress.
    Drop,
    /// The guest's reader threads.
    Guest,
    /// A UDP socket in the peer netns (the peer's IP/UDP receive runs on the sending CPU).
    UdpSocket,
}

impl Consumer {
    pub fn name(self) -> &'static str {
        match self {
            Consumer::Drop => "drop",
            Consumer::Guest => "guest",
            Consumer::UdpSocket => "udp_socket",
        }
    }
}

/// One kind of trial (a row of the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub join: Join,
    pub direction: Direction,
    /// 64: the minimum Ethernet frame (60 bytes on the veth; the 4-byte FCS is not carried).
    /// 1500: an MTU-sized IPv4 packet (a 1514-byte frame).
    pub frame_bytes: u32,
    pub queues: u32,
    pub consumer: Consumer,
    /// The tap's queue length; None for the reference.
    pub txqueuelen: Option<u32>,
}

impl Spec {
    pub fn consumer_for(join: Join, direction: Direction) -> Consumer {
        match (join, direction) {
            (Join::Model(_), Direction::ToGuest) => Consumer::Guest,
            _ => Consumer::Drop,
        }
    }
}

/// Bytes carried on the veth for a nominal frame size.
pub fn wire_bytes(frame_bytes: u32) -> usize {
    match frame_bytes {
        64 => 60,
        n => 14 + n as usize,
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Before each trial, wait (at most this long) until other processes leave the CPUs
    /// idle: the machine is shared, and a busy CPU steals from the generator or the reader.
    pub idle_wait: Duration,
    /// The peer's generator keeps the default send buffer (see `UNPACED_SNDBUF`).
    pub paced: bool,
    pub reps: usize,
    pub windows: usize,
    pub window: Duration,
    pub warmup: Duration,
    pub drain_idle: Duration,
    pub sizes: Vec<u32>,
    pub queue_lens: Vec<u32>,
    /// The joins measured (every one of [`JOINS`] unless `--joins` picks some).
    pub joins: Vec<Join>,
}

impl Plan {
    pub fn smoke() -> Plan {
        Plan {
            idle_wait: Duration::ZERO,
            paced: false,
            reps: 1,
            windows: 2,
            window: Duration::from_millis(60),
            warmup: Duration::from_millis(40),
            drain_idle: Duration::from_millis(30),
            sizes: vec![64, 1500],
            queue_lens: vec![500, 8000],
            joins: JOINS.to_vec(),
        }
    }

    pub fn full() -> Plan {
        Plan {
            idle_wait: Duration::from_secs(20),
            paced: false,
            reps: 2,
            windows: 5,
            window: Duration::from_secs(1),
            warmup: Duration::from_millis(500),
            drain_idle: Duration::from_millis(200),
            sizes: vec![64, 1500],
            queue_lens: vec![500, 1000, 2000, 4000, 8000],
            joins: JOINS.to_vec(),
        }
    }

    /// The main rows: every join, both directions, every size, one queue; the UDP-socket
    /// consumer out of the guest at 64 bytes; two queues for every model at 64 bytes.
    pub fn main_specs(&self) -> Vec<Spec> {
        let mut specs = Vec::new();
        let qlen = |join: Join| matches!(join, Join::Model(_)).then_some(tap::DEFAULT_QUEUE_LEN);
        for &join in &self.joins {
            for direction in [Direction::ToGuest, Direction::FromGuest] {
                for &frame_bytes in &self.sizes {
                    specs.push(Spec {
                        join,
                        direction,
                        frame_bytes,
                        queues: 1,
                        consumer: Spec::consumer_for(join, direction),
                        txqueuelen: qlen(join),
                    });
                }
            }
            specs.push(Spec {
                join,
                direction: Direction::FromGuest,
                frame_bytes: 64,
                queues: 1,
                consumer: Consumer::UdpSocket,
                txqueuelen: qlen(join),
            });
            if let Join::Model(_) = join {
                for direction in [Direction::ToGuest, Direction::FromGuest] {
                    specs.push(Spec {
                        join,
                        direction,
                        frame_bytes: 64,
                        queues: 2,
                        consumer: Spec::consumer_for(join, direction),
                        txqueuelen: qlen(join),
                    });
                }
            }
        }
        specs
    }

    /// Loss against the tap's queue length: into the guest at 64 bytes, every model.
    pub fn queue_len_specs(&self) -> Vec<Spec> {
        let mut specs = Vec::new();
        for &join in &self.joins {
            if join == Join::Reference {
                continue;
            }
            for &len in &self.queue_lens {
                specs.push(Spec {
                    join,
                    direction: Direction::ToGuest,
                    frame_bytes: 64,
                    queues: 1,
                    consumer: Consumer::Guest,
                    txqueuelen: Some(len),
                });
            }
        }
        specs
    }
}
