//! The plugin's logic on fakes of vtapd, IPAM and the kernel: what each
//! command asks, in what order, and what a failure undoes.

use std::cell::RefCell;

use super::*;
use crate::daemon::LiveIf;
use crate::spec::NetConf;

#[derive(Default)]
struct FakeDaemon {
    taps: RefCell<Vec<TapInfo>>,
    bridges: RefCell<Vec<String>>,
    fail_create: Option<CniError>,
    log: RefCell<Vec<String>>,
}

fn tap(id: u32, opts: &CreateOptions) -> TapInfo {
    let v = json!({
        "id": id, "name": format!("tap{id}"), "host_if_name": opts.host_if_name,
        "host_ns": opts.host_ns, "host_ns_inode": 1, "host_ifindex": 2,
        "host_mac_addr": "02:fe:00:00:00:01", "hw_addr": "02:fe:00:00:00:02",
        "host_bridge": null, "host_ip4_addr": opts.host_ip4_addr, "host_ip4_gw": null,
        "host_ip6_addr": opts.host_ip6_addr, "host_ip6_gw": null,
        "host_addrs": opts.host_addrs, "host_routes": opts.host_routes, "labels": opts.labels,
        "host_mtu_size": opts.host_mtu_size.unwrap_or(1500), "rx_ring_size": 256, "tx_ring_size": 256,
        "num_rx_queues": 1, "num_tx_queues": 1, "multi_queue": false, "gso": false,
        "csum_offload": false, "gro_coalesce": false, "tun": false, "persist": true,
        "attached": false, "backend": "direct", "tun_offload": 0, "tun_offload_flags": [],
    });
    serde_json::from_value(v).expect("a TapInfo")
}

impl Daemon for FakeDaemon {
    fn taps(&self) -> Result<Vec<TapInfo>, CniError> {
        Ok(self.taps.borrow().clone())
    }
    fn ensure_bridge(&self, bd: &str, _: Option<usize>) -> Result<(), CniError> {
        self.log.borrow_mut().push(format!("bridge {bd}"));
        self.bridges.borrow_mut().push(bd.into());
        Ok(())
    }
    fn create(&self, opts: &CreateOptions) -> Result<TapInfo, CniError> {
        self.log.borrow_mut().push("create".into());
        if let Some(e) = &self.fail_create {
            return Err(e.clone());
        }
        let id = u32::try_from(self.taps.borrow().len()).expect("few");
        let t = tap(id, opts);
        self.taps.borrow_mut().push(t.clone());
        Ok(t)
    }
    fn delete(&self, _: &str, name: &str) -> Result<(), CniError> {
        self.log.borrow_mut().push(format!("delete {name}"));
        self.taps.borrow_mut().retain(|t| t.name != name);
        Ok(())
    }
    fn bridge_members(&self, _: &str) -> Result<Vec<String>, CniError> {
        Ok(self.taps.borrow().iter().map(|t| t.name.clone()).collect())
    }
    fn ping(&self) -> Result<(), CniError> {
        Ok(())
    }
}

struct FakeIpam {
    result: Value,
    speaks_1_1: bool,
    log: RefCell<Vec<String>>,
}

impl Ipam for FakeIpam {
    fn call(
        &self,
        command: &str,
        _: &Value,
        att: Option<&Attachment>,
    ) -> Result<Option<Value>, CniError> {
        let who = att
            .map(|a| format!(" {}/{}", a.container_id, a.ifname))
            .unwrap_or_default();
        self.log.borrow_mut().push(format!("{command}{who}"));
        Ok((command == "ADD").then(|| self.result.clone()))
    }
    fn speaks(&self, _: &Value, v: &str) -> Result<bool, CniError> {
        Ok(v != "1.1.0" || self.speaks_1_1)
    }
}

struct FakeLive(Option<LiveIf>);

impl Live for FakeLive {
    fn read(&self, _: &str, _: &str) -> Result<Option<LiveIf>, CniError> {
        Ok(self.0.clone())
    }
}

fn ipam() -> FakeIpam {
    FakeIpam {
        result: json!({
            "cniVersion": "1.0.0",
            "ips": [
                {"address": "198.18.5.2/24", "gateway": "198.18.5.1"},
                {"address": "198.18.6.2/24"},
                {"address": "2001:db8:5::2/64", "gateway": "2001:db8:5::1"},
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "198.18.64.0/18", "gw": "198.18.6.1"}],
            "dns": {"nameservers": ["198.18.5.53"]},
        }),
        speaks_1_1: false,
        log: RefCell::default(),
    }
}

