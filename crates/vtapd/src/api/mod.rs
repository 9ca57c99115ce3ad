//! The REST API (JSON over HTTP/1.1 on a Unix socket).
//!
//! | method | path | body | answer |
//! |---|---|---|---|
//! | GET | `/v1/info` | | daemon facts |
//! | GET | `/v1/taps` | | list of interfaces |
//! | POST | `/v1/taps` | create options | 201 + the interface |
//! | GET | `/v1/taps/{if}` | | the interface |
//! | DELETE | `/v1/taps/{if}` | | the deleted interface |
//! | POST | `/v1/taps/{if}/offload` | `{"action": "gso-enable"}` | the interface |
//! | GET/POST | `/v1/host-interfaces` | `{"host_if_name": "eth0", "host_ns": "lan", "num_queues": 2}` | list / 201 + the uplink (`host-eth0`) |
//! | GET/DELETE | `/v1/host-interfaces/{if}` | | the uplink / the closed uplink |
//! | POST | `/v1/host-interfaces/{if}/rx-mode` | `{"mode": "polling"}` | the uplink |
//! | POST/DELETE | `/v1/host-interfaces/{if}/capture` | as for taps | the pcap stream / the stopped capture |
//! | GET/POST | `/v1/vxlan-tunnels` | `{"src": "198.18.0.1", "dst": "198.18.0.2", "vni": 42, "underlay_ns": "u"}` | list / 201 + the tunnel (`vxlan_tunnel0`) |
//! | GET/DELETE | `/v1/vxlan-tunnels/{if}` | | the tunnel / the deleted tunnel |
//! | POST/DELETE | `/v1/vxlan-tunnels/{if}/capture` | as for taps | the pcap stream of inner frames / the stopped capture |
//! | GET | `/v1/xconnects` | | list of cross-connects |
//! | POST | `/v1/xconnects` | `{"a": "tap0", "b": "tap1"}` | 201 + the cross-connect |
//! | DELETE | `/v1/xconnects/{if}` | | the removed cross-connect (either end names it) |
//! | POST | `/v1/taps/{if}/mtu` | `{"mtu": 9000}` | the interface (host side set and read back) |
//! | POST | `/v1/taps/{if}/rx-mode` | `{"mode": "polling"}` (`interrupt`, `adaptive`) | the interface |
//! | POST | `/v1/taps/{if}/capture` | `{"direction": "both", "count": 100}` | the capture, streamed as pcap (`application/vnd.tcpdump.pcap`) |
//! | DELETE | `/v1/taps/{if}/capture` | | the stopped capture (its stream ends) |
//! | POST | `/v1/taps/{if}/attach` | | re-attach a detached interface (one a restart could not) |
//! | GET/POST | `/v1/bridges` | `{"name": "bd1"}` | list / 201 + the bridge |
//! | GET/DELETE | `/v1/bridges/{bd}` | | the bridge with its MAC table / 204 |
//! | POST | `/v1/bridges/{bd}/interfaces` | `{"iface": "tap0"}` | the bridge |
//! | DELETE | `/v1/bridges/{bd}/interfaces/{if}` | | the bridge |
//! | POST | `/v1/{taps,host-interfaces,vxlan-tunnels}/{if}/rate-limit` | `{"direction": "tx", "bytes_per_sec": 1250000, "burst": 65536, "packets_per_sec": 10000}` (no rate: lift it) | the limits in force with their counters |
//! | POST | `/v1/{taps,host-interfaces,vxlan-tunnels}/{if}/rx-placement` | `{"queue": 1, "worker": 0}` | the cross-connect with every queue's worker (the peer's queue of that number moves too, unless directions are split) |
//! | GET | `/metrics` | | Prometheus text format: per queue packets, bytes, kicks, drops by reason, ring occupancy; offload counters; API requests |
//! | PUT/DELETE | `/v1/debug/fault` | `{"step": "set-mtu", "errno": 5}` | 204 (only with `[debug] fault_injection`) |
//!
//! Every change is saved to the state file before it is answered; one that
//! cannot be saved is undone and answered 503 naming the file and the reason.
//!
//! `{if}` is `tap<id>`, `tun<id>` or the id. Every error is
//! `{"error": "<one line naming the field and the reason>"}` with a 4xx status
//! for bad input (400 invalid, 404 unknown interface, 409 conflict, 403 no
//! privilege), 503 for a missing kernel facility, and 500 only when the kernel
//! refused something vtap did not expect.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vtap::fault::Fault;
use vtap::forward::{BridgeInfo, Xconnect};
use vtap::node::Node;
use vtap::registry::{error_chain, ErrorKind, OffloadAction};
use vtap::CreateOptions;

