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
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vtap::fault::Fault;
use vtap::forward::{BridgeInfo, Xconnect};
use vtap::registry::{error_chain, ErrorKind, OffloadAction, Registry};
use vtap::CreateOptions;

use crate::app::{detached, detached_id};
pub use crate::app::{forwarder, AppState};
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

impl From<vtap::registry::Error> for ApiError {
    fn from(e: vtap::registry::Error) -> Self {
        let status = match e.kind() {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Permission => StatusCode::FORBIDDEN,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self {
            status,
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
    reg: &Registry,
    undo: impl FnOnce() -> Result<(), String>,
) -> Result<(), ApiError> {
    let Err(e) = state::save(s, reg, &[]) else {
        return Ok(());
    };
    if let Err(u) = undo() {
        tracing::error!(error = %u, "a change that could not be saved could not be undone either");
    }
    tracing::error!(error = %error_chain(&e), "change refused: the state cannot be saved");
    Err(e.into())
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

pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
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
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

/// The routes and the OpenAPI description, from the same declarations
/// (utoipa-axum): a route cannot exist without its description.
fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(info))
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(delete_many))
        .routes(routes!(offload))
        .routes(routes!(set_mtu))
        .routes(routes!(rx_mode))
        .routes(routes!(attach))
        .routes(routes!(start_capture, stop_capture))
        .routes(routes!(list_xconnects, add_xconnect))
        .routes(routes!(remove_xconnect))
        .routes(routes!(list_bridges, create_bridge))
        .routes(routes!(show_bridge, delete_bridge))
        .routes(routes!(add_bridge_port))
        .routes(routes!(remove_bridge_port))
        .routes(routes!(arm_fault, disarm_fault))
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
    let resp = next.run(req).await;
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
    let taps = s.registry.lock().await.list();
    let bridges = forwarder(&s).bridges();
    let body = crate::metrics::render(&taps, &bridges, &s.api_requests);
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
}

#[utoipa::path(get, path = "/v1/info", tag = "daemon",
    responses((status = 200, description = "daemon facts", body = Info)))]
async fn info(State(s): State<Arc<AppState>>) -> Json<Info> {
    let reg = s.registry.lock().await;
    Json(Info {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        socket: s.socket.clone(),
        interfaces: reg.len(),
        default_host_mtu: reg.settings().default_host_mtu,
        uso: reg.settings().allow_uso,
    })
}

#[utoipa::path(get, path = "/v1/taps", tag = "taps",
    responses((status = 200, description = "every interface", body = Vec<vtap::TapInfo>)))]
async fn list(State(s): State<Arc<AppState>>) -> Json<Vec<vtap::TapInfo>> {
    let mut all = s.registry.lock().await.list();
    all.extend(detached(&s).values().map(|d| d.saved.info.clone()));
    all.sort_by_key(|t| t.id);
    Json(all)
}

#[utoipa::path(post, path = "/v1/taps", tag = "taps",
    request_body(content = Option<CreateOptions>, description = "create options; an empty body or null means every default"),
    responses((status = 201, description = "created (or attached), read back from the kernel", body = vtap::TapInfo), Errors))]
