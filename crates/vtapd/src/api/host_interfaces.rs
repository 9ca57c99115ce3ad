//! `/v1/host-interfaces`: host uplinks (VPP's `host-interface`), their rx
//! mode and capture. Cross-connects and bridge ports take their names like
//! taps' (`/v1/xconnects`, `/v1/bridges/{bd}/interfaces`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vtap::uplink::{HostInterfaceInfo, HostInterfaceOptions};

use super::*;
use crate::app::{detached_uplink_id, detached_uplinks};

/// This resource's routes, with their OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, delete))
        .routes(routes!(rx_mode))
        .routes(routes!(start_capture, stop_capture))
}

impl From<vtap::uplink::Error> for ApiError {
    fn from(e: vtap::uplink::Error) -> Self {
        Self {
            status: status_of(e.kind()),
            message: error_chain(&e),
        }
    }
}

#[utoipa::path(get, path = "/v1/host-interfaces", tag = "host-interfaces",
    responses((status = 200, description = "every host uplink (saved ones not open again carry `detached` with the reason)", body = Vec<HostInterfaceInfo>)))]
async fn list(State(s): State<Arc<AppState>>) -> Json<Vec<HostInterfaceInfo>> {
    let mut all = s.node.lock().await.uplinks.list();
    all.extend(
        detached_uplinks(&s)
            .values()
            .map(|d| HostInterfaceInfo::detached(&d.saved.options, d.reason.clone())),
    );
    all.sort_by_key(|u| u.id);
    Json(all)
}

#[utoipa::path(post, path = "/v1/host-interfaces", tag = "host-interfaces",
    request_body = HostInterfaceOptions,
    responses((status = 201, description = "open: the uplink as the kernel describes it", body = HostInterfaceInfo), Errors))]
async fn create(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let mut opts: HostInterfaceOptions = parse_body(&body)?;
    let mut node = s.node.lock().await;
    if let Some(id) = detached_uplink_id(&s, &opts.name()) {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "host-if-name '{}': saved as uplink {id}, not open again; delete it first",
                opts.host_if_name
            ),
        });
    }
    // Ids of detached uplinks stay theirs.
    if opts.id.is_none() {
        let held: std::collections::BTreeSet<u32> = detached_uplinks(&s).keys().copied().collect();
        opts.id = Some(node.uplinks.free_id(&held));
    }
    let info = node.host_interface_create(&opts)?;
    let name = info.name.clone();
    commit(&s, &mut node, |n| {
        n.host_interface_delete(&name)
            .map(drop)
            .map_err(|e| error_chain(&e))
    })?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

#[utoipa::path(get, path = "/v1/host-interfaces/{iface}", tag = "host-interfaces",
    params(("iface" = String, Path, description = "host-<ifname> or the id")),
    responses((status = 200, description = "the uplink", body = HostInterfaceInfo), Errors))]
async fn show(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<HostInterfaceInfo>, ApiError> {
    let node = s.node.lock().await;
    match node.uplinks.get(&iface) {
        Ok(info) => Ok(Json(info)),
        Err(e) => match detached_uplink_id(&s, &iface).and_then(|id| {
            detached_uplinks(&s)
                .get(&id)
                .map(|d| HostInterfaceInfo::detached(&d.saved.options, d.reason.clone()))
        }) {
            Some(info) => Ok(Json(info)),
            None => Err(e.into()),
        },
    }
}

#[utoipa::path(delete, path = "/v1/host-interfaces/{iface}", tag = "host-interfaces",
    params(("iface" = String, Path, description = "host-<ifname> or the id")),
    responses((status = 200, description = "closed: the interface is as it was found (its promiscuity dropped with vtap's sockets)", body = HostInterfaceInfo), Errors))]
async fn delete(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<HostInterfaceInfo>, ApiError> {
    let mut node = s.node.lock().await;
    if node.uplinks.find(&iface).is_none() {
        if let Some(id) = detached_uplink_id(&s, &iface) {
            let gone = detached_uplinks(&s).remove(&id);
            if let Err(e) = state::save(&s, &node, &[]) {
                if let Some(d) = gone {
                    detached_uplinks(&s).insert(id, d);
                }
                return Err(e.into());
            }
            let d = gone.ok_or_else(|| ApiError::bad_request("vanished"))?;
            return Ok(Json(HostInterfaceInfo::detached(
                &d.saved.options,
                d.reason,
            )));
        }
    }
    let info = node.host_interface_delete(&iface)?;
    let again = info.options();
    commit(&s, &mut node, |n| {
        n.host_interface_create(&again)
            .map(drop)
            .map_err(|e| error_chain(&e))
    })?;
    Ok(Json(info))
}

#[utoipa::path(post, path = "/v1/host-interfaces/{iface}/rx-mode", tag = "host-interfaces",
    params(("iface" = String, Path, description = "host-<ifname> or the id")),
    request_body = RxModeRequest,
    responses((status = 200, description = "the uplink", body = HostInterfaceInfo), Errors))]
async fn rx_mode(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<HostInterfaceInfo>, ApiError> {
    let req: RxModeRequest = parse_body(&body)?;
    let mut node = s.node.lock().await;
    let before = node
        .uplinks
        .get(&iface)?
        .options()
        .rx_mode
        .unwrap_or_default();
    let info = node.uplinks.set_rx_mode(&iface, req.mode)?;
    commit(&s, &mut node, |n| {
        n.uplinks
            .set_rx_mode(&iface, before)
            .map(drop)
            .map_err(|e| error_chain(&e))
    })?;
    Ok(Json(info))
}

#[utoipa::path(post, path = "/v1/host-interfaces/{iface}/capture", tag = "host-interfaces",
    params(("iface" = String, Path, description = "host-<ifname> or the id")),
    request_body = CaptureRequest,
    responses((status = 200, description = "the capture as a pcap stream (chunked), as for taps", content_type = "application/vnd.tcpdump.pcap", body = taps::Pcap), Errors))]
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
        .uplinks
        .start_capture(&iface, dir, count)?;
    Ok(taps::pcap_response(stream))
}

#[utoipa::path(delete, path = "/v1/host-interfaces/{iface}/capture", tag = "host-interfaces",
    params(("iface" = String, Path, description = "host-<ifname> or the id")),
    responses((status = 200, description = "the stopped capture (its stream ends)", body = vtap::datapath::capture::CaptureState), Errors))]
async fn stop_capture(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<vtap::datapath::capture::CaptureState>, ApiError> {
    Ok(Json(s.node.lock().await.uplinks.stop_capture(&iface)?))
}
