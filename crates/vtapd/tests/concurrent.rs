//! 1 000 API clients at once over the daemon's Unix socket, each on its own
//! connection: half of them fight over 40 interface ids (create, then
//! delete what they got), the others send hostile requests (oversized and
//! malformed bodies, path traversal in namespace names, NUL bytes). No
//! request may get a 5xx, none may hang, and afterwards the daemon's view is
//! the kernel's: no interface left, in the API or in the namespace, and no
//! fd more than before.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use vtap::registry::{Registry, Settings};
use vtap_testkit::{fd_count, TestNs};
use vtapd::api::{router, AppState};

/// One HTTP/1.1 request on a fresh connection; returns (status, body).
async fn request(sock: &std::path::Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(sock).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: vtapd\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write head");
    // A body past the limit may be refused before it is read whole.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients_leave_a_consistent_daemon() {
    let ns = TestNs::new("cc");
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("vtap.sock");
    let state = Arc::new(AppState {
        socket: sock.display().to_string(),
        ..AppState::new(
            Registry::new(Settings::default()).expect("registry"),
            vtap::forward::Forwarder::new(1).expect("forwarder"),
        )
    });
    let listener = vtapd::bind_socket(&sock).await.expect("bind");
    let server = tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let pid = std::process::id().to_string();
    let fds_before = fd_count(&pid);
    let links_before = ns.link_names().len();

    let clients: Vec<_> = (0..1000u32)
        .map(|i| {
            let sock = sock.clone();
            let nsn = ns.name.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                if i % 2 == 0 {
                    let id = i % 40; // even: 20 distinct ids
                    let body = format!(r#"{{"id": {id}, "host_ns": "{nsn}"}}"#);
                    let (st, b) = request(&sock, "POST", "/v1/taps", body.as_bytes()).await;
                    seen.push((st, b));
                    if st == 201 {
                        let path = format!("/v1/taps/{id}");
                        seen.push(request(&sock, "DELETE", &path, b"").await);
                    }
                } else {
                    let hostile: [(&str, &str, Vec<u8>); 5] = [
                        ("POST", "/v1/taps", vec![b'{'; 3 << 20]),
                        ("POST", "/v1/taps", br#"{"host_ns": "../../etc"}"#.to_vec()),
                        ("POST", "/v1/taps", b"{\"host_ns\": \"a\\u0000b\"}".to_vec()),
                        ("POST", "/v1/taps", b"{\"host_if_name\": 7}".to_vec()),
                        ("GET", "/v1/taps/..%2F..%2Fetc", vec![]),
                    ];
                    let (m, p, b) = &hostile[(i as usize / 2) % hostile.len()];
                    seen.push(request(&sock, m, p, b).await);
                }
                seen
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for c in clients {
        let seen = tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("no client hangs")
            .expect("client task");
        for (st, body) in seen {
            assert!((200..500).contains(&st), "status {st}: {body}");
            *statuses.entry(st).or_insert(0) += 1;
        }
    }
    // Both outcomes of the id fight happened, and every hostile request
    // was a clear 4xx.
    // Even clients use 20 distinct ids (i % 40 for even i): each was won at least once.
    assert!(
        statuses.get(&201).copied().unwrap_or(0) >= 20,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get(&201),
        statuses.get(&200),
        "every created one deleted"
    );
    assert!(statuses.get(&409).copied().unwrap_or(0) > 0, "{statuses:?}");
    assert_eq!(
        statuses.get(&400).copied().unwrap_or(0)
            + statuses.get(&404).copied().unwrap_or(0)
            + statuses.get(&413).copied().unwrap_or(0),
        500,
        "{statuses:?}"
    );

    // The daemon's view is the kernel's: nothing left anywhere.
    let (st, body) = request(&sock, "GET", "/v1/taps", b"").await;
    assert_eq!((st, body.trim()), (200, "[]"));
    assert_eq!(ns.link_names().len(), links_before, "{:?}", ns.link_names());
    assert!(
        vtap_testkit::wait_until(Duration::from_secs(5), || fd_count(&pid) <= fds_before),
        "fds {} > {fds_before}",
        fd_count(&pid)
    );
    server.abort();
}
