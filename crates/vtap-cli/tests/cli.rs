//! The `vtap` command line against a real `vtap daemon`, and both against the
//! real kernel: the CLI contract of docs/cli.md (flag names, `show --json`
//! keys, one-line errors, exit codes), the socket rules, the config file, and
//! what the daemon leaves behind when it stops.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use vtap_testkit::{fd_count, ifname, wait_until, TestNs};

mod common;

use common::VTAP;

/// A daemon on a private socket; SIGTERM and reap on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(config: Option<&str>) -> Self {
        Self::start_with(config, None, |c| c)
    }

    /// Starts `wrap(vtap --socket S daemon ...)`; `wrap` may put a command in
    /// front. `socket` defaults to a fresh private directory.
    fn start_with(
        config: Option<&str>,
        socket: Option<PathBuf>,
        wrap: impl FnOnce(Vec<String>) -> Vec<String>,
    ) -> Self {
        vtap_testkit::require_root();
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = socket.unwrap_or_else(|| dir.path().join("vtap.sock"));
        let mut args = vec![
            VTAP.to_string(),
            "--socket".into(),
            socket.display().to_string(),
            "daemon".into(),
        ];
        if let Some(text) = config {
            let path = dir.path().join("vtap.toml");
            std::fs::write(&path, text).expect("write config");
            args.push("--config".into());
            args.push(path.display().to_string());
        }
        let argv = wrap(args);
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn daemon");
        let d = Self {
            child,
            socket,
            _dir: dir,
        };
        common::wait_for_socket(&d.socket);
        d
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn vtap(&self, args: &[&str]) -> Output {
        common::vtap(&self.socket, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        common::ok(&self.socket, args)
    }

    /// Starts `vtap ARGS` without waiting for it.
    fn spawn(&self, args: &[&str]) -> Child {
        Command::new(VTAP)
            .args(args)
            .env("VTAP_SOCKET", &self.socket)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vtap")
    }

    /// Waits until `iface` shows a running capture.
    fn wait_for_capture(&self, iface: &str) {
        assert!(
            wait_until(Duration::from_secs(10), || {
                let v: Value =
                    serde_json::from_str(&self.ok(&["show", iface, "--json"])).expect("json");
                v[0]["datapath"]["capture"].is_object()
            }),
            "no capture started on {iface}"
        );
    }

    fn show_json(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["show", "--json"])).expect("json");
        v.as_array().expect("a list").clone()
    }

    fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill has no memory effects; the pid is our live child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.child.wait().expect("reap daemon")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The one line of stderr, asserting there is exactly one.
fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got {err:?}");
    assert!(lines[0].starts_with("vtap: "), "{err}");
    lines[0].to_string()
}

const SHOW_KEYS: &[&str] = &[
    "id",
    "name",
    "host_if_name",
    "host_ns",
    "host_mac_addr",
    "hw_addr",
    "host_bridge",
    "host_ip4_addr",
    "host_ip4_gw",
    "host_ip6_addr",
    "host_ip6_gw",
    "host_mtu_size",
    "rx_ring_size",
    "tx_ring_size",
    "num_rx_queues",
    "num_tx_queues",
    "gso",
    "csum_offload",
    "gro_coalesce",
    "tun",
    "persist",
    "backend",
    "tun_offload",
];

