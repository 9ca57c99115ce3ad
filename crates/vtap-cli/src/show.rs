//! The human form of `vtap show`: one block per interface.

use serde_json::Value;

pub(crate) fn opt(v: &Value, key: &str) -> String {
    match v.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The human form of `show`, one block per interface.
pub(crate) fn print_table(taps: &[Value]) {
    if taps.is_empty() {
        println!("no interfaces");
        return;
    }
    for t in taps {
        println!(
            "{}  host-if-name {}  host-ns {}  ifindex {}  backend {}",
            opt(t, "name"),
            opt(t, "host_if_name"),
            opt(t, "host_ns"),
            opt(t, "host_ifindex"),
            opt(t, "backend"),
        );
        println!(
            "  host-mac-addr {}  hw-addr {}  host-bridge {}  host-mtu-size {}",
            opt(t, "host_mac_addr"),
            opt(t, "hw_addr"),
            opt(t, "host_bridge"),
            opt(t, "host_mtu_size"),
        );
        println!(
            "  host-ip4-addr {}  host-ip4-gw {}  host-ip6-addr {}  host-ip6-gw {}",
            opt(t, "host_ip4_addr"),
            opt(t, "host_ip4_gw"),
            opt(t, "host_ip6_addr"),
            opt(t, "host_ip6_gw"),
        );
        let flags: Vec<&str> = [
            "gso",
            "csum_offload",
            "gro_coalesce",
            "tun",
            "persist",
            "attached",
            "multi_queue",
        ]
        .into_iter()
        .filter(|k| t.get(*k).and_then(Value::as_bool) == Some(true))
        .collect();
        println!(
            "  rx-ring-size {}  tx-ring-size {}  num-rx-queues {}  num-tx-queues {}  tun-offload {:#x} [{}]  flags [{}]",
            opt(t, "rx_ring_size"),
            opt(t, "tx_ring_size"),
            opt(t, "num_rx_queues"),
            opt(t, "num_tx_queues"),
            t.get("tun_offload").and_then(Value::as_u64).unwrap_or(0),
            t.get("tun_offload_flags")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            flags.join(" "),
        );
        print_datapath(&t["datapath"]);
    }
}

/// The human form of `show` for host uplinks.
pub(crate) fn print_uplinks(uplinks: &[Value]) {
    for u in uplinks {
        println!(
            "{}  host-if-name {}  host-ns {}  ifindex {}  mode {}  link {}  mtu {}  queues {}",
            opt(u, "name"),
            opt(u, "host_if_name"),
            opt(u, "host_ns"),
            opt(u, "host_ifindex"),
            opt(u, "mode"),
            opt(u, "link"),
            opt(u, "mtu"),
            opt(u, "num_queues"),
        );
        if let Some(reason) = u.get("detached").and_then(Value::as_str) {
            println!("  detached: {reason}");
            continue;
        }
        println!(
            "  driver {}  mac {}  tx-checksum {}  tso {}  qdisc-bypass {}  kernel-drops {}",
            opt(u, "driver"),
            opt(u, "host_mac_addr"),
            opt(u, "tx_checksum"),
            opt(u, "tso"),
            opt(u, "qdisc_bypass"),
            opt(u, "kernel_drops"),
        );
        if let Some(x) = u.get("xdp").filter(|x| !x.is_null()) {
            println!(
                "  xdp prog-id {}  attach {}  multi-buffer {}",
                opt(x, "prog_id"),
                opt(x, "attach"),
                opt(x, "multi_buffer")
            );
        }
        if let Some(dp) = u.get("datapath").filter(|d| !d.is_null()) {
            print_datapath(dp);
        }
    }
}

/// The human form of `show` for VXLAN tunnels.
pub(crate) fn print_tunnels(tunnels: &[Value]) {
    for t in tunnels {
        println!(
            "{}  src {}  dst {}  vni {}  port {}  underlay-ns {}",
            opt(t, "name"),
            opt(t, "src"),
            opt(t, "dst"),
            opt(t, "vni"),
            opt(t, "port"),
            opt(t, "underlay_ns"),
        );
        if let Some(reason) = t.get("detached").and_then(Value::as_str) {
            println!("  detached: {reason}");
            continue;
        }
        let ports = t
            .get("source_ports")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Value::to_string).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        println!(
            "  underlay-mtu {}  inner-mtu {}  gso-segments {}  gro {}  source-ports {}",
            opt(t, "underlay_mtu"),
            opt(t, "inner_mtu"),
            opt(t, "gso_segments"),
            opt(t, "gro"),
            ports,
        );
        let e = &t["endpoint"];
        println!(
            "  endpoint tunnels {}  datagrams {}  drop short {} bad-flags {} inner-runt {} inner-length-lies {} unknown-tunnel {}  inbox-full {}",
            opt(t, "endpoint_tunnels"),
            opt(e, "datagrams"),
            opt(e, "drop_short"),
            opt(e, "drop_bad_flags"),
            opt(e, "drop_inner_runt"),
            opt(e, "drop_inner_length_lies"),
            opt(e, "drop_unknown_tunnel"),
            opt(t, "drop_inbox_full"),
        );
        if let Some(dp) = t.get("datapath").filter(|d| !d.is_null()) {
            print_datapath(dp);
        }
    }
}

