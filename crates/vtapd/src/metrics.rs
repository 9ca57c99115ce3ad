//! `GET /metrics`: Prometheus text format (prometheus-client).
//!
//! The data path keeps plain per-queue counters (no atomics per packet);
//! a scrape takes one snapshot of every interface (`Registry::list`, which
//! locks each data path once) and turns it into metric families. Only the
//! API request counter and latency histogram live across scrapes, updated
//! by a middleware. Forwarding workers' busy time is their threads' CPU
//! time as the kernel counts it (`/proc/self/task/*/stat`), so it costs the
//! data path nothing.
//!
//! `dist/grafana/vtap.json` is a dashboard over these series; a test checks
//! that every query in it names a series this module exports.

use prometheus_client::encoding::{text::encode, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry as Metrics;
use vtap::TapInfo;

/// API requests by route template, method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// The route template (`/v1/taps/{iface}`), never the raw path.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// HTTP status code.
    pub status: u16,
}

/// The API request counter family.
pub type ApiRequests = Family<ApiLabels, Counter>;

/// API latency by route template and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
    /// HTTP method.
    pub method: String,
}

/// The API latency histogram family (seconds; buckets from 100 µs to
/// about 13 s, doubling).
pub type ApiLatency = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// An empty [`ApiLatency`].
pub fn api_latency() -> ApiLatency {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(1e-4, 2.0, 18)))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