fn conf(extra: Value) -> NetConf {
    let mut v = json!({"cniVersion": "1.1.0", "name": "pods", "type": "vtap-cni", "bridge": "bd1",
        "ipam": {"type": "host-local"}});
    for (k, x) in extra.as_object().expect("object") {
        v[k] = x.clone();
    }
    NetConf::parse(v.to_string().as_bytes()).expect("valid")
}

fn env(container: &str) -> Env {
    Env {
        container_id: Some(container.into()),
        netns: Some("/run/netns/pod".into()),
        ifname: Some("eth0".into()),
    }
}

struct World {
    daemon: FakeDaemon,
    ipam: FakeIpam,
    live: FakeLive,
}

impl World {
    fn new() -> Self {
        Self {
            daemon: FakeDaemon::default(),
            ipam: ipam(),
            live: FakeLive(None),
        }
    }
    fn ctx<'a>(
        &'a self,
        conf: &'a NetConf,
        env: &'a Env,
    ) -> Ctx<'a, FakeDaemon, FakeIpam, FakeLive> {
        Ctx {
            conf,
            env,
            daemon: &self.daemon,
            ipam: Some(&self.ipam),
            live: &self.live,
        }
    }
}

#[test]
fn add_puts_every_address_and_route_into_one_create_and_answers_the_result() {
    let w = World::new();
    let c = conf(json!({"mtu": 1450}));
    let e = env("c1");
    let r = w.ctx(&c, &e).add().expect("add");
    assert_eq!(*w.ipam.log.borrow(), ["ADD"]);
    assert_eq!(*w.daemon.log.borrow(), ["bridge bd1", "create"]);
    let t = &w.daemon.taps.borrow()[0];
    assert_eq!(t.host_ip4_addr.as_deref(), Some("198.18.5.2/24"));
    assert_eq!(t.host_ip6_addr.as_deref(), Some("2001:db8:5::2/64"));
    assert_eq!(t.host_addrs, ["198.18.6.2/24"]);
    let routes: Vec<_> = t
        .host_routes
        .iter()
        .map(|r| (r.dst.as_str(), r.gw.as_deref()))
        .collect();
    assert_eq!(
        routes,
        [
            ("0.0.0.0/0", Some("198.18.5.1")),
            ("198.18.64.0/18", Some("198.18.6.1"))
        ],
        "a route without gw goes via its family's gateway"
    );
    assert_eq!(t.labels[LABEL_CONTAINER], "c1");
    assert_eq!(r["cniVersion"], "1.1.0");
    assert_eq!(
        r["interfaces"][0],
        json!({"name": "eth0", "mac": "02:fe:00:00:00:01", "mtu": 1450, "sandbox": "/run/netns/pod"})
    );
    assert_eq!(r["ips"].as_array().expect("ips").len(), 3);
    assert!(r["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .all(|i| i["interface"] == 0));
    assert_eq!(r["dns"]["nameservers"][0], "198.18.5.53");

    // The same key again: refused, nothing more asked of IPAM.
    let again = w.ctx(&c, &e).add().expect_err("exists");
    assert_eq!(again.code, code::EXISTS);
    assert_eq!(w.ipam.log.borrow().len(), 1);
}

#[test]
fn a_failed_create_releases_the_address() {
    let mut w = World::new();
    w.daemon.fail_create = Some(CniError::new(
        code::VTAPD_REFUSED,
        "host-if-name 'eth0': exists",
    ));
    let c = conf(json!({}));
    let e = env("c1");
    let err = w.ctx(&c, &e).add().expect_err("refused");
    assert_eq!(err.msg, "host-if-name 'eth0': exists");
    assert_eq!(*w.ipam.log.borrow(), ["ADD", "DEL"]);
    assert!(w.daemon.taps.borrow().is_empty());
}

#[test]
fn del_is_idempotent_and_always_releases() {
    let w = World::new();
    let c = conf(json!({}));
    let e = env("c1");
    w.ctx(&c, &e).add().expect("add");
    w.ctx(&c, &e).del().expect("del");
    assert!(w.daemon.taps.borrow().is_empty());
    w.ctx(&c, &e).del().expect("del again");
    let never = env("never-seen");
    w.ctx(&c, &never)
        .del()
        .expect("del of an unknown container");
    assert_eq!(*w.ipam.log.borrow(), ["ADD", "DEL", "DEL", "DEL"]);
    let no_netns = Env {
        netns: None,
        ..env("c1")
    };
    w.ctx(&c, &no_netns).del().expect("del without a namespace");
}

#[test]
fn check_names_what_drifted() {
    let mut w = World::new();
    let c0 = conf(json!({}));
    let e = env("c1");
    let prev = w.ctx(&c0, &e).add().expect("add");
    let c = conf(json!({"prevResult": prev}));
    let good = LiveIf {
        mac: "02:fe:00:00:00:01".into(),
        addrs: vec![
            "198.18.5.2/24".into(),
            "198.18.6.2/24".into(),
            "2001:db8:5::2/64".into(),
        ],
        routes: vec![
            "0.0.0.0/0 via 198.18.5.1".into(),
            "198.18.64.0/18 via 198.18.6.1".into(),
        ],
    };
    let cases = [
        (None, "no interface eth0 in /run/netns/pod"),
        (
            Some(LiveIf {
                mac: "02:00:00:00:00:09".into(),
                ..good.clone()
            }),
            "MAC 02:00:00:00:00:09",
        ),
        (
            Some(LiveIf {
                addrs: vec!["198.18.5.2/24".into()],
                ..good.clone()
            }),
            "address 198.18.6.2/24 is missing",
        ),
        (
            Some(LiveIf {
                routes: vec![],
                ..good.clone()
            }),
            "route 0.0.0.0/0 via 198.18.5.1 is missing",
        ),
    ];
    for (live, why) in cases {
        w.live = FakeLive(live);
        let err = w.ctx(&c, &e).check().expect_err(why);
        assert_eq!(err.code, code::DRIFT);
        assert!(err.msg.contains(why), "{} / {why}", err.msg);
    }
    w.live = FakeLive(Some(good));
    w.ctx(&c, &e).check().expect("in step");
    assert_eq!(
        w.ipam.log.borrow().last().map(String::as_str),
        Some("CHECK")
    );
    let other = env("c2");
    let err = w.ctx(&c, &other).check().expect_err("unknown");
    assert!(
        err.msg.contains("no attachment for container c2"),
        "{}",
        err.msg
    );
    let no_prev = conf(json!({}));
    assert_eq!(
        w.ctx(&no_prev, &e).check().expect_err("prevResult").code,
        code::INVALID_CONFIG
    );
}

#[test]
fn gc_removes_what_is_not_valid_and_releases_per_attachment_without_ipam_gc() {
    for speaks in [false, true] {
        let mut w = World::new();
        w.ipam.speaks_1_1 = speaks;
        let c = conf(json!({}));
        for id in ["keep", "stale1", "stale2"] {
            w.ctx(&c, &env(id)).add().expect("add");
        }
        // Another network's attachment is never touched.
        let other = conf(json!({"name": "other"}));
        w.ctx(&other, &env("stale3")).add().expect("add");
        w.ipam.log.borrow_mut().clear();
        let gc =
            conf(json!({"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}));
        w.ctx(&gc, &Env::default()).gc().expect("gc");
        let left: Vec<String> = w
            .daemon
            .taps
            .borrow()
            .iter()
            .map(|t| t.labels[LABEL_CONTAINER].clone())
            .collect();
        assert_eq!(left, ["keep", "stale3"]);
        let want: &[&str] = if speaks {
            &["GC"]
        } else {
            &["DEL stale1/eth0", "DEL stale2/eth0"]
        };
        assert_eq!(*w.ipam.log.borrow(), want);
    }
}

#[test]
fn the_environment_is_checked() {
    let w = World::new();
    let c = conf(json!({}));
    for (e, why) in [
        (
            Env {
                container_id: None,
                ..env("x")
            },
            "CNI_CONTAINERID: missing",
        ),
        (env("a/b"), "CNI_CONTAINERID: must be"),
        (
            Env {
                ifname: None,
                ..env("x")
            },
            "CNI_IFNAME: missing",
        ),
        (
            Env {
                netns: None,
                ..env("x")
            },
            "CNI_NETNS: missing",
        ),
    ] {
        let err = w.ctx(&c, &e).add().expect_err(why);
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(err.msg.starts_with(why), "{}", err.msg);
    }
    assert!(w.ipam.log.borrow().is_empty(), "nothing asked of IPAM");
}

#[test]
fn a_legacy_result_has_ip_versions() {
    let c = conf(json!({"cniVersion": "0.4.0"}));
    let key = Attachment {
        container_id: "c".into(),
        ifname: "eth0".into(),
    };
    let info = tap(
        0,
        &CreateOptions {
            host_if_name: Some("eth0".into()),
            ..CreateOptions::default()
        },
    );
    let r = result(&c, &key, "/run/netns/x", &info, &ipam().result);
    assert_eq!(r["ips"][0]["version"], "4");
    assert_eq!(r["ips"][2]["version"], "6");
    assert!(r["interfaces"][0].get("mtu").is_none());
}
