//! Host uplinks (AF_PACKET) against the real kernel. A veth pair stands in
//! for the NIC: one end (`up0`) is the uplink, in a "node" namespace; the
//! other (`lan0`) sits in a "lan" namespace with addresses. A tap's "pod"
//! namespace and the LAN meet on a vtap bridge domain or a cross-connect.
//! Addresses: 198.18.{80..89}.0/24 and 2001:db8:80::/48 only.

mod common;

use std::time::Duration;

use vtap::forward::Forwarder;
use vtap::node::Node;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::uplink::packet::Link;
use vtap::uplink::xdp::XdpAttach;
use vtap::uplink::{HostInterfaceInfo, HostInterfaceOptions, Mode};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

/// Pod, node and LAN namespaces; `up0` in node, `lan0` (198.18.N.2,
/// 2001:db8:80:N::2) in lan; a tap in pod (198.18.N.1, 2001:db8:80:N::1).
struct Lan {
    pod: TestNs,
    node_ns: TestNs,
    lan: TestNs,
    net: u8,
}

impl Lan {
    fn new(tag: &str, net: u8, mtu: u32) -> Self {
        let (pod, node_ns, lan) = (
            TestNs::new(&format!("{tag}p")),
            TestNs::new(&format!("{tag}n")),
            TestNs::new(&format!("{tag}l")),
        );
        for ns in [&pod, &lan] {
            // No DAD: the addresses are usable at once (the namespaces are ours).
            let ok = ns.exec("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"]);
            assert!(ok.status.success());
        }
        node_ns.ip(&[
            "link",
            "add",
            "up0",
            "mtu",
            &mtu.to_string(),
            "type",
            "veth",
            "peer",
            "name",
            "lan0",
            "mtu",
            &mtu.to_string(),
            "netns",
            &lan.name,
        ]);
        node_ns.ip(&["link", "set", "up0", "up"]);
        lan.ip(&["addr", "add", &format!("198.18.{net}.2/24"), "dev", "lan0"]);
        lan.ip(&[
            "addr",
            "add",
            &format!("2001:db8:80:{net}::2/64"),
            "dev",
            "lan0",
            "nodad",
        ]);
        lan.ip(&["link", "set", "lan0", "up"]);
        Self {
            pod,
            node_ns,
            lan,
            net,
        }
    }

    /// A tap in the pod namespace (see [`Lan::tap_options`]).
    async fn tap(&self, n: &mut Node, mtu: u32) -> vtap::TapInfo {
        n.registry
            .create(&self.tap_options(mtu))
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
    }

    /// The LAN side checksums in software, as a wire delivers frames: an
    /// XDP socket gets no checksum metadata, and a veth peer with tx
    /// offload on would hand over checksum-partial frames.
    fn finished_frames(&self) {
        self.lan.exec("ethtool", &["-K", "lan0", "tx", "off"]);
    }

    fn tap_options(&self, mtu: u32) -> CreateOptions {
        CreateOptions {
            host_ns: Some(self.pod.name.clone()),
            host_ip4_addr: Some(format!("198.18.{}.1/24", self.net)),
            host_ip6_addr: Some(format!("2001:db8:80:{}::1/64", self.net)),
            host_mtu_size: Some(mtu),
            gso: true,
            gro_coalesce: true,
            ..Default::default()
        }
    }

    fn uplink_options(&self) -> HostInterfaceOptions {
        HostInterfaceOptions {
            host_if_name: "up0".into(),
            host_ns: Some(self.node_ns.name.clone()),
            ..Default::default()
        }
    }

    /// `up0` as `ip -d -j link` shows it, without counters and what moves.
    fn up0(&self) -> serde_json::Value {
        let mut v = self.node_ns.ip_json(&["-d", "link", "show", "up0"])[0].clone();
        for k in ["stats64", "operstate", "linkmode"] {
            v.as_object_mut().map(|o| o.remove(k));
        }
        v
    }

    /// The receive queues `up0` uses, as `ethtool -l` reports them.
    fn up0_rx_queues(&self) -> u16 {
        let out = self.node_ns.exec("ethtool", &["-l", "up0"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let current = text
            .split("Current hardware settings:")
            .nth(1)
            .unwrap_or_else(|| panic!("ethtool -l: {text}"));
        let count = |key: &str| -> u16 {
            current
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        count("RX:") + count("Combined:")
    }

    fn ping(&self, from_pod: bool, v6: bool, size: usize) -> bool {
        let (ns, to) = if from_pod {
            (&self.pod, self.addr(false, v6))
        } else {
            (&self.lan, self.addr(true, v6))
        };
        let size = size.to_string();
        let mut args = vec!["-c", "2", "-i", "0.2", "-W", "2", "-s", &size, "-M", "do"];
        if v6 {
            args.insert(0, "-6");
        }
        args.push(&to);
        ns.exec("ping", &args).status.success()
    }

    fn addr(&self, pod: bool, v6: bool) -> String {
        let host = if pod { 1 } else { 2 };
        if v6 {
            format!("2001:db8:80:{}::{host}", self.net)
        } else {
            format!("198.18.{}.{host}", self.net)
        }
    }
}

/// The tests of this file one at a time: two of them count the process's
/// fds, which any test running beside them changes.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn node() -> Node {
    let reg = Registry::new(Settings::default()).expect("registry");
    Node::new(reg, Forwarder::new(1).expect("forwarder"))
}

/// This process's fd count once it stops moving (the tap's rtnetlink
/// connections close shortly after a create returns).
fn settled_fds() -> usize {
    let mut last = vtap_testkit::fd_count("self");
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = vtap_testkit::fd_count("self");
        if now == last {
            return now;
        }
        last = now;
    }
}

