//! Every create option against the real kernel: create, read the state back
//! with `ip -j`, `ethtool -k` and sysfs inside the namespace, delete, and
//! check it is gone. Needs root; each test works in a namespace of its own.

use serde_json::Value;
use vtap::registry::{error_chain, Backend, OffloadAction, Registry, Settings};
use vtap::tun::offload;
use vtap::CreateOptions;
use vtap_testkit::{iff, ifname, TestNs};

fn registry() -> Registry {
    vtap_testkit::require_root();
    Registry::new(Settings::default()).expect("registry")
}

fn in_ns(ns: &TestNs) -> CreateOptions {
    CreateOptions {
        host_ns: Some(ns.name.clone()),
        ..Default::default()
    }
}

fn tun_data(link: &Value) -> &Value {
    &link["linkinfo"]["info_data"]
}

fn is_up(link: &Value) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

#[tokio::test]
async fn every_host_option_reads_back_from_the_kernel() {
    let ns = TestNs::new("all");
    let mut reg = registry();
    let name = ifname("va");
    let info = reg
        .create(&CreateOptions {
            id: Some(42),
            host_if_name: Some(name.clone()),
            host_mac_addr: Some("02:fe:00:00:00:42".into()),
            hw_addr: Some("02:fe:00:00:01:42".into()),
            host_ip4_addr: Some("198.18.42.1/24".into()),
            host_ip4_gw: Some("198.18.42.254".into()),
            host_ip6_addr: Some("2001:db8:42::1/64".into()),
            host_ip6_gw: Some("2001:db8:42::fe".into()),
            host_mtu_size: Some(9000),
            rx_ring_size: Some(1024),
            tx_ring_size: Some(512),
            num_rx_queues: Some(2),
            num_tx_queues: Some(3),
            gso: true,
            gro_coalesce: true,
            ..in_ns(&ns)
        })
        .await
        .expect("create");

    // What vtap reports...
    assert_eq!(info.id, 42);
    assert_eq!(info.name, "tap42");
    assert_eq!(info.host_if_name, name);
    assert_eq!(info.host_ns.as_deref(), Some(ns.name.as_str()));
    assert_eq!(info.host_ns_inode, ns.inode());
    assert_eq!(
        info.hw_addr.map(|m| m.to_string()).as_deref(),
        Some("02:fe:00:00:01:42")
    );
    assert_eq!((info.rx_ring_size, info.tx_ring_size), (1024, 512));
    assert_eq!((info.num_rx_queues, info.num_tx_queues), (2, 3));
    assert!(info.gso && info.gro_coalesce && !info.csum_offload);
    assert_eq!(
        info.backend,
        Backend::Direct,
        "this kernel has no vhost-net"
    );

    // ...is what the kernel has.
    let link = ns.link(&name).expect("link exists in the namespace");
    assert_eq!(link["ifindex"], info.host_ifindex);
    assert_eq!(link["address"], "02:fe:00:00:00:42");
    assert_eq!(link["mtu"], 9000);
    assert_eq!(info.host_mtu_size, 9000);
    assert!(is_up(&link), "{link}");
    assert_eq!(link["linkinfo"]["info_kind"], "tun");
    let data = tun_data(&link);
    assert_eq!(data["type"], "tap");
    assert_eq!(data["vnet_hdr"], true);
    assert_eq!(data["pi"], false);
    assert_eq!(data["multi_queue"], true);
    assert_eq!(data["numqueues"], 2, "one tap fd per rx queue");
    assert_eq!(
        ns.tun_flags(&name),
        iff::TAP | iff::NO_PI | iff::VNET_HDR | iff::MULTI_QUEUE
    );
    let mut addrs = ns.addrs(&name);
    addrs.sort();
    assert_eq!(addrs, ["198.18.42.1/24", "2001:db8:42::1/64"]);
    assert_eq!(
        ns.default_routes(false),
        [("198.18.42.254".into(), name.clone())]
    );
    assert_eq!(
        ns.default_routes(true),
        [("2001:db8:42::fe".into(), name.clone())]
    );
    let k = ns.ethtool_k(&name);
    assert_eq!(k["tx-checksumming"], "on");
    assert_eq!(k["tcp-segmentation-offload"], "on");
    let uso = info.tun_offload & (offload::USO4 | offload::USO6) != 0;
    assert_eq!(k["tx-udp-segmentation"], if uso { "on" } else { "off" });
    assert_eq!(
        info.tun_offload & (offload::CSUM | offload::TSO4 | offload::TSO6),
        offload::CSUM | offload::TSO4 | offload::TSO6
    );

    let gone = reg.delete("tap42").await.expect("delete");
    assert_eq!(gone.host_ifindex, info.host_ifindex);
    assert!(ns.link(&name).is_none(), "deleted from its namespace");
    assert!(ns.default_routes(false).is_empty() && ns.default_routes(true).is_empty());
    assert!(reg.is_empty());
}

