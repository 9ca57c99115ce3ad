//! The option checks, table-driven.

use super::*;

fn opts(f: impl FnOnce(&mut CreateOptions)) -> CreateOptions {
    let mut o = CreateOptions::default();
    f(&mut o);
    o
}

#[test]
fn defaults() {
    let c = CreateOptions::default().validate().expect("valid");
    assert_eq!(c.rx_ring_size, 256);
    assert_eq!(c.tx_ring_size, 256);
    assert_eq!((c.num_rx_queues, c.num_tx_queues), (1, 1));
    assert_eq!(c.offload, OffloadMode::None);
    assert_eq!(c.mode, Mode::Tap);
    assert_eq!(c.backend, BackendRequest::Auto);
}

#[test]
fn accepted_table() {
    let good: Vec<CreateOptions> = vec![
        opts(|o| o.id = Some(0)),
        opts(|o| o.id = Some(MAX_ID)),
        opts(|o| o.host_if_name = Some("a".into())),
        opts(|o| o.host_if_name = Some("fifteen-bytes-x".into())),
        opts(|o| o.host_ns = Some("pid:1".into())),
        opts(|o| o.host_mac_addr = Some("02:00:00:00:00:01".into())),
        opts(|o| o.host_ip4_addr = Some("198.18.0.1/24".into())),
        opts(|o| o.host_ip6_addr = Some("2001:db8::1/64".into())),
        opts(|o| o.host_ip6_gw = Some("fe80::1".into())),
        opts(|o| o.host_mtu_size = Some(68)),
        opts(|o| o.host_mtu_size = Some(65521)),
        opts(|o| o.rx_ring_size = Some(1)),
        opts(|o| o.tx_ring_size = Some(32768)),
        opts(|o| o.num_rx_queues = Some(256)),
        opts(|o| {
            o.gso = true;
            o.gro_coalesce = true
        }),
        opts(|o| o.csum_offload = true),
        opts(|o| o.tun = true),
        opts(|o| {
            o.attach = true;
            o.host_if_name = Some("x".into())
        }),
        opts(|o| o.backend = Some("userspace".into())),
    ];
    for o in good {
        o.validate().unwrap_or_else(|e| panic!("{o:?}: {e}"));
    }
}