fn promiscuity(v: &serde_json::Value) -> u64 {
    v["promiscuity"].as_u64().expect("promiscuity")
}

fn rx_bytes_per_frame(info: &HostInterfaceInfo) -> u64 {
    let dp = info.datapath.as_ref().expect("data path");
    let (p, b) = dp.rx.iter().fold((0, 0), |(p, b), q| {
        (p + q.counters.packets, b + q.counters.bytes)
    });
    b / p.max(1)
}

/// Frames and bytes the uplink has sent.
fn tx_totals(info: &HostInterfaceInfo) -> (u64, u64) {
    let dp = info.datapath.as_ref().expect("data path");
    dp.tx.iter().fold((0, 0), |(p, b), q| {
        (p + q.counters.packets, b + q.counters.bytes)
    })
}

fn tx_bytes_per_frame(info: &HostInterfaceInfo) -> u64 {
    let dp = info.datapath.as_ref().expect("data path");
    let (p, b) = dp.tx.iter().fold((0, 0), |(p, b), q| {
        (p + q.counters.packets, b + q.counters.bytes)
    });
    b / p.max(1)
}

/// The whole path on a bridge domain: ARP/ND, ping v4/v6, 32 MB hashed
/// transfers both ways with super-frames crossing the uplink whole, the
/// ledger balanced, and `up0` exactly as found once the uplink is gone
/// (promiscuous only while vtap holds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_the_lan_through_an_af_packet_uplink_on_a_bridge() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("ub", 80, 1500);
    let before = lan.up0();
    assert_eq!(promiscuity(&before), 0);
    let mut n = node();
    let tap = lan.tap(&mut n, 1500).await;
    let up = n
        .host_interface_create(&lan.uplink_options())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (up.name.as_str(), up.kind.as_str()),
        ("host-up0", "host-interface")
    );
    assert_eq!(up.link, Link::Up);
    assert!(up.tso && up.tx_checksum, "veth offers both: {up:?}");
    assert_eq!(up.vnet_hdr_len, 12, "Linux 6.2+ takes PACKET_VNET_HDR_SZ");
    assert_eq!(promiscuity(&lan.up0()), 1, "promiscuous while held");

    n.forwarder.bridge_create("bdu").expect("bridge");
    n.bridge_add("bdu", &tap.name).expect("add tap");
    n.bridge_add("bdu", "host-up0").expect("add uplink");
    for v6 in [false, true] {
        assert!(lan.ping(true, v6, 56), "pod -> lan v6={v6}");
        assert!(lan.ping(false, v6, 56), "lan -> pod v6={v6}");
    }
    let bd = n.forwarder.bridge("bdu").expect("show");
    let lan_mac = lan.lan.ip_json(&["link", "show", "lan0"])[0]["address"]
        .as_str()
        .expect("mac")
        .to_string();
    assert!(
        bd.macs
            .iter()
            .any(|m| m.mac == lan_mac && m.iface == "host-up0"),
        "the LAN's MAC learned on the uplink: {bd:?}"
    );

    common::hashed_transfer(&lan.pod, &lan.lan, &lan.addr(false, false), 32 << 20);
    common::hashed_transfer(&lan.lan, &lan.pod, &lan.addr(true, false), 32 << 20);
    let up = n.uplinks.get("host-up0").expect("get");
    // The LAN's TCP sends super-frames; the uplink reads them whole, and
    // writes the pod's whole (veth takes TSO): far above one MTU per frame.
    assert!(
        rx_bytes_per_frame(&up) > 4000,
        "rx {}",
        rx_bytes_per_frame(&up)
    );
    assert!(
        tx_bytes_per_frame(&up) > 4000,
        "tx {}",
        tx_bytes_per_frame(&up)
    );
    let dp = up.datapath.as_ref().expect("dp");
    assert_eq!(
        dp.offload.segmented, 0,
        "nothing segmented in software: {:?}",
        dp.offload
    );
    let acc = &dp.accounting;
    assert!(acc.rx_balanced && acc.tx_balanced, "{acc:?}");

    // In use: not deletable; then out of the bridge and gone.
    let e = n.host_interface_delete("host-up0").expect_err("in use");
    assert!(e.to_string().contains("bridge bdu"), "{e}");
    n.bridge_remove("bdu", "host-up0").expect("remove");
    n.bridge_remove("bdu", &tap.name).expect("remove");
    n.host_interface_delete("host-up0").expect("delete");
    assert_eq!(lan.up0(), before, "up0 exactly as found");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// A cross-connect instead of a bridge, with jumbo frames (MTU 9000 on the
