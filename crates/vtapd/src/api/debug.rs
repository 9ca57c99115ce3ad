//! `/v1/debug/fault`: fault injection, behind `[debug] fault_injection`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::*;

/// This resource's routes, with their OpenAPI description.
pub(super) fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(arm_fault, disarm_fault))
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
    s.node.lock().await.registry.faults().arm(fault);
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/debug/fault", tag = "debug",
    responses((status = 204, description = "disarmed"), Errors))]
async fn disarm_fault(State(s): State<Arc<AppState>>) -> Result<StatusCode, ApiError> {
    fault_gate(&s)?;
    s.node.lock().await.registry.faults().disarm();
    Ok(StatusCode::NO_CONTENT)
}
