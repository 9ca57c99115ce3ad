//! The journal without a daemon: records applied, bridges diffed, a base
//! and its journal read back, torn and stale journals ignored.

use super::*;
use crate::saved::PendingOp;

fn tap(id: u32, mtu: u32) -> SavedTap {
    let info = serde_json::json!({
        "id": id, "name": format!("tap{id}"), "host_if_name": format!("h{id}"),
        "host_ns": null, "host_ns_inode": 1, "host_ifindex": id + 2,
        "host_mac_addr": "02:fe:00:00:00:01", "hw_addr": "02:fe:00:00:00:02",
        "host_bridge": null, "host_ip4_addr": null, "host_ip4_gw": null,
        "host_ip6_addr": null, "host_ip6_gw": null, "host_mtu_size": mtu,
        "rx_ring_size": 256, "tx_ring_size": 256, "num_rx_queues": 1, "num_tx_queues": 1,
        "multi_queue": false, "gso": false, "csum_offload": false, "gro_coalesce": false,
        "tun": false, "persist": true, "attached": false, "backend": "direct",
        "tun_offload": 0, "tun_offload_flags": [],
    });
    SavedTap {
        info: serde_json::from_value(info).expect("a TapInfo"),
        rx_mode: None,
        rate_limit: None,
    }
}

fn bridge(name: &str, ports: &[&str]) -> SavedBridge {
    SavedBridge {
        name: name.into(),
        interfaces: ports.iter().map(|p| p.to_string()).collect(),
        mac_limit: Some(100),
    }
}

fn pending(id: u32) -> Pending {
    Pending {
        op: PendingOp::Create,
        id,
        host_if_name: format!("h{id}"),
        host_ns: None,
        attach: false,
    }
}

fn ops(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            serde_json::to_value(r).expect("json")["op"]
                .as_str()
                .expect("op")
                .to_string()
        })
        .collect()
}

#[test]
fn bridge_ports_are_journalled_one_by_one() {
    let mut m = Mirror::default();
    m.apply(&Record::Bridge {
        bridge: bridge("bd", &["tap0", "tap1"]),
    });
    m.apply(&Record::Bridge {
        bridge: bridge("old", &[]),
    });
    let now = [bridge("bd", &["tap1", "tap2"]), bridge("new", &["tap3"])];
    let mut out = Vec::new();
    section_changes(&m, &[], &[], &[], &now, &[], &mut out);
    assert_eq!(
        ops(&out),
        ["bridge-join", "bridge-leave", "bridge", "bridge-gone"]
    );
    for r in &out {
        m.apply(r);
    }
    let names: Vec<_> = m.bridges.keys().cloned().collect();
    assert_eq!(names, ["bd", "new"]);
    assert_eq!(m.bridges["bd"].interfaces, ["tap1", "tap2"]);
    // In step: nothing to write.
    let mut again = Vec::new();
    section_changes(&m, &[], &[], &[], &now, &[], &mut again);
    assert!(again.is_empty(), "{:?}", ops(&again));
    // A new learn limit rewrites the bridge whole.
    let limited = [
        SavedBridge {
            mac_limit: Some(5),
            ..bridge("bd", &["tap1", "tap2"])
        },
        bridge("new", &["tap3"]),
    ];
    let mut out = Vec::new();
    section_changes(&m, &[], &[], &[], &limited, &[], &mut out);
    assert_eq!(ops(&out), ["bridge"]);
}

#[test]
fn a_base_and_its_journal_read_back_as_one_state() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = dir.path().join("s.state.json");
    let first = Mirror {
        taps: [(0, tap(0, 1500)), (1, tap(1, 1500))].into(),
        ..Mirror::default()
    };
    let mut j = Journal::start(&base, first.to_saved(0), 7).expect("start");
    let changes = [
        vec![Record::Pending {
            list: vec![pending(2)],
        }],
        vec![
            Record::Tap {
                tap: Box::new(tap(2, 9000)),
            },
            Record::TapGone { id: 0 },
            Record::Pending { list: vec![] },
            Record::Bridge {
                bridge: bridge("bd", &["tap2"]),
            },
        ],
        vec![Record::BridgeJoin {
            name: "bd".into(),
            iface: "tap1".into(),
        }],
    ];
    for c in &changes {
        j.append(c).expect("append");
    }
    let want = serde_json::to_value(j.mirror.to_saved(7)).expect("json");
    let got = crate::state::load(&base).expect("load").expect("a state");
    assert_eq!(serde_json::to_value(&got).expect("json"), want);
    assert_eq!(got.generation, 7);
    let ids: Vec<u32> = got.taps.iter().map(|t| t.info.id).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(got.taps[1].info.host_mtu_size, 9000);
    assert_eq!(got.bridges[0].interfaces, ["tap2", "tap1"]);
    assert!(got.pending.is_empty());

    // A torn last line (a crash mid-write) is not read; what came before is.
    let jpath = path_of(&base);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&jpath)
        .expect("open");
    f.write_all(br#"[{"op":"tap-gone","id":1}"#).expect("write");
    let torn = crate::state::load(&base).expect("load").expect("a state");
    assert_eq!(serde_json::to_value(&torn).expect("json"), want);

    // A new base (generation 8) with the old journal still beside it (a
    // crash before the new journal): the base alone counts.
    crate::state::store(&base, &Mirror::default().to_saved(8)).expect("store");
    let fresh = crate::state::load(&base).expect("load").expect("a state");
    assert!(fresh.taps.is_empty() && fresh.bridges.is_empty());
}

#[test]
fn a_journal_outgrowing_its_base_asks_for_a_new_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = dir.path().join("s.state.json");
    let mut j = Journal::start(&base, Mirror::default().to_saved(0), 1).expect("start");
    let big = (0..200).map(|i| tap(i, 1500)).collect::<Vec<_>>();
    let mut lines = 0;
    while !j.wants_new_base() {
        let records: Vec<Record> = big
            .iter()
            .map(|t| Record::Tap {
                tap: Box::new(t.clone()),
            })
            .collect();
        j.append(&records).expect("append");
        lines += 1;
        assert!(lines < 10_000, "never asks");
    }
    assert!(lines >= MIN_LINES_TO_FOLD);
    let j2 = Journal::start(&base, j.mirror.to_saved(0), j.generation() + 1).expect("fold");
    let back = crate::state::load(&base).expect("load").expect("a state");
    assert_eq!(back.taps.len(), 200);
    assert_eq!((back.generation, j2.generation()), (2, 2));
    assert!(!j2.wants_new_base());
}