async fn create(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    // An empty body, or `null`, means every default (the spec says so).
    let mut opts: CreateOptions = parse_body::<Option<CreateOptions>>(&body)?.unwrap_or_default();
    let mut reg = s.registry.lock().await;
    // Ids of detached interfaces stay theirs.
    let held: std::collections::BTreeSet<u32> = detached(&s).keys().copied().collect();
    let id = match opts.id {
        Some(id) if held.contains(&id) => {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                message: format!(
                    "id {id}: held by a detached interface; re-attach or delete it first"
                ),
            })
        }
        Some(id) => id,
        None => reg.free_id(&held)?,
    };
    opts.id = Some(id);
    // Write-ahead: the intent is in the state file before the kernel
    // changes, so that a crash in the middle is rolled back at restart.
    let base = state::snapshot(&s, &reg, &[]);
    let path = s.state_file.clone();
    let mut record = |i: &vtap::registry::Intent| -> Result<(), String> {
        let Some(path) = &path else { return Ok(()) };
        let mut saved = base.clone();
        saved.pending.push(Pending {
            op: PendingOp::Create,
            id: i.id,
            host_if_name: i.host_if_name.clone(),
            host_ns: i.host_ns.clone(),
            attach: i.attach,
        });
        state::store(path, &saved).map_err(|e| format!("not done: {}", error_chain(&e)))
    };
    let created = reg.create_with_intent(&opts, &mut record).await;
    let info = match created {
        Ok(info) => info,
        Err(e) => {
            // Clear the intent (best effort: a stale one only makes the next
            // start look for a link that is not there).
            if let Err(se) = state::save(&s, &reg, &[]) {
                tracing::warn!(error = %error_chain(&se), "cannot clear a create's intent");
            }
            return Err(e.into());
        }
    };
    if let Err(e) = state::save(&s, &reg, &[]) {
        // Not durable: undo it. The intent still in the file is harmless.
        if let Err(de) = reg.delete(&info.name).await {
            tracing::error!(iface = %info.name, error = %error_chain(&de), "cannot undo a create that was not saved");
        }
        return Err(e.into());
    }
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(get, path = "/v1/taps/{iface}", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the interface", body = vtap::TapInfo), Errors))]
async fn show(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let reg = s.registry.lock().await;
    match reg.get(&iface) {
        Ok(info) => Ok(Json(info)),
        Err(e) => match detached_id(&s, &iface) {
            Some(id) => Ok(Json(detached(&s)[&id].saved.info.clone())),
            None => Err(e.into()),
        },
    }
}

/// `POST /v1/taps/{if}/mtu` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MtuRequest {
    /// The MTU, 68..=65521.
    pub mtu: u32,
}

#[utoipa::path(post, path = "/v1/taps/{iface}/mtu", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    request_body = MtuRequest,
    responses((status = 200, description = "the interface, MTU read back", body = vtap::TapInfo), Errors))]
async fn set_mtu(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let req: MtuRequest = parse_body(&body)?;
    let mut reg = s.registry.lock().await;
    let before = reg.get(&iface).map_err(|e| live_only(&s, &iface, e))?;
    let info = reg.set_mtu(&iface, req.mtu).await?;
    if let Err(e) = state::save(&s, &reg, &[]) {
        if let Err(u) = reg.set_mtu(&iface, before.host_mtu_size).await {
            tracing::error!(error = %error_chain(&u), "cannot undo an MTU change that was not saved");
        }
        return Err(e.into());
    }
    Ok(Json(info))
}

#[utoipa::path(delete, path = "/v1/taps/{iface}", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the deleted interface", body = vtap::TapInfo), Errors))]
async fn delete(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let mut reg = s.registry.lock().await;
    if let Some(id) = detached_id(&s, &iface) {
        return delete_detached(&s, &reg, id).await.map(Json);
    }
    let id = reg.resolve(&iface)?;
    if let Some(what) = forwarder(&s).attachment(id) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("interface '{iface}': {what}"),
        });
    }
    let info = reg.get(&iface)?;
    // Write-ahead: once the intent is saved the delete is durable (a
    // restart finishes it); if it cannot be saved nothing is done.
    state::save(&s, &reg, &[delete_intent(&info)])?;
    let deleted = reg.delete(&iface).await;
    // Clear the intent; if that fails the saved intent still says what
    // happened, and a restart finishes (or finds finished) the delete.
    if let Err(e) = state::save(&s, &reg, &[]) {
        tracing::warn!(error = %error_chain(&e), "cannot clear a delete's intent");
    }
    Ok(Json(deleted?))
}

/// The write-ahead record of deleting `info`.
fn delete_intent(info: &vtap::TapInfo) -> Pending {
    Pending {
        op: PendingOp::Delete,
        id: info.id,
        host_if_name: info.host_if_name.clone(),
        host_ns: info.host_ns.clone(),
        attach: info.attached,
    }
}

/// Deletes a detached interface: its link, if it still exists, and its
/// record (write-ahead, as for any delete).
async fn delete_detached(s: &AppState, reg: &Registry, id: u32) -> Result<vtap::TapInfo, ApiError> {
    let Some(d) = detached(s).get(&id).cloned() else {
        return Err(vtap::registry::Error::NotFound(id.to_string()).into());
    };
    let info = d.saved.info;
    state::save(s, reg, &[delete_intent(&info)])?;
    let removed = reg
        .remove_leftover(info.host_ns.as_deref(), &info.host_if_name)
        .await;
    detached(s).remove(&id);
    if let Err(e) = state::save(s, reg, &[]) {
        tracing::warn!(error = %error_chain(&e), "cannot clear a delete's intent");
    }
    if let Err(e) = removed {
        // The record is gone; the link (if any) could not be: say so.
        tracing::warn!(iface = %info.name, error = %error_chain(&e), "detached interface forgotten; its link could not be removed");
    }
    Ok(info)
}