#[test]
fn create_show_set_delete_through_the_cli() {
    let ns = TestNs::new("cli");
    let d = Daemon::start(None);
    let name = ifname("vc");
    let out = d.ok(&[
        "create",
        "--host-ns",
        &ns.name,
        "--host-if-name",
        &name,
        "--id",
        "3",
        "--host-mac-addr",
        "02:fe:00:00:00:03",
        "--hw-addr",
        "02:fe:00:00:01:03",
        "--host-ip4-addr",
        "198.18.3.1/24",
        "--host-ip4-gw",
        "198.18.3.254",
        "--host-ip6-addr",
        "2001:db8:3::1/64",
        "--host-ip6-gw",
        "2001:db8:3::fe",
        "--host-mtu-size",
        "1600",
        "--rx-ring-size",
        "512",
        "--tx-ring-size",
        "128",
        "--num-rx-queues",
        "2",
        "--num-tx-queues",
        "2",
        "--csum-offload",
    ]);
    assert_eq!(out.trim(), "tap3", "create prints the data-plane name");

    let taps = d.show_json();
    assert_eq!(taps.len(), 1);
    let t = &taps[0];
    for k in SHOW_KEYS {
        assert!(t.get(*k).is_some(), "show --json lacks {k}: {t}");
    }
    assert_eq!(t["name"], "tap3");
    assert_eq!(t["host_ns"], ns.name.as_str());
    assert_eq!(t["backend"], "direct", "auto without vhost-net");
    assert_eq!(t["csum_offload"], true);
    assert_eq!(t["tun_offload"], 1);
    let link = ns.link(&name).expect("in the namespace");
    assert_eq!(link["address"], "02:fe:00:00:00:03");
    assert_eq!(t["host_mac_addr"], link["address"]);
    assert_eq!(t["host_mtu_size"], link["mtu"]);
    assert_eq!(link["mtu"], 1600);
    assert_eq!(t["hw_addr"], "02:fe:00:00:01:03");

    // By name, by id, human form.
    let human = d.ok(&["show", "3"]);
    assert!(
        human.starts_with(&format!("tap3  host-if-name {name}")),
        "{human}"
    );
    let one: Value = serde_json::from_str(&d.ok(&["show", "tap3", "--json"])).expect("json");
    assert_eq!(one[0]["host_if_name"], name.as_str());

    d.ok(&["set", "tap3", "offload", "gso-enable"]);
    assert_eq!(ns.ethtool_k(&name)["tcp-segmentation-offload"], "on");
    let line = one_line_error(&d.vtap(&["set", "tap3", "offload", "csum-offload-disable"]));
    assert!(
        line.contains("gso is on and includes checksum offload: use gso-disable"),
        "{line}"
    );
    d.ok(&["set", "tap3", "offload", "gso-disable"]);
    assert_eq!(ns.ethtool_k(&name)["tx-checksumming"], "off");

    // MTU both ways: through vtap (the kernel reads back the new value),
    // and on the host side behind vtap's back (shown at the next look).
    d.ok(&["set", "tap3", "mtu", "4000"]);
    assert_eq!(ns.link(&name).expect("tap")["mtu"], 4000);
    assert_eq!(d.show_json()[0]["host_mtu_size"], 4000);
    // A host-side change arrives as a link event.
    ns.ip(&["link", "set", &name, "mtu", "3000"]);
    assert!(
        wait_until(Duration::from_secs(2), || d.show_json()[0]["host_mtu_size"]
            == 3000),
        "the daemon shows the host side's MTU"
    );
    let line = one_line_error(&d.vtap(&["set", "tap3", "mtu", "67"]));
    assert!(line.contains("mtu '67': must be in 68..=65521"), "{line}");
    assert_eq!(ns.link(&name).expect("tap")["mtu"], 3000, "unchanged");
    d.ok(&["delete", "tap3"]);
    assert!(ns.link(&name).is_none());
    assert_eq!(d.ok(&["show"]).trim(), "no interfaces");
}

#[test]
fn every_error_is_one_line_and_leaves_nothing() {
    let ns = TestNs::new("err");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    let d = Daemon::start(None);
    let name = ifname("ve");
    d.ok(&["create", "--host-ns", &ns.name, "--host-if-name", &name]);
    let links = {
        let mut l = ns.link_names();
        l.sort();
        l
    };
    let fds = fd_count(&d.pid());
    let nsn = ns.name.as_str();
    let cases: &[(&[&str], &str)] = &[
        (
            &["create", "--host-ns", nsn, "--host-if-name", &name],
            "host-if-name",
        ),
        (
            &[
                "create",
                "--host-ns",
                nsn,
                "--host-if-name",
                "twenty-bytes-long-xx",
            ],
            "host-if-name 'twenty-bytes-long-xx': longer than 15 bytes",
        ),
        (
            &["create", "--host-ns", "vt-nonexistent-ns"],
            "host-ns 'vt-nonexistent-ns': cannot open",
        ),
        (&["create", "--host-ns", "../../etc"], "host-ns '../../etc'"),
        (
            &[
                "create",
                "--host-ns",
                nsn,
                "--host-bridge",
                "br0",
                "--host-ip4-addr",
                "198.18.4.1/24",
            ],
            "host-bridge 'br0': cannot be combined",
        ),
        (
            &["create", "--host-ns", nsn, "--host-bridge", "nobr0"],
            "host-bridge 'nobr0'",
        ),
        (
            &[
                "create",
                "--host-ns",
                nsn,
                "--host-ip4-addr",
                "198.18.4.1/24",
                "--host-ip4-gw",
                "198.18.8.1",
            ],
            "host-ip4-gw '198.18.8.1': gateway unreachable",
        ),
        (
            &["create", "--host-ns", nsn, "--host-mtu-size", "50"],
            "host-mtu-size '50'",
        ),
        (
            &["create", "--host-ns", nsn, "--rx-ring-size", "1000"],
            "rx-ring-size '1000'",
        ),
        (
            &["create", "--host-ns", nsn, "--num-rx-queues", "0"],
            "num-rx-queues '0'",
        ),
        (
            &["create", "--host-ns", nsn, "--gro-coalesce"],
            "gro-coalesce 'true': needs gso",
        ),
        (
            &["create", "--host-ns", nsn, "--tun", "--host-bridge", "br0"],
            "host-bridge 'br0': a TUN",
        ),
        (
            &["create", "--host-ns", nsn, "--backend", "dpdk"],
            "backend 'dpdk'",
        ),
        (&["create", "--id", "8192"], "id '8192'"),
        (&["create", "--id", "x"], "'--id <ID>'"),
        (&["create", "--no-such-flag"], "--no-such-flag"),
        (&["delete", "tap99"], "interface 'tap99': no such interface"),
        (
            &["delete", "../x"],
            "interface '../x': not an interface name",
        ),
        (&["show", "tun0"], "interface 'tun0': no such interface"),
        (&["set", "tap0", "offload", "gso-on"], "offload 'gso-on'"),
        (
            &["set", "tap0", "offload", "gro-coalesce-enable"],
            "gro-coalesce needs gso",
        ),
    ];
    for (args, want) in cases {
        let line = one_line_error(&d.vtap(args));
        assert!(
            line.contains(want),
            "vtap {args:?}: got {line:?}, want {want:?}"
        );
    }
    let mut after = ns.link_names();
    after.sort();
    assert_eq!(after, links, "nothing left in the namespace");
    assert!(
        wait_until(Duration::from_secs(2), || fd_count(&d.pid()) == fds),
        "daemon fds {} != {fds}",
        fd_count(&d.pid())
    );

    // No daemon at all.
    let out = Command::new(VTAP)
        .args(["--socket", "/nonexistent/vtap.sock", "show"])
        .output()
        .expect("run");
    let line = one_line_error(&out);
    assert!(
        line.contains("cannot connect to vtapd at /nonexistent/vtap.sock"),
        "{line}"
    );
}

