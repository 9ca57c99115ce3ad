//! Ethernet MAC addresses: parsing, formatting, and random generation.
//!
//! A generated address is *locally administered unicast* (bit 1 of the first
//! octet set, bit 0 clear), like VPP's `ethernet_mac_address_generate`, so it
//! can never collide with a vendor-assigned one nor be taken for multicast.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a MAC address string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not six colon-separated pairs of hex digits.
    #[error("'{0}' is not a MAC address (expected six hex pairs like 02:fe:12:34:56:78)")]
    Syntax(String),
    /// The group bit is set: a multicast or broadcast address cannot be an interface's own.
    #[error("'{0}' is a multicast address; an interface address must be unicast")]
    Multicast(String),
    /// All zeros.
    #[error("'{0}' is the all-zero address")]
    Zero(String),
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A random locally administered unicast address.
    pub fn random() -> std::io::Result<Self> {
        let mut b = [0u8; 6];
        crate::sys::fill_random(&mut b)?;
        b[0] = (b[0] & 0xfe) | 0x02;
        Ok(Self(b))
    }

    /// The raw octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Whether the group (multicast) bit is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Whether the locally-administered bit is set.
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 == 2
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let syntax = || Error::Syntax(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(syntax)?;
            // from_str_radix alone would accept a sign ("+7").
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(syntax());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| syntax())?;
        }
        if parts.next().is_some() {
            return Err(syntax());
        }
        let mac = Self(out);
        if mac.is_multicast() {
            return Err(Error::Multicast(s.to_string()));
        }
        if out == [0; 6] {
            return Err(Error::Zero(s.to_string()));
        }
        Ok(mac)
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// In the API schema a MAC address is its text form.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for MacAddr {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"))
            .examples(["02:fe:00:00:00:01"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for MacAddr {}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, [u8; 6])] = &[
            ("02:fe:12:34:56:78", [2, 0xfe, 0x12, 0x34, 0x56, 0x78]),
            ("00:11:22:AA:bb:cC", [0, 0x11, 0x22, 0xaa, 0xbb, 0xcc]),
        ];
        for (s, b) in ok {
            assert_eq!(s.parse::<MacAddr>(), Ok(MacAddr(*b)), "{s}");
        }
        type MakeError = fn(String) -> Error;
        let bad: &[(&str, MakeError)] = &[
            ("", Error::Syntax),
            ("02:fe:12:34:56", Error::Syntax),
            ("02:fe:12:34:56:78:9a", Error::Syntax),
            ("02-fe-12-34-56-78", Error::Syntax),
            ("2:fe:12:34:56:78", Error::Syntax),
            ("02:fe:12:34:56:7g", Error::Syntax),
            ("02:fe:12:34:56:+7", Error::Syntax),
            ("01:00:5e:00:00:01", Error::Multicast),
            ("ff:ff:ff:ff:ff:ff", Error::Multicast),
            ("00:00:00:00:00:00", Error::Zero),
        ];
        for (s, e) in bad {
            assert_eq!(s.parse::<MacAddr>(), Err(e(s.to_string())), "{s}");
        }
    }

    #[test]
    fn display_round_trips() {
        let m = MacAddr([0x02, 0xab, 0, 1, 0x10, 0xff]);
        assert_eq!(m.to_string(), "02:ab:00:01:10:ff");
        assert_eq!(m.to_string().parse::<MacAddr>(), Ok(m));
    }

    #[test]
    fn random_is_local_unicast() {
        for _ in 0..256 {
            let m = MacAddr::random().expect("getrandom");
            assert!(m.is_local() && !m.is_multicast(), "{m}");
        }
    }
}