/// Several addresses per family, routes (on link, via a gateway, a
/// default one) and labels: in the kernel, in what vtap says, gone with the
/// interface; a route the kernel refuses undoes the whole create.
#[tokio::test]
async fn further_addresses_routes_and_labels_read_back_from_the_kernel() {
    use vtap::options::RouteOption;
    let ns = TestNs::new("more");
    let mut reg = registry();
    let name = ifname("vm");
    let route = |dst: &str, gw: Option<&str>| RouteOption {
        dst: dst.into(),
        gw: gw.map(Into::into),
    };
    let opts = CreateOptions {
        host_if_name: Some(name.clone()),
        host_ip4_addr: Some("198.18.43.1/24".into()),
        host_addrs: vec![
            "198.18.44.1/24".into(),
            "2001:db8:43::1/64".into(),
            "2001:db8:44::1/64".into(),
        ],
        host_routes: vec![
            route("0.0.0.0/0", Some("198.18.43.254")),
            route("198.18.128.0/17", Some("198.18.44.254")),
            route("198.18.45.0/24", None),
            route("2001:db8:4500::/40", Some("2001:db8:43::fe")),
        ],
        labels: [("cni.vtap.io/attachment".to_string(), "n/c/eth0".to_string())].into(),
        ..in_ns(&ns)
    };
    let info = reg.create(&opts).await.expect("create");
    let mut addrs = ns.addrs(&name);
    addrs.sort();
    assert_eq!(
        addrs,
        [
            "198.18.43.1/24",
            "198.18.44.1/24",
            "2001:db8:43::1/64",
            "2001:db8:44::1/64"
        ]
    );
    assert_eq!(
        ns.routes(&name),
        [
            "0.0.0.0/0 via 198.18.43.254",
            "198.18.128.0/17 via 198.18.44.254",
            "198.18.45.0/24",
            "2001:db8:4500::/40 via 2001:db8:43::fe",
        ]
    );
    assert_eq!(info.host_addrs, opts.host_addrs);
    assert_eq!(info.host_routes, opts.host_routes);
    assert_eq!(info.labels, opts.labels);
    reg.delete(&info.name).await.expect("delete");
    assert!(ns.link(&name).is_none());
    let left = ns.ip(&["route", "show"]) + &ns.ip(&["-6", "route", "show"]);
    assert!(
        !left.contains("198.18.") && !left.contains("2001:db8:"),
        "{left}"
    );

    // The kernel refuses the last route (its gateway is on no link): the
    // addresses and routes before it go with the interface.
    let bad = CreateOptions {
        host_routes: vec![
            route("198.18.45.0/24", None),
            route("198.18.46.0/24", Some("198.18.99.1")),
        ],
        ..opts.clone()
    };
    let e = error_chain(&reg.create(&bad).await.expect_err("unreachable gateway"));
    assert!(
        e.contains("host-routes '198.18.46.0/24 via 198.18.99.1': gateway unreachable"),
        "{e}"
    );
    assert!(ns.link(&name).is_none(), "nothing left: {e}");
    assert!(reg.is_empty());
}

