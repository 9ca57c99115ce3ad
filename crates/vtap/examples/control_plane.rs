//! Control-plane speed of the library: create + fully configure (namespace,
//! name, MAC, IPv4 + gateway, IPv6 + gateway, MTU, up, data path running)
//! and delete N taps, each in a namespace of its own, timed per interface.
//! `bench/control-plane.sh` runs it beside the same work done with iproute2
//! and with the `vtap` CLI through the daemon. Run as root:
//!
//!     cargo run --release -p vtap --example control_plane [N]
//!
//! Prints two JSON objects, one per line: per-interface create and delete
//! times (ms) deleting one at a time (`vtap-library`), then creating all
//! and deleting them in one batch (`vtap-library-batch`, `delete_many`:
//! each interface's delete time is the batch's divided by N).
//! Addresses: 198.18.4.0/24 and 2001:db8:4::/64, the same in every
//! namespace (each namespace is isolated).

use std::time::Instant;

use vtap::registry::{Registry, Settings};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    // The namespaces exist before the clock starts, as the pods' would.
    let nss: Vec<TestNs> = (0..n).map(|_| TestNs::new("cp")).collect();
    let mut reg = Registry::new(Settings::default()).expect("registry");
    for batch in [false, true] {
        let mut create = Vec::with_capacity(n);
        let mut delete = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let total = Instant::now();
        for (i, ns) in nss.iter().enumerate() {
            let t = Instant::now();
            let info = reg.create(&options(ns, i)).await.expect("create");
            create.push(ms(t));
            if batch {
                names.push(info.name);
                continue;
            }
            let t = Instant::now();
            reg.delete(&info.name).await.expect("delete");
            delete.push(ms(t));
        }
        if batch {
            let keys: Vec<&str> = names.iter().map(String::as_str).collect();
            let t = Instant::now();
            for r in reg.delete_many(&keys).await {
                r.expect("delete");
            }
            let each = ms(t) / n.max(1) as f64;
            delete = vec![each; n];
        }
        let out = serde_json::json!({
            "tool": if batch { "vtap-library-batch" } else { "vtap-library" },
            "n": n,
            "total_ms": ms(total),
            "create_ms": create,
            "delete_ms": delete,
        });
        println!("{out}");
    }
}

/// Everything a pod's interface gets.
fn options(ns: &TestNs, i: usize) -> CreateOptions {
    CreateOptions {
        host_ns: Some(ns.name.clone()),
        host_if_name: Some(format!("cp{i}")),
        host_mac_addr: Some(format!("02:fe:00:00:{:02x}:{:02x}", i >> 8, i & 0xff)),
        host_ip4_addr: Some("198.18.4.1/24".into()),
        host_ip4_gw: Some("198.18.4.254".into()),
        host_ip6_addr: Some("2001:db8:4::1/64".into()),
        host_ip6_gw: Some("2001:db8:4::fe".into()),
        host_mtu_size: Some(1400),
        ..Default::default()
    }
}
