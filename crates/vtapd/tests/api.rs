//! The REST API, resource by resource and error class by error class, served
//! in-process (the daemon's own router over a real registry and forwarder)
//! against the real kernel. Every row is one request with the status and
//! the words of the message it must get; afterwards the API's view must be
//! the kernel's view and nothing half-made may be left.
//!
//! The 503 class (a kernel facility missing) needs a machine without
//! /dev/net/tun; the CLI tests cover it by running the daemon in a mount
//! namespace that hides the device. The 500 class is, by design, only what
//! the kernel refuses unexpectedly, so no request can provoke it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use vtap::registry::{Registry, Settings};
use vtap_testkit::{fd_count, ifname, TestNs};
use vtapd::api::{router, AppState};

/// One request and what must come back.
struct Case {
    method: Method,
    path: String,
    body: Option<String>,
    status: StatusCode,
    /// Words the error message (or the body) must contain.
    want: String,
}

fn case(method: Method, path: &str, body: Option<Value>, status: u16, want: &str) -> Case {
    raw(method, path, body.map(|b| b.to_string()), status, want)
}

fn raw(method: Method, path: &str, body: Option<String>, status: u16, want: &str) -> Case {
    Case {
        method,
        path: path.to_string(),
        body,
        status: StatusCode::from_u16(status).expect("status"),
        want: want.to_string(),
    }
}

fn app() -> axum::Router {
    let state = Arc::new(AppState {
        socket: "in-process".into(),
        ..AppState::new(
            Registry::new(Settings::default()).expect("registry"),
            vtap::forward::Forwarder::new(1).expect("forwarder"),
        )
    });
    router(state)
}

