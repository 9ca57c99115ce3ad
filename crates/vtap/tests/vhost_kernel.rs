//! Tests that need the kernel's vhost-net. This machine has none, so they are
//! `#[ignore]`d here and run as root in a QEMU guest with a stock Debian
//! kernel by `tests/vm/run.sh` (`-- --ignored`). The guest has busybox only:
//! state is read back from sysfs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::respond;
use vtap::datapath::{self, DataPath};
use vtap::registry::{error_chain, Backend, Registry, Settings};
use vtap::tun::offload;
use vtap::CreateOptions;

fn tun_flags(name: &str) -> u32 {
    let s = std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags"))
        .unwrap_or_else(|e| panic!("tun_flags of {name}: {e}"));
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).expect("hex")
}

/// (major, minor) of the running kernel.
fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut it = r.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next().and_then(|s| s.parse().ok()).expect("major");
    let minor = it.next().and_then(|s| s.parse().ok()).expect("minor");
    (major, minor)
}

#[tokio::test]
#[ignore = "needs /dev/vhost-net: run tests/vm/run.sh"]
async fn auto_picks_vhost_net_where_it_opens_and_uso_is_probed() {
    assert!(
        std::path::Path::new("/dev/vhost-net").exists(),
        "no /dev/vhost-net here"
    );
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let auto = reg
        .create(&CreateOptions {
            gso: true,
            num_rx_queues: Some(2),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(auto.backend, Backend::VhostNet);
    assert_eq!(
        tun_flags(&auto.host_if_name),
        0x5102,
        "TAP|NO_PI|VNET_HDR|MULTI_QUEUE"
    );

    // USO (TUN_F_USO4/6) arrived in 6.2: older kernels refuse it with EINVAL
    // and vtap must fall back to CSUM|TSO4|TSO6 rather than fail.
    let base = offload::CSUM | offload::TSO4 | offload::TSO6;
    let uso = offload::USO4 | offload::USO6;
    let want = if kernel_version() >= (6, 2) {
        base | uso
    } else {
        base
    };
    assert_eq!(auto.tun_offload, want, "kernel {:?}", kernel_version());

    let explicit = reg
        .create(&CreateOptions {
            backend: Some("vhost-net".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(explicit.backend, Backend::VhostNet);
    let user = reg
        .create(&CreateOptions {
            backend: Some("userspace".into()),
            tun: true,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    assert_eq!(user.backend, Backend::Userspace);

    for t in [&auto, &explicit, &user] {
        reg.delete(&t.name).await.expect("delete");
        assert!(
            !std::path::Path::new("/sys/class/net")
                .join(&t.host_if_name)
                .exists(),
            "{} gone",
            t.host_if_name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs /dev/vhost-net: run tests/vm/run.sh"]
async fn arp_icmp_and_jumbo_udp_through_vhost_net() {
    // (EVENT_IDX, indirect tx chains)
    // (EVENT_IDX, indirect tx chains, checksum offload on the tap)
    for (event_idx, indirect, csum) in [(true, true, false), (false, false, true)] {
        let mut reg = common::bare_registry();
        let info = reg
            .create(&CreateOptions {
                host_ip4_addr: Some("198.18.0.1/24".into()),
                host_mtu_size: Some(9000),
                csum_offload: csum,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        let taps = reg.dup_queues(&info.name).expect("queues");
        let cfg = common::one_pair(Backend::VhostNet, event_idx, indirect);
        let mut dp = DataPath::start(&cfg, &taps).unwrap_or_else(|e| panic!("{}", error_chain(&e)));
        let st = dp.state();
        assert_eq!(
            st.features_negotiated & datapath::vhost::REQUIRED,
            datapath::vhost::REQUIRED
        );
        assert_eq!(
            st.features_negotiated & datapath::vhost::F_EVENT_IDX != 0,
            event_idx
        );
        let mac = info.hw_addr.expect("mac").octets();
        let stop = AtomicBool::new(false);
        let seen = std::thread::scope(|s| {
            let worker = s.spawn(|| respond(&mut dp, mac, [198, 18, 0, 2], &stop));

            let ping = std::process::Command::new("ping")
                .args(["-c", "3", "-W", "2", "198.18.0.2"])
                .output()
                .expect("busybox ping");
            assert!(
                ping.status.success(),
                "ping: {}",
                String::from_utf8_lossy(&ping.stdout)
            );

            // 8000 bytes in one frame: rx spreads it over merged 2 KiB buffers,
            // the echo goes back as a multi-buffer tx chain.
            let sock = std::net::UdpSocket::bind("198.18.0.1:0").expect("bind");
            sock.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            let payload: Vec<u8> = (0..8000u32).map(|i| (i * 7 + 3).to_le_bytes()[0]).collect();
            sock.send_to(&payload, "198.18.0.2:7777").expect("send");
            let mut back = vec![0u8; 9000];
            let (n, from) = sock.recv_from(&mut back).expect("echo arrives");
            assert_eq!(from.to_string(), "198.18.0.2:7777");
            assert_eq!(&back[..n], &payload[..], "payload intact both ways");

            stop.store(true, Ordering::Relaxed);
            worker.join().expect("responder")
        });
        assert!(
            seen.max_num_buffers >= 4,
            "merged rx buffers used: {seen:?}"
        );
        assert!(seen.answered >= 5, "ARP + 3 echo + UDP: {seen:?}");
        // With csum-offload the host sends UDP checksum-partial, and the
        // echo goes back partial for the kernel to complete: the socket
        // receiving it intact proves both directions.
        assert_eq!(
            seen.partial_csum > 0,
            csum,
            "checksum-partial frames: {seen:?}"
        );
        let st = dp.state();
        assert_eq!(st.rx[0].counters.packets, seen.frames);
        assert_eq!(st.tx[0].counters.packets, seen.answered);
        assert_eq!(st.rx[0].counters.drop_bad_header, 0);
        eprintln!(
            "event_idx={event_idx} indirect={indirect}: {seen:?}, rx ring {:?}",
            st.rx[0].ring
        );
        drop(dp);
        reg.delete(&info.name).await.expect("delete");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs /dev/vhost-net: run tests/vm/run.sh"]
async fn multi_queue_through_the_registrys_vhost_net_data_path() {
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let info = reg
        .create(&CreateOptions {
            host_ip4_addr: Some("198.18.2.1/24".into()),
            num_rx_queues: Some(2),
            num_tx_queues: Some(2),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let st = info.datapath.clone().expect("data path");
    assert_eq!(st.backend, Backend::VhostNet);
    // VHOST_SET_FORK_FROM_OWNER is asked for; a kernel without it (this
    // guest's 6.1 predates it; later ones need a config option) keeps its
    // default, and show says which.
    // From 6.17 the ioctl exists when the kernel was built with
    // CONFIG_VHOST_ENABLE_FORK_OWNER_CONTROL: the kernel's own config says
    // which answer is right.
    let want = if kernel_version() >= (6, 17)
        && kernel_config_has("CONFIG_VHOST_ENABLE_FORK_OWNER_CONTROL")
    {
        datapath::vhost::WorkerMode::Kthread
    } else {
        datapath::vhost::WorkerMode::KernelDefault
    };
    assert_eq!(st.vhost_worker_mode, Some(want));
    assert_eq!((st.rx.len(), st.tx.len()), (2, 2));
    assert_eq!(
        st.features_negotiated & datapath::vhost::REQUIRED,
        datapath::vhost::REQUIRED
    );
    let mac = info.hw_addr.expect("mac").octets();
    let shared = reg.datapath(&info.name).expect("tap").expect("running");
    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            common::respond_all(
                &mut vtap::registry::lock(&shared),
                mac,
                [198, 18, 2, 2],
                &stop,
            )
        });
        // Sixteen flows (source ports): the tap spreads them over its queues.
        for _ in 0..16 {
            let sock = std::net::UdpSocket::bind("198.18.2.1:0").expect("bind");
            sock.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            sock.send_to(b"multi-queue", "198.18.2.2:7777")
                .expect("send");
            let mut back = [0u8; 64];
            let (n, _) = sock.recv_from(&mut back).expect("echo");
            assert_eq!(&back[..n], b"multi-queue");
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().expect("responder")
    });
    let st = reg.get(&info.name).expect("get").datapath.expect("state");
    let per_queue: Vec<u64> = st.rx.iter().map(|q| q.counters.packets).collect();
    assert_eq!(per_queue.iter().sum::<u64>(), seen.frames);
    eprintln!("rx frames per queue: {per_queue:?}");
    // Sixteen flows over two queues all on one: odds 2^-15 if the tap
    // spreads them; certain if it does not.
    assert!(
        per_queue.iter().filter(|&&n| n > 0).count() >= 2,
        "more than one queue carried traffic: {per_queue:?}"
    );
    assert!(seen.answered >= 17, "ARP + 16 echoes: {seen:?}");
    reg.delete(&info.name).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs /dev/vhost-net: run tests/vm/run.sh"]
async fn tcp_gso_super_frames_both_ways_over_merged_buffers() {
    // The body every backend runs; the guest has no namespaces.
    common::gso_through(Backend::VhostNet, false).await;
}

/// Whether the running kernel's build config sets `option` (`=y` or `=m`),
/// from `/boot/config-$(uname -r)` or `/proc/config.gz`; a kernel whose
/// config cannot be read fails the test rather than guessing.
fn kernel_config_has(option: &str) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let boot = format!("/boot/config-{}", release.trim());
    let text = std::fs::read_to_string(&boot).unwrap_or_else(|_| {
        let out = std::process::Command::new("zcat")
            .arg("/proc/config.gz")
            .output()
            .expect("zcat");
        assert!(
            out.status.success(),
            "no kernel config at {boot} or /proc/config.gz"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    text.lines()
        .any(|l| l == format!("{option}=y") || l == format!("{option}=m"))
}
