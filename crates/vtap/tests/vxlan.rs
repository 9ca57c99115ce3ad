//! VXLAN tunnels against the real kernel, with the kernel's own `vxlan`
//! device as the far end (a VTEP vtap did not write). "Node 1" is a vtap
//! bridge domain with a tap (pod 1) and a tunnel whose sockets live in the
//! underlay namespace `u1`; "node 2" is plain Linux in namespace `n2`: a
//! `vxlan` device in a Linux bridge with a veth to pod 2. A veth joins the
//! two underlays. Addresses: 198.18.92-99.0/24 and 2001:db8:92::/48 only.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use vtap::forward::Forwarder;
use vtap::node::Node;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::tunnel::{VxlanInfo, VxlanOptions};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

const VNI: u64 = 4242;

/// Inner subnet of the pods (`198.18.N.0/24`, `2001:db8:92:N::/64`).
fn pod_addr(net: u8, host: u8, v6: bool) -> String {
    if v6 {
        format!("2001:db8:92:{net}::{host}")
    } else {
        format!("198.18.{net}.{host}")
    }
}

fn no_dad(ns: &TestNs) {
    let ok = ns.exec("sysctl", &["-qw", "net.ipv6.conf.default.accept_dad=0"]);
    assert!(ok.status.success());
}

/// Two nodes: vtap's (pod 1, underlay `u1`) and Linux's (`n2`, pod 2).
struct Pair {
    pod1: TestNs,
    u1: TestNs,
    n2: TestNs,
    pod2: TestNs,
    /// Inner subnet.
    net: u8,
    /// Underlay addresses: vtap's, Linux's.
    under: (String, String),
}

impl Pair {
    /// `v6_underlay`: the tunnel runs over IPv6 (inner MTU 1430).
    fn new(tag: &str, net: u8, v6_underlay: bool) -> Self {
        let (pod1, u1, n2, pod2) = (
            TestNs::new(&format!("{tag}p1")),
            TestNs::new(&format!("{tag}u1")),
            TestNs::new(&format!("{tag}n2")),
            TestNs::new(&format!("{tag}p2")),
        );
        for ns in [&pod1, &u1, &n2, &pod2] {
            no_dad(ns);
        }
        let under = if v6_underlay {
            (
                format!("2001:db8:92:{net}0::1"),
                format!("2001:db8:92:{net}0::2"),
            )
        } else {
            (
                format!("198.18.{}.1", net + 1),
                format!("198.18.{}.2", net + 1),
            )
        };
        let plen = if v6_underlay { "/64" } else { "/24" };
        u1.ip(&[
            "link", "add", "und1", "type", "veth", "peer", "name", "und2", "netns", &n2.name,
        ]);
        u1.ip(&[
            "addr",
            "add",
            &format!("{}{plen}", under.0),
            "dev",
            "und1",
            "nodad",
        ]);
        n2.ip(&[
            "addr",
            "add",
            &format!("{}{plen}", under.1),
            "dev",
            "und2",
            "nodad",
        ]);
        u1.ip(&["link", "set", "und1", "up"]);
        n2.ip(&["link", "set", "und2", "up"]);
        // Linux's inner checksums are finished before they cross, as a
        // wire delivers them (a veth would hand over partial ones).
        n2.exec("ethtool", &["-K", "und2", "tx", "off"]);
        let vni = VNI.to_string();
        n2.ip(&[
            "link", "add", "vx0", "type", "vxlan", "id", &vni, "local", &under.1, "remote",
            &under.0, "dstport", "4789",
        ]);
        let inner_mtu = if v6_underlay { "1430" } else { "1450" };
        n2.ip(&["link", "add", "br0", "type", "bridge"]);
        n2.ip(&["link", "set", "vx0", "master", "br0", "up"]);
        n2.ip(&[
            "link", "add", "p2a", "mtu", inner_mtu, "type", "veth", "peer", "name", "eth0", "mtu",
            inner_mtu, "netns", &pod2.name,
        ]);
        n2.ip(&["link", "set", "p2a", "master", "br0", "up"]);
        n2.ip(&["link", "set", "br0", "up"]);
        pod2.ip(&[
            "addr",
            "add",
            &format!("{}/24", pod_addr(net, 2, false)),
            "dev",
            "eth0",
        ]);
        pod2.ip(&[
            "addr",
            "add",
            &format!("{}/64", pod_addr(net, 2, true)),
            "dev",
            "eth0",
            "nodad",
        ]);
        pod2.ip(&["link", "set", "eth0", "up"]);
        Self {
            pod1,
            u1,
            n2,
            pod2,
            net,
            under,
        }
    }