/// `POST /v1/taps/delete` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// The interfaces (`tap0`, `tun1` or ids), 1 to 4096, each once.
    pub interfaces: Vec<String>,
}

/// Most interfaces in one batch deletion.
pub const MAX_BATCH: usize = 4096;

/// One interface a batch deletion left in place, and why.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeleteFailure {
    /// The interface as given.
    pub iface: String,
    /// The status a single deletion would have answered.
    pub status: u16,
    /// One line naming the reason.
    pub error: String,
}

/// What a batch deletion did.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeleteResult {
    /// The interfaces deleted.
    pub deleted: Vec<vtap::TapInfo>,
    /// Those left in place (intact: delete them again once the reason is gone).
    pub failed: Vec<DeleteFailure>,
}

#[utoipa::path(post, path = "/v1/taps/delete", tag = "taps",
    request_body = DeleteRequest,
    responses((status = 200, description = "each interface deleted or left intact with its reason \
        (the kernel's part of the deletions runs concurrently: ~20 ms of RCU waiting each, overlapped)",
        body = DeleteResult), Errors))]
async fn delete_many(
    State(s): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<DeleteResult>, ApiError> {
    let req: DeleteRequest = parse_body(&body)?;
    if req.interfaces.is_empty() || req.interfaces.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "interfaces: {} given, must be 1..={MAX_BATCH}",
            req.interfaces.len()
        )));
    }
    let mut reg = s.registry.lock().await;
    let mut failed = Vec::new();
    let mut keys = Vec::new();
    for iface in &req.interfaces {
        let attached = reg
            .resolve(iface)
            .ok()
            .and_then(|id| forwarder(&s).attachment(id));
        match attached {
            Some(what) => failed.push(DeleteFailure {
                iface: iface.clone(),
                status: StatusCode::CONFLICT.as_u16(),
                error: format!("interface '{iface}': {what}"),
            }),
            None => keys.push(iface.as_str()),
        }
    }
    let intents: Vec<Pending> = keys
        .iter()
        .filter_map(|k| reg.get(k).ok())
        .map(|i| delete_intent(&i))
        .collect();
    state::save(&s, &reg, &intents)?;
    let outcome = reg.delete_many(&keys).await;
    if let Err(e) = state::save(&s, &reg, &[]) {
        tracing::warn!(error = %error_chain(&e), "cannot clear the deletes' intents");
    }
    let mut deleted = Vec::new();
    for (r, iface) in outcome.into_iter().zip(&keys) {
        match r {
            Ok(info) => deleted.push(info),
            Err(e) => {
                let e = ApiError::from(e);
                failed.push(DeleteFailure {
                    iface: (*iface).to_string(),
                    status: e.status.as_u16(),
                    error: e.message,
                });
            }
        }
    }
    Ok(Json(DeleteResult { deleted, failed }))
}

fn forwarding_error(e: vtap::forward::Error) -> ApiError {
    use vtap::forward::Error as E;
    let status = match e {
        E::Busy { .. } | E::Attached { .. } | E::BridgeExists(_) | E::BridgeNotEmpty(_) => {
            StatusCode::CONFLICT
        }
        E::NotFound(_) | E::NoBridge(_) | E::NotAPort { .. } => StatusCode::NOT_FOUND,
        E::Worker(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError {
        status,
        message: error_chain(&e),
    }
}

/// `POST /v1/xconnects` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct XconnectRequest {
    /// One end (`tap0`, `tun1` or an id).
    pub a: String,
    /// The other end.
    pub b: String,
}

#[utoipa::path(get, path = "/v1/xconnects", tag = "forwarding",
    responses((status = 200, description = "every cross-connect", body = Vec<Xconnect>)))]
async fn list_xconnects(State(s): State<Arc<AppState>>) -> Json<Vec<Xconnect>> {
    Json(forwarder(&s).list())
}

