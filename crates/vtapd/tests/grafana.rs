//! `dist/grafana/vtap.json` asks only for what vtapd exports: every series a
//! query names appears on `GET /metrics` of a daemon with an interface (on
//! rings), a bridge and API traffic (served in-process, against the real
//! kernel), and every label a query groups or filters by is a label of
//! that series.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use vtap::registry::{Registry, Settings};
use vtap_testkit::TestNs;
use vtapd::api::{router, AppState};

async fn call(app: &axum::Router, method: Method, path: &str, body: Option<Value>) -> String {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let ok = resp.status().is_success();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        ok || status == StatusCode::NOT_FOUND,
        "{path}: {status} {text}"
    );
    text
}

/// Every `expr` in the dashboard, wherever it sits.
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

/// Identifiers in a PromQL expression that name vtap series.
fn series(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("vtap_"))
        .map(str::to_string)
        .collect()
}

/// Label names a PromQL expression groups by (`by (a, b)`) or matches on
/// (`{a="x"}`).
fn labels(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("by (") {
        let tail = &rest[i + 4..];
        let end = tail.find(')').expect("closing parenthesis");
        out.extend(tail[..end].split(',').map(|l| l.trim().to_string()));
        rest = &tail[end..];
    }
    let mut rest = expr;
    while let Some(i) = rest.find('{') {
        let tail = &rest[i + 1..];
        let end = tail.find('}').expect("closing brace");
        for m in tail[..end].split(',') {
            let name: String = m
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
        rest = &tail[end..];
    }
    // Grafana's own macros are not labels.
    out.retain(|l| !l.is_empty() && !l.starts_with("__"));
    out
}

/// Each exported sample name with the label names it carries.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let set = out.entry(name.to_string()).or_default();
        if line[name_end..].starts_with('{') {
            let inner = &line[name_end + 1..line.find('}').expect("labels close")];
            for pair in inner.split("\",") {
                if let Some((k, _)) = pair.split_once('=') {
                    set.insert(k.trim().to_string());
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_a_series_vtapd_exports() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../dist/grafana/vtap.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard"))
        .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    exprs(&dash, &mut queries);
    assert!(queries.len() >= 15, "{} queries", queries.len());

    // A daemon with something to show: a tap in a bridge, and API calls.
    let ns = TestNs::new("gf");
    let app = router(Arc::new(AppState {
        socket: "in-process".into(),
        ..AppState::new(
            Registry::new(Settings::default()).expect("registry"),
            vtap::forward::Forwarder::new(1).expect("forwarder"),
        )
    }));
    let tap: Value = serde_json::from_str(
        &call(
            &app,
            Method::POST,
            "/v1/taps",
            // Rings (the userspace backend), so that ring series exist too.
            Some(json!({
                "host_ns": ns.name,
                "host_ip4_addr": "198.18.91.1/24",
                "backend": "userspace"
            })),
        )
        .await,
    )
    .expect("tap");
    let name = tap["name"].as_str().expect("name").to_string();
    call(
        &app,
        Method::POST,
        "/v1/bridges",
        Some(json!({"name": "gfb"})),
    )
    .await;
    call(
        &app,
        Method::POST,
        "/v1/bridges/gfb/interfaces",
        Some(json!({"iface": name})),
    )
    .await;
    call(&app, Method::GET, "/v1/info", None).await;
    let text = call(&app, Method::GET, "/metrics", None).await;
    let have = exported(&text);

    let mut missing = Vec::new();
    for q in &queries {
        let names = series(q);
        assert!(!names.is_empty(), "a query without a vtap series: {q}");
        let mut carried = BTreeSet::new();
        for n in &names {
            match have.get(n) {
                Some(ls) => carried.extend(ls.iter().cloned()),
                None => missing.push(format!("{n} (in {q})")),
            }
        }
        for l in labels(q) {
            if !carried.contains(&l) {
                missing.push(format!("label {l} (in {q})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard asks for what /metrics does not have: {missing:#?}\nexported: {:?}",
        have.keys().collect::<Vec<_>>()
    );

    call(
        &app,
        Method::DELETE,
        &format!("/v1/bridges/gfb/interfaces/{name}"),
        None,
    )
    .await;
    call(&app, Method::DELETE, "/v1/bridges/gfb", None).await;
    call(&app, Method::DELETE, &format!("/v1/taps/{name}"), None).await;
}

/// The parsers above, on what they must and must not find.
#[test]
fn the_query_parsers_find_series_and_labels() {
    let q = r#"sum by (iface, direction) (rate(vtap_queue_bytes_total{outcome=~"drop_.*"}[$__rate_interval])) * 8"#;
    assert_eq!(
        series(q).into_iter().collect::<Vec<_>>(),
        ["vtap_queue_bytes_total"]
    );
    assert_eq!(
        labels(q).into_iter().collect::<Vec<_>>(),
        ["direction", "iface", "outcome"]
    );
    let m = exported("# TYPE x counter\nvtap_a_total{iface=\"t,0\",queue=\"1\"} 3\nvtap_b 1\n");
    assert_eq!(m["vtap_a_total"].len(), 2, "{m:?}");
    assert!(m["vtap_b"].is_empty());
}