    fn tunnel_options(&self) -> VxlanOptions {
        VxlanOptions {
            src: self.under.0.clone(),
            dst: self.under.1.clone(),
            vni: VNI,
            underlay_ns: Some(self.u1.name.clone()),
            ..Default::default()
        }
    }

    async fn tap(&self, n: &mut Node, mtu: u32) -> vtap::TapInfo {
        let opts = CreateOptions {
            host_ns: Some(self.pod1.name.clone()),
            host_ip4_addr: Some(format!("{}/24", pod_addr(self.net, 1, false))),
            host_ip6_addr: Some(format!("{}/64", pod_addr(self.net, 1, true))),
            host_mtu_size: Some(mtu),
            gso: true,
            gro_coalesce: true,
            ..Default::default()
        };
        n.registry
            .create(&opts)
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)))
    }

    /// Pings with DF from pod 1 (or pod 2) to the other, `size` bytes of
    /// payload.
    fn ping(&self, from_pod1: bool, v6: bool, size: usize) -> bool {
        let (ns, to) = if from_pod1 {
            (&self.pod1, pod_addr(self.net, 2, v6))
        } else {
            (&self.pod2, pod_addr(self.net, 1, v6))
        };
        let size = size.to_string();
        let mut args = vec!["-c", "2", "-i", "0.2", "-W", "2", "-s", &size, "-M", "do"];
        if v6 {
            args.insert(0, "-6");
        }
        args.push(&to);
        ns.exec("ping", &args).status.success()
    }
}

fn node() -> Node {
    let reg = Registry::new(Settings::default()).expect("registry");
    Node::new(reg, Forwarder::new(1).expect("forwarder"))
}