/// One line per direction of a rate-limit state (`{"rx": ..., "tx": ...}`).
pub fn rate_limit_line(iface: &str, st: &Value) -> String {
    let mut parts = Vec::new();
    for dir in ["rx", "tx"] {
        let d = &st[dir];
        if d.is_null() {
            parts.push(format!("{dir} unlimited"));
            continue;
        }
        let (l, c) = (&d["limit"], &d["counters"]);
        let mut rate = Vec::new();
        if !l["bytes_per_sec"].is_null() {
            rate.push(format!(
                "{} B/s burst {}",
                opt(l, "bytes_per_sec"),
                opt(l, "burst")
            ));
        }
        if !l["packets_per_sec"].is_null() {
            rate.push(format!(
                "{} pkt/s burst {}",
                opt(l, "packets_per_sec"),
                opt(l, "packet_burst")
            ));
        }
        parts.push(format!(
            "{dir} {}: passed {} frames {} bytes, throttled {}, delayed {}, queued {}, drop_rate_limit {}",
            rate.join(" + "),
            opt(c, "frames"),
            opt(c, "bytes"),
            opt(c, "throttled"),
            opt(c, "delayed"),
            opt(c, "queued"),
            opt(c, "drop_rate_limit"),
        ));
    }
    format!("{iface} rate-limit: {}", parts.join("; "))
}

/// Ring state and counters, one line per queue.
fn print_datapath(dp: &Value) {
    if dp.is_null() {
        return;
    }
    let hex = |k: &str| dp.get(k).and_then(Value::as_u64).unwrap_or(0);
    println!(
        "  backend {}  features offered {:#x} negotiated {:#x}",
        opt(dp, "backend"),
        hex("features_offered"),
        hex("features_negotiated")
    );
    let caps = &dp["offload_caps"];
    let takes: Vec<&str> = ["csum", "tso4", "tso6", "uso4", "uso6", "gro"]
        .into_iter()
        .filter(|k| caps[*k].as_bool() == Some(true))
        .collect();
    if let Some(rl) = dp.get("rate_limit").filter(|r| !r.is_null()) {
        println!("  {}", rate_limit_line("", rl).trim_start());
    }
    let o = &dp["offload"];
    println!(
        "  egress offloads [{}]  sw: segmented {} -> {} segments, csum completed {}, coalesced {} into {}, csum verified {} bad {}, bad-header drops {}",
        takes.join(" "),
        opt(o, "segmented"),
        opt(o, "segments"),
        opt(o, "csum_completed"),
        opt(o, "coalesced"),
        opt(o, "coalesced_frames"),
        opt(o, "csum_verified"),
        opt(o, "csum_bad"),
        opt(o, "drop_bad_header"),
    );
    for dir in ["rx", "tx"] {
        for (i, q) in dp[dir].as_array().into_iter().flatten().enumerate() {
            let (r, c) = (&q["ring"], &q["counters"]);
            let drops: u64 = [
                "drop_bad_header",
                "drop_truncated",
                "drop_no_free_slots",
                "drop_too_big",
                "drop_io_error",
            ]
            .iter()
            .filter_map(|k| c[*k].as_u64())
            .sum();
            // The direct backend has no ring.
            let ring = if r.is_null() {
                String::new()
            } else {
                format!(
                    "ring {} avail {} used {} last-used {} in-flight {} free {}  ",
                    opt(r, "size"),
                    opt(r, "avail_idx"),
                    opt(r, "used_idx"),
                    opt(r, "last_used"),
                    opt(r, "in_flight"),
                    opt(r, "free"),
                )
            };
            let worker = q
                .get("worker")
                .and_then(Value::as_u64)
                .map_or(String::new(), |w| format!("  worker {w}"));
            println!(
                "  {dir}{i}: {ring}packets {} bytes {} kicks {} drops {}{worker}",
                opt(c, "packets"),
                opt(c, "bytes"),
                opt(c, "kicks"),
                drops,
            );
        }
    }
}

/// A cross-connect's rx placement, one line per queue (as VPP's `show
/// interface rx-placement`, grouped by interface).
pub fn placement_lines(x: &Value) -> String {
    x["rx_placement"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let how = if p["set"].as_bool() == Some(true) {
                "set"
            } else {
                "by load"
            };
            format!(
                "{} queue {} worker {} ({how})",
                opt(p, "iface"),
                opt(p, "queue"),
                opt(p, "worker")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
