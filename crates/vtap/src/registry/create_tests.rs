//! Root-free tests of creation: the rollback order and the attach checks.

use std::sync::Mutex;

use super::*;

/// A kernel that records what it was asked to undo, failing some.
#[derive(Default)]
struct Recorder {
    done: Mutex<Vec<String>>,
    fail: Vec<&'static str>,
}

impl Inverse for Recorder {
    async fn undo(&self, u: &Undo) -> Result<(), StepError> {
        let name = format!("{u:?}");
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(name.clone());
        if self.fail.iter().any(|f| name.starts_with(f)) {
            return Err(StepError::Io(io::Error::from_raw_os_error(libc::EIO)));
        }
        Ok(())
    }
}

/// Steps done in creation order push their inverses; a failure later
/// undoes them newest first, and one inverse failing does not stop the
/// others.
#[tokio::test]
async fn rollback_undoes_newest_first_and_goes_on_past_a_failure() {
    let gw: IpAddr = "198.18.0.254".parse().expect("ip");
    let addr: IpAddr = "198.18.0.1".parse().expect("ip");
    // (what creation did, in order; which inverses fail; what must run)
    let table: &[(Vec<Undo>, Vec<&'static str>, Vec<&str>)] = &[
        (vec![], vec![], vec![]),
        (
            vec![Undo::ClearPersist, Undo::DeleteLink(7)],
            vec![],
            vec!["DeleteLink(7)", "ClearPersist"],
        ),
        (
            vec![
                Undo::ClearPersist,
                Undo::DeleteLink(7),
                Undo::ReleaseController(7),
                Undo::DelAddress(7, addr, 24),
                Undo::LinkDown(7),
                Undo::DelRoute(7, gw),
            ],
            vec!["DelAddress"],
            vec![
                "DelRoute(7, 198.18.0.254)",
                "LinkDown(7)",
                "DelAddress(7, 198.18.0.1, 24)",
                "ReleaseController(7)",
                "DeleteLink(7)",
                "ClearPersist",
            ],
        ),
    ];
    for (did, fail, want) in table {
        let mut undo = did.clone();
        let k = Recorder {
            fail: fail.clone(),
            ..Recorder::default()
        };
        let failed = undo_all(&mut undo, &k, "t").await;
        let done = k.done.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(done, *want, "{did:?}");
        assert_eq!(failed, fail.len(), "{did:?}");
        assert!(undo.is_empty());
    }
}

/// What an attach accepts of an existing link, without a kernel:
/// (link kind, its TUN flags, asked for TUN?, rx queues) → multi-queue,
/// or the words of the refusal.
#[test]
fn attach_checks() {
    use crate::host::{Link, TunInfo};
    let tun = |tap, pi, vnet_hdr, multi_queue| TunInfo {
        tap,
        pi,
        vnet_hdr,
        multi_queue,
        ..TunInfo::default()
    };
    let good = tun(true, false, true, false);
    type Row<'a> = (
        Option<&'a str>,
        Option<TunInfo>,
        bool,
        u16,
        Result<bool, &'a str>,
    );
    let table: Vec<Row> = vec![
        (Some("tun"), Some(good.clone()), false, 1, Ok(false)),
        (
            Some("tun"),
            Some(tun(true, false, true, true)),
            false,
            4,
            Ok(true),
        ),
        (
            Some("veth"),
            None,
            false,
            1,
            Err("it is a veth interface, not TUN/TAP"),
        ),
        (None, None, false, 1, Err("it is a plain interface")),
        (
            Some("tun"),
            Some(good.clone()),
            true,
            1,
            Err("it is a TAP, and TUN (tun) was asked for"),
        ),
        (
            Some("tun"),
            Some(tun(false, false, true, false)),
            false,
            1,
            Err("it is a TUN, and TAP"),
        ),
        (
            Some("tun"),
            Some(tun(true, false, false, false)),
            false,
            1,
            Err("without IFF_VNET_HDR"),
        ),
        (
            Some("tun"),
            Some(tun(true, true, true, false)),
            false,
            1,
            Err("without IFF_NO_PI"),
        ),
        (
            Some("tun"),
            Some(good),
            false,
            2,
            Err("num-rx-queues 2 needs IFF_MULTI_QUEUE"),
        ),
    ];
    for (kind, info, want_tun, queues, want) in table {
        let link = Link {
            kind: kind.map(String::from),
            tun: info,
            ..Link::default()
        };
        let cfg = crate::CreateOptions {
            attach: true,
            host_if_name: Some("t0".into()),
            tun: want_tun,
            num_rx_queues: Some(queues),
            num_tx_queues: Some(queues),
            ..Default::default()
        }
        .validate()
        .expect("valid options");
        match (check_attachable(&link, &cfg, "t0"), want) {
            (Ok(mq), Ok(w)) => assert_eq!(mq, w, "{kind:?}"),
            (Err(e), Err(words)) => {
                assert!(e.to_string().contains(words), "{e}");
                assert!(e.to_string().contains("t0"), "names the interface: {e}");
            }
            (got, w) => panic!("{kind:?}: got {got:?}, want {w:?}"),
        }
    }
}
