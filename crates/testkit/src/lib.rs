//! Test helpers for vtap's root-only integration tests.
//!
//! Tests prove what vtap did by asking the kernel, never vtap: `ip -j`,
//! `ethtool -k`, and sysfs read inside the test's own namespace. Every
//! namespace a test makes is a [`TestNs`] whose `Drop` deletes it (and with it
//! every interface inside), also when the test panics. Names are unique per
//! process and call, because `cargo test` runs tests in parallel.
//!
//! Test traffic rule: tests address only 198.18.0.0/15 and 2001:db8::/32.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod vxlan;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Panics unless running as root: these tests create namespaces and taps.
/// (A silent skip would let a run without privileges pass untested.)
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and touches no memory.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "vtap's integration tests need root (CAP_NET_ADMIN)"
    );
}

/// A short unique token: `<pid hex><counter>`, at most 10 characters.
pub fn unique() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{n}", std::process::id())
}

/// A unique interface name (at most 15 bytes) starting with `prefix` (<= 4 bytes).
pub fn ifname(prefix: &str) -> String {
    assert!(prefix.len() <= 4);
    format!("{prefix}{}", unique())
}

/// Runs a command, panicking with its stderr if it cannot start.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace that exists for the life of the value.
#[derive(Debug)]
pub struct TestNs {
    /// Its name under /var/run/netns.
    pub name: String,
}

impl TestNs {
    /// Creates `vt-<tag>-<unique>`.
    pub fn new(tag: &str) -> Self {
        require_root();
        let name = format!("vt-{tag}-{}", unique());
        run_ok("ip", &["netns", "add", &name]);
        Self { name }
    }

