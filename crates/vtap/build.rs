//! Compiles the XDP program of af-xdp uplinks (`bpf/xsk_redirect.c`) into
//! BPF bytecode with clang, for `uplink::xdp` to embed and load.
//!
//! clang is found as `$VTAP_CLANG`, else `clang`, else `clang-14`..`clang-20`
//! (Debian installs versioned names); `scripts/setup.sh` installs it.

use std::path::PathBuf;
use std::process::Command;

const SRC: &str = "bpf/xsk_redirect.c";

fn clang() -> Option<String> {
    if let Ok(c) = std::env::var("VTAP_CLANG") {
        return Some(c);
    }
    let names =
        std::iter::once("clang".to_string()).chain((14..=20).rev().map(|v| format!("clang-{v}")));
    names.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn main() {
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=VTAP_CLANG");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("xsk_redirect.o");
    let Some(clang) = clang() else {
        panic!(
            "vtap: clang is needed to build the XDP program of af-xdp uplinks ({SRC}); \
             install it (Debian: apt-get install clang, or run scripts/setup.sh) or set VTAP_CLANG"
        );
    };
    // <linux/bpf.h> includes <asm/types.h>, which Debian keeps under the
    // host's multiarch directory; -target bpf does not look there.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-Wall",
            "-Werror",
            "-target",
            "bpf",
            "-idirafter",
        ])
        .arg(&multiarch)
        .args(["-c", SRC, "-o"])
        .arg(&obj)
        .status()
        .unwrap_or_else(|e| panic!("vtap: running {clang}: {e}"));
    assert!(status.success(), "vtap: {clang} failed to compile {SRC}");
}