#[tokio::test]
async fn defaults_are_effective_values() {
    let ns = TestNs::new("def");
    let mut reg = registry();
    let info = reg.create(&in_ns(&ns)).await.expect("create");
    assert_eq!(info.id, 0, "lowest free id");
    assert_eq!(info.host_if_name, "tap0", "default host-if-name is tap<id>");
    let link = ns.link("tap0").expect("tap0 in the namespace");
    let mac = info.host_mac_addr.expect("generated host MAC");
    assert!(mac.is_local() && !mac.is_multicast());
    assert_eq!(link["address"], mac.to_string());
    let hw = info.hw_addr.expect("generated data-plane MAC");
    assert!(hw.is_local() && !hw.is_multicast());
    assert_ne!(hw, mac);
    assert_eq!(link["mtu"], 1500);
    assert_eq!(info.host_mtu_size, 1500);
    assert!(is_up(&link));
    assert_eq!((info.rx_ring_size, info.tx_ring_size), (256, 256));
    assert_eq!(info.tun_offload, 0);
    let k = ns.ethtool_k("tap0");
    assert_eq!(k["tx-checksumming"], "off");
    assert_eq!(k["tcp-segmentation-offload"], "off");
    assert!(ns.addrs("tap0").is_empty());
    // One queue: not multi-queue, so the kernel builds one tx queue and one
    // qdisc for it, not 256 (about 6 MB of kernel memory saved).
    assert_eq!(tun_data(&link)["multi_queue"], false);
    assert_eq!(ns.tun_flags("tap0") & iff::MULTI_QUEUE, 0);
    assert!(!info.multi_queue);
    assert_eq!(link["num_tx_queues"], 1, "{link}");

    // Ids: lowest free, explicit ids, taken ids.
    let second = reg.create(&in_ns(&ns)).await.expect("second");
    assert_eq!(second.id, 1);
    let e = reg
        .create(&CreateOptions {
            id: Some(1),
            ..in_ns(&ns)
        })
        .await
        .expect_err("id taken");
    assert_eq!(error_chain(&e), "id '1': already in use");
    reg.delete("0").await.expect("delete by bare id");
    let third = reg.create(&in_ns(&ns)).await.expect("third");
    assert_eq!(third.id, 0, "a freed id is reused");
    for key in ["tap0", "tap1"] {
        reg.delete(key).await.expect("delete");
    }
    assert_eq!(ns.link_names(), ["lo"]);
}

#[tokio::test]
async fn daemon_default_mtu_applies_when_none_given() {
    let ns = TestNs::new("mtu");
    vtap_testkit::require_root();
    let mut reg = Registry::new(Settings {
        default_host_mtu: Some(4000),
        ..Settings::default()
    })
    .expect("registry");
    let a = reg.create(&in_ns(&ns)).await.expect("create");
    let b = reg
        .create(&CreateOptions {
            host_mtu_size: Some(1280),
            ..in_ns(&ns)
        })
        .await
        .expect("create");
    assert_eq!(ns.link(&a.host_if_name).expect("a")["mtu"], 4000);
    assert_eq!(ns.link(&b.host_if_name).expect("b")["mtu"], 1280);
    assert_eq!((a.host_mtu_size, b.host_mtu_size), (4000, 1280));
}

/// Polls `f` (letting the runtime's other tasks run) until it holds.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if f() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_host_side_mtu_change_arrives_as_a_link_event() {
    let (ns1, ns2) = (TestNs::new("ev"), TestNs::new("ev"));
    let mut reg = registry();
    let a = reg.create(&in_ns(&ns1)).await.expect("create");
    let b = reg.create(&in_ns(&ns1)).await.expect("create");
    let c = reg.create(&in_ns(&ns2)).await.expect("create");
    assert_eq!(
        reg.watched_namespaces(),
        2,
        "one event socket per namespace"
    );
    // Nothing re-reads the kernel on `get`: only the event can carry this.
    ns1.ip(&["link", "set", &b.host_if_name, "mtu", "4321"]);
    ns2.ip(&["link", "set", &c.host_if_name, "mtu", "1280"]);
    let mtus =
        |reg: &Registry| ["tap0", "tap1", "tap2"].map(|k| reg.get(k).expect("get").host_mtu_size);
    assert!(
        eventually(|| mtus(&reg) == [1500, 4321, 1280]).await,
        "registry shows {:?}",
        mtus(&reg)
    );
    // vtap's own change and the kernel agree.
    reg.set_mtu("tap0", 2000).await.expect("set mtu");
    assert_eq!(ns1.link(&a.host_if_name).expect("a")["mtu"], 2000);
    assert!(eventually(|| mtus(&reg) == [2000, 4321, 1280]).await);
    for k in ["tap0", "tap2"] {
        reg.delete(k).await.expect("delete");
    }
    assert_eq!(reg.watched_namespaces(), 1, "ns2's socket closed");
    reg.delete("tap1").await.expect("delete");
    assert_eq!(reg.watched_namespaces(), 0);
}

