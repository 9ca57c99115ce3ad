//! `/v1/taps`: interfaces, their run-time changes, capture and re-attach.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;

/// This resource's routes, with their OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(delete_many))
        .routes(routes!(offload))
        .routes(routes!(set_mtu))
        .routes(routes!(rx_mode))
        .routes(routes!(attach))
        .routes(routes!(start_capture, stop_capture))
}

#[utoipa::path(get, path = "/v1/taps", tag = "taps",
    responses((status = 200, description = "every interface", body = Vec<vtap::TapInfo>)))]
async fn list(State(s): State<Arc<AppState>>) -> Json<Vec<vtap::TapInfo>> {
    let mut all = s.node.lock().await.registry.list();
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
    let mut node = s.node.lock().await;
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
        None => node.registry.free_id(&held)?,
    };
    opts.id = Some(id);
    // A bridge to join: checked (and the MTU fitted to its tunnels) before
    // anything is made; joined once the tap exists.
    let (opts, bridge) = node.fit_to_bridge(&opts)?;
    // Write-ahead: the intent is in the state file (one journal line)
    // before the kernel changes, so that a crash in the middle is rolled
    // back at restart.
    let mut record = |i: &vtap::registry::Intent| -> Result<(), String> {
        let intent = Pending {
            op: PendingOp::Create,
            id: i.id,
            host_if_name: i.host_if_name.clone(),
            host_ns: i.host_ns.clone(),
            attach: i.attach,
        };
        state::save_pending(&s, &[intent]).map_err(|e| format!("not done: {}", error_chain(&e)))
    };
    let created = node.registry.create_with_intent(&opts, &mut record).await;
    let info = match created {
        Ok(info) => info,
        Err(e) => {
            // Clear the intent (best effort: a stale one only makes the next
            // start look for a link that is not there).
            if let Err(se) = state::save(&s, &node, &[]) {
                tracing::warn!(error = %error_chain(&se), "cannot clear a create's intent");
            }
            return Err(e.into());
        }
    };
    if let Some(bd) = &bridge {
        if let Err(e) = node.join_or_undo(bd, &info).await {
            if let Err(se) = state::save(&s, &node, &[]) {
                tracing::warn!(error = %error_chain(&se), "cannot clear a create's intent");
            }
            return Err(e.into());
        }
    }
    if let Err(e) = state::save(&s, &node, &[]) {
        // Not durable: undo it (an attach is let go of, never deleted: the
        // interface existed before). The intent still in the file is
        // harmless: the next save that succeeds drops it.
        if let Some(bd) = &bridge {
            let _ = node.bridge_remove(bd, &info.name);
        }
        let undone = if info.attached {
            node.registry.release(&info.name).map(drop)
        } else {
            node.registry.delete(&info.name).await.map(drop)
        };
        if let Err(de) = undone {
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
    let node = s.node.lock().await;
    match node.registry.get(&iface) {
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
    responses((status = 200, description = "the interface, MTU read back; a `Warning` header (code 199) for each VXLAN tunnel of its bridge that carries less (frames longer are dropped there, counted `drop_too_big`)", body = vtap::TapInfo), Errors))]
async fn set_mtu(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: MtuRequest = parse_body(&body)?;
    let mut node = s.node.lock().await;
    let before = node
        .registry
        .get(&iface)
        .map_err(|e| live_only(&s, &iface, e))?;
    let (info, warnings) = node.set_mtu(&iface, req.mtu).await?;
    if let Err(e) = state::save(&s, &node, &[]) {
        if let Err(u) = node.registry.set_mtu(&iface, before.host_mtu_size).await {
            tracing::error!(error = %error_chain(&u), "cannot undo an MTU change that was not saved");
        }
        return Err(e.into());
    }
    let mut resp = Json(info).into_response();
    for w in warnings {
        tracing::warn!(iface = %iface, "{w}");
        // RFC 7234's form: code 199 (miscellaneous), agent, quoted text.
        let text = format!("199 vtapd \"{}\"", w.replace('"', "'"));
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            resp.headers_mut().append(axum::http::header::WARNING, v);
        }
    }
    Ok(resp)
}

