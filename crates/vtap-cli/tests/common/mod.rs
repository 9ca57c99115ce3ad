//! What the CLI test files share: running `vtap` against a daemon's socket.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// The binary under test.
pub const VTAP: &str = env!("CARGO_BIN_EXE_vtap");

/// Runs `vtap ARGS` against the daemon on `socket`.
pub fn vtap(socket: &Path, args: &[&str]) -> Output {
    Command::new(VTAP)
        .args(args)
        .env("VTAP_SOCKET", socket)
        .output()
        .expect("run vtap")
}

/// Runs `vtap ARGS`, which must succeed; its stdout.
pub fn ok(socket: &Path, args: &[&str]) -> String {
    let out = vtap(socket, args);
    assert!(
        out.status.success(),
        "vtap {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits (10 s at most) until a daemon answers on `socket`.
pub fn wait_for_socket(socket: &Path) {
    let up = vtap_testkit::wait_until(Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(socket).is_ok()
    });
    assert!(up, "daemon does not answer on its socket");
}

/// A daemon on `socket` (with `config`, if any); stopped on drop.
#[allow(dead_code)] // each test file uses what it needs
pub struct Daemon {
    child: std::process::Child,
    /// Its socket.
    pub socket: std::path::PathBuf,
}

#[allow(dead_code)]
impl Daemon {
    /// Starts one and waits until it answers.
    pub fn start(socket: &Path, config: Option<&Path>) -> Self {
        vtap_testkit::require_root();
        let mut cmd = Command::new(VTAP);
        cmd.arg("--socket").arg(socket).arg("daemon");
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn daemon");
        let d = Self {
            child,
            socket: socket.to_path_buf(),
        };
        wait_for_socket(socket);
        d
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `vtap ARGS` against it.
    pub fn vtap(&self, args: &[&str]) -> Output {
        vtap(&self.socket, args)
    }

    /// `vtap ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(&self.socket, args)
    }

    /// `vtap ARGS`, which must fail; its stderr, trimmed.
    pub fn refused(&self, args: &[&str]) -> String {
        let out = self.vtap(args);
        assert!(!out.status.success(), "vtap {args:?} should be refused");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    }

    /// `vtap show --json`.
    pub fn show(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["show", "--json"])).expect("json");
        v.as_array().expect("list").clone()
    }

    /// `kill -9`, and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and reaps it.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg(self.child.id().to_string())
                .status();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}