async fn call(app: &axum::Router, c: &Case) -> (StatusCode, String) {
    let mut req = Request::builder().method(c.method.clone()).uri(&c.path);
    if c.body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(c.body.clone().map_or_else(Body::empty, Body::from))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn run_cases(app: &axum::Router, cases: &[Case]) {
    for c in cases {
        let (status, body) = call(app, c).await;
        assert_eq!(
            status, c.status,
            "{} {} {:?}: got {status} {body}",
            c.method, c.path, c.body
        );
        assert!(
            body.contains(&c.want),
            "{} {} {:?}: {body:?} lacks {:?}",
            c.method,
            c.path,
            c.body,
            c.want
        );
        if !status.is_success() && status != StatusCode::PAYLOAD_TOO_LARGE {
            let v: Value = serde_json::from_str(&body).expect("error bodies are JSON");
            let msg = v["error"].as_str().expect("an error field");
            assert!(!msg.contains('\n'), "one line: {msg:?}");
        }
    }
}

async fn json_of(app: &axum::Router, path: &str) -> Value {
    let (status, body) = call(app, &case(Method::GET, path, None, 200, "")).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_resource_answers_every_error_class() {
    let ns = TestNs::new("api");
    let app = app();
    let nsn = ns.name.as_str();
    let (h0, h1, h2) = (ifname("va"), ifname("va"), ifname("va"));
    let pid = std::process::id().to_string();

    // The interfaces the rows below work on.
    for (id, h) in [(0, &h0), (1, &h1), (2, &h2)] {
        let body = json!({"id": id, "host_ns": nsn, "host_if_name": h, "gso": true});
        run_cases(
            &app,
            &[case(Method::POST, "/v1/taps", Some(body), 201, h.as_str())],
        )
        .await;
    }
    let links_before = sorted(ns.link_names());
    let fds_before = fd_count(&pid);

    use Method as M;
    let cases = [
        // Routing: unknown resources and methods.
        case(M::GET, "/v1/nothing", None, 404, "no such API resource"),
        case(M::GET, "/v2/taps", None, 404, "no such API resource"),
        case(
            M::PATCH,
            "/v1/taps",
            None,
            405,
            "method PATCH not allowed on /v1/taps",
        ),
        case(M::PUT, "/v1/taps/tap0", None, 405, "not allowed"),
        // Daemon.
        case(M::GET, "/v1/info", None, 200, "\"interfaces\":3"),
        case(M::GET, "/metrics", None, 200, "vtap_"),
        // Taps: malformed bodies.
        raw(M::POST, "/v1/taps", Some("{".into()), 400, "request body"),
        raw(
            M::POST,
            "/v1/taps",
            Some("[null, null]".into()),
            400,
            "expected a JSON object",
        ),
        raw(
            M::POST,
            "/v1/taps",
            Some("\"tap\"".into()),
            400,
            "request body",
        ),
        raw(
            M::POST,
            "/v1/taps",
            Some("{\"host_ns\": \"\u{ff}\"".into()),
            400,
            "request body",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "bogus": 1})),
            400,
            "unknown field `bogus`",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "rx_ring_size": "256"})),
            400,
            "invalid type",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "id": -1})),
            400,
            "request body",
        ),
        // Taps: invalid values, each naming its field.
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "rx_ring_size": 1000})),
            400,
            "rx-ring-size '1000'",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "host_mtu_size": 50})),
            400,
            "host-mtu-size '50'",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "num_rx_queues": 0})),
            400,
            "num-rx-queues '0'",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "host_if_name": "twenty-bytes-long-xx"})),
            400,
            "longer than 15 bytes",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "host_if_name": "a\u{0}b"})),
            400,
            "host-if-name",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": "../../etc"})),
            400,
            "host-ns '../../etc'",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": "a\u{0}b"})),
            400,
            "host-ns",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "host_ip4_addr": "198.18.4.1/33"})),
            400,
            "host-ip4-addr",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "host_mac_addr": "02:00:00:00:00"})),
            400,
            "host-mac-addr",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "gro_coalesce": true})),
            400,
            "gro-coalesce",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"id": 8192})),
            400,
            "id '8192'",
        ),
        // Taps: conflicts.
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"id": 0, "host_ns": nsn})),
            409,
            "id '0'",
        ),
        case(
            M::POST,
            "/v1/taps",
            Some(json!({"host_ns": nsn, "host_if_name": h0})),
            409,
            "host-if-name",
        ),
        // Taps: unknown and malformed interface names.
        case(
            M::GET,
            "/v1/taps/tap99",
            None,
            404,
            "interface 'tap99': no such interface",
        ),
        case(
            M::GET,
            "/v1/taps/..%2Fx",
            None,
            404,
            "interface '../x': no such interface",
        ),
        case(M::DELETE, "/v1/taps/tun0", None, 404, "no such interface"),
        case(
            M::POST,
            "/v1/taps/tap99/mtu",
            Some(json!({"mtu": 1500})),
            404,
            "no such interface",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/mtu",
            Some(json!({"mtu": 50})),
            400,
            "mtu '50'",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/mtu",
            Some(json!({"mtu": "1500"})),
            400,
            "invalid type",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/mtu",
            Some(json!({})),
            400,
            "missing field `mtu`",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/offload",
            Some(json!({"action": "gso-on"})),
            400,
            "offload 'gso-on'",
        ),
        case(
            M::POST,
            "/v1/taps/tap99/offload",
            Some(json!({"action": "gso-disable"})),
            404,
            "no such interface",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/rx-mode",
            Some(json!({"mode": "busy"})),
            400,
            "unknown variant `busy`",
        ),
        case(
            M::POST,
            "/v1/taps/tap99/rx-mode",
            Some(json!({"mode": "polling"})),
            404,
            "no such interface",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/capture",
            Some(json!({"count": 0})),
            400,
            "count '0'",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/capture",
            Some(json!({"file": "relative.pcap"})),
            400,
            "file: vtapd never writes a file a caller names",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/capture",
            Some(json!({"direction": "up"})),
            400,
            "unknown variant `up`",
        ),
        case(M::DELETE, "/v1/taps/tap0/capture", None, 404, "capture"),
        // Taps: the happy path of each sub-resource.
        case(M::GET, "/v1/taps/tap0", None, 200, h0.as_str()),
        case(
            M::POST,
            "/v1/taps/tap0/mtu",
            Some(json!({"mtu": 1400})),
            200,
            "\"host_mtu_size\":1400",
        ),
        case(
            M::POST,
            "/v1/taps/tap0/rx-mode",
            Some(json!({"mode": "polling"})),
            200,
            "polling",
        ),
        // Cross-connects.
        case(
            M::POST,
            "/v1/xconnects",
            Some(json!({"a": "tap0"})),
            400,
            "missing field `b`",
        ),
        case(
            M::POST,
            "/v1/xconnects",
            Some(json!({"a": "tap0", "b": "tap0"})),
            400,
            "tap0",
        ),
        case(
            M::POST,
            "/v1/xconnects",
            Some(json!({"a": "tap0", "b": "tap99"})),
            404,
            "tap99",
        ),
        case(
            M::POST,
            "/v1/xconnects",
            Some(json!({"a": "tap0", "b": "tap1"})),
            201,
            "tap1",
        ),
        case(
            M::POST,
            "/v1/xconnects",
            Some(json!({"a": "tap0", "b": "tap2"})),
            409,
            "tap0",
        ),
        case(M::DELETE, "/v1/taps/tap1", None, 409, "interface 'tap1'"),
        // Batch deletion: the body checked first; then each interface
        // refused in place with its reason (nothing is deleted here).
        case(
            M::POST,
            "/v1/taps/delete",
            Some(json!({"interfaces": []})),
            400,
            "interfaces: 0 given, must be 1..=4096",
        ),
        case(
            M::POST,
            "/v1/taps/delete",
            Some(json!({"interfaces": "tap0"})),
            400,
            "invalid type",
        ),
        case(
            M::POST,
            "/v1/taps/delete",
            Some(json!({"interfaces": ["tap1", "tap99"]})),
            200,
            "\"deleted\":[],\"failed\":[{\"iface\":\"tap1\",\"status\":409,\"error\":\"interface 'tap1': cross-connected",
        ),
        case(
            M::POST,
            "/v1/taps/delete",
            Some(json!({"interfaces": ["tap99"]})),
            200,
            "\"status\":404,\"error\":\"interface 'tap99': no such interface",
        ),
        case(M::GET, "/v1/xconnects", None, 200, "tap0"),
        case(M::DELETE, "/v1/xconnects/tap2", None, 404, "tap2"),
        case(M::DELETE, "/v1/xconnects/tap99", None, 404, "tap99"),
        // Bridges.
        case(
            M::POST,
            "/v1/bridges",
            Some(json!({"name": "../bd"})),
            400,
            "../bd",
        ),
        case(
            M::POST,
            "/v1/bridges",
            Some(json!({"name": ""})),
            400,
            "name",
        ),
        case(
            M::POST,
            "/v1/bridges",
            Some(json!({"name": "bd1"})),
            201,
            "bd1",
        ),
        case(
            M::POST,
            "/v1/bridges",
            Some(json!({"name": "bd1"})),
            409,
            "bd1",
        ),
        case(M::GET, "/v1/bridges/nobd", None, 404, "nobd"),
        case(M::DELETE, "/v1/bridges/nobd", None, 404, "nobd"),
        case(
            M::POST,
            "/v1/bridges/bd1/interfaces",
            Some(json!({"iface": "tap99"})),
            404,
            "tap99",
        ),
        case(
            M::POST,
            "/v1/bridges/nobd/interfaces",
            Some(json!({"iface": "tap2"})),
            404,
            "nobd",
        ),
        case(
            M::POST,
            "/v1/bridges/bd1/interfaces",
            Some(json!({"iface": "tap0"})),
            409,
            "tap0",
        ),
        case(
            M::POST,
            "/v1/bridges/bd1/interfaces",
            Some(json!({"iface": "tap2"})),
            200,
            "tap2",
        ),
        case(M::DELETE, "/v1/bridges/bd1", None, 409, "bd1"),
        case(
            M::DELETE,
            "/v1/bridges/bd1/interfaces/tap1",
            None,
            404,
            "tap1",
        ),
        case(
            M::DELETE,
            "/v1/bridges/bd1/interfaces/tap2",
            None,
            200,
            "bd1",
        ),
        case(M::DELETE, "/v1/bridges/bd1", None, 204, ""),
        case(M::DELETE, "/v1/xconnects/tap0", None, 200, "tap0"),
        // Debug resources are gated by the config.
        case(
            M::PUT,
            "/v1/debug/fault",
            Some(json!({})),
            403,
            "fault_injection",
        ),
        case(M::DELETE, "/v1/debug/fault", None, 403, "fault_injection"),
        // Bodies past the limit are refused before they are read whole.
        raw(M::POST, "/v1/taps", Some(" ".repeat(3 << 20)), 413, ""),
    ];
    run_cases(&app, &cases).await;

    // Nothing the failed requests touched was left behind, and the API's
    // view is the kernel's: every interface it lists exists in the
    // namespace with the MAC and MTU it reports.
    assert_eq!(sorted(ns.link_names()), links_before);
    assert!(
        vtap_testkit::wait_until(std::time::Duration::from_secs(2), || fd_count(&pid)
            == fds_before),
        "fds {} != {fds_before}",
        fd_count(&pid)
    );
    let taps = json_of(&app, "/v1/taps").await;
    let taps = taps.as_array().expect("list");
    assert_eq!(taps.len(), 3);
    for t in taps {
        let name = t["host_if_name"].as_str().expect("name");
        let link = ns.link(name).expect("the kernel has it");
        assert_eq!(link["address"], t["host_mac_addr"], "{name}");
        assert_eq!(link["mtu"], t["host_mtu_size"], "{name}");
    }
    for t in ["tap0", "tap1", "tap2"] {
        let path = format!("/v1/taps/{t}");
        run_cases(&app, &[case(Method::DELETE, &path, None, 200, t)]).await;
    }
    assert!(
        ns.link_names()
            .iter()
            .all(|l| ![&h0, &h1, &h2].contains(&l)),
        "deleted interfaces are gone from the kernel"
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The daemon runs as root: a capture must never open, create, truncate or
/// follow a path a caller names. Every way of naming one is refused, the
/// paths are untouched, and the capture itself arrives in the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_never_touches_a_path_a_caller_names_and_is_streamed() {
    use futures::StreamExt;
    let ns = TestNs::new("apicap");
    let app = app();
    let h = ifname("vc");
    let body = json!({"id": 0, "host_ns": ns.name, "host_if_name": h,
        "host_ip4_addr": "198.18.7.1/24"});
    run_cases(
        &app,
        &[case(Method::POST, "/v1/taps", Some(body), 201, h.as_str())],
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let existing = dir.path().join("precious");
    std::fs::write(&existing, b"keep me").expect("write");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&existing, &link).expect("symlink");
    let fresh = dir.path().join("x");
    let dotdot = format!("{}/../{}/x", dir.path().display(), ns.name);
    for file in [
        fresh.display().to_string(),
        link.display().to_string(),
        existing.display().to_string(),
        dotdot.clone(),
        "../x".into(),
    ] {
        let c = case(
            Method::POST,
            "/v1/taps/tap0/capture",
            Some(json!({"file": file, "direction": "both"})),
            400,
            "file: vtapd never writes a file a caller names",
        );
        run_cases(&app, &[c]).await;
    }
    assert_eq!(std::fs::read(&existing).expect("read"), b"keep me");
    assert_eq!(std::fs::read_link(&link).expect("link"), existing);
    assert!(!fresh.exists(), "nothing created");
    assert!(!std::path::Path::new(&dotdot).exists(), "nothing created");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 2);

    // The capture is the response: pcap media type, the header first.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/taps/tap0/capture")
        .header("content-type", "application/json")
        .body(Body::from(json!({"direction": "rx"}).to_string()))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        vtapd::api::PCAP_MEDIA_TYPE,
        "pcap media type"
    );
    let mut stream = resp.into_body().into_data_stream();
    let first = stream.next().await.expect("a chunk").expect("data");
    assert_eq!(&first[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    assert_eq!(first.len(), 24, "the header alone until frames come");

    // One capture per interface; a second is a conflict.
    run_cases(
        &app,
        &[case(
            Method::POST,
            "/v1/taps/tap0/capture",
            Some(json!({})),
            409,
            "already running",
        )],
    )
    .await;
    // Frames from the host side arrive in the stream (a bridge of one port
    // has the forwarding plane read them; nobody answers the ARP request,
    // so the ping's failure is expected).
    run_cases(
        &app,
        &[
            case(
                Method::POST,
                "/v1/bridges",
                Some(json!({"name": "cap"})),
                201,
                "cap",
            ),
            case(
                Method::POST,
                "/v1/bridges/cap/interfaces",
                Some(json!({"iface": "tap0"})),
                200,
                "tap0",
            ),
        ],
    )
    .await;
    let _ = ns.exec("ping", &["-c", "1", "-W", "1", "198.18.7.9"]);
    let rec = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .expect("a record within 5 s")
        .expect("a chunk")
        .expect("data");
    assert!(rec.len() > 16 + 14, "a record: {} bytes", rec.len());
    // Stopping ends the stream.
    run_cases(
        &app,
        &[case(
            Method::DELETE,
            "/v1/taps/tap0/capture",
            None,
            200,
            "\"direction\":\"rx\"",
        )],
    )
    .await;
    let rest: Vec<_> = tokio::time::timeout(std::time::Duration::from_secs(5), stream.collect())
        .await
        .expect("the stream ends once stopped");
    assert!(rest.iter().all(Result::is_ok));
    // A client that goes away frees the interface for the next capture.
    let resp = start_capture(&app).await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    let resp = start_capture(&app).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the abandoned capture was replaced"
    );
    drop(resp);
    run_cases(
        &app,
        &[
            case(
                Method::DELETE,
                "/v1/bridges/cap/interfaces/tap0",
                None,
                200,
                "cap",
            ),
            case(Method::DELETE, "/v1/bridges/cap", None, 204, ""),
            case(Method::DELETE, "/v1/taps/tap0", None, 200, h.as_str()),
        ],
    )
    .await;
}

/// `POST /v1/taps/tap0/capture` with no body; the response (a stream).
async fn start_capture(app: &axum::Router) -> axum::response::Response {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/taps/tap0/capture")
        .body(Body::empty())
        .expect("request");
    app.clone().oneshot(req).await.expect("infallible")
}