/// whole path): an 8 000-byte ping crosses unfragmented both ways; a
/// 1 500-byte LAN that the pod's 9 000 does not fit counts `drop_too_big`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_connect_carries_jumbo_frames_and_counts_what_does_not_fit() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("ux", 81, 9000);
    let mut n = node();
    let tap = lan.tap(&mut n, 9000).await;
    let up = n
        .host_interface_create(&lan.uplink_options())
        .expect("uplink");
    assert_eq!(up.mtu, 9000);
    n.xconnect(&tap.name, "host-up0").expect("xconnect");
    for v6 in [false, true] {
        assert!(lan.ping(true, v6, 8000), "pod -> lan 8000 v6={v6}");
        assert!(lan.ping(false, v6, 8000), "lan -> pod 8000 v6={v6}");
    }
    // The LAN side shrinks to 1500 (both veth ends): the uplink shows the
    // new MTU, and a 4 000-byte frame from the pod is refused by the kernel
    // and counted, not lost.
    lan.node_ns.ip(&["link", "set", "up0", "mtu", "1500"]);
    lan.lan.ip(&["link", "set", "lan0", "mtu", "1500"]);
    assert_eq!(n.uplinks.get("host-up0").expect("get").mtu, 1500);
    assert!(!lan.ping(true, false, 4000), "does not fit");
    let up = n.uplinks.get("host-up0").expect("get");
    let dp = up.datapath.expect("dp");
    let too_big: u64 = dp.tx.iter().map(|q| q.counters.drop_too_big).sum();
    assert!(too_big >= 1, "counted as too big: {:?}", dp.tx);
    assert!(dp.accounting.tx_balanced, "{:?}", dp.accounting);
    n.xconnect_remove("host-up0").expect("remove");
    n.host_interface_delete("host-up0").expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// Without TSO on the uplink, super-frames from the pod are cut in software