/// The forwarding workers' CPU seconds, by thread name (`vtap-fwd0`...),
/// from `/proc/self/task/*/stat` (utime + stime, in clock ticks).
fn worker_cpu_seconds() -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    // Linux reports these times in USER_HZ, 100 on every architecture
    // vtap builds for.
    const USER_HZ: f64 = 100.0;
    let mut out: Vec<(String, f64)> = tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let comm = comm.trim();
            if !comm.starts_with("vtap-fwd") {
                return None;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // Fields after the parenthesised name: state is 3rd, utime 14th.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some((comm.to_string(), ticks as f64 / USER_HZ))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IfLabels {
    iface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    iface: String,
    direction: &'static str,
    queue: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    iface: String,
    direction: &'static str,
    queue: u32,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FwdLabels {
    iface: String,
    direction: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BalanceLabels {
    iface: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    iface: String,
    direction: &'static str,
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BridgeLabels {
    bridge: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OffloadLabels {
    iface: String,
    what: &'static str,
}

/// The metric families of one scrape.
#[derive(Default)]
struct Families {
    interfaces: Gauge,
    packets: Family<QueueLabels, Counter>,
    bytes: Family<QueueLabels, Counter>,
    kicks: Family<QueueLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    in_flight: Family<QueueLabels, Gauge>,
    ring_size: Family<QueueLabels, Gauge>,
    offload: Family<OffloadLabels, Counter>,
    rate_limit: Family<LimitLabels, Counter>,
    rate_limit_queued: Family<BalanceLabels, Gauge>,
    host_mtu: Family<IfLabels, Gauge>,
    forwarding: Family<FwdLabels, Counter>,
    balanced: Family<BalanceLabels, Gauge>,
    bridge_macs: Family<BridgeLabels, Gauge>,
    bridge_mac_limit: Family<BridgeLabels, Gauge>,
    bridge_learn_refused: Family<BridgeLabels, Counter>,
    worker_cpu: Family<WorkerLabels, Counter<f64>>,
    worker_frames: Family<WorkerLabels, Counter>,
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Families {
    fn add_tap(&self, t: &TapInfo) {
        self.host_mtu
            .get_or_create(&IfLabels {
                iface: t.name.clone(),
            })
            .set(gauge_value(u64::from(t.host_mtu_size)));
        if let Some(dp) = &t.datapath {
            self.add_datapath(&t.name, dp);
        }
    }

    /// A host uplink: its MTU, its data path, and the frames the kernel
    /// dropped before vtap read them (reason `kernel_socket_full`).
    fn add_uplink(&self, u: &vtap::uplink::HostInterfaceInfo) {
        self.host_mtu
            .get_or_create(&IfLabels {
                iface: u.name.clone(),
            })
            .set(gauge_value(u64::from(u.mtu)));
        let Some(dp) = &u.datapath else {
            return;
        };
        self.add_datapath(&u.name, dp);
        let d = DropLabels {
            iface: u.name.clone(),
            direction: "rx",
            queue: 0,
            reason: "kernel_socket_full",
        };
        self.drops.get_or_create(&d).inc_by(u.kernel_drops);
    }

    /// A VXLAN tunnel: the inner MTU it carries, its data path, and what
    /// its endpoint dropped before any tunnel saw it (by reason, on every
    /// tunnel of the endpoint) and its full inbox.
    fn add_tunnel(&self, t: &vtap::tunnel::VxlanInfo) {
        self.host_mtu
            .get_or_create(&IfLabels {
                iface: t.name.clone(),
            })
            .set(gauge_value(u64::from(t.inner_mtu)));
        let Some(dp) = &t.datapath else {
            return;
        };
        self.add_datapath(&t.name, dp);
        let e = &t.endpoint;
        for (reason, n) in [
            ("vxlan_short", e.drop_short),
            ("vxlan_bad_flags", e.drop_bad_flags),
            ("vxlan_inner_runt", e.drop_inner_runt),
            ("vxlan_inner_length_lies", e.drop_inner_length_lies),
            ("vxlan_unknown_tunnel", e.drop_unknown_tunnel),
            ("vxlan_inbox_full", t.drop_inbox_full),
        ] {
            let d = DropLabels {
                iface: t.name.clone(),
                direction: "rx",
                queue: 0,
                reason,
            };
            self.drops.get_or_create(&d).inc_by(n);
        }
    }

    fn add_datapath(&self, name: &str, dp: &vtap::datapath::State) {
        for (direction, queues) in [("rx", &dp.rx), ("tx", &dp.tx)] {
            for (q, st) in queues.iter().enumerate() {
                let l = QueueLabels {
                    iface: name.to_string(),
                    direction,
                    queue: u32::try_from(q).unwrap_or(u32::MAX),
                };
                let c = &st.counters;
                self.packets.get_or_create(&l).inc_by(c.packets);
                self.bytes.get_or_create(&l).inc_by(c.bytes);
                self.kicks.get_or_create(&l).inc_by(c.kicks);
                if let Some(ring) = &st.ring {
                    self.in_flight
                        .get_or_create(&l)
                        .set(i64::from(ring.in_flight));
                    self.ring_size.get_or_create(&l).set(i64::from(ring.size));
                }
                for (reason, n) in [
                    ("bad_header", c.drop_bad_header),
                    ("truncated", c.drop_truncated),
                    ("no_free_slots", c.drop_no_free_slots),
                    ("too_big", c.drop_too_big),
                    ("io_error", c.drop_io_error),
                ] {
                    let d = DropLabels {
                        iface: name.to_string(),
                        direction,
                        queue: l.queue,
                        reason,
                    };
                    self.drops.get_or_create(&d).inc_by(n);
                }
            }
        }
        self.add_accounting(name, &dp.accounting);
        if let Some(rl) = &dp.rate_limit {
            self.add_rate_limit(name, rl);
        }
        let o = &dp.offload;
        for (what, n) in [
            ("segmented", o.segmented),
            ("segments", o.segments),
            ("csum_completed", o.csum_completed),
            ("coalesced", o.coalesced),
            ("coalesced_frames", o.coalesced_frames),
            ("csum_verified", o.csum_verified),
            ("csum_bad", o.csum_bad),
            ("drop_bad_header", o.drop_bad_header),
        ] {
            let l = OffloadLabels {
                iface: name.to_string(),
                what,
            };
            self.offload.get_or_create(&l).inc_by(n);
        }
    }

    /// What each direction's rate limit let through, held back, delayed
    /// and dropped, and how many frames wait in its shaping queue.
    fn add_rate_limit(&self, iface: &str, rl: &vtap::datapath::limit::RateLimitState) {
        for (direction, st) in [("rx", &rl.rx), ("tx", &rl.tx)] {
            let Some(st) = st else { continue };
            let c = &st.counters;
            for (what, n) in [
                ("frames", c.frames),
                ("bytes", c.bytes),
                ("throttled", c.throttled),
                ("delayed", c.delayed),
                ("drop_rate_limit", c.drop_rate_limit),
            ] {
                let l = LimitLabels {
                    iface: iface.to_string(),
                    direction,
                    what,
                };
                self.rate_limit.get_or_create(&l).inc_by(n);
            }
            let l = BalanceLabels {
                iface: iface.to_string(),
                direction,
            };
            self.rate_limit_queued
                .get_or_create(&l)
                .set(gauge_value(c.queued));
        }
    }

    /// The forwarding plane's ledger: one counter per outcome, and whether
    /// each direction balances (1) or not (0).
    fn add_accounting(&self, iface: &str, a: &vtap::datapath::Accounting) {
        let rx = &a.rx;
        let rows = [
            ("rx", "received", rx.received),
            ("rx", "forwarded", rx.forwarded),
            ("rx", "drop_runt", rx.drop_runt),
            ("rx", "drop_filtered", rx.drop_filtered),
            ("rx", "drop_split_horizon", rx.drop_split_horizon),
            ("rx", "drop_no_port", rx.drop_no_port),
            ("rx", "burst_errors", rx.burst_errors),
            ("tx", "offered", a.tx.offered),
            ("tx", "to_queues", a.tx_to_queues),
            ("tx", "from_queues", a.tx_from_queues),
            ("tx", "burst_errors", a.tx.burst_errors),
        ];
        for (direction, outcome, n) in rows {
            let l = FwdLabels {
                iface: iface.to_string(),
                direction,
                outcome,
            };
            self.forwarding.get_or_create(&l).inc_by(n);
        }
        for (direction, ok) in [("rx", a.rx_balanced), ("tx", a.tx_balanced)] {
            let l = BalanceLabels {
                iface: iface.to_string(),
                direction,
            };
            self.balanced.get_or_create(&l).set(i64::from(ok));
        }
    }

    fn add_bridge(&self, b: &vtap::forward::BridgeInfo) {
        let l = BridgeLabels {
            bridge: b.name.clone(),
        };
        let n = u64::try_from(b.macs.len()).unwrap_or(u64::MAX);
        self.bridge_macs.get_or_create(&l).set(gauge_value(n));
        let limit = u64::try_from(b.mac_limit).unwrap_or(u64::MAX);
        self.bridge_mac_limit
            .get_or_create(&l)
            .set(gauge_value(limit));
        self.bridge_learn_refused
            .get_or_create(&l)
            .inc_by(b.learn_refused);
    }

    fn register(self, m: &mut Metrics) {
        m.register(
            "vtap_interfaces",
            "Interfaces in the daemon",
            self.interfaces,
        );
        m.register(
            "vtap_host_mtu_bytes",
            "Host-side MTU of the interface",
            self.host_mtu,
        );
        m.register("vtap_queue_packets", "Frames per queue", self.packets);
        m.register("vtap_queue_bytes", "Bytes per queue", self.bytes);
        m.register("vtap_queue_kicks", "Kicks sent to the device", self.kicks);
        m.register("vtap_queue_drops", "Frames dropped, by reason", self.drops);
        m.register(
            "vtap_ring_in_flight",
            "Descriptors the device holds (ring occupancy)",
            self.in_flight,
        );
        m.register("vtap_ring_size", "Ring size", self.ring_size);
        m.register(
            "vtap_offload",
            "Offload work done in software toward the interface, and bad headers",
            self.offload,
        );
        m.register(
            "vtap_rate_limit",
            "Rate limits per interface and direction: frames and bytes let \
             through, times rx was held back (throttled), tx frames delayed \
             in the shaping queue and dropped from it (drop_rate_limit)",
            self.rate_limit,
        );
        m.register(
            "vtap_rate_limit_queued",
            "Frames waiting in an interface's tx shaping queue",
            self.rate_limit_queued,
        );
        m.register(
            "vtap_forwarding_frames",
            "The forwarding plane's ledger per interface: frames received and \
             forwarded or dropped by reason (rx), offered and queued (tx)",
            self.forwarding,
        );
        m.register(
            "vtap_forwarding_balanced",
            "1 when every frame of this direction is accounted for, else 0",
            self.balanced,
        );
        m.register(
            "vtap_bridge_macs",
            "MAC addresses a bridge domain has learned",
            self.bridge_macs,
        );
        m.register(
            "vtap_bridge_mac_limit",
            "Most MAC addresses a bridge domain learns",
            self.bridge_mac_limit,
        );
        m.register(
            "vtap_bridge_learn_refused",
            "Addresses not learned because the bridge's table was full",
            self.bridge_learn_refused,
        );
        m.register(
            "vtap_worker_cpu_seconds",
            "CPU time of each forwarding worker thread (busy time: a worker \
             sleeps without CPU when it has nothing to move)",
            self.worker_cpu,
        );
        m.register(
            "vtap_worker_frames",
            "Frames each forwarding worker has read (where `rx-placement` put the work)",
            self.worker_frames,
        );
    }
}

/// The text exposition for these interfaces, bridges and API counters.
pub fn render(
    taps: &[TapInfo],
    uplinks: &[vtap::uplink::HostInterfaceInfo],
    tunnels: &[vtap::tunnel::VxlanInfo],
    bridges: &[vtap::forward::BridgeInfo],
    worker_frames: &[u64],
    api: &ApiRequests,
    latency: &ApiLatency,
) -> String {
    let f = Families::default();
    f.interfaces.set(gauge_value(
        u64::try_from(taps.len() + uplinks.len() + tunnels.len()).unwrap_or(u64::MAX),
    ));
    for t in taps {
        f.add_tap(t);
    }
    for u in uplinks {
        f.add_uplink(u);
    }
    for t in tunnels {
        f.add_tunnel(t);
    }
    for b in bridges {
        f.add_bridge(b);
    }
    for (worker, secs) in worker_cpu_seconds() {
        f.worker_cpu
            .get_or_create(&WorkerLabels { worker })
            .inc_by(secs);
    }
    for (i, n) in worker_frames.iter().enumerate() {
        f.worker_frames
            .get_or_create(&WorkerLabels {
                worker: format!("vtap-fwd{i}"),
            })
            .inc_by(*n);
    }
    let mut m = Metrics::default();
    f.register(&mut m);
    m.register(
        "vtap_api_requests",
        "REST API requests by route, method and status",
        api.clone(),
    );
    m.register(
        "vtap_api_request_duration_seconds",
        "REST API request latency by route and method",
        latency.clone(),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &m);
    out
}