/// The tests of this file one at a time: one counts the process's fds.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Outer source ports of VXLAN datagrams from `src` that `tcpdump` saw on
/// `und1` while `traffic` ran.
fn outer_source_ports(u1: &TestNs, src: &str, traffic: impl FnOnce()) -> Vec<u16> {
    let filter = format!("udp dst port 4789 and src host {src}");
    let dump = Command::new("ip")
        .args([
            "netns", "exec", &u1.name, "timeout", "20", "tcpdump", "-n", "-l", "-i", "und1",
        ])
        .args(["-c", "200", &filter])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1500));
    traffic();
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").arg(dump.id().to_string()).status();
    let _ = Command::new("pkill").args(["-f", &filter]).status();
    let out = dump.wait_with_output().expect("tcpdump output");
    let text = String::from_utf8_lossy(&out.stdout);
    // "IP 198.18.93.1.51234 > 198.18.93.2.4789: VXLAN, flags [I] (0x08), vni 4242"
    let mut ports: Vec<u16> = text
        .lines()
        .filter(|l| l.contains("VXLAN") && l.contains(&format!("vni {VNI}")))
        .filter_map(|l| {
            let from = l.split_whitespace().nth(2)?;
            from.rsplit_once('.')?.1.parse().ok()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// UDP datagrams from pod 1 to pod 2 from `flows` different source ports.
fn udp_flows(pair: &Pair, flows: u16) {
    use vtap::netns::{Netns, NetnsSpec};
    let ns = Netns::open(&NetnsSpec::Name(pair.pod1.name.clone())).expect("netns");
    let to: std::net::SocketAddr = format!("{}:9", pod_addr(pair.net, 2, false))
        .parse()
        .expect("addr");
    ns.run_in(|| {
        for p in 0..flows {
            let s = std::net::UdpSocket::bind(("0.0.0.0", 40000 + p)).expect("bind");
            for _ in 0..3 {
                let _ = s.send_to(b"vtap vxlan entropy", to);
            }
        }
    })
    .expect("enter");
}

/// The local addresses of the UDP sockets of a namespace, sorted (`ss`).
fn udp_sockets(ns: &TestNs) -> Vec<String> {
    let out = ns.exec("ss", &["-H", "-u", "-a", "-n"]);
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(String::from))
        .collect();
    v.sort();
    v
}

fn tx_rx_packets(t: &VxlanInfo) -> (u64, u64) {
    let dp = t.datapath.as_ref().expect("dp");
    (dp.tx[0].counters.packets, dp.rx[0].counters.packets)
}

/// The whole path against Linux over an IPv4 underlay: ARP/ND across,
/// ping v4/v6 with DF at the largest size the 1450 inner MTU allows (and
/// one byte more refused), 32 MB hashed TCP both ways, the outer source
/// port varying per flow (and from the tunnel's pool), the ledger
/// balanced, and nothing left once deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_a_linux_vxlan_node_over_an_ipv4_underlay() {
    let _serial = SERIAL.lock().await;
    let pair = Pair::new("vx4", 92, false);
    let mut n = node();
    let t = n
        .vxlan_create(&pair.tunnel_options())
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(
        (t.name.as_str(), t.kind.as_str()),
        ("vxlan_tunnel0", "vxlan")
    );
    assert_eq!((t.underlay_mtu, t.inner_mtu), (1500, 1450));
    assert_eq!(t.source_ports.len(), 16);
    assert!(t.gso_segments > 1, "UDP_SEGMENT: {t:?}");
    // The kernel shows the receiving socket bound where vtap says.
    let ss = pair.u1.exec("ss", &["-H", "-u", "-l", "-n"]);
    let ss = String::from_utf8_lossy(&ss.stdout);
    assert!(ss.contains(&format!("{}:4789", pair.under.0)), "{ss}");

    let tap = pair.tap(&mut n, 1450).await;
    n.forwarder.bridge_create("bdvx").expect("bridge");
    n.bridge_add("bdvx", &tap.name).expect("tap");
    n.bridge_add("bdvx", &t.name).expect("tunnel");
    for v6 in [false, true] {
        assert!(pair.ping(true, v6, 56), "pod1 -> pod2 v6={v6}");
        assert!(pair.ping(false, v6, 56), "pod2 -> pod1 v6={v6}");
    }
    // Largest with DF: 1450 - 28 (v4) and 1450 - 48 (v6); one more fails.
    assert!(pair.ping(true, false, 1422), "1422 v4 DF");
    assert!(pair.ping(false, false, 1422), "1422 v4 DF back");
    assert!(pair.ping(true, true, 1402), "1402 v6");
    assert!(
        !pair.ping(true, false, 1423),
        "1423 does not fit the pod's MTU"
    );
    // Linux learned pod 1's MAC behind vtap's VTEP.
    let fdb = pair.n2.exec("bridge", &["fdb", "show", "dev", "vx0"]);
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(
        fdb.contains(&tap.host_mac_addr.expect("mac").to_string()) && fdb.contains(&pair.under.0),
        "pod 1 learned behind {}: {fdb}",
        pair.under.0
    );
    let bd = n.forwarder.bridge("bdvx").expect("show");
    assert!(
        bd.macs.iter().any(|m| m.iface == "vxlan_tunnel0"),
        "pod 2 learned on the tunnel: {bd:?}"
    );

    common::hashed_transfer(&pair.pod1, &pair.pod2, &pod_addr(92, 2, false), 32 << 20);
    common::hashed_transfer(&pair.pod2, &pair.pod1, &pod_addr(92, 1, false), 32 << 20);

    let ports = outer_source_ports(&pair.u1, &pair.under.0, || udp_flows(&pair, 24));
    assert!(
        ports.len() >= 4,
        "outer source port varies per flow: {ports:?}"
    );
    assert!(
        ports.iter().all(|p| t.source_ports.contains(p)),
        "{ports:?} from the pool {:?}",
        t.source_ports
    );

    let t = n.tunnels.get("vxlan_tunnel0").expect("get");
    let (tx, rx) = tx_rx_packets(&t);
    assert!(tx > 20_000 && rx > 20_000, "tx {tx} rx {rx}");
    // `kicks` counts sendmsg (tx) and recvmmsg (rx) calls: a super-frame's
    // segments leave in a few UDP_SEGMENT calls, not one call each.
    let calls = t.datapath.as_ref().expect("dp").tx[0].counters.kicks;
    assert!(tx > 4 * calls, "{tx} frames in {calls} sendmsg calls");
    let dp = t.datapath.as_ref().expect("dp");
    assert!(
        dp.offload.segmented > 0,
        "super-frames cut before the tunnel: {:?}",
        dp.offload
    );
    assert!(
        dp.accounting.rx_balanced && dp.accounting.tx_balanced,
        "{:?}",
        dp.accounting
    );
    assert_eq!(t.endpoint.drop_unknown_tunnel, 0, "{:?}", t.endpoint);

    let e = n.vxlan_delete("vxlan_tunnel0").expect_err("in use");
    assert!(e.to_string().contains("bridge bdvx"), "{e}");
    n.bridge_remove("bdvx", "vxlan_tunnel0").expect("remove");
    n.bridge_remove("bdvx", &tap.name).expect("remove");
    n.vxlan_delete("vxlan_tunnel0").expect("delete");
    let ss = pair.u1.exec("ss", &["-H", "-u", "-a", "-n"]);
    let ss = String::from_utf8_lossy(&ss.stdout).into_owned();
    assert!(!ss.contains(&pair.under.0), "every socket closed: {ss}");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// The same against Linux over an IPv6 underlay (inner MTU 1430), with a
/// cross-connect instead of a bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_a_linux_vxlan_node_over_an_ipv6_underlay() {
    let _serial = SERIAL.lock().await;
    let pair = Pair::new("vx6", 94, true);
    let mut n = node();
    let t = n
        .vxlan_create(&pair.tunnel_options())
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!((t.underlay_mtu, t.inner_mtu), (1500, 1430));
    let tap = pair.tap(&mut n, 1430).await;
    n.xconnect(&tap.name, &t.name).expect("xconnect");
    for v6 in [false, true] {
        assert!(pair.ping(true, v6, 56), "pod1 -> pod2 v6={v6}");
        assert!(pair.ping(false, v6, 56), "pod2 -> pod1 v6={v6}");
    }
    assert!(pair.ping(true, false, 1402), "1430 - 28 with DF");
    let bracketed = |host| format!("[{}]", pod_addr(94, host, true));
    common::hashed_transfer(&pair.pod1, &pair.pod2, &bracketed(2), 8 << 20);
    common::hashed_transfer(&pair.pod2, &pair.pod1, &bracketed(1), 8 << 20);
    let t = n.tunnels.get(&t.name).expect("get");
    let dp = t.datapath.as_ref().expect("dp");
    assert!(
        dp.accounting.rx_balanced && dp.accounting.tx_balanced,
        "{:?}",
        dp.accounting
    );
    n.xconnect_remove(&t.name).expect("remove");
    n.vxlan_delete(&t.name).expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// Bad input: one line naming the field, and nothing left behind (no
/// socket in the underlay, no fd in the process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tunnels_are_refused_naming_the_field_and_leave_nothing() {
    let _serial = SERIAL.lock().await;
    let pair = Pair::new("vxb", 96, false);
    let mut n = node();
    let ok = pair.tunnel_options();
    let first = n.vxlan_create(&ok).expect("first");
    // A socket that is not vtap's holds port 8472 on the underlay address.
    let squatter = {
        use vtap::netns::{Netns, NetnsSpec};
        let ns = Netns::open(&NetnsSpec::Name(pair.u1.name.clone())).expect("ns");
        let at = format!("{}:8472", pair.under.0);
        ns.run_in(move || std::net::UdpSocket::bind(at))
            .expect("enter")
            .expect("bind")
    };
    let fds = vtap_testkit::fd_count("self");
    let ss_before = udp_sockets(&pair.u1);
    let cases: Vec<(VxlanOptions, &str)> = vec![
        (
            VxlanOptions {
                src: "198.18.97.9".into(),
                ..ok.clone()
            },
            "src '198.18.97.9': not an address of namespace",
        ),
        (
            VxlanOptions {
                dst: "198.18.200.2".into(),
                ..ok.clone()
            },
            "dst '198.18.200.2': no route to it in namespace",
        ),
        (
            VxlanOptions {
                underlay_ns: Some("vt-no-such-ns".into()),
                ..ok.clone()
            },
            "underlay-ns 'vt-no-such-ns'",
        ),
        (ok.clone(), "vni '4242': vxlan_tunnel0 is the tunnel"),
        (
            VxlanOptions {
                port: Some(8472),
                ..ok.clone()
            },
            "port '8472': in use on",
        ),
        (
            VxlanOptions {
                instance: Some(0),
                vni: 7,
                ..ok.clone()
            },
            "instance '0': vxlan_tunnel0 exists",
        ),
        (
            VxlanOptions {
                vni: 1 << 24,
                ..ok.clone()
            },
            "vni '16777216'",
        ),
        (
            VxlanOptions {
                dst: ok.src.clone(),
                ..ok.clone()
            },
            "equals src",
        ),
    ];
    for (o, frag) in cases {
        let e = n.vxlan_create(&o).expect_err("refused");
        let msg = error_chain(&e);
        assert!(msg.contains(frag), "{o:?}: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }
    assert_eq!(n.tunnels.len(), 1);
    assert_eq!(vtap_testkit::fd_count("self"), fds, "no fd left");
    let ss_after = udp_sockets(&pair.u1);
    assert_eq!(ss_after, ss_before, "no socket left in the underlay");
    // A second tunnel from the same address shares the endpoint.
    let second = n
        .vxlan_create(&VxlanOptions {
            vni: 7,
            ..ok.clone()
        })
        .expect("same src, other vni");
    assert_eq!(second.name, "vxlan_tunnel1");
    assert_eq!(second.source_ports, first.source_ports, "one endpoint");
    assert_eq!(
        n.tunnels
            .get("vxlan_tunnel0")
            .expect("get")
            .endpoint_tunnels,
        2
    );
    drop(squatter);
    n.vxlan_delete("vxlan_tunnel1").expect("delete");
    n.vxlan_delete("vxlan_tunnel0").expect("delete");
}

/// Received garbage is dropped by reason at the endpoint, never handed on:
/// short datagrams, wrong flags, an unknown VNI, a runt inner frame, an
/// inner IPv4 header that lies about its length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_garbage_is_dropped_and_counted_by_reason() {
    let _serial = SERIAL.lock().await;
    let pair = Pair::new("vxg", 98, false);
    let mut n = node();
    let t = n.vxlan_create(&pair.tunnel_options()).expect("tunnel");
    let tap = pair.tap(&mut n, 1450).await;
    n.xconnect(&tap.name, &t.name).expect("xconnect");
    let hdr = |flags: u8, vni: u32| {
        let v = vni.to_be_bytes();
        vec![flags, 0, 0, 0, v[1], v[2], v[3], 0]
    };
    let vni = u32::try_from(VNI).expect("vni");
    let mut lying = hdr(0x08, vni);
    let mut inner = vec![0xff; 6];
    inner.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0x05, 0xdc]; // claims 1500 bytes
    ip.resize(20, 0);
    inner.extend_from_slice(&ip);
    lying.extend_from_slice(&inner);
    let mut runt = hdr(0x08, vni);
    runt.extend_from_slice(&[1, 2, 3]);
    let mut bad_flags = hdr(0x0c, vni);
    bad_flags.extend_from_slice(&inner[..14]);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    arp.resize(14 + 28, 0);
    let mut unknown = hdr(0x08, 777);
    unknown.extend_from_slice(&arp);
    let datagrams: Vec<Vec<u8>> = vec![vec![8, 0, 0], bad_flags, unknown, runt, lying];
    {
        use vtap::netns::{Netns, NetnsSpec};
        let ns = Netns::open(&NetnsSpec::Name(pair.n2.name.clone())).expect("ns");
        let (from, to) = (
            format!("{}:0", pair.under.1),
            format!("{}:4789", pair.under.0),
        );
        ns.run_in(move || {
            let s = std::net::UdpSocket::bind(from).expect("bind");
            for d in &datagrams {
                s.send_to(d, &to).expect("send");
            }
        })
        .expect("enter");
    }
    let counted = vtap_testkit::wait_until(Duration::from_secs(5), || {
        n.tunnels.get(&t.name).expect("get").endpoint.datagrams >= 5
    });
    let t = n.tunnels.get(&t.name).expect("get");
    assert!(counted, "{:?}", t.endpoint);
    let e = t.endpoint;
    assert_eq!(
        (
            e.drop_short,
            e.drop_bad_flags,
            e.drop_unknown_tunnel,
            e.drop_inner_runt,
            e.drop_inner_length_lies
        ),
        (1, 1, 1, 1, 1),
        "{e:?}"
    );
    // Every datagram is handed on or counted (Linux's own multicast, MLD
    // and router solicitations from pod 2, is handed on).
    let dropped = e.drop_short
        + e.drop_bad_flags
        + e.drop_unknown_tunnel
        + e.drop_inner_runt
        + e.drop_inner_length_lies;
    assert_eq!(tx_rx_packets(&t).1 + dropped, e.datagrams, "{e:?}");
    n.xconnect_remove(&t.name).expect("remove");
    n.vxlan_delete(&t.name).expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// A tap whose MTU is more than a bridged tunnel carries is refused with
/// the numbers, whichever joins the bridge first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_too_big_for_the_tunnel_is_refused_with_the_numbers() {
    let _serial = SERIAL.lock().await;
    let pair = Pair::new("vxm", 99, false);
    let mut n = node();
    let t = n.vxlan_create(&pair.tunnel_options()).expect("tunnel");
    let tap = pair.tap(&mut n, 1500).await;
    n.forwarder.bridge_create("bdm").expect("bridge");
    n.bridge_add("bdm", &t.name).expect("tunnel");
    let e = n.bridge_add("bdm", &tap.name).expect_err("too big");
    let msg = e.to_string();
    assert!(
        msg.contains("host MTU 1500") && msg.contains("(1450: underlay MTU 1500 less 50)"),
        "{msg}"
    );
    n.bridge_remove("bdm", &t.name).expect("remove");
    n.bridge_add("bdm", &tap.name).expect("tap first");
    let e = n
        .bridge_add("bdm", &t.name)
        .expect_err("too big, other order");
    assert!(e.to_string().contains("host MTU 1500"), "{e}");
    assert_eq!(
        n.forwarder.bridge("bdm").expect("bd").interfaces,
        std::slice::from_ref(&tap.name)
    );
    // Made to fit, then grown again later: the change is made, with a
    // warning naming the tunnel, and what does not fit is counted there.
    n.set_mtu(&tap.name, 1450).await.expect("fits");
    n.bridge_add("bdm", &t.name).expect("tunnel now");
    let (_, none) = n.set_mtu(&tap.name, 1450).await.expect("same");
    assert!(none.is_empty(), "{none:?}");
    let (after, warnings) = n.set_mtu(&tap.name, 1500).await.expect("grown");
    assert_eq!(after.host_mtu_size, 1500, "made as asked");
    assert!(
        warnings.len() == 1
            && warnings[0].contains("vxlan_tunnel0")
            && warnings[0].contains("(1450)")
            && warnings[0].contains("drop_too_big"),
        "{warnings:?}"
    );
    assert!(!pair.ping(true, false, 1472), "does not fit the tunnel");
    let t = n.tunnels.get(&t.name).expect("get");
    let dp = t.datapath.as_ref().expect("dp");
    assert!(
        dp.tx[0].counters.drop_too_big >= 1,
        "{:?}",
        dp.tx[0].counters
    );
    assert!(dp.accounting.tx_balanced, "{:?}", dp.accounting);
    n.bridge_remove("bdm", &t.name).expect("remove");
    n.bridge_remove("bdm", &tap.name).expect("remove");
    n.vxlan_delete(&t.name).expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}