#[utoipa::path(post, path = "/v1/xconnects", tag = "forwarding",
    request_body = XconnectRequest,
    responses((status = 201, description = "the cross-connect", body = Xconnect), Errors))]
async fn add_xconnect(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let req: XconnectRequest = parse_body(&body)?;
    let reg = s.registry.lock().await;
    let a = reg.end(&req.a).map_err(|e| live_only(&s, &req.a, e))?;
    let b = reg.end(&req.b).map_err(|e| live_only(&s, &req.b, e))?;
    let id = a.id;
    let x = forwarder(&s).xconnect(a, b).map_err(forwarding_error)?;
    commit(&s, &reg, || {
        forwarder(&s)
            .remove(id, &x.a)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok((StatusCode::CREATED, Json(x)).into_response())
}

#[utoipa::path(delete, path = "/v1/xconnects/{iface}", tag = "forwarding", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the removed cross-connect (either end names it)", body = Xconnect), Errors))]
async fn remove_xconnect(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<Xconnect>, ApiError> {
    let reg = s.registry.lock().await;
    let id = reg.resolve(&iface).map_err(|e| live_only(&s, &iface, e))?;
    let x = forwarder(&s).remove(id, &iface).map_err(forwarding_error)?;
    commit(&s, &reg, || {
        let (a, b) = (
            reg.end(&x.a).map_err(|e| e.to_string())?,
            reg.end(&x.b).map_err(|e| e.to_string())?,
        );
        forwarder(&s)
            .xconnect(a, b)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok(Json(x))
}

/// `POST /v1/taps/{if}/offload` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffloadRequest {
    /// `gso-enable`, `gso-disable`, `csum-offload-enable`, ...
    pub action: String,
}

#[utoipa::path(post, path = "/v1/taps/{iface}/offload", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    request_body = OffloadRequest,
    responses((status = 200, description = "the interface", body = vtap::TapInfo), Errors))]
async fn offload(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let req: OffloadRequest = parse_body(&body)?;
    let action: OffloadAction = req
        .action
        .parse()
        .map_err(|e: vtap::options::Error| ApiError::bad_request(e.to_string()))?;
    let mut reg = s.registry.lock().await;
    let before = reg.get(&iface).map_err(|e| live_only(&s, &iface, e))?;
    let info = reg.set_offload(&iface, action).await?;
    if let Err(e) = state::save(&s, &reg, &[]) {
        if let Err(u) = reg.restore_offload(&iface, &before) {
            tracing::error!(error = %error_chain(&u), "cannot undo an offload change that was not saved");
        }
        return Err(e.into());
    }
    Ok(Json(info))
}

fn fault_gate(s: &AppState) -> Result<(), ApiError> {
    if s.fault_injection {
        Ok(())
    } else {
        Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "fault injection is off (set [debug] fault_injection = true)".into(),
        })
    }
}

#[utoipa::path(put, path = "/v1/debug/fault", tag = "debug",
    request_body = Fault,
    responses((status = 204, description = "armed: the step fails once"), Errors))]
async fn arm_fault(State(s): State<Arc<AppState>>, body: Bytes) -> Result<StatusCode, ApiError> {
    fault_gate(&s)?;
    let fault: Fault = parse_body(&body)?;
    s.registry.lock().await.faults().arm(fault);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/debug/fault", tag = "debug",
    responses((status = 204, description = "disarmed"), Errors))]
async fn disarm_fault(State(s): State<Arc<AppState>>) -> Result<StatusCode, ApiError> {
    fault_gate(&s)?;
    s.registry.lock().await.faults().disarm();
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/bridges` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BridgeRequest {
    /// The bridge name (1-32 letters, digits, '-', '_').
    pub name: String,
    /// Most MAC addresses it learns (default: the daemon's `[bridge]
    /// mac_limit`, 16384); beyond it frames are still flooded.
    #[serde(default)]
    pub mac_limit: Option<usize>,
}

/// `POST /v1/bridges/{bd}/interfaces` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRequest {
    /// The interface (`tap0` or an id).
    pub iface: String,
}

#[utoipa::path(get, path = "/v1/bridges", tag = "forwarding",
    responses((status = 200, description = "every bridge domain", body = Vec<BridgeInfo>)))]
