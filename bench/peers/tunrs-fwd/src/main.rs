//! tunrs-fwd: the tun-rs peer of `bench/run.sh` — a minimal cross-connect
//! built on the `tun-rs` crate with `.offload(true)`, as a user would write it.
//!
//! usage: tunrs-fwd tap [IFA IFB]   L2 TAP (default tap-a tap-b), offload on, one thread per
//!                                  direction, raw recv()/send(): the 10-byte virtio_net_hdr and
//!                                  the GSO super-frame are passed through unchanged.
//!        tunrs-fwd tun [IFA IFB]   L3 TUN (default tun-a tun-b), offload on, one thread per
//!                                  direction using tun-rs's documented GSO/GRO API:
//!                                  recv_multiple() (splits GSO super-packets into MTU-size
//!                                  packets, checksums them) and send_multiple() with a
//!                                  GROTable (re-coalesces them before writing).  tun-rs's
//!                                  GSO/GRO code parses IP headers at offset 0, so it is L3-only.
//! Prints "READY <pid>" once both interfaces exist.  Exits on SIGTERM (default action).
use std::io::Write;
use std::sync::Arc;
use std::thread;
use tun_rs::{DeviceBuilder, GROTable, Layer, SyncDevice, IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

fn build(name: &str, layer: Layer) -> SyncDevice {
    DeviceBuilder::new()
        .name(name)
        .layer(layer)
        .offload(true)
        .build_sync()
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
}

fn pass_through(rx: Arc<SyncDevice>, tx: Arc<SyncDevice>) {
    let mut buf = vec![0u8; VIRTIO_NET_HDR_LEN + 65536 + 1024];
    loop {
        match rx.recv(&mut buf) {
            Ok(n) => {
                let _ = tx.send(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn gso_gro(rx: Arc<SyncDevice>, tx: Arc<SyncDevice>) {
    let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65535];
    let mut bufs = vec![vec![0u8; VIRTIO_NET_HDR_LEN + 65535]; IDEAL_BATCH_SIZE];
    let mut sizes = vec![0usize; IDEAL_BATCH_SIZE];
    let mut gro = GROTable::default();
    // reusable output buffers (no per-packet allocation); capacity 64 KiB so GRO can grow them
    let mut pool: Vec<Vec<u8>> = (0..IDEAL_BATCH_SIZE).map(|_| Vec::with_capacity(VIRTIO_NET_HDR_LEN + 65535)).collect();
    loop {
        let num = match rx.recv_multiple(&mut original, &mut bufs, &mut sizes, VIRTIO_NET_HDR_LEN) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("recv_multiple: {e}");
                continue;
            }
        };
        for i in 0..num {
            // send_multiple needs VIRTIO_NET_HDR_LEN bytes of headroom in front of each packet
            pool[i].clear();
            pool[i].extend_from_slice(&bufs[i][..VIRTIO_NET_HDR_LEN + sizes[i]]);
        }
        if let Err(e) = tx.send_multiple(&mut gro, &mut pool[..num], VIRTIO_NET_HDR_LEN) {
            eprintln!("send_multiple: {e}");
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("tap");
    let (layer, da, db) = match mode {
        "tap" => (Layer::L2, "tap-a", "tap-b"),
        "tun" => (Layer::L3, "tun-a", "tun-b"),
        _ => {
            eprintln!("usage: tunrs-fwd tap|tun [IFA IFB]");
            std::process::exit(2);
        }
    };
    let ia = args.get(2).map(String::as_str).unwrap_or(da);
    let ib = args.get(3).map(String::as_str).unwrap_or(db);
    let a = Arc::new(build(ia, layer));
    let b = Arc::new(build(ib, layer));
    println!("READY {} mode={mode}", std::process::id());
    std::io::stdout().flush().unwrap();
    let f: fn(Arc<SyncDevice>, Arc<SyncDevice>) = if mode == "tap" { pass_through } else { gso_gro };
    let (a2, b2) = (a.clone(), b.clone());
    let t = thread::spawn(move || f(a2, b2));
    f(b, a);
    t.join().unwrap();
}
