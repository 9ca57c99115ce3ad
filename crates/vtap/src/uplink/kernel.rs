//! What an uplink opens in the kernel, by mode, and holds while it lives:
//! the sockets (af-packet), or the attached program, the socket fds and the
//! promiscuity holder (af-xdp); and the data path each mode's sockets get.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};

use super::{packet, xdp, Error, Mode, XdpState, MAX_QUEUES};
use crate::datapath::DataPath;
use crate::netns::Netns;
use crate::offload::Caps;
use crate::options;

/// What an uplink holds open in the kernel besides its data path.
#[derive(Debug)]
pub(super) enum Held {
    /// af-packet: the sockets (shared with the data path).
    Packet(Vec<Arc<File>>),
    /// af-xdp: the attached program and the promiscuity holder; the
    /// sockets' fds belong to the data path, which outlives this uplink's
    /// use of them (it holds the data path too).
    Xdp {
        _program: xdp::Program,
        query: File,
        fds: Vec<RawFd>,
    },
}

impl Held {
    /// A socket of the interface's namespace, for interface queries.
    pub(super) fn query(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Held::Packet(s) => s.first().map(|s| s.as_fd()),
            Held::Xdp { query, .. } => Some(query.as_fd()),
        }
    }

    /// Frames the kernel dropped before vtap read them, in all; `read`
    /// keeps what packet sockets have reported (they reset on each read).
    pub(super) fn kernel_drops(&self, read: &Mutex<u64>) -> u64 {
        match self {
            Held::Packet(s) => {
                let mut d = read.lock().unwrap_or_else(|e| e.into_inner());
                *d += packet::kernel_drops(s);
                *d
            }
            Held::Xdp { fds, .. } => xdp::kernel_drops(fds),
        }
    }
}

/// What the kernel side of a new uplink reports, for `show`.
pub(super) struct KernelSide {
    pub(super) fanout_id: Option<u16>,
    pub(super) qdisc_bypass: bool,
    pub(super) xdp: Option<XdpState>,
    pub(super) vnet_hdr_len: u8,
}

/// The queues an uplink gets: as asked (1 by default) for af-packet; for
/// af-xdp one per receive queue of the interface, which is also the only
/// count taken (a queue without a socket would pass its frames to the
/// host's stack, not to vtap).
pub(super) fn queues_for(
    mode: Mode,
    asked: Option<u16>,
    probe: &packet::Probe,
    ifname: &str,
) -> Result<u16, Error> {
    match mode {
        Mode::AfPacket => Ok(asked.unwrap_or(1)),
        Mode::AfXdp => {
            let has = probe.rx_queues;
            let n = u16::try_from(has)
                .ok()
                .filter(|n| *n <= MAX_QUEUES)
                .ok_or_else(|| Error::Refused {
                    name: ifname.into(),
                    reason: format!(
                        "has {has} receive queues; af-xdp serves at most {MAX_QUEUES}                          (ethtool -L to use fewer)"
                    ),
                })?;
            match asked {
                Some(q) if q != n => Err(Error::Invalid(options::Error {
                    field: "num-queues",
                    value: q.to_string(),
                    reason: format!(
                        "'{ifname}' has {n} receive queues and af-xdp needs a socket on each                          (change them with ethtool -L)"
                    ),
                })),
                _ => Ok(n),
            }
        }
    }
}

/// Opens af-packet sockets: a data path on them, and what to hold.
pub(super) fn open_packet(
    ns: &Netns,
    probe: &packet::Probe,
    queues: u16,
    ifname: &str,
) -> Result<(DataPath, Held, KernelSide), Error> {
    let ifindex = probe.ifindex;
    let opened = ns
        .run_in(|| packet::open(ifindex, queues))?
        .map_err(|source| Error::Socket {
            name: ifname.into(),
            source,
        })?;
    let sockets: Vec<Arc<File>> = opened.sockets.into_iter().map(Arc::new).collect();
    let mut dp = DataPath::start_sockets(&sockets, opened.hdr_len);
    dp.set_offload_caps(Caps {
        l2: true,
        csum: probe.tx_csum,
        tso4: probe.tx_csum && probe.tso,
        tso6: probe.tx_csum && probe.tso,
        ..Caps::default()
    });
    let kernel = KernelSide {
        fanout_id: opened.fanout_id,
        qdisc_bypass: opened.qdisc_bypass,
        xdp: None,
        vnet_hdr_len: u8::try_from(opened.hdr_len).unwrap_or(u8::MAX),
    };
    Ok((dp, Held::Packet(sockets), kernel))
}

/// Opens af-xdp sockets and attaches the program: a data path on them,
/// and what to hold.
pub(super) fn open_xdp(
    ns: &Netns,
    probe: &packet::Probe,
    queues: u16,
    ifname: &str,
) -> Result<(DataPath, Held, KernelSide), Error> {
    let ifindex = probe.ifindex;
    let opened = ns
        .run_in(|| xdp::open(ifindex, queues, probe.mtu))?
        .map_err(|source| Error::Xdp {
            name: ifname.into(),
            source,
        })?;
    // Complete frames only (the engine says so): the offload layer
    // segments and checksums toward the uplink.
    let dp = DataPath::start_xsk(opened.queues);
    let kernel = KernelSide {
        fanout_id: None,
        // XDP sockets transmit with dev_direct_xmit: no qdisc.
        qdisc_bypass: true,
        xdp: Some(XdpState {
            prog_id: opened.program.id,
            attach: opened.program.attach,
            multi_buffer: opened.multi_buffer,
        }),
        vnet_hdr_len: 0,
    };
    let held = Held::Xdp {
        _program: opened.program,
        query: opened.query,
        fds: opened.fds,
    };
    Ok((dp, held, kernel))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(rx_queues: u32) -> packet::Probe {
        packet::Probe {
            ifindex: 7,
            driver: "veth".into(),
            flags: libc::IFF_UP as u32,
            mtu: 1500,
            mac: [2, 0, 0, 0, 0, 1],
            tx_csum: true,
            tso: true,
            rx_queues,
        }
    }

    /// Mode, queues asked, receive queues the interface has, and the count
    /// (or words of the refusal).
    type Case = (Mode, Option<u16>, u32, Result<u16, &'static str>);

    /// How many queues each mode gets, and what af-xdp refuses.
    #[test]
    fn queue_counts_by_mode() {
        let cases: [Case; 7] = [
            (Mode::AfPacket, None, 4, Ok(1)),
            (Mode::AfPacket, Some(3), 1, Ok(3)),
            (Mode::AfXdp, None, 1, Ok(1)),
            (Mode::AfXdp, None, 4, Ok(4)),
            (Mode::AfXdp, Some(4), 4, Ok(4)),
            (
                Mode::AfXdp,
                Some(2),
                4,
                Err("num-queues '2': 'eth0' has 4 receive queues"),
            ),
            (
                Mode::AfXdp,
                None,
                65,
                Err("host-if-name 'eth0': has 65 receive queues; af-xdp serves at most 64"),
            ),
        ];
        for (mode, asked, has, want) in cases {
            let got = queues_for(mode, asked, &probe(has), "eth0").map_err(|e| e.to_string());
            match (got, want) {
                (Ok(n), Ok(w)) => assert_eq!(n, w, "{mode:?} {asked:?} {has}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{e}"),
                (got, want) => panic!("{mode:?} {asked:?} {has}: {got:?}, want {want:?}"),
            }
        }
    }
}
