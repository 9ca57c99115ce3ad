//! A real runtime: Debian's podman (4.3, CNI backend, runc) runs two
//! containers on a network whose conflist names `vtap-cni`; they reach each
//! other through vtap's bridge, and `podman rm` leaves nothing (no tap in
//! vtapd, no address held by host-local, no namespace). The containers'
//! root file system is busybox-static (no registry is reachable). Needs
//! root, podman, runc, containernetworking-plugins and busybox-static
//! (`scripts/setup.sh` installs them).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::Daemon;
use vtap_testkit::unique;

const PLUGIN: &str = env!("CARGO_BIN_EXE_vtap-cni");

/// podman with its own storage, configuration and networks under `dir`.
struct Podman<'a> {
    dir: &'a Path,
}

impl Podman<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let d = self.dir;
        Command::new("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .args(["--runtime", "runc"])
            .args(args)
            .output()
            .expect("run podman")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-af", "-t", "0"]);
    }
}

/// A root file system of busybox-static and its applets.
fn rootfs(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    for applet in ["sh", "ip", "ping", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    root
}

fn cni_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn podman_runs_two_containers_that_reach_each_other_through_vtap() {
    vtap_testkit::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let daemon = Daemon::start(&d.join("vtap.sock"), None);
    let bin = d.join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    std::fs::copy(PLUGIN, bin.join("vtap-cni")).expect("install the plugin");
    let nets = d.join("net.d");
    std::fs::create_dir(&nets).expect("mkdir");
    let net = format!("vtapnet{}", unique());
    let conflist = serde_json::json!({
        "cniVersion": "1.0.0", "name": net, "plugins": [{
            "type": "vtap-cni", "socket": daemon.socket, "bridge": "pods",
            "ipam": {"type": "host-local", "dataDir": d.join("ipam"),
                     "ranges": [[{"subnet": "198.18.121.0/24", "gateway": "198.18.121.1"}]]},
        }],
    });
    std::fs::write(nets.join(format!("{net}.conflist")), conflist.to_string()).expect("conflist");
    std::fs::write(
        d.join("containers.conf"),
        format!(
            "[containers]\ndefault_ulimits = []\n[network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"/usr/lib/cni\", \"{}\"]\nnetwork_config_dir = \"{}\"\n",
            bin.display(),
            nets.display()
        ),
    )
    .expect("containers.conf");
    let root = rootfs(d);
    let root = root.to_str().expect("utf-8");
    let netns_before = cni_netns();
    let podman = Podman { dir: d };

    let name = format!("vtap-c{}", unique());
    podman.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &net,
        "--rootfs",
        root,
        "/bin/sleep",
        "120",
    ]);
    let ip_fmt = format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}");
    let ip = podman.ok(&["inspect", &name, "--format", &ip_fmt]);
    assert!(ip.starts_with("198.18.121."), "host-local's address: {ip}");
    let taps = daemon.show();
    assert_eq!(taps.len(), 1, "one tap in vtapd: {taps:?}");
    assert_eq!(taps[0]["host_if_name"], "eth0");
    assert_eq!(taps[0]["labels"]["cni.vtap.io/network"], net.as_str());

    // A second container pings the first through vtap's bridge.
    let out = podman.ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        "--rootfs",
        root,
        "/bin/sh",
        "-c",
        &format!("ip -o addr show eth0; ping -c 2 -W 2 {ip}"),
    ]);
    assert!(out.contains("inet 198.18.121."), "{out}");
    assert!(out.contains("2 packets received"), "{out}");

    podman.ok(&["rm", "-f", "-t", "0", &name]);
    assert!(daemon.show().is_empty(), "podman rm left a tap");
    let held: Vec<String> = std::fs::read_dir(d.join("ipam").join(&net))
        .map(|r| {
            r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        held.iter().all(|f| f.parse::<std::net::IpAddr>().is_err()),
        "addresses held: {held:?}"
    );
    assert_eq!(cni_netns(), netns_before, "a namespace left");
}
