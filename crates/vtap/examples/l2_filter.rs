//! An L2 filter between two taps, written on vtap's library: every frame
//! from one tap goes to the other, except frames of one EtherType, which are
//! dropped and counted. Offload metadata (the virtio-net header) travels with
//! each frame, so GSO super-frames cross whole. Run as root, with two
//! namespaces that exist:
//!
//!     cargo run -p vtap --example l2_filter -- NS_A NS_B 198.18.20.1/24 198.18.20.2/24 0x86dd 10
//!
//! creates a tap in each namespace with the given address (and GSO), moves
//! frames for the given seconds, prints one JSON line of counters, and
//! deletes the taps. A real program would run until told to stop.

use std::time::{Duration, Instant};

use vtap::port::{lock, SharedPort};
use vtap::registry::{error_chain, Registry, Settings};
use vtap::wire::{TxFrame, VnetHdr};
use vtap::CreateOptions;

/// One direction's frames of one burst: header and bytes, owned.
type Burst = Vec<(VnetHdr, Vec<u8>)>;

/// Moves one burst from `from` to `to`, dropping frames of `ethertype`;
/// returns (forwarded, dropped).
fn pump(from: &SharedPort, to: &SharedPort, ethertype: u16, burst: &mut Burst) -> (u64, u64) {
    burst.clear();
    let _ = lock(from).rx_burst(0, 256, &mut |f| {
        let hdr = VnetHdr {
            num_buffers: 0,
            ..f.hdr
        };
        burst.push((hdr, f.to_vec()));
    });
    let keep = |data: &[u8]| data.get(12..14) != Some(&ethertype.to_be_bytes()[..]);
    let out: Vec<TxFrame<'_>> = burst
        .iter()
        .filter(|(_, d)| keep(d))
        .map(|(hdr, data)| TxFrame { hdr: *hdr, data })
        .collect();
    let dropped = (burst.len() - out.len()) as u64;
    if !out.is_empty() {
        let _ = lock(to).tx_burst_wait(0, &out, Duration::from_millis(2));
    }
    (out.len() as u64, dropped)
}

/// Sleeps until either port has frames (or 100 ms pass).
fn wait(ports: &[&SharedPort]) {
    let mut fds = Vec::new();
    for p in ports {
        let mut p = lock(p);
        if p.arm_rx(0).unwrap_or(true) {
            return; // frames already waiting
        }
        if let Ok(fd) = p.rx_wait_fd(0) {
            fds.push((fd, libc::POLLIN));
        }
    }
    let mut rev = vec![0; fds.len()];
    let _ = vtap::sys::poll(&fds, &mut rev, 100);
    for p in ports {
        lock(p).ack_rx(0);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ns_a, ns_b, ip_a, ip_b, ethertype, secs] = &args[..] else {
        eprintln!("usage: l2_filter NS_A NS_B IP_A/LEN IP_B/LEN ETHERTYPE SECONDS");
        std::process::exit(2);
    };
    let ethertype = u16::from_str_radix(ethertype.trim_start_matches("0x"), 16).expect("ethertype");
    let secs: u64 = secs.parse().expect("seconds");
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let mut names = Vec::new();
    for (ns, ip) in [(ns_a, ip_a), (ns_b, ip_b)] {
        let info = reg
            .create(&CreateOptions {
                host_ns: Some(ns.clone()),
                host_ip4_addr: Some(ip.clone()),
                gso: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        names.push(info.name);
    }
    let port = |n: &str| -> SharedPort {
        reg.end(n)
            .expect("interface")
            .datapath
            .expect("a data path")
    };
    let (a, b) = (port(&names[0]), port(&names[1]));
    println!("ready");
    let (mut forwarded, mut dropped) = (0, 0);
    let mut burst = Burst::new();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let (f1, d1) = pump(&a, &b, ethertype, &mut burst);
        let (f2, d2) = pump(&b, &a, ethertype, &mut burst);
        forwarded += f1 + f2;
        dropped += d1 + d2;
        if f1 + d1 + f2 + d2 == 0 {
            wait(&[&a, &b]);
        }
    }
    println!(
        "{{\"forwarded\": {forwarded}, \"dropped\": {dropped}, \"ethertype\": \"0x{ethertype:04x}\"}}"
    );
    drop((a, b));
    for n in &names {
        reg.delete(n).await.expect("delete");
    }
}
