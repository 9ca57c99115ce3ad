//! A change the daemon cannot make durable is refused, and a daemon killed
//! at any point of a create or delete leaves nothing behind that vtap and
//! the kernel disagree on. Every check reads the kernel back (`ip -j`).
//! Addresses: 198.18.11.0/24 only.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use vtap::fault::Step;
use vtap_testkit::{ifname, wait_until, TestNs};

mod common;

use common::VTAP;

/// A daemon on `socket` with `config`; killed or stopped on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(socket: &Path, config: Option<&Path>) -> Self {
        let d = Self::spawn(socket, config);
        common::wait_for_socket(&d.socket);
        d
    }

    fn spawn(socket: &Path, config: Option<&Path>) -> Self {
        vtap_testkit::require_root();
        let mut cmd = Command::new(VTAP);
        cmd.arg("--socket").arg(socket).arg("daemon");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn daemon");
        Self {
            child,
            socket: socket.to_path_buf(),
        }
    }

    fn vtap(&self, args: &[&str]) -> Output {
        common::vtap(&self.socket, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        common::ok(&self.socket, args)
    }

    fn refused(&self, args: &[&str]) -> String {
        let out = self.vtap(args);
        assert!(!out.status.success(), "vtap {args:?} should be refused");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    }

    fn curl(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&self.socket)
            .args(["-X", method, "-H", "content-type: application/json"])
            .args(["-d", body])
            .arg(format!("http://localhost{path}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn show(&self) -> Vec<Value> {
        let v: Value = serde_json::from_str(&self.ok(&["show", "--json"])).expect("json");
        v.as_array().expect("list").clone()
    }

    /// Waits for the process to end (it was killed by its own fault).
    fn wait_dead(&mut self) {
        let dead = wait_until(Duration::from_secs(10), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        assert!(dead, "the daemon was to die");
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill has no memory effects; the pid is our live child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// TAP/TUN links in `ns`, by name.
fn kernel_taps(ns: &TestNs) -> Vec<String> {
    let mut v: Vec<String> = ns
        .links()
        .into_iter()
        .filter(|l| l["linkinfo"]["info_kind"].as_str() == Some("tun"))
        .filter_map(|l| l["ifname"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

/// vtap's interfaces in `ns`, by host name, with their state.
fn vtap_taps(d: &Daemon, ns: &TestNs) -> Vec<String> {
    let mut v: Vec<String> = d
        .show()
        .iter()
        .filter(|t| t["host_ns"].as_str() == Some(ns.name.as_str()))
        .map(|t| {
            assert_eq!(t["state"], "attached", "{t}");
            t["host_if_name"].as_str().expect("name").to_string()
        })
        .collect();
    v.sort();
    v
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("vtap.toml");
    std::fs::write(&p, text).expect("config");
    p
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vtap-full-{}", vtap_testkit::unique()));
        std::fs::create_dir_all(&dir).expect("dir");
        vtap_testkit::run_ok(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "none"]
                .into_iter()
                .chain([dir.to_str().expect("utf8")])
                .collect::<Vec<_>>(),
        );
        Self(dir)
    }

    /// Fills it up, the last page of the state file's journal too (blank
    /// lines, which a reader skips, one byte at a time until the disk
    /// refuses): an append that fits a page the file already has would
    /// succeed on a full tmpfs, and be durable.
    fn fill(&self) {
        use std::io::Write;
        let of = format!("of={}", self.0.join("fill").display());
        let _ = vtap_testkit::run("dd", &["if=/dev/zero", &of, "bs=4k"]);
        let journal = self.0.join("vtap.state.json.journal");
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(journal) {
            while f.write_all(b"\n").and_then(|()| f.sync_data()).is_ok() {}
        }
    }

    fn free(&self) {
        let _ = std::fs::remove_file(self.0.join("fill"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = vtap_testkit::run("umount", &["-l", self.0.to_str().unwrap_or("/nonexistent")]);
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_change_that_cannot_be_saved_is_undone_and_refused() {
    let ns = TestNs::new("full");
    let dir = tempfile::tempdir().expect("tmp");
    let fs = Tmpfs::new("256k");
    let state = fs.0.join("vtap.state.json");
    let cfg = write_config(
        dir.path(),
        &format!("state_file = \"{}\"\n", state.display()),
    );
    let d = Daemon::start(&dir.path().join("vtap.sock"), Some(&cfg));
    let h0 = ifname("fu");
    d.ok(&["create", "--host-ns", &ns.name, "--host-if-name", &h0]);
    d.ok(&["bridge", "create", "bd0"]);
    // Host uplinks, in a namespace of their own: one open, one to refuse.
    let lan = TestNs::new("fulan");
    for (up, peer) in [("upa", "pa"), ("upb", "pb")] {
        lan.ip(&["link", "add", up, "type", "veth", "peer", "name", peer]);
        lan.ip(&["link", "set", up, "up"]);
    }
    d.ok(&["host-interface", "create", "upa", "--host-ns", &lan.name]);
    let promisc = |ifn: &str| lan.ip_json(&["-d", "link", "show", ifn])[0]["promiscuity"].clone();
    let saved_before = std::fs::read(&state).expect("state");

    // A persistent tap made by iproute2, for an attach that cannot be saved:
    // refused before it touches the interface (its intent cannot be
    // written), which stays as it was.
    let ha = ifname("fa");
    ns.ip(&["tuntap", "add", "dev", &ha, "mode", "tap", "vnet_hdr"]);
    fs.fill();
    let line = d.refused(&[
        "create",
        "--attach",
        "--host-ns",
        &ns.name,
        "--host-if-name",
        &ha,
    ]);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        ns.link(&ha).is_some(),
        "the attached interface still exists"
    );
    ns.ip(&["link", "del", "dev", &ha]);
    let h1 = ifname("fu");
    let cases: &[&[&str]] = &[
        &[
            "create",
            "--host-ns",
            &ns.name,
            "--host-if-name",
            &h1,
            "--host-ip4-addr",
            "198.18.11.1/24",
        ],
        &["delete", "tap0"],
        &["bridge", "create", "bd1"],
        &["bridge", "add", "bd0", "tap0"],
        &["bridge", "delete", "bd0"],
        &["set", "tap0", "rx-mode", "polling"],
        &["set", "tap0", "mtu", "1400"],
        &["set", "tap0", "offload", "gso-enable"],
        &["host-interface", "create", "upb", "--host-ns", &lan.name],
        &["delete", "host-upa"],
        &["set", "host-upa", "rx-mode", "polling"],
    ];
    for args in cases {
        let line = d.refused(args);
        assert!(
            line.contains(&state.display().to_string()) && line.contains("No space left on device"),
            "{args:?}: {line}"
        );
    }
    // Nothing changed, in vtap or in the kernel, and the file is intact.
    assert_eq!(kernel_taps(&ns), vec![h0.clone()]);
    assert_eq!(vtap_taps(&d, &ns), vec![h0.clone()]);
    let t = &d.show()[0];
    assert_eq!(t["host_mtu_size"], 1500, "MTU put back");
    assert_eq!(t["gso"], false, "offload put back");
    assert_eq!(
        t["datapath"]["rx"][0]["mode"], "interrupt",
        "rx mode put back"
    );
    let mtu = ns.link(&h0).expect("link")["mtu"].clone();
    assert_eq!(mtu, 1500, "the kernel's MTU put back");
    let bridges: Value = serde_json::from_str(&d.ok(&["bridge", "show"])).expect("json");
    assert_eq!(bridges.as_array().map(Vec::len), Some(1), "{bridges}");
    assert_eq!(bridges[0]["interfaces"], serde_json::json!([]));
    assert_eq!(std::fs::read(&state).expect("state"), saved_before);
    // The uplinks: the refused one never opened (its interface not
    // promiscuous), the one whose delete was refused is open as before.
    assert_eq!((promisc("upb"), promisc("upa")), (0.into(), 1.into()));
    let ups: Vec<Value> = d
        .show()
        .into_iter()
        .filter(|v| v["kind"] == "host-interface")
        .collect();
    assert_eq!(ups.len(), 1, "{ups:?}");
    assert_eq!(ups[0]["name"], "host-upa");
    assert_eq!(
        ups[0]["datapath"]["rx"][0]["mode"], "interrupt",
        "rx mode put back"
    );

    fs.free();
    d.ok(&["delete", "host-upa"]);
    assert_eq!(promisc("upa"), 0);
    d.ok(&["delete", "tap0"]);
    assert!(kernel_taps(&ns).is_empty());
}

/// Creates a persistent tap, then deletes it, with the daemon killed
/// (SIGKILL, by the fault seam) just before each step in turn; after a
/// restart, vtap and the kernel must agree, with nothing half-made left.
#[test]
fn kill_9_at_every_step_of_a_create_or_delete_leaves_vtap_and_the_kernel_agreeing() {
    let ns = TestNs::new("k9s");
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("vtap.sock");
    let cfg = write_config(dir.path(), "[debug]\nfault_injection = true\n");
    let host = ifname("k9");
    ns.ip(&["link", "add", "k9br", "type", "bridge"]);
    // Every option, so that every step runs (a bridged tap takes no
    // addresses: the set-bridge step gets its own).
    let create_with = |d: &Daemon, step: Step| {
        let mut args = vec![
            "create",
            "--persist",
            "--host-ns",
            &ns.name,
            "--host-if-name",
            &host,
            "--host-mac-addr",
            "02:fe:00:00:11:01",
            "--host-mtu-size",
            "1400",
        ];
        if step == Step::SetBridge {
            args.extend(["--host-bridge", "k9br"]);
        } else {
            args.extend([
                "--host-ip4-addr",
                "198.18.11.1/24",
                "--host-ip4-gw",
                "198.18.11.254",
                "--host-ip6-addr",
                "2001:db8:11::1/64",
                "--host-ip6-gw",
                "2001:db8:11::fe",
                "--host-addr",
                "198.18.12.1/24",
                "--host-route",
                "198.18.80.0/24 via 198.18.12.254",
            ]);
        }
        d.vtap(&args)
    };
    let create = |d: &Daemon| create_with(d, Step::AllocateId);
    let arm = |d: &Daemon, step: Step| {
        let body = format!("{{\"step\": \"{}\", \"action\": \"kill\"}}", step.name());
        let (code, text) = d.curl("PUT", "/v1/debug/fault", &body);
        assert_eq!(code, 204, "{text}");
    };
    for &step in Step::CREATE {
        let mut d = Daemon::start(&socket, Some(&cfg));
        arm(&d, step);
        let out = create_with(&d, step);
        assert!(!out.status.success(), "{step}: the daemon died mid-create");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("step"), "{step}: died, not refused: {err}");
        d.wait_dead();
        let d = Daemon::start(&socket, Some(&cfg));
        let (k, v) = (kernel_taps(&ns), vtap_taps(&d, &ns));
        assert_eq!(k, v, "{step}: kernel {k:?} vs vtap {v:?}");
        assert!(
            k.is_empty(),
            "{step}: the interrupted create was rolled back"
        );
    }
    for &step in Step::DELETE {
        let mut d = Daemon::start(&socket, Some(&cfg));
        let out = create(&d);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        arm(&d, step);
        let out = d.vtap(&["delete", "tap0"]);
        assert!(!out.status.success(), "{step}: the daemon died mid-delete");
        d.wait_dead();
        let d = Daemon::start(&socket, Some(&cfg));
        let (k, v) = (kernel_taps(&ns), vtap_taps(&d, &ns));
        assert_eq!(k, v, "{step}: kernel {k:?} vs vtap {v:?}");
        assert!(k.is_empty(), "{step}: the interrupted delete was finished");
    }
}

#[test]
fn a_persisted_interface_that_cannot_be_reattached_is_kept_shown_retried_and_deletable() {
    let ns = TestNs::new("det");
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("vtap.sock");
    let host = ifname("dt");
    let mut d = Daemon::start(&socket, None);
    d.ok(&[
        "create",
        "--persist",
        "--host-ns",
        &ns.name,
        "--host-if-name",
        &host,
        "--host-ip4-addr",
        "198.18.11.2/24",
    ]);
    d.ok(&["bridge", "create", "bd0"]);
    d.ok(&["bridge", "add", "bd0", "tap0"]);
    d.stop();
    // Every restart below fails its first re-attach (open-queues, once).
    let faulty = |interval: u64| {
        write_config(
            dir.path(),
            &format!(
                "reattach_interval_secs = {interval}\n[debug]\nfault_injection = true\n\
                 start_fault = {{ step = \"open-queues\", errno = 16 }}\n"
            ),
        )
    };

    // Detached, shown with its reason, still in the kernel and in the file.
    let mut d = Daemon::start(&socket, Some(&faulty(3600)));
    let t = &d.show()[0];
    assert_eq!(t["state"], "detached", "{t}");
    assert!(
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("open-queues")),
        "{t}"
    );
    assert_eq!(kernel_taps(&ns), vec![host.clone()]);
    d.ok(&["bridge", "create", "bd1"]); // a save
                                        // The base file and its journal (changes since the base was written).
    let base = std::fs::read_to_string(dir.path().join("vtap.state.json")).expect("state");
    let journal =
        std::fs::read_to_string(dir.path().join("vtap.state.json.journal")).unwrap_or_default();
    assert!(
        base.contains(&host) || journal.contains(&host),
        "kept in the state file"
    );
    let line = d.refused(&["set", "tap0", "mtu", "1400"]);
    assert!(line.contains("detached"), "{line}");
    // On request: back, and back in its bridge.
    let (code, text) = d.curl("POST", "/v1/taps/tap0/attach", "");
    assert_eq!(code, 200, "{text}");
    assert_eq!(d.show()[0]["state"], "attached");
    let bd: Value = serde_json::from_str(&d.ok(&["show", "bridge", "bd0"])).expect("json");
    assert_eq!(bd["interfaces"], serde_json::json!(["tap0"]), "{bd}");
    d.stop();

    // By the timer.
    let mut d = Daemon::start(&socket, Some(&faulty(1)));
    assert!(
        wait_until(Duration::from_secs(10), || d.show()[0]["state"]
            == "attached"),
        "re-attached by the timer"
    );
    d.stop();

    // Deleted while detached: gone from vtap and from the kernel.
    let d = Daemon::start(&socket, Some(&faulty(3600)));
    assert_eq!(d.show()[0]["state"], "detached");
    d.ok(&["delete", "tap0"]);
    assert!(d.show().is_empty());
    assert!(kernel_taps(&ns).is_empty());
}

#[test]
fn one_state_file_one_daemon() {
    let dir = tempfile::tempdir().expect("tmp");
    // Two sockets in one directory: two state files.
    let a = Daemon::start(&dir.path().join("a.sock"), None);
    let b = Daemon::start(&dir.path().join("b.sock"), None);
    a.ok(&["bridge", "create", "only-a"]);
    assert!(dir.path().join("a.state.json").exists());
    assert!(dir.path().join("b.state.json").exists());
    let bridges: Value = serde_json::from_str(&b.ok(&["bridge", "show"])).expect("json");
    assert_eq!(bridges, serde_json::json!([]));
    // Two daemons told to share one file: the second refuses, naming it
    // and the holder.
    let cfg = write_config(
        dir.path(),
        &format!(
            "state_file = \"{}\"\n",
            dir.path().join("a.state.json").display()
        ),
    );
    let mut c = Daemon::spawn(&dir.path().join("c.sock"), Some(&cfg));
    let status = c.child.wait().expect("wait");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(c.child.stderr.as_mut().expect("stderr"), &mut err)
        .expect("stderr");
    let pid = a.child.id().to_string();
    assert!(
        err.contains("a.state.json") && err.contains(&format!("pid {pid}")),
        "{err}"
    );
}
