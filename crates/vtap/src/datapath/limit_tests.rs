//! The buckets' arithmetic on a clock the tests move.

use super::*;

fn opts(bps: Option<u64>, burst: Option<u64>, pps: Option<u64>) -> LimitOptions {
    LimitOptions {
        bytes_per_sec: bps,
        burst,
        packets_per_sec: pps,
        ..LimitOptions::default()
    }
}

#[test]
fn options_table() {
    let eff = |o: LimitOptions| o.effective().map(|e| (e.burst, e.packet_burst));
    assert_eq!(
        eff(opts(Some(1_000_000), None, None)),
        Ok((Some(MIN_BURST), None))
    );
    assert_eq!(
        eff(opts(Some(125_000_000), None, None)),
        Ok((Some(2_500_000), None))
    );
    assert_eq!(eff(opts(None, None, Some(10_000))), Ok((None, Some(200))));
    assert_eq!(
        eff(opts(None, None, Some(100))),
        Ok((None, Some(MIN_PACKET_BURST)))
    );
    assert_eq!(
        eff(opts(Some(1000), Some(3000), None)),
        Ok((Some(3000), None))
    );
    let refused = [
        (opts(None, None, None), "bytes-per-sec: give"),
        (
            opts(Some(0), None, None),
            "bytes-per-sec: must be at least 1",
        ),
        (
            opts(None, None, Some(0)),
            "packets-per-sec: must be at least 1",
        ),
        (opts(Some(1), Some(0), None), "burst: must be at least 1"),
        (opts(None, Some(10), Some(5)), "burst: has no rate"),
        (
            LimitOptions {
                one_time_burst: Some(5),
                ..opts(None, None, Some(5))
            },
            "one-time-burst: needs",
        ),
    ];
    for (o, why) in refused {
        let e = o.effective().expect_err(why).to_string();
        assert!(e.starts_with(why), "{e} / {why}");
    }
}

/// Sends `frame`-byte frames whenever the limiter lets one go, stepping
/// the clock by `step`, for `span`; returns the bytes sent.
fn drive(l: &mut Limiter, t0: Instant, frame: usize, step: Duration, span: Duration) -> u64 {
    let mut t = t0;
    let mut sent = 0;
    while t < t0 + span {
        while l.ready(t) {
            l.take(frame);
            sent += frame as u64;
        }
        t += step;
    }
    sent
}

#[test]
fn the_average_rate_is_the_configured_one() {
    let cases = [
        // bytes/s, burst, frame, step
        (1_000_000, 10_000, 1500, Duration::from_micros(100)),
        (125_000_000, 2_500_000, 65_000, Duration::from_micros(1000)),
        (10_000, 1_500, 1500, Duration::from_millis(3)),
        (1_000_000, 1_000, 9000, Duration::from_micros(50)),
    ];
    for (rate, burst, frame, step) in cases {
        let t0 = Instant::now();
        let mut l = Limiter::new(&opts(Some(rate), Some(burst), None), t0).expect("valid");
        let sent = drive(&mut l, t0, frame, step, Duration::from_secs(10));
        let want = 10 * rate + burst;
        let slack = (frame as u64) * 2;
        assert!(
            sent.abs_diff(want) <= slack,
            "rate {rate}: sent {sent}, want {want} ± {slack}"
        );
    }
}

#[test]
fn packets_limit_too_and_the_stricter_bucket_wins() {
    let t0 = Instant::now();
    let mut l = Limiter::new(&opts(Some(100_000_000), None, Some(1000)), t0).expect("valid");
    let sent = drive(
        &mut l,
        t0,
        100,
        Duration::from_micros(200),
        Duration::from_secs(5),
    );
    let frames = sent / 100;
    assert!(
        frames.abs_diff(5000 + MIN_PACKET_BURST) <= 2,
        "{frames} frames"
    );
}

#[test]
fn a_frame_larger_than_the_burst_goes_and_its_debt_is_waited_for() {
    let t0 = Instant::now();
    let mut l = Limiter::new(&opts(Some(1_000_000), Some(10_000), None), t0).expect("valid");
    assert!(l.ready(t0));
    l.take(65_536);
    assert!(!l.ready(t0));
    // 55 536 bytes of debt + 1 at 1 MB/s.
    assert_eq!(l.wait(), Duration::from_nanos(55_537_000));
    assert!(!l.ready(t0 + Duration::from_millis(55)));
    assert!(l.ready(t0 + Duration::from_micros(55_537)));
}

#[test]
fn the_one_time_burst_is_spent_first_and_not_refilled() {
    let t0 = Instant::now();
    let o = LimitOptions {
        one_time_burst: Some(100_000),
        ..opts(Some(1000), Some(1000), None)
    };
    let mut l = Limiter::new(&o, t0).expect("valid");
    let sent = drive(
        &mut l,
        t0,
        1000,
        Duration::from_millis(10),
        Duration::from_secs(2),
    );
    assert!(sent.abs_diff(100_000 + 1000 + 2000) <= 2000, "{sent}");
}

#[test]
fn the_shaping_queue_holds_in_order_and_drops_what_does_not_fit() {
    let t0 = Instant::now();
    let o = opts(Some(1_000_000), Some(2000), None);
    let mut s = Shaper::new(Limiter::new(&o, t0).expect("valid"));
    // Room: 65 536 bytes (the floor) of 1000-byte frames.
    let hdr = VnetHdr::default();
    let fitted = (0..100).filter(|i| s.hold(*i, hdr, &[0u8; 1000])).count();
    assert_eq!(fitted, 65);
    assert_eq!(s.limiter.counters.drop_rate_limit, 35);
    assert_eq!(
        (s.limiter.counters.delayed, s.limiter.counters.queued),
        (65, 65)
    );
    // The burst lets two go at once, in order; then one as soon as a
    // token is due, whose debt is then waited for.
    let mut order = vec![];
    while let Some(h) = s.next_due(t0) {
        order.push(h.queue);
        s.pop();
    }
    assert_eq!(order, [0, 1]);
    let t1 = t0 + Duration::from_micros(1);
    assert_eq!(s.next_due(t1).map(|h| h.queue), Some(2));
    s.pop();
    assert_eq!(s.limiter.wait(), Duration::from_micros(1000));
    assert!(s.next_due(t1 + Duration::from_micros(999)).is_none());
    assert_eq!(s.take_all().len(), 62);
    assert!(s.is_empty() && s.limiter.counters.queued == 0);
}
