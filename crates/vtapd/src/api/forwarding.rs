//! `/v1/xconnects` and `/v1/bridges`: the forwarding plane.

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
        .routes(routes!(list_xconnects, add_xconnect))
        .routes(routes!(remove_xconnect))
        .routes(routes!(list_bridges, create_bridge))
        .routes(routes!(show_bridge, delete_bridge))
        .routes(routes!(add_bridge_port))
        .routes(routes!(remove_bridge_port))
}

fn forwarding_error(e: vtap::forward::Error) -> ApiError {
    e.into()
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
    Json(s.node.lock().await.forwarder.list())
}

#[utoipa::path(post, path = "/v1/xconnects", tag = "forwarding",
    request_body = XconnectRequest,
    responses((status = 201, description = "the cross-connect", body = Xconnect), Errors))]
async fn add_xconnect(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let req: XconnectRequest = parse_body(&body)?;
    let mut node = s.node.lock().await;
    for key in [&req.a, &req.b] {
        live(&s, &node, key)?;
    }
    let x = node.xconnect(&req.a, &req.b)?;
    commit(&s, &mut node, |n| {
        n.xconnect_remove(&x.a).map(drop).map_err(|e| e.to_string())
    })?;
    Ok((StatusCode::CREATED, Json(x)).into_response())
}

#[utoipa::path(delete, path = "/v1/xconnects/{iface}", tag = "forwarding", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    responses((status = 200, description = "the removed cross-connect (either end names it)", body = Xconnect), Errors))]
async fn remove_xconnect(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
) -> Result<Json<Xconnect>, ApiError> {
    let mut node = s.node.lock().await;
    live(&s, &node, &iface)?;
    let x = node.xconnect_remove(&iface)?;
    commit(&s, &mut node, |n| {
        n.xconnect(&x.a, &x.b).map(drop).map_err(|e| e.to_string())
    })?;
    Ok(Json(x))
}

/// `POST /v1/bridges` body.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BridgeRequest {
    /// The bridge name (1-32 letters, digits, '-', '_').
    pub name: String,
    /// Most MAC addresses it learns (default: the daemon's `[forwarding]
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
    Json(s.node.lock().await.forwarder.bridges())
}

#[utoipa::path(post, path = "/v1/bridges", tag = "forwarding",
    request_body = BridgeRequest,
    responses((status = 201, description = "the empty bridge domain", body = BridgeInfo), Errors))]
async fn create_bridge(State(s): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    let req: BridgeRequest = parse_body(&body)?;
    let mut node = s.node.lock().await;
    let b = node
        .forwarder
        .bridge_create_with(&req.name, req.mac_limit)
        .map_err(forwarding_error)?;
    commit(&s, &mut node, |n| {
        n.forwarder
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
    Ok(Json(
        s.node
            .lock()
            .await
            .forwarder
            .bridge(&bd)
            .map_err(forwarding_error)?,
    ))
}

#[utoipa::path(delete, path = "/v1/bridges/{bd}", tag = "forwarding", params(("bd" = String, Path, description = "bridge domain name")),
    responses((status = 204, description = "deleted (empty bridges only)"), Errors))]
async fn delete_bridge(
    State(s): State<Arc<AppState>>,
    Path(bd): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mut node = s.node.lock().await;
    let limit = node
        .forwarder
        .bridge(&bd)
        .map_err(forwarding_error)?
        .mac_limit;
    let rejoins = detached(&s)
        .values()
        .any(|d| d.memberships.bridges.contains(&bd))
        || crate::app::detached_uplinks(&s)
            .values()
            .any(|d| d.memberships.bridges.contains(&bd));
    if rejoins {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!(
                "bridge '{bd}': a detached interface will rejoin it; delete that interface first"
            ),
        });
    }
    node.forwarder
        .bridge_delete(&bd)
        .map_err(forwarding_error)?;
    commit(&s, &mut node, |n| {
        n.forwarder
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
    let mut node = s.node.lock().await;
    live(&s, &node, &req.iface)?;
    let b = node.bridge_add(&bd, &req.iface)?;
    commit(&s, &mut node, |n| {
        n.bridge_remove(&bd, &req.iface)
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
    let mut node = s.node.lock().await;
    live(&s, &node, &iface)?;
    let b = node.bridge_remove(&bd, &iface)?;
    commit(&s, &mut node, |n| {
        n.bridge_add(&bd, &iface)
            .map(drop)
            .map_err(|e| e.to_string())
    })?;
    Ok(Json(b))
}