use crate::app::{detached, detached_id};
mod debug;
mod forwarding;
mod host_interfaces;
mod limits;
mod placement;
mod taps;
mod vxlan;

pub use forwarding::{BridgeRequest, PortRequest, XconnectRequest};
pub use taps::{
    CaptureRequest, DeleteFailure, DeleteRequest, DeleteResult, MtuRequest, OffloadRequest,
    RxModeRequest, MAX_BATCH, PCAP_MEDIA_TYPE,
};

pub use crate::app::AppState;
use crate::state::{self, Pending, PendingOp};

/// An API error: status and one-line message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// Status and message (for the fuzz targets' checks).
    pub(crate) fn parts(&self) -> (StatusCode, &str) {
        (self.status, &self.message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

/// The JSON error body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// One line naming the field and the reason.
    pub error: String,
}

/// The error responses every fallible operation may give (for the spec).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only its OpenAPI description is used
enum Errors {
    /// Invalid input: the message names the field and the reason.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No privilege (CAP_NET_ADMIN), or a gated debug resource.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown interface, bridge or resource.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Conflict: id or name taken, interface attached, bridge not empty.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The kernel refused something vtap did not expect.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// A kernel facility is missing (/dev/net/tun, /dev/vhost-net).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// The one mapping from an error's class to an HTTP status.
fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Permission => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<vtap::registry::Error> for ApiError {
    fn from(e: vtap::registry::Error) -> Self {
        Self {
            status: status_of(e.kind()),
            message: error_chain(&e),
        }
    }
}

impl From<vtap::node::Error> for ApiError {
    fn from(e: vtap::node::Error) -> Self {
        Self {
            status: status_of(e.kind()),
            message: error_chain(&e),
        }
    }
}

impl From<vtap::forward::Error> for ApiError {
    fn from(e: vtap::forward::Error) -> Self {
        Self {
            status: status_of(e.kind()),
            message: error_chain(&e),
        }
    }
}

impl From<state::Error> for ApiError {
    fn from(e: state::Error) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("not done: {}", error_chain(&e)),
        }
    }
}

/// Saves the state after a change; on failure runs `undo` (which puts the
/// change back) and refuses with 503 naming the file and the reason.
fn commit(
    s: &AppState,
    node: &mut Node,
    undo: impl FnOnce(&mut Node) -> Result<(), String>,
) -> Result<(), ApiError> {
    let Err(e) = state::save(s, node, &[]) else {
        return Ok(());
    };
    if let Err(u) = undo(node) {
        tracing::error!(error = %u, "a change that could not be saved could not be undone either");
    }
    tracing::error!(error = %error_chain(&e), "change refused: the state cannot be saved");
    Err(e.into())
}

/// Refuses an operation on interface `key` unless it is live: a tap the
/// registry serves or an open uplink (409 for a detached one, 404 for an
/// unknown one).
fn live(s: &AppState, node: &Node, key: &str) -> Result<(), ApiError> {
    if node.uplinks.find(key).is_some() || node.tunnels.find(key).is_some() {
        return Ok(());
    }
    if crate::app::detached_tunnel(s, key).is_some() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "interface '{key}': a saved tunnel not made again (see GET /v1/vxlan-tunnels/{key}); delete it or wait for the retry"
            ),
        });
    }
    if crate::app::detached_uplink_id(s, key).is_some() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "interface '{key}': a saved uplink not open again (see GET /v1/host-interfaces/{key}); delete it or wait for the retry"
            ),
        });
    }
    node.registry
        .resolve(key)
        .map(drop)
        .map_err(|e| live_only(s, key, e))
}

/// 409 for an operation on a detached interface, else the registry's error.
fn live_only(s: &AppState, key: &str, e: vtap::registry::Error) -> ApiError {
    match detached_id(s, key) {
        Some(_) => ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "interface '{key}': detached (not re-attached after a restart); \
                 POST /v1/taps/{key}/attach or delete it"
            ),
        },
        None => e.into(),
    }
}

