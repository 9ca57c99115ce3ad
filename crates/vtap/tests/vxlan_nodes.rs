//! Three nodes in one VXLAN network: two vtap nodes (a [`Node`] each, as
//! two daemons would have) and a Linux node, over a shared underlay.
//! Addresses: 198.18.93.0/24 (pods) and 198.18.95.0/24 (underlay) only.

use std::time::Duration;

use vtap::forward::Forwarder;
use vtap::node::Node;
use vtap::registry::{error_chain, Registry, Settings};
use vtap::tunnel::VxlanOptions;
use vtap::CreateOptions;
use vtap_testkit::TestNs;

const VNI: u64 = 4343;

fn node() -> Node {
    let reg = Registry::new(Settings::default()).expect("registry");
    Node::new(reg, Forwarder::new(1).expect("forwarder"))
}

/// One pod namespace with an address on the inner subnet 198.18.93.0/24.
struct Pod {
    ns: TestNs,
    ip: String,
}

/// Three nodes in one VNI over a shared underlay (a Linux bridge in a
/// "fabric" namespace): two vtap nodes (A, B) with three pods each and a
/// full mesh of tunnels, and a Linux node (C) with one pod whose `vxlan`
/// device floods to both (head-end replication on its side too). Every pod
/// reaches every other, with no duplicate: what a vtap node receives from
/// one tunnel never goes out of another (split horizon), or A's broadcasts
/// would come back to it through B and C. Then node B goes away entirely
/// and comes back (its tunnels and taps made again, with the same MACs as
/// a restarted daemon's persistent taps keep): A and C keep talking
/// meanwhile, and B's pods are reached again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_vtap_nodes_and_a_linux_node_share_one_vni() {
    // Kept to the end (`_fabric`, not `_`: the bridge lives as long).
    let vtap_testkit::vxlan::Fabric {
        fabric: _fabric,
        unders,
        linux_pod,
    } = vtap_testkit::vxlan::Fabric::new("vxn", 3, 4343, "198.18.93.3/24");
    let unders = &unders;
    let pc = Pod {
        ns: linux_pod,
        ip: "198.18.93.3".into(),
    };
    // A vtap node: its tunnels to the two others and its pods on a bridge.
    async fn vtap_node(me: u8, unders: &[TestNs], pods: &[Pod]) -> Node {
        let mut n = node();
        n.forwarder.bridge_create("bd").expect("bridge");
        for other in [1u8, 2, 3].into_iter().filter(|o| *o != me) {
            let t = n
                .vxlan_create(&VxlanOptions {
                    src: format!("198.18.95.{me}"),
                    dst: format!("198.18.95.{other}"),
                    vni: VNI,
                    underlay_ns: Some(unders[usize::from(me - 1)].name.clone()),
                    ..Default::default()
                })
                .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
            n.bridge_add("bd", &t.name).expect("tunnel");
        }
        for p in pods {
            let tap = n
                .registry
                .create(&CreateOptions {
                    host_ns: Some(p.ns.name.clone()),
                    host_ip4_addr: Some(format!("{}/24", p.ip)),
                    // A fixed MAC, as a restarted daemon finds its taps:
                    // the pods' neighbours stay right.
                    host_mac_addr: Some(format!(
                        "02:00:c6:12:5d:{}",
                        p.ip.rsplit('.').next().unwrap_or("0")
                    )),
                    host_mtu_size: Some(1450),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
            n.bridge_add("bd", &tap.name).expect("tap");
        }
        n
    }
    let pod = |tag: &str, ip: &str| Pod {
        ns: TestNs::new(tag),
        ip: ip.into(),
    };
    let pa = [
        pod("vxa1", "198.18.93.11"),
        pod("vxa2", "198.18.93.12"),
        pod("vxa3", "198.18.93.13"),
    ];
    let pb = [
        pod("vxb1", "198.18.93.21"),
        pod("vxb2", "198.18.93.22"),
        pod("vxb3", "198.18.93.23"),
    ];
    let _a = vtap_node(1, unders, &pa).await;
    let b = vtap_node(2, unders, &pb).await;

    // Each pod pings every other once; ping says "DUP!" for a duplicate.
    let reach = |from: &Pod, to: &Pod| -> Result<(), String> {
        let out = from
            .ns
            .exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", &to.ip]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(format!("{} -> {}: {text}", from.ip, to.ip));
        }
        if text.contains("DUP!") {
            return Err(format!("{} -> {}: duplicates: {text}", from.ip, to.ip));
        }
        Ok(())
    };
    let everyone: Vec<&Pod> = pa.iter().chain(pb.iter()).chain([&pc]).collect();
    for from in &everyone {
        for to in everyone.iter().filter(|t| t.ip != from.ip) {
            reach(from, to).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    // One broadcast from A's pod reaches C's pod and B's pods exactly once
    // (without split horizon B would pass A's copy on to C: two).
    for at in [&pc, &pb[0], &pb[1], &pa[1]] {
        assert_eq!(broadcast_copies(&pa[0], at), 1, "at {}", at.ip);
    }

    // Node B goes away: its tunnels and taps with it. A and C still talk.
    drop(b);
    reach(&pa[0], &pc).expect("A -> C with B gone");
    assert!(reach(&pa[0], &pb[0]).is_err(), "B's pod is gone with B");
    let _b = vtap_node(2, unders, &pb).await;
    let back = vtap_testkit::wait_until(Duration::from_secs(10), || reach(&pa[0], &pb[0]).is_ok());
    assert!(back, "B's pods reached again");
    reach(&pc, &pb[1]).expect("C -> B again");
}

/// How many copies of one UDP broadcast from `from` reach `at`.
fn broadcast_copies(from: &Pod, at: &Pod) -> usize {
    use vtap::netns::{Netns, NetnsSpec};
    let open = |p: &Pod| Netns::open(&NetnsSpec::Name(p.ns.name.clone())).expect("netns");
    let rx = open(at)
        .run_in(|| std::net::UdpSocket::bind("0.0.0.0:9999"))
        .expect("enter")
        .expect("bind");
    rx.set_read_timeout(Some(Duration::from_millis(700)))
        .expect("timeout");
    let tag = vtap_testkit::unique();
    let payload = tag.clone();
    open(from)
        .run_in(move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
            s.set_broadcast(true).expect("SO_BROADCAST");
            s.send_to(payload.as_bytes(), "198.18.93.255:9999")
                .expect("send");
        })
        .expect("enter");
    let mut copies = 0;
    let mut buf = [0u8; 256];
    while let Ok(n) = rx.recv(&mut buf) {
        if buf[..n] == *tag.as_bytes() {
            copies += 1;
        }
    }
    copies
}
