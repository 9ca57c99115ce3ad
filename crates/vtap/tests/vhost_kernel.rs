//! Tests that need the kernel's vhost-net. This machine has none, so they are
//! `#[ignore]`d here and run as root in a QEMU guest with a stock Debian
//! kernel by `tests/vm/run.sh` (`-- --ignored`). The guest has busybox only:
//! state is read back from sysfs.

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