pub(crate) fn parse_body<T: serde::de::DeserializeOwned + Serialize>(
    body: &Bytes,
) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    // serde accepts a struct written as a JSON array of its fields in order
    // (`[null, null]` would be a valid CreateOptions); the API's bodies are
    // objects, so an array is refused rather than read positionally.
    if value.is_array() {
        return Err(ApiError::bad_request(
            "request body: expected a JSON object, found an array",
        ));
    }
    let parsed: T = serde_json::from_value(value.clone())
        .map_err(|e| ApiError::bad_request(format!("request body: {e}")))?;
    // The same holds for structs inside the body (`"rate_limit": [null,
    // null]`): where what was read is an object, what was sent must be one.
    if let Ok(read) = serde_json::to_value(&parsed) {
        if let Some(path) = array_for_object(&value, &read, String::new()) {
            return Err(ApiError::bad_request(format!(
                "{path}: expected a JSON object, found an array"
            )));
        }
    }
    Ok(parsed)
}

/// The first place where `sent` has an array and `read` (what it was read
/// as) an object, as a dotted path.
fn array_for_object(
    sent: &serde_json::Value,
    read: &serde_json::Value,
    path: String,
) -> Option<String> {
    use serde_json::Value;
    let at = |k: &dyn std::fmt::Display| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (sent, read) {
        (Value::Array(_), Value::Object(_)) => Some(path),
        (Value::Object(s), Value::Object(r)) => s
            .iter()
            .find_map(|(k, v)| r.get(k).and_then(|rv| array_for_object(v, rv, at(k)))),
        (Value::Array(s), Value::Array(r)) => s
            .iter()
            .zip(r)
            .enumerate()
            .find_map(|(i, (v, rv))| array_for_object(v, rv, at(&i))),
        _ => None,
    }
}

/// The routes and the OpenAPI description, from the same declarations
/// (utoipa-axum): a route cannot exist without its description.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(info))
        .merge(taps::routes())
        .merge(host_interfaces::routes())
        .merge(vxlan::routes())
        .merge(limits::routes())
        .merge(placement::routes())
        .merge(forwarding::routes())
        .merge(debug::routes())
        .routes(routes!(metrics))
}

/// The spec's frame: title, version, description; paths come from
/// [`routes`].
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "vtapd",
        description = "The vtap daemon: TAP/TUN interfaces for a userspace data plane, \
                       JSON over HTTP/1.1 on a Unix socket (/run/vtap/vtap.sock).",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "daemon", description = "Facts and metrics"),
        (name = "taps", description = "Interfaces"),
        (name = "host-interfaces", description = "Host uplinks (AF_PACKET, AF_XDP)"),
        (name = "vxlan-tunnels", description = "VXLAN tunnel ports"),
        (name = "forwarding", description = "Cross-connects and bridge domains"),
        (name = "debug", description = "Fault injection ([debug] fault_injection = true)")
    )
)]
struct ApiDoc;

/// The OpenAPI 3 description of this API, as committed in docs/openapi.json.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().split_for_parts().1
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such API resource".into(),
            }
        })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError {
                    status: StatusCode::METHOD_NOT_ALLOWED,
                    message: format!("method {method} not allowed on {}", uri.path()),
                }
            },
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_request,
        ))
        .with_state(state)
}