async fn list_bridges(State(s): State<Arc<AppState>>) -> Json<Vec<BridgeInfo>> {
    Json(forwarder(&s).bridges())
}

#[utoipa::path(post, path = "/v1/bridges", tag = "forwarding",
    request_body = BridgeRequest,
    responses((status = 201, description = "the empty bridge domain", body = BridgeInfo), Errors))]
async fn create_bridge(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let req: BridgeRequest = parse_body(&body)?;
    let reg = s.registry.lock().await;
    let b = forwarder(&s)
        .bridge_create_with(&req.name, req.mac_limit)
        .map_err(forwarding_error)?;
    commit(&s, &reg, || {
        forwarder(&s)
            .bridge_delete(&req.name)
            .map_err(|e| e.to_string())
    })?;
    Ok((StatusCode::CREATED, Json(b)).into_response())
}

#[utoipa::path(get, path = "/v1/bridges/{bd}", tag = "forwarding", params(("bd" = String, Path, description = "bridge domain name")),
    responses((status = 200, description = "the bridge with its MAC table", body = BridgeInfo), Errors))]
async fn show_bridge(
    State(s): State<Arc<AppState>>,
    Path(bd): Path<String>,
) -> Result<Json<BridgeInfo>, ApiError> {
    Ok(Json(forwarder(&s).bridge(&bd).map_err(forwarding_error)?))
}

#[utoipa::path(delete, path = "/v1/bridges/{bd}", tag = "forwarding", params(("bd" = String, Path, description = "bridge domain name")),
    responses((status = 204, description = "deleted (empty bridges only)"), Errors))]
async fn delete_bridge(
    State(s): State<Arc<AppState>>,
    Path(bd): Path<String>,
) -> Result<StatusCode, ApiError> {
    let reg = s.registry.lock().await;
    let limit = forwarder(&s)
        .bridge(&bd)
        .map_err(forwarding_error)?
        .mac_limit;
    if detached(&s)
        .values()
        .any(|d| d.memberships.bridges.contains(&bd))
    {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "bridge '{bd}': a detached interface will rejoin it; delete that interface first"
            ),
        });
    }
    forwarder(&s).bridge_delete(&bd).map_err(forwarding_error)?;
    commit(&s, &reg, || {
        forwarder(&s)
            .bridge_create_with(&bd, Some(limit))
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/bridges/{bd}/interfaces", tag = "forwarding", params(("bd" = String, Path, description = "bridge domain name")),
    request_body = PortRequest,
    responses((status = 200, description = "the bridge", body = BridgeInfo), Errors))]
