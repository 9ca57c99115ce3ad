//! VXLAN (RFC 7348): the 8-byte header a tunnel port puts before each inner
//! Ethernet frame in a UDP datagram, what a received datagram must look like
//! to be decapsulated, and the outer UDP source port that carries the inner
//! flow's entropy.
//!
//! # Why these rules
//!
//! * **Flags**: RFC 7348 asks receivers to ignore reserved bits; the Linux
//!   `vxlan` driver, the peer vtap must interoperate with, drops a
//!   datagram with any flag other than I (VNI valid) unless an extension
//!   (GBP, GPE) is configured. vtap does the same, so both ends of a tunnel
//!   drop the same datagrams, and says why ([`Refused::BadFlags`]).
//! * **Source port**: the outer UDP source port is a hash of the inner
//!   flow, so the underlay's ECMP and the receivers' RSS spread flows while
//!   each flow stays in order on one path (RFC 7348 section 5). The range
//!   is the dynamic ports, 49152-65535, as the RFC recommends; the hash is
//!   FNV-1a over fixed fields, so it is stable across restarts and machines
//!   (a flow keeps its path when a daemon restarts).
//! * **Inner frames that lie**: an inner IPv4 or IPv6 header whose length
//!   runs past the datagram is refused, not trusted, before anything reads
//!   beyond the frame.
//!
//! Pure functions over byte slices; the tunnel port that uses them owns the
//! sockets.

/// Bytes of VXLAN header.
pub const HEADER_LEN: usize = 8;
/// The IANA port (`--port` by default).
pub const PORT: u16 = 4789;
/// The I flag: the VNI field is valid.
pub const FLAG_VNI: u8 = 0x08;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;
/// What a tunnel adds to an inner frame over an IPv4 underlay: outer
/// Ethernet 14, IPv4 20, UDP 8, VXLAN 8.
pub const OVERHEAD_V4: u32 = 50;
/// The same over an IPv6 underlay (IPv6 40).
pub const OVERHEAD_V6: u32 = 70;
/// The outer source ports the entropy hash picks from (RFC 7348: the
/// dynamic range).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// An Ethernet header's length; shorter inner frames are runts.
const ETH_LEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;

/// A VXLAN network identifier, checked to fit 24 bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vni(u32);

/// A VNI outside 0..=16 777 215.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("vni '{0}': must be in 0..=16777215 (24 bits)")]
pub struct VniOutOfRange(pub u64);

impl TryFrom<u64> for Vni {
    type Error = VniOutOfRange;

    fn try_from(v: u64) -> Result<Self, Self::Error> {
        u32::try_from(v)
            .ok()
            .filter(|v| *v <= MAX_VNI)
            .map(Vni)
            .ok_or(VniOutOfRange(v))
    }
}

impl Vni {
    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// The header for `vni`: I flag set, every reserved bit zero.
pub fn header(vni: Vni) -> [u8; HEADER_LEN] {
    let [_, a, b, c] = vni.0.to_be_bytes();
    [FLAG_VNI, 0, 0, 0, a, b, c, 0]
}

/// Why a received datagram is not decapsulated (each is a counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// Shorter than the VXLAN header.
    Short,
    /// The I flag is clear, or another flag is set.
    BadFlags,
    /// The inner frame is shorter than an Ethernet header.
    InnerRunt,
    /// The inner IPv4/IPv6 header claims more bytes than the datagram has.
    InnerLengthLies,
}

impl Refused {
    /// The counter's name (`drop_<name>` in `show`).
    pub fn name(self) -> &'static str {
        match self {
            Refused::Short => "short",
            Refused::BadFlags => "bad_flags",
            Refused::InnerRunt => "inner_runt",
            Refused::InnerLengthLies => "inner_length_lies",
        }
    }
}

