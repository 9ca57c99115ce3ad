//! `/v1/vxlan-tunnels`: VXLAN tunnel ports (VPP's `create vxlan tunnel`).
//! Cross-connects and bridge ports take their names like taps'
//! (`/v1/xconnects`, `/v1/bridges/{bd}/interfaces`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vtap::tunnel::{VxlanInfo, VxlanOptions};

use super::*;
use crate::app::{detached_tunnel, detached_tunnels};

/// This resource's routes, with their OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(rx_mode))
        .routes(routes!(start_capture, stop_capture))
}

impl From<vtap::tunnel::Error> for ApiError {
    fn from(e: vtap::tunnel::Error) -> Self {
        Self {
            status: status_of(e.kind()),
            message: error_chain(&e),
        }
    }
}

/// The detached tunnel `key` names, as `show` gives it.
fn detached_info(s: &AppState, key: &str) -> Option<VxlanInfo> {
    let i = detached_tunnel(s, key)?;
    detached_tunnels(s)
        .get(&i)
        .map(|d| VxlanInfo::detached(&d.saved.options, d.reason.clone()))
}

#[utoipa::path(get, path = "/v1/vxlan-tunnels", tag = "vxlan-tunnels",
    responses((status = 200, description = "every tunnel (saved ones not made again carry `detached` with the reason)", body = Vec<VxlanInfo>)))]
async fn list(State(s): State<Arc<AppState>>) -> Json<Vec<VxlanInfo>> {
    let mut all = s.node.lock().await.tunnels.list();
    all.extend(
        detached_tunnels(&s)
            .values()
            .map(|d| VxlanInfo::detached(&d.saved.options, d.reason.clone())),
    );
    all.sort_by_key(|t| t.id);
    Json(all)
}

#[utoipa::path(post, path = "/v1/vxlan-tunnels", tag = "vxlan-tunnels",
    request_body = VxlanOptions,
    responses((status = 201, description = "made: the tunnel, its underlay MTU and outer source ports as the kernel gave them", body = VxlanInfo), Errors))]
async fn create(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let mut opts: VxlanOptions = parse_body(&body)?;
    let mut node = s.node.lock().await;
    // Instances of detached tunnels stay theirs.
    let held: Vec<u32> = detached_tunnels(&s).keys().copied().collect();
    if let Some(i) = opts.instance.filter(|i| held.contains(i)) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "instance '{i}': vxlan_tunnel{i} is saved, not made again; delete it first"
            ),
        });
    }
    if opts.instance.is_none() {
        opts.instance = (0..vtap::tunnel::MAX_TUNNELS).find(|i| {
            !held.contains(i)
                && node
                    .tunnels
                    .find(&(vtap::tunnel::ID_BASE + i).to_string())
                    .is_none()
        });
    }
    let info = node.vxlan_create(&opts)?;
    let name = info.name.clone();
    commit(&s, &mut node, |n| {
        n.vxlan_delete(&name).map(drop).map_err(|e| error_chain(&e))
    })?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(get, path = "/v1/vxlan-tunnels/{iface}", tag = "vxlan-tunnels",
    params(("iface" = String, Path, description = "vxlan_tunnel<N> or the id")),
    responses((status = 200, description = "the tunnel", body = VxlanInfo), Errors))]
async fn show(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<VxlanInfo>, ApiError> {
    let node = s.node.lock().await;
    match node.tunnels.get(&iface) {
        Ok(info) => Ok(Json(info)),
        Err(e) => detached_info(&s, &iface).map(Json).ok_or_else(|| e.into()),
    }
}

#[utoipa::path(delete, path = "/v1/vxlan-tunnels/{iface}", tag = "vxlan-tunnels",
    params(("iface" = String, Path, description = "vxlan_tunnel<N> or the id")),
    responses((status = 200, description = "deleted: its sockets closed (the endpoint's with the last tunnel on it)", body = VxlanInfo), Errors))]
async fn delete(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<VxlanInfo>, ApiError> {
    let mut node = s.node.lock().await;
    if node.tunnels.find(&iface).is_none() {
        if let Some(i) = detached_tunnel(&s, &iface) {
            let gone = detached_tunnels(&s).remove(&i);
            if let Err(e) = state::save(&s, &node, &[]) {
                if let Some(d) = gone {
                    detached_tunnels(&s).insert(i, d);
                }
                return Err(e.into());
            }
            let d = gone.ok_or_else(|| ApiError::bad_request("vanished"))?;
            return Ok(Json(VxlanInfo::detached(&d.saved.options, d.reason)));
        }
    }
    let info = node.vxlan_delete(&iface)?;
    let again = info.options();
    commit(&s, &mut node, |n| {
        n.vxlan_create(&again)
            .map(drop)
            .map_err(|e| error_chain(&e))
    })?;
    Ok(Json(info))
}

#[utoipa::path(post, path = "/v1/vxlan-tunnels/{iface}/capture", tag = "vxlan-tunnels",
    params(("iface" = String, Path, description = "vxlan_tunnel<N> or the id")),
    request_body = CaptureRequest,
    responses((status = 200, description = "the inner frames as a pcap stream (chunked), as for taps", content_type = "application/vnd.tcpdump.pcap", body = taps::Pcap), Errors))]
async fn start_capture(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (dir, count) = taps::capture_request(&body)?;
    let stream = s
        .node
        .lock()
        .await
        .tunnels
        .start_capture(&iface, dir, count)?;
    Ok(taps::pcap_response(stream))
}

#[utoipa::path(delete, path = "/v1/vxlan-tunnels/{iface}/capture", tag = "vxlan-tunnels",
    params(("iface" = String, Path, description = "vxlan_tunnel<N> or the id")),
    responses((status = 200, description = "the stopped capture (its stream ends)", body = vtap::datapath::capture::CaptureState), Errors))]
async fn stop_capture(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::datapath::capture::CaptureState>, ApiError> {
    Ok(Json(s.node.lock().await.tunnels.stop_capture(&iface)?))
}

#[utoipa::path(post, path = "/v1/vxlan-tunnels/{iface}/rx-mode", tag = "vxlan-tunnels",
    params(("iface" = String, Path, description = "vxlan_tunnel<N> or the id")),
    request_body = RxModeRequest,
    responses((status = 200, description = "the tunnel", body = VxlanInfo), Errors))]
async fn rx_mode(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<VxlanInfo>, ApiError> {
    let req: RxModeRequest = parse_body(&body)?;
    let mut node = s.node.lock().await;
    let before = node
        .tunnels
        .get(&iface)?
        .datapath
        .and_then(|d| d.rx.first().and_then(|q| q.mode))
        .unwrap_or_default();
    let info = node.tunnels.set_rx_mode(&iface, req.mode)?;
    commit(&s, &mut node, |n| {
        n.tunnels
            .set_rx_mode(&iface, before)
            .map(drop)
            .map_err(|e| error_chain(&e))
    })?;
    Ok(Json(info))
}