async fn add_bridge_port(
    State(s): State<Arc<AppState>>,
    Path(bd): Path<String>,
    body: Bytes,
) -> Result<Json<BridgeInfo>, ApiError> {
    let req: PortRequest = parse_body(&body)?;
    let reg = s.registry.lock().await;
    let end = reg
        .end(&req.iface)
        .map_err(|e| live_only(&s, &req.iface, e))?;
    let (id, name) = (end.id, end.name.clone());
    let b = forwarder(&s)
        .bridge_add(&bd, end)
        .map_err(forwarding_error)?;
    commit(&s, &reg, || {
        forwarder(&s)
            .bridge_remove(&bd, id, &name)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok(Json(b))
}

#[utoipa::path(delete, path = "/v1/bridges/{bd}/interfaces/{iface}", tag = "forwarding", params(("bd" = String, Path, description = "bridge domain name"), ("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the bridge", body = BridgeInfo), Errors))]
async fn remove_bridge_port(
    State(s): State<Arc<AppState>>,
    Path((bd, iface)): Path<(String, String)>,
) -> Result<Json<BridgeInfo>, ApiError> {
    let reg = s.registry.lock().await;
    let id = reg.resolve(&iface).map_err(|e| live_only(&s, &iface, e))?;
    let b = forwarder(&s)
        .bridge_remove(&bd, id, &iface)
        .map_err(forwarding_error)?;
    commit(&s, &reg, || {
        let end = reg.end(&iface).map_err(|e| e.to_string())?;
        forwarder(&s)
            .bridge_add(&bd, end)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok(Json(b))
}

/// `POST /v1/taps/{if}/capture` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// `rx`, `tx` or `both` (default `both`).
    #[serde(default)]
    pub direction: Option<vtap::datapath::capture::Direction>,
    /// Stop after this many frames (default: until stopped or the client
    /// disconnects).
    #[serde(default)]
    pub count: Option<u64>,
}

/// A pcap stream (classic pcap, microsecond timestamps).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // only its OpenAPI description is used
struct Pcap(Vec<u8>);

/// The pcap media type (IANA).
pub const PCAP_MEDIA_TYPE: &str = "application/vnd.tcpdump.pcap";

/// Checks a capture request body before it is parsed: the daemon never
/// writes a file a caller names, and says so rather than "unknown field".
fn refuse_capture_file(body: &Bytes) -> Result<(), ApiError> {
    let names_file = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("file").is_some());
    if names_file {
        return Err(ApiError::bad_request(
            "file: vtapd never writes a file a caller names; the pcap is streamed in the \
             response (`vtap capture IF --file F` writes it on the client's side)",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/taps/{iface}/capture", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    request_body = CaptureRequest,
    responses((status = 200, description = "the capture as a pcap stream (chunked), from the pcap header on; \
        it ends when the count is reached, the capture is stopped (DELETE), or the interface is deleted; \
        closing the connection stops it", content_type = "application/vnd.tcpdump.pcap", body = Pcap), Errors))]
async fn start_capture(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    refuse_capture_file(&body)?;
    let req: CaptureRequest = parse_body(&body)?;
    if req.count == Some(0) {
        return Err(ApiError::bad_request("count '0': must be at least 1"));
    }
    let dir = req
        .direction
        .unwrap_or(vtap::datapath::capture::Direction::Both);
    let stream = s
        .registry
        .lock()
        .await
        .start_capture(&iface, dir, req.count)?;
    let chunks = futures::stream::unfold(stream, |mut st| async move {
        st.next_chunk()
            .await
            .map(|c| (Ok::<_, std::convert::Infallible>(Bytes::from(c)), st))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, PCAP_MEDIA_TYPE)],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

#[utoipa::path(delete, path = "/v1/taps/{iface}/capture", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the stopped capture (its stream ends)", body = vtap::datapath::capture::CaptureState), Errors))]
async fn stop_capture(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::datapath::capture::CaptureState>, ApiError> {
    Ok(Json(s.registry.lock().await.stop_capture(&iface)?))
}

/// `POST /v1/taps/{if}/rx-mode` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RxModeRequest {
    /// `polling`, `interrupt` or `adaptive`.
    pub mode: vtap::datapath::RxMode,
}

#[utoipa::path(post, path = "/v1/taps/{iface}/rx-mode", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    request_body = RxModeRequest,
    responses((status = 200, description = "the interface", body = vtap::TapInfo), Errors))]
async fn rx_mode(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let req: RxModeRequest = parse_body(&body)?;
    let mut reg = s.registry.lock().await;
    let before = reg
        .get(&iface)
        .map_err(|e| live_only(&s, &iface, e))?
        .datapath
        .and_then(|d| d.rx.first().and_then(|q| q.mode))
        .unwrap_or_default();
    let info = reg.set_rx_mode(&iface, req.mode)?;
    if let Err(e) = state::save(&s, &reg, &[]) {
        if let Err(u) = reg.set_rx_mode(&iface, before) {
            tracing::error!(error = %error_chain(&u), "cannot undo an rx-mode change that was not saved");
        }
        return Err(e.into());
    }
    Ok(Json(info))
}

#[utoipa::path(post, path = "/v1/taps/{iface}/attach", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "re-attached: the interface, served again", body = vtap::TapInfo), Errors))]
async fn attach(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let mut reg = s.registry.lock().await;
    let Some(id) = detached_id(&s, &iface) else {
        reg.resolve(&iface)?;
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("interface '{iface}': already attached"),
        });
    };
    let info = state::reattach_one(&s, &mut reg, id)
        .await
        .map_err(|reason| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("interface '{iface}': still detached: {reason}"),
        })?;
    // The saved record does not change by being re-attached; saving only
    // refreshes what it says.
    if let Err(e) = state::save(&s, &reg, &[]) {
        tracing::warn!(error = %error_chain(&e), "cannot save after a re-attach");
    }
    Ok(Json(info))
}