#[tokio::test]
async fn host_bridge_enslaves_the_tap() {
    let ns = TestNs::new("br");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&[
        "link", "add", "dum0", "type", "veth", "peer", "name", "dum1",
    ]);
    let mut reg = registry();
    let info = reg
        .create(&CreateOptions {
            host_bridge: Some("br0".into()),
            ..in_ns(&ns)
        })
        .await
        .expect("create");
    assert_eq!(info.host_bridge.as_deref(), Some("br0"));
    assert_eq!(ns.link(&info.host_if_name).expect("tap")["master"], "br0");

    for (bridge, want) in [
        (
            "nobr0",
            "host-bridge 'nobr0': no such interface in namespace",
        ),
        (
            "dum0",
            "host-bridge 'dum0': is a veth interface, not a bridge",
        ),
    ] {
        let e = reg
            .create(&CreateOptions {
                host_bridge: Some(bridge.into()),
                ..in_ns(&ns)
            })
            .await
            .expect_err("bad bridge");
        assert!(error_chain(&e).starts_with(want), "{e}");
    }
    let mut names = ns.link_names();
    names.sort();
    assert_eq!(
        names,
        ["br0", "dum0", "dum1", "lo", info.host_if_name.as_str()]
    );
}

#[tokio::test]
async fn tun_mode_is_l3_with_its_own_flags() {
    let ns = TestNs::new("tun");
    let mut reg = registry();
    let info = reg
        .create(&CreateOptions {
            tun: true,
            host_ip4_addr: Some("198.18.7.1/30".into()),
            csum_offload: true,
            ..in_ns(&ns)
        })
        .await
        .expect("create tun");
    assert_eq!(info.name, "tun0");
    assert_eq!(info.host_if_name, "tun0");
    assert!(info.tun && info.host_mac_addr.is_none() && info.hw_addr.is_none());
    let link = ns.link("tun0").expect("tun0");
    assert_eq!(tun_data(&link)["type"], "tun");
    assert_eq!(link["link_type"], "none", "no Ethernet header");
    assert_eq!(
        ns.tun_flags("tun0") & !iff::MULTI_QUEUE,
        iff::TUN | iff::NO_PI | iff::VNET_HDR
    );
    assert_eq!(ns.addrs("tun0"), ["198.18.7.1/30"]);
    assert_eq!(ns.ethtool_k("tun0")["tx-checksumming"], "on");
    assert!(reg.get("tap0").is_err(), "tap0 does not name a TUN");
    reg.delete("tun0").await.expect("delete");
    assert!(ns.link("tun0").is_none());
}

#[tokio::test]
async fn offload_toggles_act_on_every_queue() {
    let ns = TestNs::new("off");
    let mut reg = registry();
    let info = reg
        .create(&CreateOptions {
            num_rx_queues: Some(4),
            ..in_ns(&ns)
        })
        .await
        .expect("create");
    let name = info.host_if_name.clone();
    let tso = |ns: &TestNs| ns.ethtool_k(&name)["tcp-segmentation-offload"].clone();
    let csum = |ns: &TestNs| ns.ethtool_k(&name)["tx-checksumming"].clone();
    assert_eq!((csum(&ns), tso(&ns)), ("off".into(), "off".into()));

    let steps: &[(OffloadAction, &str, &str, bool, bool)] = &[
        (OffloadAction::GsoEnable, "on", "on", true, false),
        (OffloadAction::GroCoalesceEnable, "on", "on", true, false),
        (OffloadAction::GroCoalesceDisable, "on", "on", true, false),
        (OffloadAction::CsumOffloadEnable, "on", "off", false, true),
        (
            OffloadAction::CsumOffloadDisable,
            "off",
            "off",
            false,
            false,
        ),
        (OffloadAction::GsoEnable, "on", "on", true, false),
        (OffloadAction::GsoDisable, "off", "off", false, false),
    ];
    for (action, want_csum, want_tso, gso, csum_only) in steps {
        let i = reg.set_offload("tap0", *action).await.expect("toggle");
        assert_eq!((i.gso, i.csum_offload), (*gso, *csum_only), "{action:?}");
        assert_eq!(csum(&ns), *want_csum, "{action:?}: tx-checksumming");
        assert_eq!(tso(&ns), *want_tso, "{action:?}: TSO");
        // The forwarding plane's view follows: what may leave through it.
        let caps = i.datapath.as_ref().expect("data path").offload_caps;
        assert_eq!(
            (caps.csum, caps.tso4, caps.tso6, caps.gro),
            (*gso || *csum_only, *gso, *gso, i.gro_coalesce),
            "{action:?}: egress caps"
        );
    }
    let e = reg
        .set_offload("tap0", OffloadAction::GroCoalesceEnable)
        .await
        .expect_err("gro without gso");
    assert_eq!(
        error_chain(&e),
        "offload gro-coalesce-enable: gro-coalesce needs gso: gso-enable first"
    );
    assert_eq!(
        ns.link(&name).expect("tap")["linkinfo"]["info_data"]["numqueues"],
        4
    );
}