/// Splits a received UDP payload into its VNI and inner frame, or says
/// why it cannot. (Whether the VNI is one of a tunnel's is the caller's
/// question.)
pub fn decapsulate(datagram: &[u8]) -> Result<(Vni, &[u8]), Refused> {
    let Some((hdr, inner)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(Refused::Short);
    };
    if hdr[0] != FLAG_VNI {
        return Err(Refused::BadFlags);
    }
    let vni = Vni(u32::from_be_bytes([0, hdr[4], hdr[5], hdr[6]]));
    check_inner(inner)?;
    Ok((vni, inner))
}

/// An inner frame is at least an Ethernet header, and an IP header in it
/// does not claim more bytes than there are.
fn check_inner(frame: &[u8]) -> Result<(), Refused> {
    if frame.len() < ETH_LEN {
        return Err(Refused::InnerRunt);
    }
    let (ethertype, l3) = ethertype_and_l3(frame);
    let claimed = match ethertype {
        ETH_P_IPV4 if l3.len() >= 4 => usize::from(u16::from_be_bytes([l3[2], l3[3]])),
        ETH_P_IPV6 if l3.len() >= 6 => 40 + usize::from(u16::from_be_bytes([l3[4], l3[5]])),
        ETH_P_IPV4 | ETH_P_IPV6 => return Err(Refused::InnerLengthLies),
        _ => return Ok(()),
    };
    if claimed > l3.len() {
        return Err(Refused::InnerLengthLies);
    }
    Ok(())
}

/// The EtherType after at most one VLAN tag, and the bytes after it.
fn ethertype_and_l3(frame: &[u8]) -> (u16, &[u8]) {
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    if et == ETH_P_8021Q && frame.len() >= ETH_LEN + 4 {
        (
            u16::from_be_bytes([frame[16], frame[17]]),
            &frame[ETH_LEN + 4..],
        )
    } else {
        (et, &frame[ETH_LEN..])
    }
}

