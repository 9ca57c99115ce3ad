//! A VXLAN "fabric" for tests with several nodes: underlay namespaces
//! (`198.18.95.<i>/24` on `u<i>`) joined by a Linux bridge in a namespace
//! of its own, the last of them a Linux node: a `vxlan` device flooding to
//! every other node (head-end replication on its side), in a bridge with a
//! veth to one pod (inner MTU 1450).

use crate::TestNs;

/// The underlay address of node `i` (1-based).
pub fn underlay_ip(i: u8) -> String {
    format!("198.18.95.{i}")
}

/// The fabric, its nodes' underlay namespaces and the Linux node's pod.
#[derive(Debug)]
pub struct Fabric {
    /// The bridge's namespace.
    pub fabric: TestNs,
    /// Node `i`'s underlay namespace is `unders[i - 1]`; the last is Linux's.
    pub unders: Vec<TestNs>,
    /// The Linux node's pod (`eth0`, MTU 1450).
    pub linux_pod: TestNs,
}

impl Fabric {
    /// `nodes` nodes (the last one Linux's) in VNI `vni`; the Linux pod
    /// gets `pod_cidr` (`198.18.N.M/24`). `tag` names the namespaces.
    pub fn new(tag: &str, nodes: u8, vni: u32, pod_cidr: &str) -> Self {
        let fabric = TestNs::new(&format!("{tag}f"));
        fabric.ip(&["link", "add", "fab", "type", "bridge"]);
        fabric.ip(&["link", "set", "fab", "up"]);
        let mut unders = Vec::new();
        for i in 1..=nodes {
            let ns = TestNs::new(&format!("{tag}u{i}"));
            let (a, b) = (format!("u{i}"), format!("f{i}"));
            let peer = ["type", "veth", "peer", "name", &b, "netns", &fabric.name];
            ns.ip(&[&["link", "add", &a][..], &peer[..]].concat());
            ns.ip(&["addr", "add", &format!("{}/24", underlay_ip(i)), "dev", &a]);
            ns.ip(&["link", "set", &a, "up"]);
            // Inner checksums finished before they cross, as on a wire (a
            // veth would hand the Linux node's partial ones over).
            ns.exec("ethtool", &["-K", &a, "tx", "off"]);
            fabric.ip(&["link", "set", &b, "master", "fab", "up"]);
            unders.push(ns);
        }
        let linux = &unders[usize::from(nodes) - 1];
        let (vni, local) = (vni.to_string(), underlay_ip(nodes));
        let dev = [
            "type", "vxlan", "id", &vni, "local", &local, "dstport", "4789",
        ];
        linux.ip(&[&["link", "add", "vx0"][..], &dev[..]].concat());
        for i in 1..nodes {
            let dst = underlay_ip(i);
            let fdb = [
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vx0",
                "dst",
                &dst,
            ];
            assert!(linux.exec("bridge", &fdb).status.success(), "bridge fdb");
        }
        linux.ip(&["link", "add", "br0", "type", "bridge"]);
        linux.ip(&["link", "set", "vx0", "master", "br0", "up"]);
        let linux_pod = TestNs::new(&format!("{tag}pc"));
        let veth = [
            "mtu", "1450", "type", "veth", "peer", "name", "eth0", "mtu", "1450",
        ];
        linux.ip(&[
            &["link", "add", "pc"][..],
            &veth[..],
            &["netns", &linux_pod.name][..],
        ]
        .concat());
        linux.ip(&["link", "set", "pc", "master", "br0", "up"]);
        linux.ip(&["link", "set", "br0", "up"]);
        linux_pod.ip(&["addr", "add", pod_cidr, "dev", "eth0"]);
        linux_pod.ip(&["link", "set", "eth0", "up"]);
        Self {
            fabric,
            unders,
            linux_pod,
        }
    }
}