#[utoipa::path(delete, path = "/v1/taps/{iface}", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the deleted interface", body = vtap::TapInfo), Errors))]
async fn delete(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let mut node = s.node.lock().await;
    if let Some(id) = detached_id(&s, &iface) {
        return delete_detached(&s, &node, id).await.map(Json);
    }
    node.check_deletable(&iface)?;
    let info = node.registry.get(&iface)?;
    // Write-ahead: once the intent is saved the delete is durable (a
    // restart finishes it); if it cannot be saved nothing is done.
    state::save(&s, &node, &[delete_intent(&info)])?;
    let deleted = node.registry.delete(&iface).await;
    // Clear the intent; if that fails the saved intent still says what
    // happened, and a restart finishes (or finds finished) the delete.
    if let Err(e) = state::save(&s, &node, &[]) {
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
async fn delete_detached(s: &AppState, node: &Node, id: u32) -> Result<vtap::TapInfo, ApiError> {
    let Some(d) = detached(s).get(&id).cloned() else {
        return Err(vtap::registry::Error::NotFound(id.to_string()).into());
    };
    let info = d.saved.info;
    state::save(s, node, &[delete_intent(&info)])?;
    let removed = node
        .registry
        .remove_leftover(info.host_ns.as_deref(), &info.host_if_name)
        .await;
    detached(s).remove(&id);
    if let Err(e) = state::save(s, node, &[]) {
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
    let mut node = s.node.lock().await;
    let mut failed = Vec::new();
    let mut keys = Vec::new();
    for iface in &req.interfaces {
        match node.check_deletable(iface) {
            Err(e @ vtap::node::Error::InUse { .. }) => {
                let e = ApiError::from(e);
                failed.push(DeleteFailure {
                    iface: iface.clone(),
                    status: e.status.as_u16(),
                    error: e.message,
                });
            }
            // Unknown keys fail in delete_many with their own reason.
            _ => keys.push(iface.as_str()),
        }
    }
    let intents: Vec<Pending> = keys
        .iter()
        .filter_map(|k| node.registry.get(k).ok())
        .map(|i| delete_intent(&i))
        .collect();
    state::save(&s, &node, &intents)?;
    let outcome = node.registry.delete_many(&keys).await;
    if let Err(e) = state::save(&s, &node, &[]) {
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
    let mut node = s.node.lock().await;
    let before = node
        .registry
        .get(&iface)
        .map_err(|e| live_only(&s, &iface, e))?;
    let info = node.registry.set_offload(&iface, action).await?;
    commit(&s, &mut node, |n| {
        n.registry
            .restore_offload(&iface, &before)
            .map(drop)
            .map_err(|e| error_chain(&e))
    })?;
    Ok(Json(info))
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
pub(super) struct Pcap(Vec<u8>);

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
    let (dir, count) = capture_request(&body)?;
    let stream = s
        .node
        .lock()
        .await
        .registry
        .start_capture(&iface, dir, count)?;
    Ok(pcap_response(stream))
}

/// A capture request's direction and count (a body naming a file is
/// refused: see [`refuse_capture_file`]).
pub(super) fn capture_request(
    body: &Bytes,
) -> Result<(vtap::datapath::capture::Direction, Option<u64>), ApiError> {
    refuse_capture_file(body)?;
    let req: CaptureRequest = parse_body(body)?;
    if req.count == Some(0) {
        return Err(ApiError::bad_request("count '0': must be at least 1"));
    }
    let dir = req
        .direction
        .unwrap_or(vtap::datapath::capture::Direction::Both);
    Ok((dir, req.count))
}

/// A capture's stream as a chunked pcap response.
pub(super) fn pcap_response(stream: vtap::datapath::capture::Stream) -> Response {
    let chunks = futures::stream::unfold(stream, |mut st| async move {
        st.next_chunk()
            .await
            .map(|c| (Ok::<_, std::convert::Infallible>(Bytes::from(c)), st))
    });
    (
        [(axum::http::header::CONTENT_TYPE, PCAP_MEDIA_TYPE)],
        axum::body::Body::from_stream(chunks),
    )
        .into_response()
}

#[utoipa::path(delete, path = "/v1/taps/{iface}/capture", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the stopped capture (its stream ends)", body = vtap::datapath::capture::CaptureState), Errors))]
async fn stop_capture(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::datapath::capture::CaptureState>, ApiError> {
    Ok(Json(s.node.lock().await.registry.stop_capture(&iface)?))
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
    let mut node = s.node.lock().await;
    let before = node
        .registry
        .get(&iface)
        .map_err(|e| live_only(&s, &iface, e))?
        .datapath
        .and_then(|d| d.rx.first().and_then(|q| q.mode))
        .unwrap_or_default();
    let info = node.registry.set_rx_mode(&iface, req.mode)?;
    commit(&s, &mut node, |n| {
        n.registry
            .set_rx_mode(&iface, before)
            .map(drop)
            .map_err(|e| error_chain(&e))
    })?;
    Ok(Json(info))
}

#[utoipa::path(post, path = "/v1/taps/{iface}/attach", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "re-attached: the interface, served again", body = vtap::TapInfo), Errors))]
async fn attach(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::TapInfo>, ApiError> {
    let mut node = s.node.lock().await;
    let Some(id) = detached_id(&s, &iface) else {
        node.registry.resolve(&iface)?;
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("interface '{iface}': already attached"),
        });
    };
    let info = state::reattach_one(&s, &mut node, id)
        .await
        .map_err(|reason| ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("interface '{iface}': still detached: {reason}"),
        })?;
    // The saved record does not change by being re-attached; saving only
    // refreshes what it says.
    if let Err(e) = state::save(&s, &node, &[]) {
        tracing::warn!(error = %error_chain(&e), "cannot save after a re-attach");
    }
    Ok(Json(info))
}
