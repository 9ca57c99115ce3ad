//! `POST /v1/{taps,host-interfaces,vxlan-tunnels}/{if}/rate-limit`: token
//! buckets per interface and direction ([`vtap::datapath::limit`]), set,
//! changed or lifted at run time, saved with the interface.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vtap::datapath::limit::{Direction, LimitOptions, RateLimitState};

use super::*;

/// This resource's routes, with their OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(tap))
        .routes(routes!(host_interface))
        .routes(routes!(vxlan_tunnel))
}

/// `POST .../rate-limit` body: one direction's limit; no rate lifts it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRequest {
    /// `rx` (frames vtap takes from the interface) or `tx` (frames it
    /// sends to it).
    pub direction: Direction,
    /// Bytes per second (without `bytes_per_sec` and `packets_per_sec`:
    /// no limit).
    #[serde(default)]
    pub bytes_per_sec: Option<u64>,
    /// The byte bucket's size (default: 20 ms of the rate, at least 64 KiB).
    #[serde(default)]
    pub burst: Option<u64>,
    /// Bytes that may go once, beyond the rate.
    #[serde(default)]
    pub one_time_burst: Option<u64>,
    /// Frames per second.
    #[serde(default)]
    pub packets_per_sec: Option<u64>,
    /// The packet bucket's size (default: 20 ms of the rate, at least 32).
    #[serde(default)]
    pub packet_burst: Option<u64>,
}

impl RateLimitRequest {
    /// The limit asked for; `None` lifts it.
    fn limit(&self) -> Option<LimitOptions> {
        let l = LimitOptions {
            bytes_per_sec: self.bytes_per_sec,
            burst: self.burst,
            one_time_burst: self.one_time_burst,
            packets_per_sec: self.packets_per_sec,
            packet_burst: self.packet_burst,
        };
        (l != LimitOptions::default()).then_some(l)
    }
}

/// Sets (or lifts) the limit on interface `iface`, saved; a change that
/// cannot be saved is put back.
async fn set(
    s: Arc<AppState>,
    iface: String,
    body: Bytes,
) -> Result<Json<RateLimitState>, ApiError> {
    let req: RateLimitRequest = parse_body(&body)?;
    let want = req.limit();
    let mut node = s.node.lock().await;
    live(&s, &node, &iface)?;
    let before = node.rate_limit_state(&iface)?;
    let before = match req.direction {
        Direction::Rx => before.rx.map(|l| l.limit),
        Direction::Tx => before.tx.map(|l| l.limit),
    };
    node.set_rate_limit(&iface, req.direction, want.as_ref())?;
    commit(&s, &mut node, |n| {
        n.set_rate_limit(&iface, req.direction, before.as_ref())
            .map_err(|e| error_chain(&e))
    })?;
    Ok(Json(node.rate_limit_state(&iface)?))
}

#[utoipa::path(post, path = "/v1/taps/{iface}/rate-limit", tag = "taps", params(("iface" = String, Path, description = "tap<id>, tun<id> or the id")),
    request_body = RateLimitRequest,
    responses((status = 200, description = "the limits in force, with their counters", body = RateLimitState), Errors))]
async fn tap(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<RateLimitState>, ApiError> {
    set(s, iface, body).await
}

#[utoipa::path(post, path = "/v1/host-interfaces/{iface}/rate-limit", tag = "host-interfaces", params(("iface" = String, Path, description = "host-<name>")),
    request_body = RateLimitRequest,
    responses((status = 200, description = "the limits in force, with their counters", body = RateLimitState), Errors))]
async fn host_interface(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<RateLimitState>, ApiError> {
    set(s, iface, body).await
}

#[utoipa::path(post, path = "/v1/vxlan-tunnels/{iface}/rate-limit", tag = "vxlan-tunnels", params(("iface" = String, Path, description = "vxlan_tunnel<N>")),
    request_body = RateLimitRequest,
    responses((status = 200, description = "the limits in force, with their counters", body = RateLimitState), Errors))]
async fn vxlan_tunnel(
    State(s): State<Arc<AppState>>,
    Path(iface): Path<String>,
    body: Bytes,
) -> Result<Json<RateLimitState>, ApiError> {
    set(s, iface, body).await
}