/// before the socket (and still arrive intact).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uplink_without_tso_gets_segments_cut_in_software() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("ut", 82, 1500);
    lan.node_ns.exec("ethtool", &["-K", "up0", "tso", "off"]);
    let mut n = node();
    let tap = lan.tap(&mut n, 1500).await;
    let up = n
        .host_interface_create(&lan.uplink_options())
        .expect("uplink");
    assert!(!up.tso, "probed: {up:?}");
    assert!(!up.datapath.expect("dp").offload_caps.tso4);
    n.xconnect(&tap.name, "host-up0").expect("xconnect");
    common::hashed_transfer(&lan.pod, &lan.lan, &lan.addr(false, false), 8 << 20);
    let up = n.uplinks.get("host-up0").expect("get");
    let dp = up.datapath.as_ref().expect("dp");
    assert!(dp.offload.segmented > 0, "{:?}", dp.offload);
    assert!(
        tx_bytes_per_frame(&up) <= 1514,
        "{}",
        tx_bytes_per_frame(&up)
    );
    n.xconnect_remove("host-up0").expect("remove");
    n.host_interface_delete("host-up0").expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// Bad input: one line naming the field and the reason, and nothing left
/// (no socket, the interface's promiscuity unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_an_uplink_is_refused_and_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("ur", 83, 1500);
    lan.node_ns.ip(&["link", "set", "lo", "up"]);
    let mut n = node();
    let tap = lan.tap(&mut n, 1500).await;
    let fds = settled_fds();
    let opts = |name: &str, ns: &str| HostInterfaceOptions {
        host_if_name: name.into(),
        host_ns: Some(ns.into()),
        ..Default::default()
    };
    let cases = [
        (
            opts("nope0", &lan.node_ns.name),
            "host-if-name 'nope0': no such interface in namespace",
        ),
        (
            opts("lo", &lan.node_ns.name),
            "host-if-name 'lo': is a loopback interface",
        ),
        (
            opts(&tap.host_if_name, &lan.pod.name),
            "is the host side of vtap's own tap0",
        ),
        (opts("up0", "vt-no-such-ns"), "host-ns 'vt-no-such-ns'"),
        (
            HostInterfaceOptions {
                num_queues: Some(0),
                ..lan.uplink_options()
            },
            "num-queues '0'",
        ),
    ];
    for (o, want) in &cases {
        let e = n.host_interface_create(o).expect_err(want).to_string();
        assert!(e.contains(want), "{o:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    n.host_interface_create(&lan.uplink_options())
        .expect("first");
    let e = n
        .host_interface_create(&lan.uplink_options())
        .expect_err("taken")
        .to_string();
    assert!(e.contains("'host-up0' exists already"), "{e}");
    n.host_interface_delete("host-up0").expect("delete");
    assert!(
        vtap_testkit::wait_until(Duration::from_secs(3), || settled_fds() == fds),
        "no fd left behind: {} before, {} now",
        fds,
        settled_fds()
    );
    assert_eq!(promiscuity(&lan.up0()), 0);
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// The uplink's link goes down and up under traffic, then the interface is
/// deleted under it: no spin, shown `down` then `gone`, traffic resumes
/// when the link returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_up_and_deletion_under_traffic() {
    link_faults(Mode::AfPacket, "uf", 84).await;
}

/// The same faults under an af-xdp uplink: the kick finds the link down
/// (counted), frames for a deleted interface wait in a ring that fills and
/// are then counted as `drop_no_free_slots`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_down_up_and_deletion_under_traffic_af_xdp() {
    link_faults(Mode::AfXdp, "xf", 87).await;
}

