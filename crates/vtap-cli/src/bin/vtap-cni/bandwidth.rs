//! The CNI `bandwidth` capability onto vtap's per-interface rate limits.
//!
//! The capability speaks from the pod's side and in bits: `ingress` is
//! traffic into the pod (what vtap sends to its tap: vtap's **tx**),
//! `egress` traffic out of it (what vtap takes from the tap: **rx**).
//! Rates are bits per second, bursts bits; vtap's buckets count bytes.

use vtap::datapath::limit::{LimitOptions, RateLimits};
use vtap::CreateOptions;

use crate::spec::{Bandwidth, CniError};

/// One direction: `rate` bits/s with `burst` bits, in bytes.
fn bucket(
    field: &str,
    rate: Option<u64>,
    burst: Option<u64>,
) -> Result<Option<LimitOptions>, CniError> {
    match (rate, burst) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(CniError::config(
            &format!("runtimeConfig.bandwidth.{field}Burst"),
            format!("needs {field}Rate"),
        )),
        (Some(r), b) => Ok(Some(LimitOptions {
            bytes_per_sec: Some(r.div_ceil(8)),
            burst: b.map(|b| b.div_ceil(8)),
            ..LimitOptions::default()
        })),
    }
}

/// Puts `bw` into the create request.
pub fn apply(bw: &Bandwidth, opts: &mut CreateOptions) -> Result<(), CniError> {
    let limits = RateLimits {
        tx: bucket("ingress", bw.ingress_rate, bw.ingress_burst)?,
        rx: bucket("egress", bw.egress_rate, bw.egress_burst)?,
    };
    if limits.rx.is_some() || limits.tx.is_some() {
        limits
            .check()
            .map_err(|why| CniError::config("runtimeConfig.bandwidth", why))?;
        opts.rate_limit = Some(limits);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_become_bytes_and_sides_become_directions() {
        let mut o = CreateOptions::default();
        let bw = Bandwidth {
            ingress_rate: Some(80_000_000),
            ingress_burst: Some(800_000),
            egress_rate: Some(1_000_001),
            egress_burst: None,
        };
        apply(&bw, &mut o).expect("valid");
        let l = o.rate_limit.expect("limits");
        let tx = l.tx.expect("ingress is tx");
        assert_eq!(
            (tx.bytes_per_sec, tx.burst),
            (Some(10_000_000), Some(100_000))
        );
        let rx = l.rx.expect("egress is rx");
        assert_eq!((rx.bytes_per_sec, rx.burst), (Some(125_001), None));
        let lone = Bandwidth {
            egress_burst: Some(8),
            ..Bandwidth::default()
        };
        let e = apply(&lone, &mut CreateOptions::default()).expect_err("burst alone");
        assert!(
            e.msg
                .starts_with("runtimeConfig.bandwidth.egressBurst: needs egressRate"),
            "{}",
            e.msg
        );
        let mut none = CreateOptions::default();
        apply(&Bandwidth::default(), &mut none).expect("nothing");
        assert!(none.rate_limit.is_none());
    }
}
