//! Failure leaves nothing behind: every creation step failed in turn by the
//! fault seam, a table of bad inputs (refused by validation or by the real
//! kernel), deletion faults, and 1000 create/delete cycles — each checked
//! against the kernel's view of the namespace and this process's open fds.
//!
//! The tests in this binary count this process's fds, so they run one at a
//! time (`SERIAL`); other test binaries run in other processes.

use std::time::{Duration, Instant};

use vtap::fault::{Fault, Step};
use vtap::registry::{error_chain, Registry, Settings};
use vtap::CreateOptions;
use vtap_testkit::{fd_count, iff, ifname, root_link_exists, TestNs};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits (yielding to the runtime, which closes aborted netlink tasks) until
/// this process has `baseline` fds again; returns the final count.
async fn settle_fds(baseline: usize) -> usize {
    let start = Instant::now();
    loop {
        let n = fd_count("self");
        if n <= baseline || start.elapsed() > Duration::from_secs(2) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// This process's fd count once it has not changed for 200 ms (2 s at
/// most).
async fn quiet_fds() -> usize {
    let start = Instant::now();
    let (mut last, mut since) = (fd_count("self"), Instant::now());
    while since.elapsed() < Duration::from_millis(200) && start.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = fd_count("self");
        if n != last {
            (last, since) = (n, Instant::now());
        }
    }
    last
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Options that make every creation step but `set-bridge` run.
fn full(ns: &TestNs, name: &str) -> CreateOptions {
    CreateOptions {
        id: Some(7),
        host_if_name: Some(name.into()),
        host_ns: Some(ns.name.clone()),
        host_mac_addr: Some("02:fe:00:00:00:07".into()),
        host_ip4_addr: Some("198.18.70.1/24".into()),
        host_ip4_gw: Some("198.18.70.254".into()),
        host_ip6_addr: Some("2001:db8:70::1/64".into()),
        host_ip6_gw: Some("2001:db8:70::fe".into()),
        host_addrs: vec!["198.18.71.1/24".into(), "2001:db8:71::1/64".into()],
        host_routes: vec![vtap::options::RouteOption {
            dst: "198.18.80.0/24".into(),
            gw: Some("198.18.71.254".into()),
        }],
        host_mtu_size: Some(9000),
        num_rx_queues: Some(2),
        gso: true,
        persist: true,
        ..Default::default()
    }
}

/// Options that run `set-bridge` (a bridge excludes addresses).
fn bridged(ns: &TestNs, name: &str) -> CreateOptions {
    CreateOptions {
        host_if_name: Some(name.into()),
        host_ns: Some(ns.name.clone()),
        host_bridge: Some("br0".into()),
        persist: true,
        ..Default::default()
    }
}

struct Clean<'a> {
    ns: &'a TestNs,
    links: Vec<String>,
    fds: usize,
}

impl<'a> Clean<'a> {
    /// The namespace's links and this process's fds once they are quiet
    /// (the previous test's rtnetlink connections close shortly after it
    /// returns: a baseline taken while one is still open is one too high).
    async fn snapshot(ns: &'a TestNs) -> Self {
        Self {
            ns,
            links: sorted(ns.link_names()),
            fds: quiet_fds().await,
        }
    }

    /// Asserts the namespace and the process are as in the snapshot.
    async fn assert_same(&self, reg: &Registry, what: &str, name: &str) {
        assert_eq!(
            sorted(self.ns.link_names()),
            self.links,
            "{what}: links left behind"
        );
        assert!(
            self.ns.default_routes(false).is_empty(),
            "{what}: IPv4 route left"
        );
        assert!(
            self.ns.default_routes(true).is_empty(),
            "{what}: IPv6 route left"
        );
        if !name.is_empty() {
            assert!(
                !root_link_exists(name),
                "{what}: interface in the root namespace"
            );
        }
        assert!(reg.is_empty(), "{what}: registry not empty");
        let fds = settle_fds(self.fds).await;
        assert_eq!(fds, self.fds, "{what}: fds leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_at_any_creation_step_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let ns = TestNs::new("flt");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let name = ifname("vf");
    // Warm up (the runtime's lazily created fds), then take the baseline.
    let info = reg.create(&full(&ns, &name)).await.expect("warm-up create");
    reg.delete(&info.name).await.expect("warm-up delete");
    let clean = Clean::snapshot(&ns).await;

    for (i, &step) in Step::CREATE.iter().enumerate() {
        let opts = if step == Step::SetBridge {
            bridged(&ns, &name)
        } else {
            full(&ns, &name)
        };
        let errno = if i % 2 == 0 { libc::EIO } else { libc::ENOMEM };
        reg.faults().arm(Fault::fail(step, errno));
        let e = reg.create(&opts).await.expect_err("armed step must fail");
        let msg = error_chain(&e);
        assert!(
            msg.starts_with(&format!("step {step} failed: injected fault: ")),
            "{step}: {msg}"
        );
        assert!(reg.faults().armed().is_none(), "{step}: the fault fired");
        clean.assert_same(&reg, step.name(), &name).await;
    }

    // And with no fault armed, the same options work: the id and name are free.
    let info = reg
        .create(&full(&ns, &name))
        .await
        .expect("create after faults");
    assert_eq!(info.id, 7);
    reg.delete(&info.name).await.expect("delete");
    clean.assert_same(&reg, "final delete", &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delete_leaves_the_interface_intact() {
    let _serial = SERIAL.lock().await;
    let ns = TestNs::new("del");
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let name = ifname("vd");
    let info = reg.create(&full(&ns, &name)).await.expect("create");
    for &step in Step::DELETE {
        reg.faults().arm(Fault::fail(step, libc::EIO));
        let e = reg.delete(&info.name).await.expect_err("armed delete step");
        assert!(
            error_chain(&e).starts_with(&format!("step {step} failed")),
            "{e}"
        );
        assert_eq!(reg.len(), 1, "{step}: still registered");
        assert!(ns.link(&name).is_some(), "{step}: still in the kernel");
        assert_ne!(
            ns.tun_flags(&name) & iff::PERSIST,
            0,
            "{step}: persist restored"
        );
        assert_eq!(ns.addrs(&name).len(), 4, "{step}: addresses untouched");
    }
    reg.delete(&info.name).await.expect("delete after faults");
    assert!(ns.link(&name).is_none());
    assert!(reg.is_empty());
}

/// A batch deletion: interfaces in several namespaces deleted at once, an
/// unknown key and a key given twice refused in place, and a fault at the
/// kernel step failing exactly one, which stays whole and is deleted later.
/// Afterwards no link, no tap fd, no socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delete_deletes_each_and_leaves_a_failed_one_intact() {
    let _serial = SERIAL.lock().await;
    let baseline = registry_fds();
    let nss: Vec<TestNs> = (0..5).map(|_| TestNs::new("bat")).collect();
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let mut names = vec![];
    for ns in &nss {
        let host = ifname("vb");
        let opts = CreateOptions {
            id: None,
            ..full(ns, &host)
        };
        let info = reg.create(&opts).await.expect("create");
        names.push((info.name, host));
    }
    let mut keys: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
    keys.push("tap9999");
    keys.push(keys[0]);
    reg.faults().arm(Fault::fail(Step::DeleteLink, libc::EIO));
    let out = reg.delete_many(&keys).await;
    assert_eq!(out.len(), 7, "one outcome per key, in order");
    let msg = |r: &Result<vtap::TapInfo, vtap::registry::Error>| match r {
        Ok(_) => String::new(),
        Err(e) => error_chain(e),
    };
    assert!(
        msg(&out[5]).contains("no such interface"),
        "{}",
        msg(&out[5])
    );
    assert!(msg(&out[6]).contains("given twice"), "{}", msg(&out[6]));
    let failed: Vec<usize> = (0..5).filter(|&i| out[i].is_err()).collect();
    assert_eq!(failed.len(), 1, "the armed fault fires once");
    let f = failed[0];
    assert!(
        msg(&out[f]).starts_with("step delete-link failed"),
        "{}",
        msg(&out[f])
    );
    for (i, (ns, (_, host))) in nss.iter().zip(&names).enumerate() {
        if i == f {
            assert!(ns.link(host).is_some(), "the failed one is still there");
            assert_eq!(ns.addrs(host).len(), 4, "and whole");
            assert_ne!(ns.tun_flags(host) & iff::PERSIST, 0, "persist restored");
        } else {
            assert!(ns.link(host).is_none(), "{host} deleted");
            let got = out[i].as_ref().expect("deleted");
            assert_eq!(&got.host_if_name, host);
        }
    }
    assert_eq!(reg.len(), 1);
    reg.delete(&names[f].0).await.expect("delete the survivor");
    assert!(reg.is_empty());
    assert!(nss.iter().all(|ns| ns.link_names() == ["lo"]));
    drop(reg);
    // Other tests of this binary wait for SERIAL in runtimes of their own
    // (an epoll fd, an eventfd, a dup of tokio's signal socket pair) that
    // may start while this one runs: count what the registry opens, tap
    // queues and netlink sockets.
    let mut left = registry_fds();
    for _ in 0..200 {
        if left <= baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = registry_fds();
    }
    assert_eq!(left, baseline, "no tap fd or netlink socket left");
}

/// This process's fds on `/dev/net/tun` and its sockets other than Unix
/// ones (tokio's): the netlink sockets, in whatever namespace.
fn registry_fds() -> usize {
    let unix: std::collections::HashSet<String> = std::fs::read_to_string("/proc/self/net/unix")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(6).map(String::from))
        .collect();
    std::fs::read_dir("/proc/self/fd")
        .expect("fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|p| {
            let p = p.display().to_string();
            let socket = p
                .strip_prefix("socket:[")
                .and_then(|i| i.strip_suffix(']'))
                .is_some_and(|inode| !unix.contains(inode));
            p == "/dev/net/tun" || socket
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_its_field_and_leaves_nothing() {
    let _serial = SERIAL.lock().await;
    let ns = TestNs::new("bad");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "add", "vx0", "type", "veth", "peer", "name", "vx1"]);
    let single = ifname("vs");
    ns.ip(&["tuntap", "add", "dev", &single, "mode", "tap", "vnet_hdr"]);
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let warm = reg
        .create(&full(&ns, &ifname("vw")))
        .await
        .expect("warm-up");
    reg.delete(&warm.name).await.expect("warm-up delete");
    let clean = Clean::snapshot(&ns).await;

    let o = |f: &dyn Fn(&mut CreateOptions)| {
        let mut opts = CreateOptions {
            host_ns: Some(ns.name.clone()),
            host_if_name: Some(ifname("vb")),
            ..Default::default()
        };
        f(&mut opts);
        opts
    };
    let mut cases: Vec<(CreateOptions, &str)> = vec![
        (o(&|c| c.id = Some(8192)), "id '8192': must be in 0..=8191"),
        (
            o(&|c| c.host_if_name = Some("a-name-of-20-bytes!!".into())),
            "host-if-name 'a-name-of-20-bytes!!': longer than 15 bytes",
        ),
        (
            o(&|c| c.host_if_name = Some("lo".into())),
            "host-if-name 'lo': an interface of that name already exists",
        ),
        (
            o(&|c| c.host_if_name = Some("br0".into())),
            "host-if-name 'br0': an interface of that name already exists",
        ),
        (
            o(&|c| c.host_ns = Some("vt-no-such-ns".into())),
            "host-ns 'vt-no-such-ns': cannot open /var/run/netns/vt-no-such-ns",
        ),
        (
            o(&|c| c.host_ns = Some("../../etc".into())),
            "host-ns '../../etc': a namespace name may not contain '/'",
        ),
        (
            o(&|c| c.host_ns = Some("/etc/hostname".into())),
            "is not a network namespace",
        ),
        (
            o(&|c| c.host_bridge = Some("nobr".into())),
            "host-bridge 'nobr': no such interface",
        ),
        (
            o(&|c| c.host_bridge = Some("vx0".into())),
            "host-bridge 'vx0': is a veth interface, not a bridge",
        ),
        (
            o(&|c| {
                c.host_ip4_addr = Some("198.18.71.1/24".into());
                c.host_ip4_gw = Some("198.18.99.1".into())
            }),
            "host-ip4-gw '198.18.99.1': gateway unreachable",
        ),
        (
            o(&|c| {
                c.host_ip6_addr = Some("2001:db8:71::1/64".into());
                c.host_ip6_gw = Some("2001:db8:99::1".into())
            }),
            "host-ip6-gw '2001:db8:99::1': gateway unreachable",
        ),
        (
            o(&|c| c.host_mtu_size = Some(65522)),
            "host-mtu-size '65522'",
        ),
        (
            o(&|c| c.host_mac_addr = Some("01:00:5e:00:00:01".into())),
            "host-mac-addr '01:00:5e:00:00:01'",
        ),
        (
            o(&|c| c.rx_ring_size = Some(100)),
            "rx-ring-size '100': must be a power of two",
        ),
        (
            o(&|c| {
                c.host_if_name = Some(single.clone());
                c.attach = true;
                c.num_rx_queues = Some(2)
            }),
            "needs IFF_MULTI_QUEUE",
        ),
        (
            o(&|c| {
                c.host_bridge = Some("br0".into());
                c.host_ip4_addr = Some("198.18.72.1/24".into())
            }),
            "host-bridge 'br0': cannot be combined",
        ),
    ];
    if !std::path::Path::new("/dev/vhost-net").exists() {
        cases.push((
            o(&|c| c.backend = Some("vhost-net".into())),
            "backend vhost-net: cannot open /dev/vhost-net",
        ));
    }
    for (opts, want) in &cases {
        let e = reg.create(opts).await.expect_err(want);
        let msg = error_chain(&e);
        assert!(msg.contains(want), "got {msg:?}, want {want:?}");
        assert!(!msg.contains('\n'), "one line: {msg:?}");
        let name = opts.host_if_name.clone().unwrap_or_default();
        let name = if name == "lo" || name == "br0" || name == single {
            String::new()
        } else {
            name
        };
        clean.assert_same(&reg, want, &name).await;
    }

    // A missing /dev/net/tun is reported as such.
    let mut no_tun = Registry::new(Settings {
        tun_device: c"/nonexistent/net/tun".to_owned(),
        ..Settings::default()
    })
    .expect("registry");
    let e = no_tun.create(&o(&|_| ())).await.expect_err("no tun device");
    assert!(
        error_chain(&e).contains("cannot open /nonexistent/net/tun (is the tun module loaded?)"),
        "{}",
        error_chain(&e)
    );
    drop(no_tun);
    clean.assert_same(&reg, "no /dev/net/tun", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_cycles_do_not_grow_anything() {
    let _serial = SERIAL.lock().await;
    let ns = TestNs::new("cyc");
    let mut reg = Registry::new(Settings::default()).expect("registry");
    let opts = CreateOptions {
        host_ns: Some(ns.name.clone()),
        host_ip4_addr: Some("198.18.73.1/24".into()),
        host_ip6_addr: Some("2001:db8:73::1/64".into()),
        num_rx_queues: Some(2),
        gso: true,
        ..Default::default()
    };
    let warm = reg.create(&opts).await.expect("warm-up");
    reg.delete(&warm.name).await.expect("warm-up delete");
    let clean = Clean::snapshot(&ns).await;
    let start = Instant::now();
    for i in 0..1000 {
        let info = reg
            .create(&opts)
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {}", error_chain(&e)));
        assert_eq!(info.id, 0, "cycle {i}: the id is reused");
        reg.delete(&info.name)
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {}", error_chain(&e)));
    }
    let elapsed = start.elapsed();
    eprintln!(
        "1000 create+configure+delete cycles: {:.2} s ({:.2} ms each)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / 1000.0
    );
    clean.assert_same(&reg, "after 1000 cycles", "tap0").await;
}
