//! The Internet checksum (RFC 1071), as the offload layer needs it: sums
//! over byte ranges, the TCP/UDP pseudo-header, completing a
//! checksum-partial frame, and the IPv4 header checksum.
//!
//! Sums are kept as `u32` accumulators of big-endian 16-bit words and folded
//! only at the end; an odd-length range is padded with a zero byte, which is
//! only correct for the *last* range of a sum (every caller sums at most one
//! odd range, at the end).

/// Adds `data`, as big-endian 16-bit words, to `acc`.
pub fn add(mut acc: u64, data: &[u8]) -> u64 {
    // 8 bytes per step into a 64-bit accumulator: carries are kept in the
    // high bits and folded once at the end. 2^32 steps cannot overflow it.
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // The loop leaves at most 0xffff.
    u16::try_from(acc).unwrap_or(0xffff)
}

/// The checksum of `data` (complemented fold), as it goes on the wire.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(add(0, data))
}

/// The pseudo-header sum for TCP/UDP over IPv4 or IPv6: addresses,
/// protocol and the L4 length. `src`/`dst` are 4 or 16 bytes.
pub fn pseudo(src: &[u8], dst: &[u8], proto: u8, l4_len: u32) -> u64 {
    let acc = add(add(0, src), dst);
    acc + u64::from(proto) + u64::from(l4_len >> 16) + u64::from(l4_len & 0xffff)
}

/// Writes a 16-bit big-endian value at `at`.
pub fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Reads a 16-bit big-endian value at `at`.
pub fn get16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Recomputes the IPv4 header checksum of the header at `buf[off..off+ihl]`.
pub fn ipv4_header(buf: &mut [u8], off: usize, ihl: usize) {
    put16(buf, off + 10, 0);
    let c = checksum(&buf[off..off + ihl]);
    put16(buf, off + 10, c);
}

/// A computed L4 checksum as it goes into the field: a result of 0 is sent
/// as 0xffff (the same value in ones' complement; for UDP, 0 would mean
/// "no checksum"). The kernel does the same (`CSUM_MANGLED_0`).
pub fn l4_field(sum: u64) -> u16 {
    match !fold(sum) {
        0 => 0xffff,
        c => c,
    }
}

/// Completes a checksum-partial frame the way a NIC would: sums from
/// `start` to the end of `buf` (the checksum field already holds the
/// pseudo-header sum) and stores the result at `start + offset`.
/// The caller has checked that the range is inside `buf`.
pub fn complete(buf: &mut [u8], start: usize, offset: usize) {
    let c = l4_field(add(0, &buf[start..]));
    put16(buf, start + offset, c);
}

/// Whether the TCP/UDP checksum of the segment `l4` (header + payload) is
/// correct for the given addresses.
pub fn l4_valid(src: &[u8], dst: &[u8], proto: u8, l4: &[u8]) -> bool {
    let Ok(len) = u32::try_from(l4.len()) else {
        return false;
    };
    fold(add(pseudo(src, dst, proto, len), l4)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_lengths_and_wide_steps_agree_with_the_plain_sum() {
        // The 8-byte steps must give what word-by-word summing gives.
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 1000, 1001] {
            let mut plain = 0u64;
            for pair in data[..len].chunks(2) {
                let hi = u64::from(pair[0]) << 8;
                plain += hi | pair.get(1).map_or(0, |&b| u64::from(b));
            }
            assert_eq!(fold(add(0, &data[..len])), fold(plain), "len {len}");
        }
    }

    #[test]
    fn ipv4_header_known_vector() {
        // A textbook header (Wikipedia's IPv4 checksum example): 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        ipv4_header(&mut h, 0, 20);
        assert_eq!(get16(&h, 10), 0xb861);
    }

    #[test]
    fn zero_result_is_sent_as_ffff() {
        assert_eq!(l4_field(0xffff), 0xffff);
        assert_eq!(l4_field(0), 0xffff);
        assert_eq!(l4_field(0xfffe), 1);
    }
}
