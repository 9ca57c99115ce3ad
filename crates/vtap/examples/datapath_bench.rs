//! Small-frame rate of the data path, ring-based userspace backend against a
//! direct `read`/`write` loop on the same tap: the measurement behind the
//! choice of userspace backend (issue #3). Run as root:
//!
//!     cargo run --release -p vtap --example datapath_bench [SECONDS]
//!
//! tx: the data plane sends 60-byte UDP frames to the host side as fast as it
//! can; delivered = the host interface's `rx_packets` over the run.
//! rx: a sender thread in the namespace sends 18-byte UDP datagrams as fast
//! as one socket can; received = frames the data plane got over the run.
//! Addresses: 198.18.9.0/24 only.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use vtap::datapath::{self, DataPath, TxFrame};
use vtap::netns::{Netns, NetnsSpec};
use vtap::registry::{Backend, Registry, Settings};
use vtap::CreateOptions;
use vtap_testkit::TestNs;

fn udp_frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&[198, 18, 9, 2, 198, 18, 9, 1]);
    let c = vtap_testkit::responder::csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&[0x9c, 0x40, 0, 9, 0, 26, 0, 0]); // UDP 40000 -> 9, no checksum
    f.resize(60, 0xab);
    f
}

fn rx_packets(ns: &TestNs, dev: &str) -> u64 {
    let out = ns.exec(
        "cat",
        &[&format!("/sys/class/net/{dev}/statistics/rx_packets")],
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64() / 1000.0
}

/// Sends 18-byte datagrams from inside `ns` for `dur`; returns how many.
fn flood(ns: &TestNs, dur: Duration) -> std::thread::JoinHandle<u64> {
    let netns = Netns::open(&NetnsSpec::Name(ns.name.clone())).expect("netns");
    let sock = netns
        .run_in(|| std::net::UdpSocket::bind("198.18.9.1:0"))
        .expect("enter")
        .expect("bind");
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < dur {
            for _ in 0..256 {
                if sock.send_to(&[0x5a; 18], "198.18.9.2:9").is_ok() {
                    n += 1;
                }
            }
        }
        n
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let dur = Duration::from_secs(secs);
    let ns = TestNs::new("bench");
    let mut reg = Registry::new(Settings {
        datapath: false,
        ..Settings::default()
    })
    .expect("registry");
    let info = reg
        .create(&CreateOptions {
            host_ns: Some(ns.name.clone()),
            host_if_name: Some("bench0".into()),
            host_ip4_addr: Some("198.18.9.1/24".into()),
            ..Default::default()
        })
        .await
        .expect("create");
    let dp_mac = info.hw_addr.expect("mac");
    ns.ip(&[
        "neigh",
        "add",
        "198.18.9.2",
        "lladdr",
        &dp_mac.to_string(),
        "dev",
        "bench0",
    ]);
    let frame = udp_frame(info.host_mac_addr.expect("mac").octets(), dp_mac.octets());
    let taps = reg.dup_queues(&info.name).expect("queues");
    println!("| path | direction | kpps | offered kpps |");
    println!("|---|---|---|---|");

    // Rings + userspace backend thread.
    {
        let cfg = datapath::Config {
            rx_ring_size: 1024,
            tx_ring_size: 1024,
            num_rx_queues: 1,
            num_tx_queues: 1,
            event_idx: true,
            indirect: true,
            backend: Backend::Userspace,
        };
        let mut dp = DataPath::start(&cfg, &taps).expect("data path");
        let frames: Vec<TxFrame<'_>> = (0..64)
            .map(|_| TxFrame {
                hdr: Default::default(),
                data: &frame,
            })
            .collect();
        let before = rx_packets(&ns, "bench0");
        let start = Instant::now();
        while start.elapsed() < dur {
            dp.tx_burst(0, &frames).expect("tx");
        }
        std::thread::sleep(Duration::from_millis(200));
        let got = rx_packets(&ns, "bench0") - before;
        println!(
            "| rings + userspace backend | tx (to host) | {:.0} | - |",
            rate(got, dur)
        );

        // Drain what the host sent meanwhile, then measure rx.
        while dp.rx_burst(0, 256, |_| {}).expect("rx") > 0 {}
        let sender = flood(&ns, dur);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < dur + Duration::from_millis(100) {
            n += dp.rx_burst_wait(0, 256, 10, |_| {}).expect("rx") as u64;
        }
        let sent = sender.join().expect("sender");
        println!(
            "| rings + userspace backend | rx (from host) | {:.0} | {:.0} |",
            rate(n, dur),
            rate(sent, dur)
        );
    }

    // Direct read/write on the tap fd, no rings.
    {
        let tap = &taps[0];
        let mut buf = vec![0u8; 12];
        buf.extend_from_slice(&frame);
        let before = rx_packets(&ns, "bench0");
        let start = Instant::now();
        while start.elapsed() < dur {
            for _ in 0..64 {
                let _ = (&*tap).write(&buf);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let got = rx_packets(&ns, "bench0") - before;
        println!(
            "| direct write(2) | tx (to host) | {:.0} | - |",
            rate(got, dur)
        );

        let mut rbuf = vec![0u8; 65_600];
        while (&*tap).read(&mut rbuf).is_ok() {}
        let sender = flood(&ns, dur);
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < dur + Duration::from_millis(100) {
            match (&*tap).read(&mut rbuf) {
                // One read is one frame (header + frame) on a tap.
                Ok(len) => n += u64::from(len >= 12),
                Err(_) => {
                    let _ = vtap::sys::poll_readable(tap, 10);
                }
            }
        }
        let sent = sender.join().expect("sender");
        println!(
            "| direct read(2) | rx (from host) | {:.0} | {:.0} |",
            rate(n, dur),
            rate(sent, dur)
        );
    }
    reg.delete(&info.name).await.expect("delete");
}
