//! `POST /v1/{taps,host-interfaces,vxlan-tunnels}/{if}/rx-placement`: which
//! forwarding worker reads a cross-connected interface's rx queue (VPP's
//! `set interface rx-placement`), saved with the cross-connect.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vtap::forward::Xconnect;

use super::*;

/// This resource's routes, with their OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(tap))
        .routes(routes!(host_interface))
        .routes(routes!(vxlan_tunnel))
}

/// `POST .../rx-placement` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RxPlacementRequest {
    /// The interface's rx queue (from 0).
    pub queue: usize,
    /// The forwarding worker to read it (from 0; `GET /v1/info` says how
    /// many there are).
    pub worker: usize,
}

/// Moves the queue, saved; a move that cannot be saved is put back.
async fn set(s: Arc<AppState>, iface: String, body: Bytes) -> Result<Json<Xconnect>, ApiError> {
    let req: RxPlacementRequest = parse_body(&body)?;
    let mut node = s.node.lock().await;
    live(&s, &node, &iface)?;
    let end = node.end(&iface)?;
    let before = node.forwarder.involving(end.id).and_then(|x| {
        x.rx_placement
            .into_iter()
            .find(|p| p.queue == req.queue && p.iface == end.name)
    });
    let x = node.set_rx_placement(&iface, req.queue, req.worker)?;
    commit(&s, &mut node, |n| match &before {
        Some(p) => n
            .set_rx_placement(&iface, p.queue, p.worker)
            .map(drop)
            .map_err(|e| error_chain(&e)),
        None => Ok(()),
    })?;
    Ok(Json(x))
}

#[utoipa::path(post, path = "/v1/taps/{iface}/rx-placement", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    request_body = RxPlacementRequest,
    responses((status = 200, description = "the cross-connect, with every queue's worker", body = Xconnect), Errors))]
async fn tap(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<Xconnect>, ApiError> {
    set(s, iface, body).await
}

#[utoipa::path(post, path = "/v1/host-interfaces/{iface}/rx-placement", tag = "host-interfaces", params(("iface" = String, Path, description = "host-<name>")),
    request_body = RxPlacementRequest,
    responses((status = 200, description = "the cross-connect, with every queue's worker", body = Xconnect), Errors))]
async fn host_interface(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<Xconnect>, ApiError> {
    set(s, iface, body).await
}

#[utoipa::path(post, path = "/v1/vxlan-tunnels/{iface}/rx-placement", tag = "vxlan-tunnels", params(("iface" = String, Path, description = "vxlan_tunnel<N>")),
    request_body = RxPlacementRequest,
    responses((status = 200, description = "the cross-connect, with every queue's worker", body = Xconnect), Errors))]
async fn vxlan_tunnel(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<Xconnect>, ApiError> {
    set(s, iface, body).await
}