async fn link_faults(mode: Mode, tag: &str, net: u8) {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new(tag, net, 1500);
    lan.finished_frames();
    let mut n = node();
    let tap = lan.tap(&mut n, 1500).await;
    n.host_interface_create(&HostInterfaceOptions {
        mode: Some(mode),
        ..lan.uplink_options()
    })
    .expect("uplink");
    n.xconnect(&tap.name, "host-up0").expect("xconnect");
    assert!(lan.ping(true, false, 56));
    lan.node_ns.ip(&["link", "set", "up0", "down"]);
    let up = n.uplinks.get("host-up0").expect("get");
    assert_eq!(up.link, Link::Down);
    assert!(!lan.ping(true, false, 56), "nothing crosses a down link");
    let ticks = vtap_testkit::thread_ticks_in_a_second("vtap-fwd");
    assert!(
        ticks < 20,
        "the worker does not spin on a down uplink: {ticks} ticks"
    );
    lan.node_ns.ip(&["link", "set", "up0", "up"]);
    assert!(
        vtap_testkit::wait_until(Duration::from_secs(10), || lan.ping(true, false, 56)),
        "traffic resumes"
    );
    let up = n.uplinks.get("host-up0").expect("get");
    assert_eq!(up.link, Link::Up);
    assert!(up.link_down_events >= 1, "{up:?}");
    let dp = up.datapath.expect("dp");
    assert!(dp.accounting.tx_balanced && dp.accounting.rx_balanced);

    // Deleted under a flood of pings.
    let flood = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.pod.name,
            "ping",
            "-f",
            "-w",
            "3",
            &lan.addr(false, false),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("flood");
    std::thread::sleep(Duration::from_millis(500));
    lan.node_ns.ip(&["link", "del", "up0"]);
    assert_eq!(n.uplinks.get("host-up0").expect("get").link, Link::Gone);
    let ticks = vtap_testkit::thread_ticks_in_a_second("vtap-fwd");
    assert!(ticks < 20, "no spin once gone: {ticks} ticks");
    let mut flood = flood;
    let _ = flood.wait();
    let up = n.uplinks.get("host-up0").expect("get");
    let dp = up.datapath.expect("dp");
    assert!(
        dp.accounting.tx_balanced,
        "every frame toward it counted: {:?}",
        dp.accounting
    );
    // A packet socket refuses each write (`drop_io_error`); an XDP socket
    // takes frames onto its ring until ring and free list are full.
    let lost: u64 = dp
        .tx
        .iter()
        .map(|q| q.counters.drop_io_error + q.counters.drop_no_free_slots)
        .sum();
    assert!(
        lost > 0,
        "writes to the gone interface counted: {:?}",
        dp.tx
    );
    n.xconnect_remove("host-up0").expect("remove");
    n.host_interface_delete("host-up0").expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// Several queues: one socket each in one fanout group; flows spread, and
/// a transfer still arrives intact and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_queues_share_one_fanout_group() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("uq", 85, 1500);
    let mut n = node();
    let tap = lan.tap(&mut n, 1500).await;
    let fds = settled_fds();
    let up = n
        .host_interface_create(&HostInterfaceOptions {
            num_queues: Some(4),
            ..lan.uplink_options()
        })
        .expect("uplink");
    assert_eq!(up.num_queues, 4);
    assert!(up.fanout_id.is_some());
    assert_eq!(
        settled_fds(),
        fds + 4 + 1,
        "one socket per queue, and the namespace handle"
    );
    let dp = up.datapath.expect("dp");
    assert_eq!((dp.rx.len(), dp.tx.len()), (4, 4));
    n.xconnect(&tap.name, "host-up0").expect("xconnect");
    common::hashed_transfer(&lan.lan, &lan.pod, &lan.addr(true, false), 8 << 20);
    n.xconnect_remove("host-up0").expect("remove");
    n.host_interface_delete("host-up0").expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

fn xdp_options(lan: &Lan) -> HostInterfaceOptions {
    HostInterfaceOptions {
        mode: Some(Mode::AfXdp),
        ..lan.uplink_options()
    }
}

/// The XDP program `ip -d -j link` shows on an interface: its id, if any.
fn xdp_prog_id(link: &serde_json::Value) -> Option<u64> {
    link["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| link["xdp"]["attached"][0]["prog"]["id"].as_u64())
}

/// af-xdp on a bridge domain: vtap's program attached natively while the
/// uplink lives (the id `ip link` shows is the one vtap reports), ARP/ND
/// and ping v4/v6 both ways, 32 MB hashed transfers both ways (the pod's
/// super-frames cut in software toward the uplink, which takes only
/// complete frames), the ledger balanced, and `up0` exactly as found
/// afterwards: no program, no promiscuity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_the_lan_through_an_af_xdp_uplink_on_a_bridge() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("xb", 86, 1500);
    lan.finished_frames();
    let before = lan.up0();
    assert_eq!(xdp_prog_id(&before), None);
    let mut n = node();
    let tap = lan.tap(&mut n, 1500).await;
    let up = n
        .host_interface_create(&xdp_options(&lan))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.mode, Mode::AfXdp);
    let xdp = up.xdp.expect("xdp state");
    assert_eq!(xdp.attach, XdpAttach::Native, "veth runs XDP in its driver");
    let held = lan.up0();
    assert_eq!(xdp_prog_id(&held), Some(u64::from(xdp.prog_id)), "{held}");
    assert_eq!(promiscuity(&held), 1, "promiscuous while held");
    assert_eq!(up.num_queues, lan.up0_rx_queues(), "a socket per rx queue");

    n.forwarder.bridge_create("bdx").expect("bridge");
    n.bridge_add("bdx", &tap.name).expect("add tap");
    n.bridge_add("bdx", "host-up0").expect("add uplink");
    for v6 in [false, true] {
        assert!(lan.ping(true, v6, 56), "pod -> lan v6={v6}");
        assert!(lan.ping(false, v6, 56), "lan -> pod v6={v6}");
    }
    common::hashed_transfer(&lan.pod, &lan.lan, &lan.addr(false, false), 32 << 20);
    common::hashed_transfer(&lan.lan, &lan.pod, &lan.addr(true, false), 32 << 20);
    let up = n.uplinks.get("host-up0").expect("get");
    let dp = up.datapath.as_ref().expect("dp");
    assert!(
        dp.offload.segmented > 0,
        "cut in software: {:?}",
        dp.offload
    );
    assert!(
        tx_bytes_per_frame(&up) <= 1514,
        "{}",
        tx_bytes_per_frame(&up)
    );
    let acc = &dp.accounting;
    assert!(acc.rx_balanced && acc.tx_balanced, "{acc:?}");
    // Every chunk read goes back on the fill ring: a chunk lost there is a
    // frame the kernel drops later (a leak once cost 38 % of the frames).
    let received: u64 = dp.rx.iter().map(|q| q.counters.packets).sum();
    assert!(
        up.kernel_drops * 100 < received,
        "kernel drops {} of {received}",
        up.kernel_drops
    );

    n.bridge_remove("bdx", "host-up0").expect("remove");
    n.bridge_remove("bdx", &tap.name).expect("remove");
    n.host_interface_delete("host-up0").expect("delete");
    assert_eq!(lan.up0(), before, "up0 exactly as found");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// af-xdp's own refusals, each before anything is attached or opened, and
/// an interface that has an XDP program already (here: another vtap's) is
/// refused without disturbing it. Nothing is left: no program, no
/// promiscuity, no fd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_af_xdp_cannot_take_is_refused_and_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("xr", 88, 1500);
    lan.finished_frames();
    let before = lan.up0();
    let mut n = node();
    let tap = lan.tap(&mut n, 1500).await;
    let fds = settled_fds();
    let e = n
        .host_interface_create(&HostInterfaceOptions {
            num_queues: Some(2),
            ..xdp_options(&lan)
        })
        .expect_err("a queue count other than the interface's")
        .to_string();
    assert!(
        e.contains("num-queues '2': 'up0' has 1 receive queues"),
        "{e}"
    );
    assert_eq!(lan.up0(), before, "nothing attached, nothing changed");

    // Another af-xdp user on the queue: refused, and it keeps working.
    let mut other = node();
    other
        .host_interface_create(&xdp_options(&lan))
        .expect("the other holder");
    let held = lan.up0();
    let e = n
        .host_interface_create(&xdp_options(&lan))
        .expect_err("queue taken");
    assert_eq!(e.kind(), vtap::kind::ErrorKind::Conflict, "{e}");
    let e = e.to_string();
    assert!(
        e.contains("host-if-name 'up0': receive queue 0 is taken by another XDP socket"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
    assert_eq!(lan.up0(), held, "the other's program untouched");
    other.host_interface_delete("host-up0").expect("delete");
    drop(other);
    assert_eq!(lan.up0(), before);

    // A program someone else attached (iproute2, through netlink): refused,
    // left in place.
    let obj = concat!(env!("OUT_DIR"), "/xsk_redirect.o");
    lan.node_ns.ip(&[
        "link",
        "set",
        "dev",
        "up0",
        "xdpgeneric",
        "obj",
        obj,
        "sec",
        "xdp",
    ]);
    let theirs = lan.up0();
    assert!(xdp_prog_id(&theirs).is_some(), "{theirs}");
    let e = n
        .host_interface_create(&xdp_options(&lan))
        .expect_err("attached already");
    assert_eq!(e.kind(), vtap::kind::ErrorKind::Conflict, "{e}");
    assert!(
        e.to_string()
            .contains("host-if-name 'up0': an XDP program is attached to it already"),
        "{e}"
    );
    assert_eq!(lan.up0(), theirs, "their program untouched");
    lan.node_ns
        .ip(&["link", "set", "dev", "up0", "xdpgeneric", "off"]);
    assert!(
        vtap_testkit::wait_until(Duration::from_secs(3), || settled_fds() == fds),
        "no fd left behind: {} before, {} now",
        fds,
        settled_fds()
    );
    assert_eq!(lan.up0(), before, "up0 exactly as found");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// Two af-xdp uplinks cross-connected, nothing else on the path: a TCP
/// transfer at full rate, in which the rx side recycles every chunk many
/// times over. The kernel publishes how far it has read the fill ring
/// lazily, so the ring can look full when vtap gives chunks back; a chunk
/// that finds no room must wait, not be lost (that leak once cost 38 % of
/// the frames and TCP to a trickle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_af_xdp_uplinks_carry_a_full_rate_transfer_without_losing_chunks() {
    let _serial = SERIAL.lock().await;
    // `up0` <-> `lan0` (198.18.89.2) as usual; a second pair `up1` (node)
    // <-> `pod0` (198.18.89.1, in the pod namespace) instead of a tap.
    let lan = Lan::new("xu", 89, 1500);
    lan.node_ns.ip(&[
        "link",
        "add",
        "up1",
        "type",
        "veth",
        "peer",
        "name",
        "pod0",
        "netns",
        &lan.pod.name,
    ]);
    lan.node_ns.ip(&["link", "set", "up1", "up"]);
    lan.pod
        .ip(&["addr", "add", "198.18.89.1/24", "dev", "pod0"]);
    lan.pod.ip(&["link", "set", "pod0", "up"]);
    for (ns, dev) in [(&lan.lan, "lan0"), (&lan.pod, "pod0")] {
        ns.exec("ethtool", &["-K", dev, "tx", "off"]);
    }
    let mut n = node();
    // As the daemon runs it: the worker keeps polling after traffic, so it
    // gives chunks back while the kernel is still working through the fill
    // ring it saw last.
    n.forwarder
        .set_poll_window(Duration::from_micros(50))
        .expect("poll window");
    n.host_interface_create(&xdp_options(&lan)).expect("up0");
    n.host_interface_create(&HostInterfaceOptions {
        host_if_name: "up1".into(),
        ..xdp_options(&lan)
    })
    .expect("up1");
    n.xconnect("host-up1", "host-up0").expect("xconnect");
    common::hashed_transfer(&lan.pod, &lan.lan, "198.18.89.2", 16 << 20);
    // Then as fast as TCP goes, for two seconds.
    let server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.lan.name,
            "iperf3",
            "-s",
            "-1",
            "-B",
            "198.18.89.2",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("iperf3 -s");
    std::thread::sleep(Duration::from_millis(300));
    let client = lan.pod.exec("iperf3", &["-c", "198.18.89.2", "-t", "2"]);
    let mut server = server;
    let _ = server.kill();
    let _ = server.wait();
    assert!(client.status.success(), "{client:?}");
    let up = n.uplinks.get("host-up1").expect("get");
    let received: u64 = up
        .datapath
        .as_ref()
        .expect("dp")
        .rx
        .iter()
        .map(|q| q.counters.packets)
        .sum();
    assert!(received > 40_000, "{received} frames");
    assert!(
        up.kernel_drops * 100 < received,
        "kernel drops {} of {received}",
        up.kernel_drops
    );
    n.xconnect_remove("host-up1").expect("remove");
    for u in ["host-up0", "host-up1"] {
        n.host_interface_delete(u).expect("delete");
    }
}

/// af-xdp with jumbo frames (MTU 9000 on the whole path): the sockets take
/// frames in several chunks (multi-buffer, Linux 6.6+) and the program is
/// the one declared for them, so 8 000-byte pings cross unfragmented both
/// ways and TCP moves 9 000-byte frames, each in three chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_af_xdp_cross_connect_carries_jumbo_frames_in_several_chunks() {
    let _serial = SERIAL.lock().await;
    let lan = Lan::new("xj", 90, 9000);
    lan.finished_frames();
    let before = lan.up0();
    let mut n = node();
    let tap = lan.tap(&mut n, 9000).await;
    let up = n
        .host_interface_create(&xdp_options(&lan))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(up.mtu, 9000);
    let xdp = up.xdp.expect("xdp");
    assert!(xdp.multi_buffer, "{xdp:?}");
    let held = lan.up0();
    assert_eq!(xdp_prog_id(&held), Some(u64::from(xdp.prog_id)), "{held}");
    n.xconnect(&tap.name, "host-up0").expect("xconnect");
    for v6 in [false, true] {
        assert!(lan.ping(true, v6, 8000), "pod -> lan 8000 v6={v6}");
        assert!(lan.ping(false, v6, 8000), "lan -> pod 8000 v6={v6}");
    }
    common::hashed_transfer(&lan.lan, &lan.pod, &lan.addr(true, false), 16 << 20);
    let up = n.uplinks.get("host-up0").expect("get");
    assert!(
        rx_bytes_per_frame(&up) > 4096,
        "rx {}",
        rx_bytes_per_frame(&up)
    );
    let sent = tx_totals(&up);
    // Toward the uplink, 9 000-byte frames go out in three chunks each.
    // They arrive whole, but this kernel (6.18, copy mode) gives the chunks
    // of frames longer than one back slowly (docs/benchmarks.md): 1 MB here.
    common::hashed_transfer(&lan.pod, &lan.lan, &lan.addr(false, false), 1 << 20);
    let up = n.uplinks.get("host-up0").expect("get");
    let now = tx_totals(&up);
    let per_frame = (now.1 - sent.1) / (now.0 - sent.0).max(1);
    assert!(per_frame > 4096, "tx {per_frame} bytes per frame");
    let dp = up.datapath.as_ref().expect("dp");
    assert!(
        dp.accounting.rx_balanced && dp.accounting.tx_balanced,
        "{:?}",
        dp.accounting
    );
    n.xconnect_remove("host-up0").expect("remove");
    n.host_interface_delete("host-up0").expect("delete");
    assert_eq!(lan.up0(), before, "up0 exactly as found");
    n.registry.delete(&tap.name).await.expect("delete tap");
}