    /// The namespace file.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name, cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs `ip -n NS ARGS`, which must succeed.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run_ok("ip", &all)
    }

    /// Runs `ip -n NS -j ARGS` and parses the JSON.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = self.ip(&all);
        if text.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
    }

    /// `ip -d link show` as JSON objects.
    pub fn links(&self) -> Vec<Value> {
        match self.ip_json(&["-d", "link", "show"]) {
            Value::Array(a) => a,
            other => panic!("unexpected ip output {other}"),
        }
    }

    /// Names of all links.
    pub fn link_names(&self) -> Vec<String> {
        self.links()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }

    /// One link by name (`ip -d link show`), if present.
    pub fn link(&self, name: &str) -> Option<Value> {
        self.links()
            .into_iter()
            .find(|l| l["ifname"].as_str() == Some(name))
    }

    /// `local/prefixlen` of every global address on `name`.
    pub fn addrs(&self, name: &str) -> Vec<String> {
        let v = self.ip_json(&["addr", "show", "dev", name]);
        let mut out = vec![];
        for link in v.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                if a["scope"].as_str() == Some("global") {
                    out.push(format!(
                        "{}/{}",
                        a["local"].as_str().unwrap_or("?"),
                        a["prefixlen"]
                    ));
                }
            }
        }
        out
    }

    /// Default routes as `(gateway, dev)`; `v6` selects the family.
    pub fn default_routes(&self, v6: bool) -> Vec<(String, String)> {
        let fam = if v6 { "-6" } else { "-4" };
        let v = self.ip_json(&[fam, "route", "show", "default"]);
        v.as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["gateway"].as_str().unwrap_or("").to_string(),
                    r["dev"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Routes out of `name` that someone added (not the kernel's own), both
    /// families, as `DST/LEN` or `DST/LEN via GW` (`default` as `0.0.0.0/0`,
    /// `::/0`), sorted.
    pub fn routes(&self, name: &str) -> Vec<String> {
        let mut out = vec![];
        for (fam, any) in [("-4", "0.0.0.0/0"), ("-6", "::/0")] {
            let v = self.ip_json(&[fam, "route", "show", "dev", name]);
            for r in v.as_array().into_iter().flatten() {
                if r["protocol"].as_str() == Some("kernel") {
                    continue;
                }
                let dst = match r["dst"].as_str().unwrap_or("?") {
                    "default" => any.to_string(),
                    d if d.contains('/') => d.to_string(),
                    d if fam == "-4" => format!("{d}/32"),
                    d => format!("{d}/128"),
                };
                out.push(match r["gateway"].as_str() {
                    Some(g) => format!("{dst} via {g}"),
                    None => dst,
                });
            }
        }
        out.sort();
        out
    }

    /// `ethtool -k NAME` inside the namespace, as feature -> "on"/"off".
    pub fn ethtool_k(&self, name: &str) -> BTreeMap<String, String> {
        let out = self.exec("ethtool", &["-k", name]);
        assert!(
            out.status.success(),
            "ethtool -k {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                let v = v.split_whitespace().next()?;
                Some((k.trim().to_string(), v.to_string()))
            })
            .collect()
    }

    /// `/sys/class/net/NAME/tun_flags` read inside the namespace.
    pub fn tun_flags(&self, name: &str) -> u32 {
        let out = self.exec("cat", &[&format!("/sys/class/net/{name}/tun_flags")]);
        assert!(out.status.success(), "no tun_flags for {name}");
        let s = String::from_utf8_lossy(&out.stdout);
        u32::from_str_radix(s.trim().trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("tun_flags {s:?}: {e}"))
    }

    /// The namespace's inode (what vtap reports as `host_ns_inode`).
    pub fn inode(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(self.path()).expect("stat netns").ino()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let out = run("ip", &["netns", "del", &self.name]);
        if !out.status.success() {
            eprintln!(
                "warning: could not delete netns {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Deletes a link in the current namespace on drop (for tests that make
/// interfaces outside a [`TestNs`]).
#[derive(Debug)]
pub struct LinkGuard(pub String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = run("ip", &["link", "del", &self.0]);
    }
}

/// Whether a link exists in the current (root) namespace.
pub fn root_link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Number of open fds of process `pid` (`"self"` for this one).
pub fn fd_count(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// utime + stime (clock ticks, 10 ms each) of this process's threads whose
/// name starts with `prefix` (`vtap-fwd`, `vtap-user`). Panics when no
/// thread has that name: a renamed thread must not make "uses no CPU" pass.
pub fn thread_cpu_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    let mut found = false;
    for t in std::fs::read_dir("/proc/self/task")
        .expect("tasks")
        .flatten()
    {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with(prefix) {
            continue;
        }
        found = true;
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields after the comm: state is [0], utime [11], stime [12].
        total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    assert!(found, "no thread named {prefix}* in this process");
    total
}

/// Clock ticks the threads named `prefix...` use in one second, after
/// 300 ms to settle. A busy loop shows ~100 per thread.
pub fn thread_ticks_in_a_second(prefix: &str) -> u64 {
    std::thread::sleep(Duration::from_millis(300));
    let before = thread_cpu_ticks(prefix);
    std::thread::sleep(Duration::from_secs(1));
    thread_cpu_ticks(prefix) - before
}

/// Polls `f` until it is true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `tun_flags` bits (`include/uapi/linux/if_tun.h`).
/// Runs `run` on every input of the committed fuzz corpus of `target`
/// (`fuzz/corpus/<target>` at the repository root); returns how many.
/// Panics if the directory is missing or empty: a replay that replays
/// nothing proves nothing.
pub fn replay_corpus(target: &str, run: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read");
        run(&data);
        n += 1;
    }
    assert!(n > 0, "{} holds no inputs", dir.display());
    n
}

pub mod iff {
    /// L3 TUN.
    pub const TUN: u32 = 0x0001;
    /// L2 TAP.
    pub const TAP: u32 = 0x0002;
    /// Several queues.
    pub const MULTI_QUEUE: u32 = 0x0100;
    /// Persistent.
    pub const PERSIST: u32 = 0x0800;
    /// No packet-information header.
    pub const NO_PI: u32 = 0x1000;
    /// virtio-net header in front of frames.
    pub const VNET_HDR: u32 = 0x4000;
}

/// A minimal IPv4 host for the data-plane side of a test: answers ARP
/// requests for `ip`, ICMP echo requests to `ip`, and echoes UDP datagrams to
/// `ip` back to their sender. Pure functions on Ethernet frames.
pub mod responder {
    /// 16-bit one's complement sum folded (RFC 1071), for checksums.
    pub fn csum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            sum += u32::from(w);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !u16::try_from(sum).unwrap_or(u16::MAX)
    }

    /// The answer to `frame`, if it is addressed to `ip` and one of the
    /// protocols above; `mac` is the responder's own.
    pub fn answer(frame: &[u8], mac: [u8; 6], ip: [u8; 4]) -> Option<Vec<u8>> {
        if frame.len() < 14 {
            return None;
        }
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let mut out = frame.to_vec();
        out[0..6].copy_from_slice(&frame[6..12]);
        out[6..12].copy_from_slice(&mac);
        match ethertype {
            0x0806 if frame.len() >= 42 && frame[20..22] == [0, 1] && frame[38..42] == ip => {
                out[21] = 2; // reply
                out[22..28].copy_from_slice(&mac);
                out[28..32].copy_from_slice(&ip);
                out[32..38].copy_from_slice(&frame[22..28]);
                out[38..42].copy_from_slice(&frame[28..32]);
                Some(out)
            }
            0x0800 if frame.len() >= 34 && frame[30..34] == ip => {
                let ihl = usize::from(frame[14] & 0x0f) * 4;
                let l4 = 14 + ihl;
                out[26..30].copy_from_slice(&frame[30..34]);
                out[30..34].copy_from_slice(&frame[26..30]);
                match frame[23] {
                    1 if frame.len() > l4 + 4 && frame[l4] == 8 => {
                        out[l4] = 0; // echo reply
                        out[l4 + 2..l4 + 4].copy_from_slice(&[0, 0]);
                        let c = csum(&out[l4..]);
                        out[l4 + 2..l4 + 4].copy_from_slice(&c.to_be_bytes());
                        Some(out)
                    }
                    17 if frame.len() >= l4 + 8 => {
                        // Swapping addresses and ports keeps both checksums valid.
                        out[l4..l4 + 2].copy_from_slice(&frame[l4 + 2..l4 + 4]);
                        out[l4 + 2..l4 + 4].copy_from_slice(&frame[l4..l4 + 2]);
                        Some(out)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rfc1071_example() {
            // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
            assert_eq!(
                csum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
                !0xddf2
            );
        }

        #[test]
        fn arp_request_is_answered() {
            let mut f = vec![0xff; 6];
            f.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            f.extend([
                2, 0, 0, 0, 0, 1, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198, 18, 0, 2,
            ]);
            let me = [2, 0, 0, 0, 0, 2];
            let r = answer(&f, me, [198, 18, 0, 2]).expect("reply");
            assert_eq!(&r[0..6], &[2, 0, 0, 0, 0, 1]);
            assert_eq!(r[21], 2);
            assert_eq!(&r[22..28], &me);
            assert_eq!(&r[38..42], &[198, 18, 0, 1]);
            assert!(answer(&f, me, [198, 18, 0, 3]).is_none(), "not for us");
        }
    }
}

/// An `AF_PACKET` socket with `PACKET_VNET_HDR` on one interface: sends and
/// receives whole frames with their 10-byte `virtio_net_hdr`, so a test can
/// inject or capture GSO super-frames on the host side of a tap.
// The casts are sizes of small C structs and libc constants passed to the
// socket API in the types it declares.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
pub mod packet {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// `SOL_PACKET` (`<linux/socket.h>`).
    const SOL_PACKET: libc::c_int = 263;
    /// `PACKET_VNET_HDR` (`<linux/if_packet.h>`).
    const PACKET_VNET_HDR: libc::c_int = 15;
    /// `PACKET_OUTGOING`: a frame this host sent.
    pub const PACKET_OUTGOING: u8 = 4;
    /// `sizeof(struct virtio_net_hdr)`.
    pub const VNET_HDR_LEN: usize = 10;

    fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// The socket.
    #[derive(Debug)]
    pub struct PacketSocket(OwnedFd);

    impl PacketSocket {
        /// Opens and binds to `ifindex` (in the calling thread's namespace).
        pub fn bind(ifindex: u32) -> io::Result<Self> {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: socket takes no pointers.
            let fd = cvt(unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::c_int::from(proto),
                )
            })?;
            // SAFETY: `fd` was just returned by socket and is owned by nobody else.
            let sock = Self(unsafe { OwnedFd::from_raw_fd(fd) });
            let on: libc::c_int = 1;
            // SAFETY: the option value points to a live c_int of the given size.
            cvt(unsafe {
                libc::setsockopt(
                    sock.0.as_raw_fd(),
                    SOL_PACKET,
                    PACKET_VNET_HDR,
                    std::ptr::from_ref(&on).cast(),
                    libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
                )
            })?;
            let tv = libc::timeval {
                tv_sec: 3,
                tv_usec: 0,
            };
            // SAFETY: the option value points to a live timeval of the given size.
            cvt(unsafe {
                libc::setsockopt(
                    sock.0.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    std::ptr::from_ref(&tv).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            })?;
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex as libc::c_int;
            // SAFETY: the address points to a live sockaddr_ll of the given size.
            cvt(unsafe {
                libc::bind(
                    sock.0.as_raw_fd(),
                    std::ptr::from_ref(&sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            })?;
            Ok(sock)
        }

        /// Sends `vnet_hdr` + `frame` out of the interface.
        pub fn send(&self, vnet_hdr: &[u8; VNET_HDR_LEN], frame: &[u8]) -> io::Result<()> {
            let mut buf = vnet_hdr.to_vec();
            buf.extend_from_slice(frame);
            // SAFETY: the buffer pointer and length describe `buf`.
            let n = unsafe { libc::send(self.0.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Receives one frame: `(packet type, vnet header, frame)`.
        pub fn recv(&self) -> io::Result<(u8, [u8; VNET_HDR_LEN], Vec<u8>)> {
            let mut buf = vec![0u8; 70_000];
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buffer and address pointers describe live, writable memory
            // of the given sizes.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    std::ptr::from_mut(&mut from).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let n = n.unsigned_abs();
            if n < VNET_HDR_LEN {
                return Err(io::Error::other("short frame"));
            }
            let mut hdr = [0u8; VNET_HDR_LEN];
            hdr.copy_from_slice(&buf[..VNET_HDR_LEN]);
            Ok((from.sll_pkttype, hdr, buf[VNET_HDR_LEN..n].to_vec()))
        }
    }

    /// An Ethernet + IPv4 + TCP (ACK|PSH) frame carrying `payload`, IPv4
    /// checksum complete, TCP checksum left as the pseudo-header sum for
    /// checksum offload (`NEEDS_CSUM`, csum_start 34, csum_offset 16).
    pub fn tcp4_frame(
        dst: [u8; 6],
        src: [u8; 6],
        sip: [u8; 4],
        dip: [u8; 4],
        payload: &[u8],
    ) -> Vec<u8> {
        let ip_len = u16::try_from(20 + 20 + payload.len()).expect("fits an IPv4 packet");
        let mut f = Vec::with_capacity(54 + payload.len());
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0]);
        f[16..18].copy_from_slice(&ip_len.to_be_bytes());
        f.extend_from_slice(&sip);
        f.extend_from_slice(&dip);
        let c = super::responder::csum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        // TCP: ports 40000 -> 5001, seq 1, ack 1, data offset 5, ACK|PSH, window.
        f.extend_from_slice(&[
            0x9c, 0x40, 0x13, 0x89, 0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        // Pseudo-header sum (not complemented), as NEEDS_CSUM expects.
        let tcp_len = u16::try_from(20 + payload.len()).expect("fits");
        let mut ph = Vec::with_capacity(12);
        ph.extend_from_slice(&sip);
        ph.extend_from_slice(&dip);
        ph.extend_from_slice(&[0, 6]);
        ph.extend_from_slice(&tcp_len.to_be_bytes());
        let partial = !super::responder::csum(&ph);
        f[50..52].copy_from_slice(&partial.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// The 10-byte header of a TCPv4 GSO super-frame built by [`tcp4_frame`].
    pub fn tcp4_gso_hdr(mss: u16) -> [u8; VNET_HDR_LEN] {
        let mut h = [0u8; VNET_HDR_LEN];
        h[0] = 1; // NEEDS_CSUM
        h[1] = 1; // GSO_TCPV4
        h[2..4].copy_from_slice(&54u16.to_le_bytes()); // hdr_len
        h[4..6].copy_from_slice(&mss.to_le_bytes()); // gso_size
        h[6..8].copy_from_slice(&34u16.to_le_bytes()); // csum_start
        h[8..10].copy_from_slice(&16u16.to_le_bytes()); // csum_offset
        h
    }
}

/// UDP segmentation offload from a socket (`UDP_SEGMENT`): one `send` of
/// up to 64 KB leaves the stack as one UDP super-datagram that a device with
/// USO takes whole, or that the kernel cuts before a device without it.
pub mod udp_gso {
    use std::io;
    use std::os::fd::AsRawFd;

    /// `UDP_SEGMENT` (linux/udp.h).
    const UDP_SEGMENT: libc::c_int = 103;

    /// Sets the segment size for every later send on `sock`.
    pub fn set_segment(sock: &std::net::UdpSocket, size: u16) -> io::Result<()> {
        let v = libc::c_int::from(size);
        // SAFETY: setsockopt reads sizeof(c_int) bytes from &v, which lives
        // for the call; the fd is owned by `sock`.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_UDP,
                UDP_SEGMENT,
                std::ptr::from_ref(&v).cast(),
                libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