#[tokio::test]
async fn daemon_kill_switch_refuses_every_offload() {
    let ns = TestNs::new("kill");
    let mut reg = Registry::new(Settings {
        allow_offload: false,
        ..Settings::default()
    })
    .expect("registry");
    type Edit = fn(&mut CreateOptions);
    let asks: [(Edit, &str); 3] = [
        (|o| o.gso = true, "gso"),
        (|o| o.csum_offload = true, "csum-offload"),
        (
            |o| {
                o.gso = true;
                o.gro_coalesce = true;
            },
            "gso",
        ),
    ];
    for (edit, word) in asks {
        let mut o = in_ns(&ns);
        edit(&mut o);
        let e = reg.create(&o).await.expect_err(word);
        assert_eq!(
            error_chain(&e),
            format!(
                "offload '{word}': offloads are switched off in this daemon ([tap] offload = false)"
            )
        );
        assert!(ns.link_names().iter().all(|n| n == "lo"), "nothing left");
    }
    let info = reg.create(&in_ns(&ns)).await.expect("no offload is fine");
    let e = reg
        .set_offload(&info.name, OffloadAction::GsoEnable)
        .await
        .expect_err("run time too");
    assert!(error_chain(&e).contains("switched off"), "{e}");
    let k = ns.ethtool_k(&info.host_if_name);
    assert_eq!(k["tx-checksumming"], "off", "the kernel still has none");
    reg.delete(&info.name).await.expect("delete");
}

#[tokio::test]
async fn persist_survives_and_attach_resets_the_offload_mask() {
    let ns = TestNs::new("per");
    let name = ifname("vp");
    {
        let mut reg = registry();
        let info = reg
            .create(&CreateOptions {
                host_if_name: Some(name.clone()),
                persist: true,
                gso: true,
                num_rx_queues: Some(2),
                host_mtu_size: Some(2000),
                host_ip4_addr: Some("198.18.9.1/24".into()),
                host_ip4_gw: Some("198.18.9.254".into()),
                host_ip6_addr: Some("2001:db8:9::1/64".into()),
                ..in_ns(&ns)
            })
            .await
            .expect("create persistent");
        assert!(info.persist);
        assert_ne!(ns.tun_flags(&name) & iff::PERSIST, 0);
        // The registry (the daemon) goes away: its queue fds close.
    }
    let link = ns.link(&name).expect("persistent tap outlives its creator");
    assert_eq!(tun_data(&link)["numqueues"], 0);
    assert_eq!(ns.ethtool_k(&name)["tcp-segmentation-offload"], "on");

    let mut reg = registry();
    let e = reg
        .create(&CreateOptions {
            host_if_name: Some(name.clone()),
            ..in_ns(&ns)
        })
        .await
        .expect_err("create on an existing name");
    assert!(error_chain(&e).contains("already exists"), "{e}");

    let info = reg
        .create(&CreateOptions {
            host_if_name: Some(name.clone()),
            attach: true,
            num_rx_queues: Some(2),
            ..in_ns(&ns)
        })
        .await
        .expect("attach");
    assert!(info.attached && info.persist && info.multi_queue);
    assert_eq!(
        info.host_mtu_size, 2000,
        "attach keeps the host configuration"
    );
    assert_eq!(info.host_ifindex, link["ifindex"]);
    // What the interface kept is read back from the kernel.
    assert_eq!(
        (
            info.host_ip4_addr.as_deref(),
            info.host_ip4_gw.as_deref(),
            info.host_ip6_addr.as_deref(),
            info.host_ip6_gw.as_deref()
        ),
        (
            Some("198.18.9.1/24"),
            Some("198.18.9.254"),
            Some("2001:db8:9::1/64"),
            None
        )
    );
    assert_eq!(tun_data(&ns.link(&name).expect("tap"))["numqueues"], 2);
    // The old GSO mask must not leak into an attach that asked for none.
    assert_eq!(info.tun_offload, 0);
    assert_eq!(ns.ethtool_k(&name)["tcp-segmentation-offload"], "off");
    assert_eq!(ns.ethtool_k(&name)["tx-checksumming"], "off");

    reg.delete(&info.name).await.expect("delete");
    assert!(
        ns.link(&name).is_none(),
        "delete removes a persistent tap too"
    );
}

