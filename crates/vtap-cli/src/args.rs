//! The arguments of `vtap create` and `vtap set IF rate-limit`, and how
//! they become request bodies.

use clap::Args;
use vtap::CreateOptions;

#[derive(Debug, Args)]
pub struct RateLimitArgs {
    /// rx or tx.
    pub direction: String,
    /// Bytes per second.
    #[arg(long)]
    pub bytes_per_sec: Option<u64>,
    /// The byte bucket's size (default: 20 ms of the rate, at least 64 KiB).
    #[arg(long)]
    pub burst: Option<u64>,
    /// Bytes that may go once, beyond the rate.
    #[arg(long)]
    pub one_time_burst: Option<u64>,
    /// Frames per second.
    #[arg(long)]
    pub packets_per_sec: Option<u64>,
    /// The packet bucket's size (default: 20 ms of the rate, at least 32).
    #[arg(long)]
    pub packet_burst: Option<u64>,
    /// Lift the limit.
    #[arg(long, conflicts_with_all = ["bytes_per_sec", "burst", "one_time_burst", "packets_per_sec", "packet_burst"])]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Interface id (0..=8191); the lowest free one if absent.
    #[arg(long)]
    id: Option<u32>,
    /// Host-side name (1-15 bytes); tap<id> if absent.
    #[arg(long)]
    host_if_name: Option<String>,
    /// Host namespace: NAME (/var/run/netns/NAME), /path, or pid:N.
    #[arg(long)]
    host_ns: Option<String>,
    /// Host-side MAC; random if absent.
    #[arg(long)]
    host_mac_addr: Option<String>,
    /// Bridge to enslave the host side to.
    #[arg(long)]
    host_bridge: Option<String>,
    /// A bridge domain of vtap's to make the tap a port of at once (with
    /// VXLAN tunnels in it and no --host-mtu-size, the host MTU is the
    /// least they carry).
    #[arg(long)]
    bridge: Option<String>,
    /// Host IPv4 address A/L.
    #[arg(long)]
    host_ip4_addr: Option<String>,
    /// IPv4 default gateway.
    #[arg(long)]
    host_ip4_gw: Option<String>,
    /// Host IPv6 address A/L.
    #[arg(long)]
    host_ip6_addr: Option<String>,
    /// IPv6 default gateway.
    #[arg(long)]
    host_ip6_gw: Option<String>,
    /// A further host address A/L, either family (repeat for more).
    #[arg(long = "host-addr")]
    host_addrs: Vec<String>,
    /// A route out of the host side: "DST/LEN" (on link) or "DST/LEN via
    /// GW" (repeat for more).
    #[arg(long = "host-route", value_parser = parse_route)]
    host_routes: Vec<vtap::options::RouteOption>,
    /// A label KEY=VALUE kept with the interface (repeat for more).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Host MTU (68..=65521).
    #[arg(long)]
    host_mtu_size: Option<u32>,
    /// Data-plane MAC; random if absent.
    #[arg(long)]
    hw_addr: Option<String>,
    /// Rx ring size (power of two, 1..=32768).
    #[arg(long)]
    rx_ring_size: Option<u32>,
    /// Tx ring size (power of two, 1..=32768).
    #[arg(long)]
    tx_ring_size: Option<u32>,
    /// Rx queues (1..=256).
    #[arg(long)]
    num_rx_queues: Option<u16>,
    /// Tx queues (1..=256).
    #[arg(long)]
    num_tx_queues: Option<u16>,
    /// Checksum + segmentation offload.
    #[arg(long)]
    gso: bool,
    /// Checksum offload only.
    #[arg(long)]
    csum_offload: bool,
    /// Coalesce frames toward the kernel (needs --gso).
    #[arg(long)]
    gro_coalesce: bool,
    /// L3 TUN instead of L2 TAP.
    #[arg(long)]
    tun: bool,
    /// Keep the interface when vtap exits.
    #[arg(long)]
    persist: bool,
    /// Attach to an existing persistent interface (--host-if-name).
    #[arg(long)]
    attach: bool,
    /// auto | vhost-net | userspace | direct | io-uring.
    #[arg(long)]
    backend: Option<String>,
}

/// `--host-route`: "DST/LEN" or "DST/LEN via GW" (checked by the daemon).
fn parse_route(s: &str) -> Result<vtap::options::RouteOption, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    match words.as_slice() {
        [dst] => Ok(vtap::options::RouteOption {
            dst: (*dst).into(),
            gw: None,
        }),
        [dst, "via", gw] => Ok(vtap::options::RouteOption {
            dst: (*dst).into(),
            gw: Some((*gw).into()),
        }),
        _ => Err("expected \"DST/LEN\" or \"DST/LEN via GW\"".into()),
    }
}

/// `--label`: KEY=VALUE.
fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| "expected KEY=VALUE".into())
}

impl From<CreateArgs> for CreateOptions {
    fn from(a: CreateArgs) -> Self {
        CreateOptions {
            id: a.id,
            host_if_name: a.host_if_name,
            host_ns: a.host_ns,
            host_mac_addr: a.host_mac_addr,
            hw_addr: a.hw_addr,
            host_bridge: a.host_bridge,
            bridge: a.bridge,
            host_ip4_addr: a.host_ip4_addr,
            host_ip4_gw: a.host_ip4_gw,
            host_ip6_addr: a.host_ip6_addr,
            host_ip6_gw: a.host_ip6_gw,
            host_addrs: a.host_addrs,
            host_routes: a.host_routes,
            labels: a.labels.into_iter().collect(),
            rate_limit: None,
            host_mtu_size: a.host_mtu_size,
            rx_ring_size: a.rx_ring_size,
            tx_ring_size: a.tx_ring_size,
            num_rx_queues: a.num_rx_queues,
            num_tx_queues: a.num_tx_queues,
            gso: a.gso,
            csum_offload: a.csum_offload,
            gro_coalesce: a.gro_coalesce,
            tun: a.tun,
            persist: a.persist,
            attach: a.attach,
            backend: a.backend,
        }
    }
}