/// FNV-1a, 32 bits: stable everywhere, cheap, good enough to spread flows.
fn fnv1a(state: u32, bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(state, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// The outer UDP source port for an inner frame: a hash of its flow (MAC
/// addresses and EtherType; for IPv4/IPv6 also the addresses, the protocol
/// and, for TCP/UDP/SCTP, the ports), in [`SOURCE_PORTS`].
pub fn source_port(frame: &[u8]) -> u16 {
    let mut h = 0x811c_9dc5;
    if frame.len() < ETH_LEN {
        h = fnv1a(h, frame);
        return spread(h);
    }
    h = fnv1a(h, &frame[..12]);
    let (ethertype, l3) = ethertype_and_l3(frame);
    h = fnv1a(h, &ethertype.to_be_bytes());
    let (addrs, proto, l4) = match ethertype {
        ETH_P_IPV4 if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let fragment = u16::from_be_bytes([l3[6], l3[7]]) & 0x3fff != 0;
            let l4 = if fragment {
                &[][..]
            } else {
                l3.get(ihl..).unwrap_or(&[])
            };
            (&l3[12..20], l3[9], l4)
        }
        ETH_P_IPV6 if l3.len() >= 40 => (&l3[8..40], l3[6], &l3[40..]),
        _ => return spread(h),
    };
    h = fnv1a(h, addrs);
    h = fnv1a(h, &[proto]);
    // TCP, UDP, SCTP: the ports lead the header.
    if matches!(proto, 6 | 17 | 132) && l4.len() >= 4 {
        h = fnv1a(h, &l4[..4]);
    }
    spread(h)
}

/// Folds a hash into [`SOURCE_PORTS`].
fn spread(h: u32) -> u16 {
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let folded = (h ^ (h >> 16)) % span;
    SOURCE_PORTS.start() + u16::try_from(folded).unwrap_or(0)
}

/// The fuzz target `vxlan` (and its corpus replay): any bytes as a received
/// UDP payload. Decapsulation and hashing never panic; what is accepted is
/// the datagram's tail with a 24-bit VNI and no IP length beyond it; and a
/// header built for that VNI in front of the same inner frame decapsulates
/// to the same VNI and frame.
pub fn fuzz_one(data: &[u8]) {
    assert!(SOURCE_PORTS.contains(&source_port(data)));
    let Ok((vni, inner)) = decapsulate(data) else {
        return;
    };
    assert!(vni.get() <= MAX_VNI);
    assert_eq!(inner, &data[HEADER_LEN..]);
    assert_eq!(check_inner(inner), Ok(()));
    let mut again = header(vni).to_vec();
    again.extend_from_slice(inner);
    assert_eq!(decapsulate(&again), Ok((vni, inner)));
    assert!(SOURCE_PORTS.contains(&source_port(inner)));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame carrying IPv4 `proto` from `src`:`sport`, with an
    /// IPv4 total length of `ip_len` and `payload` bytes after the header.
    fn v4(src: [u8; 4], proto: u8, sport: u16, ip_len: u16, payload: usize) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&[198, 18, 0, 2]);
        f.extend_from_slice(&ip);
        let mut l4 = vec![0u8; payload];
        if payload >= 4 {
            l4[..2].copy_from_slice(&sport.to_be_bytes());
            l4[2..4].copy_from_slice(&80u16.to_be_bytes());
        }
        f.extend_from_slice(&l4);
        f
    }

    #[test]
    fn vnis_are_24_bits() {
        let cases: [(u64, bool); 5] = [
            (0, true),
            (1, true),
            (16_777_215, true),
            (16_777_216, false),
            (u64::MAX, false),
        ];
        for (v, ok) in cases {
            assert_eq!(Vni::try_from(v).is_ok(), ok, "{v}");
        }
        let e = Vni::try_from(16_777_216).expect_err("too big").to_string();
        assert!(e.contains("vni '16777216'"), "{e}");
    }

    #[test]
    fn headers_round_trip_and_reserved_bits_stay_zero() {
        for v in [0, 1, 42, 0x00ab_cdef, MAX_VNI] {
            let vni = Vni::try_from(u64::from(v)).expect("vni");
            let h = header(vni);
            let [_, a, b, c] = v.to_be_bytes();
            assert_eq!(h, [8, 0, 0, 0, a, b, c, 0]);
            let mut d = h.to_vec();
            d.extend_from_slice(&v4([198, 18, 0, 1], 17, 1000, 28, 8));
            let (got, inner) = decapsulate(&d).expect("decapsulates");
            assert_eq!((got, inner.len()), (vni, 14 + 28));
        }
    }

    /// What a receiver refuses, and why: one row per reason.
    #[test]
    fn received_garbage_is_refused_by_reason() {
        let good = v4([198, 18, 0, 1], 6, 1000, 40, 20);
        let with = |hdr: [u8; 8], inner: &[u8]| {
            let mut d = hdr.to_vec();
            d.extend_from_slice(inner);
            d
        };
        let vni = header(Vni(7));
        let cases: Vec<(Vec<u8>, Result<(), Refused>)> = vec![
            (vec![], Err(Refused::Short)),
            (vni[..7].to_vec(), Err(Refused::Short)),
            (
                with([0, 0, 0, 0, 0, 0, 7, 0], &good),
                Err(Refused::BadFlags),
            ),
            (
                with([0x0c, 0, 0, 0, 0, 0, 7, 0], &good),
                Err(Refused::BadFlags),
            ),
            (
                with([0x88, 0, 0, 0, 0, 0, 7, 0], &good),
                Err(Refused::BadFlags),
            ),
            (with(vni, &good[..13]), Err(Refused::InnerRunt)),
            (with(vni, &good), Ok(())),
            // Reserved bytes other than the flags are ignored, as Linux does.
            (with([0x08, 1, 2, 3, 0, 0, 7, 9], &good), Ok(())),
            (
                with(vni, &v4([198, 18, 0, 1], 6, 1000, 1500, 20)),
                Err(Refused::InnerLengthLies),
            ),
            // A truncated IPv4 header cannot be checked: refused.
            (with(vni, &good[..16]), Err(Refused::InnerLengthLies)),
            // ARP (or any non-IP EtherType) has no length to check.
            (
                with(
                    vni,
                    &[[0xff; 6].as_slice(), &[2, 0, 0, 0, 0, 1, 0x08, 0x06]].concat(),
                ),
                Ok(()),
            ),
        ];
        for (i, (d, want)) in cases.iter().enumerate() {
            assert_eq!(decapsulate(d).map(|_| ()), *want, "case {i}: {d:02x?}");
        }
    }

    /// `source_port` of the first flow below, computed independently (FNV-1a
    /// over the same fields in Python) and pinned.
    const PINNED: u16 = 50623;

    #[test]
    fn the_source_port_is_stable_per_flow_and_spreads_flows() {
        let a = v4([198, 18, 0, 1], 6, 40000, 40, 20);
        assert_eq!(source_port(&a), source_port(&a.clone()));
        // A known value: the hash must not change between releases (a
        // flow would move to another underlay path on upgrade).
        assert_eq!(source_port(&a), PINNED);
        let ports: std::collections::BTreeSet<u16> = (0..1000u16)
            .map(|p| source_port(&v4([198, 18, 0, 1], 6, 20000 + p, 40, 20)))
            .collect();
        assert!(ports.len() > 900, "1000 flows on {} ports", ports.len());
        assert!(ports.iter().all(|p| SOURCE_PORTS.contains(p)));
        // Fragments hash without ports (later fragments have none).
        let mut frag = a.clone();
        frag[14 + 6] = 0x20; // more fragments
        let mut frag2 = v4([198, 18, 0, 1], 6, 1, 40, 20);
        frag2[14 + 6] = 0x20;
        assert_eq!(source_port(&frag), source_port(&frag2));
        // Runts and non-IP frames still get a port in range.
        for f in [&a[..3], &a[..14]] {
            assert!(SOURCE_PORTS.contains(&source_port(f)));
        }
    }

    /// Writes the seeds of the `vxlan` fuzz corpus (`scripts/fuzz.sh` runs
    /// it first): one datagram per case above that decapsulates, and one per
    /// refusal.
    #[test]
    #[ignore = "writes fuzz/corpus/vxlan: run by scripts/fuzz.sh"]
    fn write_vxlan_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/vxlan");
        std::fs::create_dir_all(&dir).expect("corpus dir");
        let mut good = header(Vni(7)).to_vec();
        good.extend_from_slice(&v4([198, 18, 0, 1], 6, 1000, 40, 20));
        let mut lies = header(Vni(7)).to_vec();
        lies.extend_from_slice(&v4([198, 18, 0, 1], 17, 1000, 1500, 20));
        let mut v6 = header(Vni(MAX_VNI)).to_vec();
        v6.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd]);
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8].repeat(8));
        v6.extend_from_slice(&[0x9c, 0x40, 0x12, 0xb5, 0, 8, 0, 0]);
        let seeds: [(&str, Vec<u8>); 4] = [
            ("seed-v4-tcp", good.clone()),
            ("seed-v6-udp", v6),
            ("seed-lies", lies),
            ("seed-bad-flags", [&[0x0c][..], &good[1..]].concat()),
        ];
        for (name, d) in seeds {
            std::fs::write(dir.join(name), d).expect("write");
        }
    }

    proptest::proptest! {
        /// Nothing a datagram holds makes decapsulation or hashing panic, and
        /// an accepted inner frame is the datagram's tail.
        #[test]
        fn any_datagram_is_handled(d in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok((vni, inner)) = decapsulate(&d) {
                proptest::prop_assert!(vni.get() <= MAX_VNI);
                proptest::prop_assert_eq!(inner, &d[HEADER_LEN..]);
            }
            proptest::prop_assert!(SOURCE_PORTS.contains(&source_port(&d)));
        }
    }
}