/// Counts every request by route template, method and status. (Each
/// change saves the state itself, and is undone and refused when it cannot:
/// see [`crate::state`].)
async fn count_request(
    State(s): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    s.api_latency
        .get_or_create(&crate::metrics::RouteLabels {
            route: route.clone(),
            method: method.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    s.api_requests
        .get_or_create(&crate::metrics::ApiLabels {
            route,
            method,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}

#[utoipa::path(get, path = "/metrics", tag = "daemon",
    responses((status = 200, description = "Prometheus/OpenMetrics text", content_type = "application/openmetrics-text", body = String)))]
async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let node = s.node.lock().await;
    let (taps, uplinks, tunnels, bridges, worker_frames) = (
        node.registry.list(),
        node.uplinks.list(),
        node.tunnels.list(),
        node.forwarder.bridges(),
        node.forwarder.worker_frames(),
    );
    drop(node);
    let body = crate::metrics::render(
        &taps,
        &uplinks,
        &tunnels,
        &bridges,
        &worker_frames,
        &s.api_requests,
        &s.api_latency,
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// `GET /v1/info`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Info {
    /// vtap version.
    pub version: String,
    /// Daemon pid.
    pub pid: u32,
    /// Socket path.
    pub socket: String,
    /// Number of interfaces.
    pub interfaces: usize,
    /// Default host MTU in force.
    pub default_host_mtu: Option<u32>,
    /// USO allowed.
    pub uso: bool,
    /// Host uplinks open.
    #[serde(default)]
    pub host_interfaces: usize,
    /// VXLAN tunnels live.
    #[serde(default)]
    pub vxlan_tunnels: usize,
    /// The CPU each forwarding worker is pinned to (empty: unpinned).
    #[serde(default)]
    pub worker_cpus: Vec<usize>,
    /// µs a worker keeps polling after the last frame before it sleeps.
    #[serde(default)]
    pub poll_window_us: u64,
    /// Frames each forwarding worker has read (index: the worker).
    #[serde(default)]
    pub worker_frames: Vec<u64>,
}

#[utoipa::path(get, path = "/v1/info", tag = "daemon",
    responses((status = 200, description = "daemon facts", body = Info)))]
async fn info(State(s): State<Arc<AppState>>) -> Json<Info> {
    let node = s.node.lock().await;
    let reg = &node.registry;
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        socket: s.socket.clone(),
        interfaces: reg.len(),
        default_host_mtu: reg.settings().default_host_mtu,
        uso: reg.settings().allow_uso,
        host_interfaces: node.uplinks.len(),
        vxlan_tunnels: node.tunnels.len(),
        worker_cpus: node.forwarder.cpus().to_vec(),
        poll_window_us: u64::try_from(node.forwarder.poll_window().as_micros()).unwrap_or(u64::MAX),
        worker_frames: node.forwarder.worker_frames(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_struct_sent_as_an_array_is_refused_at_any_depth() {
        let cases = [
            (r#"[null, null]"#, "request body: expected a JSON object"),
            (
                r#"{"rate_limit": [null, null]}"#,
                "rate_limit: expected a JSON object",
            ),
            (
                r#"{"rate_limit": {"tx": [1, 2, 3, 4, 5]}}"#,
                "rate_limit.tx: expected a JSON object",
            ),
            (
                r#"{"host_routes": [{"dst": "198.18.0.0/16"}, ["198.18.0.0/16", null]]}"#,
                "host_routes.1: expected a JSON object",
            ),
        ];
        for (body, why) in cases {
            let e = parse_body::<CreateOptions>(&Bytes::from(body)).expect_err(body);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(why), "{body}: {}", e.message);
        }
        let ok = r#"{"host_addrs": ["198.18.1.1/24"], "rate_limit": {"tx": {"bytes_per_sec": 5}}}"#;
        assert!(parse_body::<CreateOptions>(&Bytes::from(ok)).is_ok());
    }

    #[test]
    fn each_error_class_maps_to_one_status() {
        let table = [
            (ErrorKind::Invalid, 400),
            (ErrorKind::Permission, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Internal, 500),
            (ErrorKind::Unavailable, 503),
        ];
        for (kind, status) in table {
            assert_eq!(status_of(kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn every_error_type_goes_through_the_same_mapping() {
        let reg: ApiError = vtap::registry::Error::NotFound("tap9".into()).into();
        let fwd: ApiError = vtap::forward::Error::BridgeExists("bd".into()).into();
        let node: ApiError = vtap::node::Error::InUse {
            iface: "tap0".into(),
            what: "in bridge bd; remove it from the bridge first".into(),
        }
        .into();
        let saved: ApiError = crate::state::Error::Io {
            path: "/run/vtap/vtap.state.json".into(),
            what: "write it",
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        }
        .into();
        let table = [
            (reg, 404, "tap9"),
            (fwd, 409, "already exists"),
            (node, 409, "remove it from the bridge first"),
            (saved, 503, "No space left on device"),
        ];
        for (e, status, words) in table {
            let (s, m) = e.parts();
            assert_eq!(s.as_u16(), status, "{m}");
            assert!(m.contains(words), "{m}");
        }
    }
}