#[test]
fn refused_table() {
    let bad: Vec<(CreateOptions, &str, &str)> = vec![
        (opts(|o| o.id = Some(8192)), "id", "0..=8191"),
        (
            opts(|o| o.host_if_name = Some("a-name-of-20-bytes!!".into())),
            "host-if-name",
            "longer than 15",
        ),
        (
            opts(|o| o.host_if_name = Some(String::new())),
            "host-if-name",
            "empty",
        ),
        (
            opts(|o| o.host_if_name = Some("a/b".into())),
            "host-if-name",
            "'/'",
        ),
        (
            opts(|o| o.host_if_name = Some("a b".into())),
            "host-if-name",
            "white space",
        ),
        (
            opts(|o| o.host_if_name = Some("..".into())),
            "host-if-name",
            "'.'",
        ),
        (
            opts(|o| o.host_if_name = Some("a:1".into())),
            "host-if-name",
            "':'",
        ),
        (
            opts(|o| o.host_if_name = Some("a\0".into())),
            "host-if-name",
            "control",
        ),
        (
            opts(|o| o.host_ns = Some("../../etc".into())),
            "host-ns",
            "'/'",
        ),
        (
            opts(|o| o.host_ns = Some("pid:abc".into())),
            "host-ns",
            "decimal",
        ),
        (
            opts(|o| o.host_mac_addr = Some("zz".into())),
            "host-mac-addr",
            "hex",
        ),
        (
            opts(|o| o.hw_addr = Some("01:00:00:00:00:01".into())),
            "hw-addr",
            "multicast",
        ),
        (
            opts(|o| o.host_bridge = Some("way-too-long-bridge".into())),
            "host-bridge",
            "15",
        ),
        (
            opts(|o| o.host_ip4_addr = Some("198.18.0.1".into())),
            "host-ip4-addr",
            "PREFIX",
        ),
        (
            opts(|o| o.host_ip4_addr = Some("198.18.0.1/33".into())),
            "host-ip4-addr",
            "1..=32",
        ),
        (
            opts(|o| o.host_ip4_addr = Some("198.18.0.1/0".into())),
            "host-ip4-addr",
            "1..=32",
        ),
        (
            opts(|o| o.host_ip4_addr = Some("1.2.3/24".into())),
            "host-ip4-addr",
            "not a valid",
        ),
        (
            opts(|o| o.host_ip4_addr = Some("224.0.0.1/4".into())),
            "host-ip4-addr",
            "unicast",
        ),
        (
            opts(|o| o.host_ip4_gw = Some("2001:db8::1".into())),
            "host-ip4-gw",
            "IPv4",
        ),
        (
            opts(|o| o.host_ip4_gw = Some("0.0.0.0".into())),
            "host-ip4-gw",
            "unicast",
        ),
        (
            opts(|o| o.host_ip6_addr = Some("2001:db8::1/129".into())),
            "host-ip6-addr",
            "128",
        ),
        (
            opts(|o| o.host_ip6_addr = Some("ff02::1/64".into())),
            "host-ip6-addr",
            "unicast",
        ),
        (
            opts(|o| o.host_ip6_gw = Some("198.18.0.1".into())),
            "host-ip6-gw",
            "IPv6",
        ),
        (
            opts(|o| o.host_mtu_size = Some(67)),
            "host-mtu-size",
            "68..=65521",
        ),
        (
            opts(|o| o.host_mtu_size = Some(65522)),
            "host-mtu-size",
            "68..=65521",
        ),
        (
            opts(|o| {
                o.host_mtu_size = Some(1000);
                o.host_ip6_addr = Some("2001:db8::1/64".into())
            }),
            "host-mtu-size",
            "IPv6",
        ),
        (
            opts(|o| o.rx_ring_size = Some(0)),
            "rx-ring-size",
            "power of two",
        ),
        (
            opts(|o| o.rx_ring_size = Some(300)),
            "rx-ring-size",
            "power of two",
        ),
        (
            opts(|o| o.tx_ring_size = Some(65536)),
            "tx-ring-size",
            "power of two",
        ),
        (
            opts(|o| o.num_rx_queues = Some(0)),
            "num-rx-queues",
            "1..=256",
        ),
        (
            opts(|o| o.num_tx_queues = Some(257)),
            "num-tx-queues",
            "1..=256",
        ),
        (
            opts(|o| {
                o.gso = true;
                o.csum_offload = true
            }),
            "csum-offload",
            "not both",
        ),
        (opts(|o| o.gro_coalesce = true), "gro-coalesce", "needs gso"),
        (
            opts(|o| {
                o.tun = true;
                o.host_bridge = Some("br0".into())
            }),
            "host-bridge",
            "TUN",
        ),
        (
            opts(|o| {
                o.tun = true;
                o.hw_addr = Some("02:00:00:00:00:01".into())
            }),
            "hw-addr",
            "TUN",
        ),
        (
            opts(|o| {
                o.host_bridge = Some("br0".into());
                o.host_ip4_addr = Some("198.18.0.1/24".into())
            }),
            "host-bridge",
            "cannot be combined",
        ),
        (opts(|o| o.attach = true), "attach", "host-if-name"),
        (
            opts(|o| {
                o.attach = true;
                o.host_if_name = Some("x".into());
                o.host_mtu_size = Some(1500)
            }),
            "host-mtu-size",
            "attach",
        ),
        (
            opts(|o| o.backend = Some("dpdk".into())),
            "backend",
            "auto, vhost-net",
        ),
    ];
    for (o, field, frag) in bad {
        let e = o.validate().expect_err(&format!("{o:?} should be refused"));
        assert_eq!(e.field, field, "{o:?}: {e}");
        let msg = e.to_string();
        assert!(msg.starts_with(field), "{msg}");
        assert!(msg.contains(frag), "{o:?}: {msg} lacks {frag:?}");
    }
}

#[test]
fn unknown_json_fields_are_refused() {
    let e = serde_json::from_str::<CreateOptions>(r#"{"host_if_nmae":"x"}"#)
        .expect_err("unknown field");
    assert!(e.to_string().contains("host_if_nmae"), "{e}");
}
