//! A userspace responder on vtap's library: it answers ARP requests and
//! ICMP echo requests for one IPv4 address on a tap, as a tiny userspace
//! stack would. The host side pings that address and gets replies that no
//! kernel wrote. Run as root, with a namespace that exists:
//!
//!     cargo run -p vtap --example responder -- NS 198.18.21.1/24 198.18.21.2 10
//!
//! creates a tap in NS with the first address, answers for the second for
//! the given seconds, prints one JSON line of counters, deletes the tap.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use vtap::port::{lock, SharedPort};
use vtap::registry::{error_chain, Registry, Settings};
use vtap::wire::{TxFrame, VnetHdr};
use vtap::CreateOptions;

/// The Internet checksum of `data`.
fn csum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop above folded the carries: the sum fits 16 bits.
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The ARP reply to a request for `ip`, if `f` is one.
fn arp_reply(f: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Option<Vec<u8>> {
    let a = f.get(14..42)?;
    if a[6..8] != [0, 1] || a[24..28] != ip {
        return None; // not a request, or not for us
    }
    let (sha, spa) = (&a[8..14], &a[14..18]);
    let mut r = Vec::with_capacity(42);
    r.extend_from_slice(sha);
    r.extend_from_slice(&mac);
    r.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    r.extend_from_slice(&mac);
    r.extend_from_slice(&ip);
    r.extend_from_slice(sha);
    r.extend_from_slice(spa);
    Some(r)
}

/// The echo reply to an ICMP echo request to `ip`, if `f` is one.
fn icmp_reply(f: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Option<Vec<u8>> {
    let ihl = usize::from(f.get(14)? & 0x0f) * 4;
    let l4 = 14 + ihl;
    if f.get(23) != Some(&1) || f.get(30..34)? != ip || f.get(l4) != Some(&8) {
        return None; // not ICMP, not for us, or not an echo request
    }
    let mut r = f.to_vec();
    r[0..6].copy_from_slice(&f[6..12]);
    r[6..12].copy_from_slice(&mac);
    // Swapping the addresses leaves the IPv4 header checksum as it is.
    r[26..30].copy_from_slice(&f[30..34]);
    r[30..34].copy_from_slice(&f[26..30]);
    r[l4] = 0; // echo reply
    r[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
    let sum = csum(&r[l4..]);
    r[l4 + 2..l4 + 4].copy_from_slice(&sum.to_be_bytes());
    Some(r)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ns, host_ip, ours, secs] = &args[..] else {
        eprintln!("usage: responder NS HOST_IP/LEN OUR_IP SECONDS");
        std::process::exit(2);
    };
    let ours: Ipv4Addr = ours.parse().expect("our address");
    let secs: u64 = secs.parse().expect("seconds");
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let info = reg
        .create(&CreateOptions {
            host_ns: Some(ns.clone()),
            host_ip4_addr: Some(host_ip.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let mac = info.hw_addr.expect("a TAP has a data-plane MAC").octets();
    let port: SharedPort = reg
        .end(&info.name)
        .expect("interface")
        .datapath
        .expect("a data path");
    println!("ready");
    let (mut seen, mut answered) = (0u64, 0u64);
    let until = Instant::now() + Duration::from_secs(secs);
    let mut frames: Vec<Vec<u8>> = Vec::new();
    while Instant::now() < until {
        frames.clear();
        let mut p = lock(&port);
        let _ = p.rx_burst(0, 64, &mut |f| frames.push(f.to_vec()));
        seen += frames.len() as u64;
        let replies: Vec<Vec<u8>> = frames
            .iter()
            .filter_map(|f| {
                arp_reply(f, mac, ours.octets()).or_else(|| icmp_reply(f, mac, ours.octets()))
            })
            .collect();
        let tx: Vec<TxFrame<'_>> = replies
            .iter()
            .map(|data| TxFrame {
                hdr: VnetHdr::default(),
                data,
            })
            .collect();
        if !tx.is_empty() {
            answered += p
                .tx_burst_wait(0, &tx, Duration::from_millis(2))
                .unwrap_or(0) as u64;
        }
        if frames.is_empty() {
            // Nothing came: sleep until the tap has a frame (or 100 ms).
            let ready = p.arm_rx(0).unwrap_or(true);
            let fd = p.rx_wait_fd(0).unwrap_or(-1);
            drop(p);
            if !ready {
                let mut rev = [0];
                let _ = vtap::sys::poll(&[(fd, libc::POLLIN)], &mut rev, 100);
            }
            lock(&port).ack_rx(0);
        }
    }
    println!("{{\"seen\": {seen}, \"answered\": {answered}}}");
    drop(port);
    reg.delete(&info.name).await.expect("delete");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_of_a_known_header() {
        // RFC 1071's example words sum to 0xddf2; the checksum is its complement.
        assert_eq!(
            csum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            !0xddf2
        );
    }
}