#[test]
fn the_socket_is_private_exclusive_and_stale_ones_are_replaced() {
    let d = Daemon::start(None);
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let second = Command::new(VTAP)
        .args(["--socket", d.socket.to_str().expect("utf8"), "daemon"])
        .output()
        .expect("second daemon");
    let line = one_line_error(&second);
    assert!(
        line.contains("another vtapd is already serving it"),
        "{line}"
    );
    assert!(d.socket.exists(), "the live daemon's socket is untouched");

    // A stale socket (its daemon killed -9) is replaced.
    let mut d = d;
    // SAFETY: kill has no memory effects; the pid is our live child.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGKILL) };
    d.child.wait().expect("reap");
    assert!(d.socket.exists(), "SIGKILL leaves the socket file");
    let path = d.socket.clone();
    let mut d2 = Daemon::start_with(None, Some(path.clone()), |a| a);
    assert_eq!(d2.show_json().len(), 0);
    assert!(d2.stop().success());
    assert!(!path.exists(), "a clean stop removes the socket");
}

#[test]
fn config_sets_defaults_and_bad_config_names_the_key() {
    let ns = TestNs::new("cfg");
    let d = Daemon::start(Some("[tap]\nhost_mtu = 9000\n"));
    let name = ifname("vg");
    d.ok(&["create", "--host-ns", &ns.name, "--host-if-name", &name]);
    assert_eq!(ns.link(&name).expect("tap")["mtu"], 9000);
    let info: Value = serde_json::from_str(&String::from_utf8_lossy(
        &Command::new(VTAP)
            .args([
                "--socket",
                d.socket.to_str().expect("utf8"),
                "show",
                "--json",
            ])
            .output()
            .expect("run")
            .stdout,
    ))
    .expect("json");
    assert_eq!(info[0]["host_mtu_size"], 9000);

    let dir = tempfile::tempdir().expect("tmp");
    for (text, want) in [
        ("[tap]\nhost_mtuu = 9000\n", "unknown field `host_mtuu`"),
        ("[tap]\nhost_mtu = 10\n", "tap.host_mtu = 10"),
    ] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text).expect("write");
        let out = Command::new(VTAP)
            .args([
                "--socket",
                &dir.path().join("s").display().to_string(),
                "daemon",
                "--config",
            ])
            .arg(&cfg)
            .output()
            .expect("run");
        let line = one_line_error(&out);
        assert!(line.contains(want), "{line}");
        assert!(line.contains("bad.toml"), "{line}");
    }
}