/// A tap created into a bridge domain with a tunnel: its host MTU, not
/// given, is what the tunnel carries (read back from the kernel); one
/// given too big, or a bridge that does not exist, is refused and leaves no
/// interface behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_created_into_a_tunnel_bridge_gets_an_mtu_that_fits() {
    let _serial = SERIAL.lock().await;
    let pair = Pair::new("vxc", 97, false);
    let mut n = node();
    let t = n.vxlan_create(&pair.tunnel_options()).expect("tunnel");
    n.forwarder.bridge_create("bdc").expect("bridge");
    n.bridge_add("bdc", &t.name).expect("tunnel");
    let opts = |mtu: Option<u32>, bridge: &str| CreateOptions {
        host_ns: Some(pair.pod1.name.clone()),
        host_ip4_addr: Some(format!("{}/24", pod_addr(97, 1, false))),
        host_mtu_size: mtu,
        bridge: Some(bridge.into()),
        ..Default::default()
    };
    // Refusals first: nothing may be left in the pod's namespace.
    let e = n
        .create(&opts(Some(1500), "bdc"))
        .await
        .expect_err("too big");
    assert!(
        e.to_string()
            .contains("host MTU 1500 is more than vxlan_tunnel0 carries (1450"),
        "{e}"
    );
    let e = n.create(&opts(None, "nobd")).await.expect_err("no bridge");
    assert!(e.to_string().contains("nobd"), "{e}");
    assert!(
        pair.pod1.link_names().iter().all(|l| l == "lo"),
        "nothing left: {:?}",
        pair.pod1.link_names()
    );
    assert!(n.registry.list().is_empty());
    // A registry alone has no bridges: refused, not ignored.
    let e = n
        .registry
        .create(&opts(None, "bdc"))
        .await
        .expect_err("registry");
    assert!(e.to_string().contains("bridge 'bdc'"), "{e}");

    let tap = n.create(&opts(None, "bdc")).await.expect("fits");
    let link = pair.pod1.link(&tap.host_if_name).expect("in the pod");
    assert_eq!(link["mtu"], 1450, "the kernel's MTU: {link}");
    assert_eq!(
        n.forwarder.bridge("bdc").expect("bd").interfaces,
        [t.name.clone(), tap.name.clone()]
    );
    assert!(
        pair.ping(true, false, 1422),
        "pod 1 -> pod 2 at the largest DF size"
    );
    n.bridge_remove("bdc", &tap.name).expect("remove");
    n.bridge_remove("bdc", &t.name).expect("remove");
    n.vxlan_delete(&t.name).expect("delete");
    n.registry.delete(&tap.name).await.expect("delete tap");
}
