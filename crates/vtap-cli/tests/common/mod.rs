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