#[test]
fn declared_interfaces_xconnects_and_bridges_come_up_with_the_daemon() {
    let (na, nb, nc) = (TestNs::new("dca"), TestNs::new("dcb"), TestNs::new("dcc"));
    let config = format!(
        r#"
[[interface]]
id = 0
host_ns = "{a}"
host_ip4_addr = "198.18.46.1/24"
gso = true

[[interface]]
id = 1
host_ns = "{b}"
host_ip4_addr = "198.18.46.2/24"
gso = true

[[interface]]
id = 2
host_ns = "{c}"

[[xconnect]]
a = "tap0"
b = "tap1"

[[bridge]]
name = "bd1"
interfaces = ["tap2"]
"#,
        a = na.name,
        b = nb.name,
        c = nc.name
    );
    let d = Daemon::start(Some(&config));
    let taps = d.show_json();
    assert_eq!(taps.len(), 3);
    assert_eq!(na.addrs("tap0"), vec!["198.18.46.1/24".to_string()]);
    assert_eq!(nb.addrs("tap1"), vec!["198.18.46.2/24".to_string()]);
    assert!(nc.link("tap2").is_some());
    let ping = na.exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", "198.18.46.2"]);
    assert!(
        ping.status.success(),
        "the declared xconnect carries traffic"
    );
    let bd: Value = serde_json::from_str(&d.ok(&["bridge", "show", "bd1"])).expect("json");
    assert_eq!(bd["interfaces"][0], "tap2");
    drop(d);

    // A declaration the kernel refuses stops the start, names the line, and
    // what the start had created is gone again.
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("decl.toml");
    let bad = format!(
        "[[interface]]\nid = 5\nhost_ns = \"{a}\"\nhost_if_name = \"dcl-ok\"\n\n\
         [[interface]]\nid = 6\nhost_ns = \"vt-no-such-ns-{u}\"\n",
        a = na.name,
        u = vtap_testkit::unique()
    );
    let missing_id = "[[interface]]\nhost_ns = \"x\"\n".to_string();
    for (text, want) in [
        (bad, "decl.toml line 6: [[interface]]: host-ns"),
        (missing_id, "decl.toml line 1: [[interface]]: needs an id"),
    ] {
        std::fs::write(&cfg, &text).expect("write");
        let out = Command::new(VTAP)
            .env("RUST_LOG", "off") // the log lines of the start; the error stays
            .args(["--socket", &dir.path().join("s").display().to_string()])
            .arg("daemon")
            .arg("--config")
            .arg(&cfg)
            .output()
            .expect("run");
        let line = one_line_error(&out);
        assert!(line.contains(want), "{line}");
        assert!(
            na.link("dcl-ok").is_none(),
            "the first declaration was undone"
        );
    }
}

#[test]
fn stopping_the_daemon_removes_all_but_persistent_taps() {
    let ns = TestNs::new("stop");
    let mut d = Daemon::start(None);
    let (plain, kept) = (ifname("vn"), ifname("vk"));
    d.ok(&["create", "--host-ns", &ns.name, "--host-if-name", &plain]);
    d.ok(&[
        "create",
        "--host-ns",
        &ns.name,
        "--host-if-name",
        &kept,
        "--persist",
        "--gso",
    ]);
    assert!(d.stop().success());
    assert!(
        ns.link(&plain).is_none(),
        "a plain tap goes with the daemon"
    );
    assert!(ns.link(&kept).is_some(), "a persistent tap stays");

    // A new daemon attaches to it; the offload mask is set afresh.
    let d2 = Daemon::start(None);
    let out = d2.ok(&[
        "create",
        "--host-ns",
        &ns.name,
        "--host-if-name",
        &kept,
        "--attach",
    ]);
    assert_eq!(out.trim(), "tap0");
    assert_eq!(ns.ethtool_k(&kept)["tcp-segmentation-offload"], "off");
    d2.ok(&["delete", "tap0"]);
    assert!(ns.link(&kept).is_none());
}

/// The host side of one interface as the kernel shows it.
fn host_side(ns: &TestNs, name: &str) -> (Value, Value, Vec<String>, Vec<(String, String)>) {
    let link = ns.link(name).expect("link");
    (
        link["ifindex"].clone(),
        link["address"].clone(),
        ns.addrs(name),
        ns.default_routes(false),
    )
}