#[tokio::test]
async fn attach_refuses_what_does_not_match() {
    let ns = TestNs::new("att");
    let plain = ifname("vq");
    let single = ifname("vs");
    ns.ip(&["tuntap", "add", "dev", &plain, "mode", "tap"]);
    ns.ip(&["tuntap", "add", "dev", &single, "mode", "tap", "vnet_hdr"]);
    ns.ip(&[
        "link", "add", "dum0", "type", "veth", "peer", "name", "dum1",
    ]);
    let mut reg = registry();
    let attach = |name: &str, queues: u16, tun: bool| CreateOptions {
        host_if_name: Some(name.into()),
        attach: true,
        num_rx_queues: Some(queues),
        tun,
        ..in_ns(&ns)
    };
    let cases = [
        (attach(&plain, 1, false), "created without IFF_VNET_HDR"),
        (attach(&single, 2, false), "needs IFF_MULTI_QUEUE"),
        (
            attach(&single, 1, true),
            "it is a TAP, and TUN (tun) was asked for",
        ),
        (
            attach("dum0", 1, false),
            "it is a veth interface, not TUN/TAP",
        ),
        (attach("nosuch0", 1, false), "no interface of that name"),
    ];
    for (opts, want) in cases {
        let e = reg.create(&opts).await.expect_err(want);
        assert!(error_chain(&e).contains(want), "{e}");
    }
    let ok = reg
        .create(&attach(&single, 1, false))
        .await
        .expect("attach single");
    assert!(!ok.multi_queue);
    assert_eq!(ns.tun_flags(&single) & iff::MULTI_QUEUE, 0);
    let e = reg
        .create(&CreateOptions {
            id: Some(9),
            ..attach(&single, 1, false)
        })
        .await
        .expect_err("its only queue is held");
    assert!(
        error_chain(&e).contains("is in use by another process"),
        "{e}"
    );
    assert!(
        ns.link(&single).is_some(),
        "a refused attach leaves the tap alone"
    );
}

#[tokio::test]
async fn host_ns_accepts_name_path_and_pid() {
    let ns = TestNs::new("spec");
    let mut reg = registry();
    // A process living in the namespace, for pid:N.
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "sleep", "30"])
        .spawn()
        .expect("spawn sleeper");
    let ok = vtap_testkit::wait_until(std::time::Duration::from_secs(5), || {
        std::fs::metadata(format!("/proc/{}/ns/net", child.id()))
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::ino(&m) == ns.inode())
    });
    assert!(ok, "sleeper entered the namespace");
    for spec in [ns.name.clone(), ns.path(), format!("pid:{}", child.id())] {
        let info = reg
            .create(&CreateOptions {
                host_ns: Some(spec.clone()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(info.host_ns_inode, ns.inode(), "{spec}");
        assert!(ns.link(&info.host_if_name).is_some(), "{spec}");
        reg.delete(&info.name).await.expect("delete");
    }
    let _ = child.kill();
    let _ = child.wait();

    let e = reg
        .create(&CreateOptions {
            host_ns: Some("/etc/hostname".into()),
            ..Default::default()
        })
        .await
        .expect_err("not a namespace");
    assert!(
        error_chain(&e).contains("is not a network namespace"),
        "{e}"
    );
}

#[test]
fn owned_namespaces_are_real_and_removed_on_drop() {
    vtap_testkit::require_root();
    let name = format!("vt-own-{}", vtap_testkit::unique());
    {
        let ns = vtap::netns::OwnedNetns::create(&name).expect("create");
        assert_eq!(ns.name(), name);
        let listed = vtap_testkit::run_ok("ip", &["netns", "list"]);
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "{listed}"
        );
        let spec = vtap::netns::NetnsSpec::Name(name.clone());
        let opened = vtap::netns::Netns::open(&spec).expect("a network namespace");
        let own = std::fs::metadata("/proc/self/ns/net").expect("self");
        assert_ne!(
            opened.inode(),
            std::os::unix::fs::MetadataExt::ino(&own),
            "a new namespace"
        );
        let e = vtap::netns::OwnedNetns::create(&name).expect_err("exists");
        assert!(e.to_string().contains(&name), "{e}");
    }
    assert!(!std::path::Path::new("/var/run/netns").join(&name).exists());
}
