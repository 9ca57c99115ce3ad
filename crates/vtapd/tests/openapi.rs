//! The committed OpenAPI spec (docs/openapi.json) is the one the code
//! generates: routes and their descriptions come from the same declarations
//! (utoipa-axum), and this test fails when the file lags behind.
//!
//! Regenerate after an API change:
//! `VTAP_UPDATE_OPENAPI=1 cargo test -p vtapd --test openapi`.

#[test]
fn committed_spec_is_what_the_code_generates() {
    let spec = vtapd::api::openapi()
        .to_pretty_json()
        .expect("spec serialises")
        + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    if std::env::var_os("VTAP_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &spec).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == spec,
        "docs/openapi.json differs from the code; regenerate it with \
         VTAP_UPDATE_OPENAPI=1 cargo test -p vtapd --test openapi"
    );
}

#[test]
fn spec_covers_every_resource_with_its_errors() {
    let spec: serde_json::Value =
        serde_json::from_str(&vtapd::api::openapi().to_json().expect("json")).expect("parse");
    let paths = spec["paths"].as_object().expect("paths");
    for p in [
        "/v1/info",
        "/v1/taps",
        "/v1/taps/{iface}",
        "/v1/taps/{iface}/offload",
        "/v1/taps/{iface}/mtu",
        "/v1/taps/{iface}/rx-mode",
        "/v1/taps/{iface}/capture",
        "/v1/xconnects",
        "/v1/xconnects/{iface}",
        "/v1/bridges",
        "/v1/bridges/{bd}",
        "/v1/bridges/{bd}/interfaces",
        "/v1/bridges/{bd}/interfaces/{iface}",
        "/v1/host-interfaces",
        "/v1/host-interfaces/{iface}",
        "/v1/vxlan-tunnels",
        "/v1/vxlan-tunnels/{iface}",
        "/v1/vxlan-tunnels/{iface}/rx-mode",
        "/v1/vxlan-tunnels/{iface}/capture",
        "/v1/debug/fault",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the spec");
    }
    let create = &spec["paths"]["/v1/taps"]["post"];
    for status in ["201", "400", "403", "404", "409", "500", "503"] {
        assert!(
            create["responses"].get(status).is_some(),
            "POST /v1/taps lacks {status}"
        );
    }
    let schemas = spec["components"]["schemas"].as_object().expect("schemas");
    for s in [
        "CreateOptions",
        "TapInfo",
        "ErrorBody",
        "State",
        "Stats",
        "Caps",
    ] {
        assert!(schemas.contains_key(s), "schema {s} missing");
    }
}