#[test]
fn kill_9_under_traffic_then_restart_keeps_everything() {
    let (na, nb) = (TestNs::new("k9a"), TestNs::new("k9b"));
    let (ha, hb) = (ifname("k9a"), ifname("k9b"));
    let mut d = Daemon::start(None);
    for (ns, host, ip, gw) in [
        (&na, &ha, "198.18.44.1/24", "198.18.44.2"),
        (&nb, &hb, "198.18.44.2/24", "198.18.44.1"),
    ] {
        d.ok(&[
            "create",
            "--host-ns",
            &ns.name,
            "--host-if-name",
            host,
            "--host-ip4-addr",
            ip,
            "--host-ip4-gw",
            gw,
            "--persist",
            "--gso",
        ]);
    }
    d.ok(&["xconnect", "tap0", "tap1"]);
    d.ok(&["set", "tap0", "rx-mode", "adaptive"]);
    let before = (host_side(&na, &ha), host_side(&nb, &hb));
    let shown: Vec<Value> = d.show_json();
    let hw = |v: &[Value], i: usize| v[i]["hw_addr"].clone();

    // Traffic runs while the daemon is killed.
    let ping = Command::new("ip")
        .args(["netns", "exec", &na.name, "ping", "-i", "0.02", "-w", "8"])
        .arg("198.18.44.2")
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill has no memory effects; the pid is our live child.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = d.child.wait();
    std::thread::sleep(Duration::from_millis(300));

    // The host side never saw the interfaces go.
    assert_eq!((host_side(&na, &ha), host_side(&nb, &hb)), before);

    // A new daemon on the same socket brings everything back.
    let d2 = Daemon::start_with(None, Some(d.socket.clone()), |c| c);
    let again = d2.show_json();
    assert_eq!(again.len(), 2, "{again:?}");
    for i in 0..2 {
        assert_eq!(again[i]["name"], shown[i]["name"]);
        assert_eq!(again[i]["host_if_name"], shown[i]["host_if_name"]);
        assert_eq!(hw(&again, i), hw(&shown, i), "the data-plane MAC is kept");
        assert_eq!(again[i]["gso"], true);
        assert_eq!(again[i]["attached"], true);
        assert_eq!(again[i]["host_ip4_addr"], shown[i]["host_ip4_addr"]);
        assert_eq!(again[i]["host_ip4_gw"], shown[i]["host_ip4_gw"]);
    }
    assert_eq!(
        again[0]["datapath"]["rx"][0]["mode"], "adaptive",
        "rx mode restored"
    );
    let x: Value = serde_json::from_str(&d2.ok(&["xconnect", "--list"])).expect("json");
    assert_eq!(
        (x[0]["a"].as_str(), x[0]["b"].as_str()),
        (Some("tap0"), Some("tap1"))
    );
    assert_eq!(
        ns_ethtool_tso(&na, &ha),
        "on",
        "offloads set again on the re-attached queues"
    );

    // Traffic resumes: the ping that ran across the kill sees replies after
    // it, and a new one loses nothing.
    let out = ping.wait_with_output().expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    let answered: Vec<u64> = text
        .lines()
        .filter_map(|l| l.split("icmp_seq=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect();
    let last = answered.iter().copied().max().unwrap_or(0);
    // 8 s at 50/s is ~400 requests; the kill came after ~25 of them.
    assert!(
        answered.iter().any(|&s| s < 20) && last > 300,
        "replies before the kill and after the restart: {} answered, last seq {last}",
        answered.len()
    );
    let after = na.exec("ping", &["-c", "5", "-i", "0.1", "-W", "2", "198.18.44.2"]);
    let text = String::from_utf8_lossy(&after.stdout);
    assert!(
        text.contains("5 packets transmitted, 5 received"),
        "traffic resumes, every request answered: {text}"
    );
    assert_eq!((host_side(&na, &ha), host_side(&nb, &hb)), before);

    // Removing them for good leaves nothing.
    d2.ok(&["xconnect", "tap0", "--delete"]);
    d2.ok(&["delete", "tap0"]);
    d2.ok(&["delete", "tap1"]);
    assert!(na.link(&ha).is_none() && nb.link(&hb).is_none());
    drop(d2);
    let d3 = Daemon::start_with(None, Some(d.socket.clone()), |c| c);
    assert!(d3.show_json().is_empty(), "the state file forgot them");
}

fn ns_ethtool_tso(ns: &TestNs, name: &str) -> String {
    ns.ethtool_k(name)["tcp-segmentation-offload"].clone()
}

#[test]
fn without_cap_net_admin_the_error_says_so() {
    // The daemon runs as nobody with no capabilities; its socket directory
    // must be writable by it.
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let socket = dir.path().join("u.sock");
    let d = Daemon::start_with(None, Some(socket), |a| {
        let mut w: Vec<String> = [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        w.extend(a);
        w
    });
    let out = d.vtap(&["create", "--host-if-name", &ifname("vu")]);
    let line = one_line_error(&out);
    assert!(line.contains("needs CAP_NET_ADMIN"), "{line}");
    let ns = TestNs::new("priv");
    let out = d.vtap(&["create", "--host-ns", &ns.name]);
    let line = one_line_error(&out);
    assert!(line.contains("permission denied entering it"), "{line}");
    drop(d);
    drop(dir);
}

#[test]
fn without_dev_net_tun_the_error_says_so() {
    // A private mount namespace in which /dev/net is an empty tmpfs.
    let d = Daemon::start_with(None, None, |a| {
        let script = format!("mount -t tmpfs none /dev/net && exec {}", a.join(" "));
        vec![
            "unshare".into(),
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-c".into(),
            script,
        ]
    });
    let name = ifname("vt");
    let out = d.vtap(&["create", "--host-if-name", &name]);
    let line = one_line_error(&out);
    assert!(
        line.contains("cannot open /dev/net/tun (is the tun module loaded?)"),
        "{line}"
    );
    assert!(!Path::new("/sys/class/net").join(&name).exists());
}

#[test]
fn xconnect_through_the_daemon() {
    let (na, nb) = (TestNs::new("cxa"), TestNs::new("cxb"));
    let d = Daemon::start(None);
    d.ok(&[
        "create",
        "--host-ns",
        &na.name,
        "--host-ip4-addr",
        "198.18.0.1/24",
        "--gso",
    ]);
    d.ok(&[
        "create",
        "--host-ns",
        &nb.name,
        "--host-ip4-addr",
        "198.18.0.2/24",
        "--gso",
        // One end on rings: a cross-connect joins any two backends.
        "--backend",
        "userspace",
    ]);
    for (args, want) in [
        (
            &["xconnect", "tap0", "tap0"][..],
            "cannot be cross-connected with itself",
        ),
        (
            &["xconnect", "tap0", "tap9"][..],
            "interface 'tap9': no such interface",
        ),
        (&["xconnect", "tap0"][..], "give IF1 IF2"),
    ] {
        let line = one_line_error(&d.vtap(args));
        assert!(line.contains(want), "{args:?}: {line}");
    }
    d.ok(&["xconnect", "tap0", "tap1"]);
    let ping = na.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // /metrics, read the way an operator does: per-queue counters match
    // `show --json`, and the API requests so far are counted by route.
    let url = "http://localhost/metrics";
    let sock = d.socket.display().to_string();
    let text = vtap_testkit::run_ok("curl", &["-sf", "--unix-socket", &sock, url]);
    let sample = |name: &str, labels: &str| -> u64 {
        let key = if labels.is_empty() {
            format!("{name} ")
        } else {
            format!("{name}{{{labels}}} ")
        };
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    let rx0 = sample(
        "vtap_queue_packets_total",
        "iface=\"tap0\",direction=\"rx\",queue=\"0\"",
    );
    assert!(rx0 >= 3, "the pings were received: {rx0}");
    let shown = d.show_json()[0]["datapath"]["rx"][0]["counters"]["packets"]
        .as_u64()
        .expect("packets");
    assert!(shown >= rx0, "show and metrics agree ({shown} >= {rx0})");
    assert_eq!(sample("vtap_interfaces", ""), 2);
    let creates = sample(
        "vtap_api_requests_total",
        "route=\"/v1/taps\",method=\"POST\",status=\"201\"",
    );
    assert_eq!(creates, 2);
    assert!(text.contains("vtap_queue_drops_total{"), "{text}");
    assert!(text.contains("vtap_offload_total{"), "{text}");
    // Ring gauges for the ring backend only (tap0 is direct: no ring).
    assert!(
        text.contains("vtap_ring_in_flight{iface=\"tap1\",direction=\"rx\""),
        "{text}"
    );
    assert!(
        !text.contains("vtap_ring_in_flight{iface=\"tap0\""),
        "{text}"
    );
    let list: Value = serde_json::from_str(&d.ok(&["xconnect", "--list"])).expect("json");
    assert_eq!(list[0]["a"], "tap0");
    assert_eq!(list[0]["b"], "tap1");
    let line = one_line_error(&d.vtap(&["delete", "tap1"]));
    assert!(line.contains("remove the xconnect first"), "{line}");
    let line = one_line_error(&d.vtap(&["xconnect", "tap1", "tap0"]));
    assert!(line.contains("already cross-connected"), "{line}");
    d.ok(&["xconnect", "tap1", "--delete"]);
    let ping = na.exec("ping", &["-c", "1", "-W", "1", "198.18.0.2"]);
    assert!(!ping.status.success(), "no path after removal");
    d.ok(&["delete", "tap0"]);
    d.ok(&["delete", "tap1"]);
}

#[test]
fn demo_reports_and_leaves_nothing() {
    vtap_testkit::require_root();
    // iperf3 (installed by scripts/setup.sh) and the built-in pair.
    for (extra, tool) in [
        (None, "(iperf3)"),
        (Some("--builtin"), "(built-in sender/receiver)"),
    ] {
        let mut args = vec!["demo", "--duration", "1"];
        args.extend(extra);
        let out = Command::new(VTAP).args(&args).output().expect("run demo");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for want in ["cross-connected by", tool, "cleaned up"] {
            assert!(stdout.contains(want), "{want}: {stdout}");
        }
        // The figures themselves: every echo answered, a non-zero rate.
        let answered = stdout
            .split("round trip (UDP echo, ")
            .nth(1)
            .and_then(|r| r.split(" of 50 answered").next())
            .and_then(|n| n.parse::<u32>().ok());
        assert_eq!(answered, Some(50), "{stdout}");
        let gbits = stdout
            .lines()
            .find(|l| l.contains("Gbit/s over"))
            .and_then(|l| l.split(": ").nth(1))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok());
        assert!(
            gbits.is_some_and(|g| g > 0.1),
            "a real throughput: {stdout}"
        );
    }
    let listed = vtap_testkit::run_ok("ip", &["netns", "list"]);
    assert!(
        !listed.contains("vtap-demo-"),
        "demo namespaces left: {listed}"
    );
}

#[test]
fn an_idle_daemon_with_50_interfaces_uses_no_cpu() {
    let ns = TestNs::new("idle50");
    let d = Daemon::start(None);
    for _ in 0..50 {
        d.ok(&["create", "--host-ns", &ns.name]);
    }
    let ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid())).expect("stat");
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = ticks();
    std::thread::sleep(Duration::from_secs(3));
    let used = ticks() - before;
    // Clock ticks are 10 ms: 3 s of one busy core would be ~300.
    assert!(
        used <= 6,
        "idle daemon used {used} ticks in 3 s with 50 interfaces"
    );
    eprintln!("idle daemon with 50 interfaces: {used} ticks (10 ms) in 3 s");
}

#[test]
fn bridge_through_the_daemon() {
    let nss = [TestNs::new("cb1"), TestNs::new("cb2"), TestNs::new("cb3")];
    let d = Daemon::start(None);
    for (i, ns) in nss.iter().enumerate() {
        d.ok(&[
            "create",
            "--host-ns",
            &ns.name,
            "--host-ip4-addr",
            &format!("198.18.5.{}/24", i + 1),
        ]);
    }
    d.ok(&["bridge", "create", "bd1"]);
    for t in ["tap0", "tap1", "tap2"] {
        d.ok(&["bridge", "add", "bd1", t]);
    }
    for (args, want) in [
        (&["bridge", "create", "bd1"][..], "already exists"),
        (&["bridge", "create", "../x"][..], "a name is"),
        (&["bridge", "add", "bd2", "tap0"][..], "no such bridge"),
        (&["bridge", "delete", "bd1"][..], "remove them first"),
        (&["delete", "tap2"][..], "in bridge bd1"),
        (&["xconnect", "tap0", "tap1"][..], "bridge bd1"),
    ] {
        let line = one_line_error(&d.vtap(args));
        assert!(line.contains(want), "{args:?}: {line}");
    }
    let ping = nss[0].exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", "198.18.5.3"]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let bd: Value = serde_json::from_str(&d.ok(&["show", "bridge", "bd1"])).expect("json");
    assert_eq!(
        bd["interfaces"],
        serde_json::json!(["tap0", "tap1", "tap2"])
    );
    let learned: Vec<&str> = bd["macs"]
        .as_array()
        .expect("macs")
        .iter()
        .filter_map(|m| m["iface"].as_str())
        .collect();
    assert!(
        learned.contains(&"tap0") && learned.contains(&"tap2"),
        "{bd}"
    );
    for t in ["tap0", "tap1", "tap2"] {
        d.ok(&["bridge", "remove", "bd1", t]);
    }
    d.ok(&["bridge", "delete", "bd1"]);
    assert_eq!(d.ok(&["bridge", "show"]).trim(), "[]");
}

#[test]
fn capture_a_ping_to_pcap_and_read_it_with_tcpdump() {
    let (na, nb) = (TestNs::new("cpa"), TestNs::new("cpb"));
    let d = Daemon::start(None);
    d.ok(&[
        "create",
        "--host-ns",
        &na.name,
        "--host-ip4-addr",
        "198.18.6.1/24",
    ]);
    d.ok(&[
        "create",
        "--host-ns",
        &nb.name,
        "--host-ip4-addr",
        "198.18.6.2/24",
    ]);
    d.ok(&["xconnect", "tap0", "tap1"]);
    let dir = tempfile::tempdir().expect("tmp");
    let pcap = dir.path().join("tap0.pcap");
    let file = pcap.to_str().expect("utf8");
    for (args, want) in [
        (
            &["capture", "tap0", "sideways", "--file", file][..],
            "direction 'sideways'",
        ),
        (&["capture", "tap0"][..], "--file"),
        (&["capture", "tap0", "--stop"][..], "no capture is running"),
        (
            &["capture", "tap9", "--file", file][..],
            "no such interface",
        ),
    ] {
        let line = one_line_error(&d.vtap(args));
        assert!(line.contains(want), "{args:?}: {line}");
    }
    // The CLI writes the file from the daemon's stream, and ends with the count.
    let cap = d.spawn(&["capture", "tap0", "both", "--file", file, "--count", "8"]);
    d.wait_for_capture("tap0");
    let ping = na.exec("ping", &["-c", "3", "-i", "0.2", "-W", "2", "198.18.6.2"]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let out = cap.wait_with_output().expect("capture ends at its count");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("8 frames captured"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = vtap_testkit::run_ok("tcpdump", &["-nr", file]);
    assert!(dump.contains("ARP, Request who-has 198.18.6.2"), "{dump}");
    assert!(
        dump.contains("198.18.6.1 > 198.18.6.2: ICMP echo request"),
        "{dump}"
    );
    assert!(
        dump.contains("198.18.6.2 > 198.18.6.1: ICMP echo reply"),
        "{dump}"
    );
    assert_eq!(dump.lines().count(), 8, "stopped at the count: {dump}");
    // A second, independent reader.
    let shark = vtap_testkit::run_ok("tshark", &["-n", "-r", file]);
    assert_eq!(shark.lines().count(), 8, "{shark}");
    assert!(
        shark.contains("Echo (ping) request") && shark.contains("Echo (ping) reply"),
        "{shark}"
    );
    assert!(shark.contains("Who has 198.18.6.2?"), "{shark}");
    let line = one_line_error(&d.vtap(&["capture", "tap0", "--stop"]));
    assert!(
        line.contains("no capture is running"),
        "ended by itself: {line}"
    );

    // `--file -` pipes into tcpdump; `--stop` from elsewhere ends the stream.
    let pipe = Command::new("sh")
        .args([
            "-c",
            &format!("{VTAP} capture tap0 rx --file - | tcpdump -nr - 2>/dev/null"),
        ])
        .env("VTAP_SOCKET", &d.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pipe");
    d.wait_for_capture("tap0");
    let line = one_line_error(&d.vtap(&["capture", "tap0", "--file", file]));
    assert!(line.contains("already running"), "{line}");
    let ping = na.exec("ping", &["-c", "2", "-i", "0.2", "-W", "2", "198.18.6.2"]);
    assert!(ping.status.success());
    d.ok(&["capture", "tap0", "--stop"]);
    let out = pipe.wait_with_output().expect("the stream ends on --stop");
    let dump = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        dump.matches("ICMP echo request").count(),
        2,
        "rx only, every request: {dump}"
    );
    assert!(!dump.contains("echo reply"), "rx only: {dump}");
    d.ok(&["xconnect", "tap0", "--delete"]);
}

#[test]
fn rx_mode_changes_how_the_forwarding_worker_waits() {
    let (na, nb) = (TestNs::new("rma"), TestNs::new("rmb"));
    let d = Daemon::start(Some("[forwarding]\nworkers = 1\n"));
    d.ok(&["create", "--host-ns", &na.name]);
    d.ok(&["create", "--host-ns", &nb.name]);
    d.ok(&["xconnect", "tap0", "tap1"]);
    let line = one_line_error(&d.vtap(&["set", "tap0", "rx-mode", "busy"]));
    assert!(line.contains("rx-mode 'busy'"), "{line}");
    let ticks = || -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid())).expect("stat");
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0)
    };
    let busy_for_a_second = || {
        std::thread::sleep(Duration::from_millis(300));
        let t = ticks();
        std::thread::sleep(Duration::from_secs(1));
        ticks() - t
    };
    d.ok(&["set", "tap0", "rx-mode", "polling"]);
    let v: Value = serde_json::from_str(&d.ok(&["show", "tap0", "--json"])).expect("json");
    assert_eq!(v[0]["datapath"]["rx"][0]["mode"], "polling");
    let polling = busy_for_a_second();
    d.ok(&["set", "tap0", "rx-mode", "interrupt"]);
    let interrupt = busy_for_a_second();
    eprintln!("idle link, 1 s: polling {polling} ticks, interrupt {interrupt} ticks");
    // A spinning worker shows ~100 ticks alone; other tests share the 2 CPUs.
    assert!(polling >= 20, "a polling worker spins: {polling} ticks");
    assert!(
        interrupt <= 3,
        "an interrupt-mode worker sleeps: {interrupt} ticks"
    );
    d.ok(&["xconnect", "tap0", "--delete"]);
}

#[test]
fn several_interfaces_are_deleted_in_one_command() {
    let nss: Vec<TestNs> = (0..3).map(|_| TestNs::new("cdm")).collect();
    let d = Daemon::start(None);
    let mut names = vec![];
    for ns in &nss {
        let name = d.ok(&["create", "--host-ns", &ns.name]).trim().to_string();
        names.push(name);
    }
    for ns in &nss {
        assert_eq!(ns.link_names().len(), 2, "lo and the tap");
    }
    let mut args = vec!["delete"];
    args.extend(names.iter().map(String::as_str));
    args.push("tap77");
    let out = d.vtap(&args);
    assert!(!out.status.success(), "one of four could not be deleted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("interface 'tap77': no such interface"),
        "{err}"
    );
    assert!(err.contains("1 of 4 not deleted"), "{err}");
    for ns in &nss {
        assert_eq!(ns.link_names(), ["lo"], "the tap gone from the kernel");
    }
    assert!(d.show_json().is_empty(), "and from the daemon");
}
