//! `/api/sandbox/{id}/ports/{port}/...`: preview URLs (`shared/daytona-api.md` §3.4). The
//! proxy that serves them is [`crate::preview`].

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use sandbar_wire::api;

use super::sandbox::find;
use crate::auth::AuthOrg;
use crate::error::ApiError;
use crate::extract::{PathParams, QueryPairs};
use crate::preview::{DEFAULT_SIGNED_TTL, MAX_SIGNED_TTL};
use crate::AppState;

fn parse_port(port: &str) -> Result<u16, ApiError> {
    port.parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ApiError::InvalidParameter {
            name: "port",
            message: format!("{port:?} is not a port"),
        })
}

/// `GET /api/sandbox/{id}/ports/{port}/preview-url` → `{sandboxId, url, token}`. The URL needs
/// the token (`X-Daytona-Preview-Token` or `DAYTONA_SANDBOX_AUTH_KEY`) unless the sandbox is
/// public.
#[utoipa::path(
    get,
    path = "/api/sandbox/{id}/ports/{port}/preview-url",
    operation_id = "getPortPreviewUrl",
    tag = "preview",
    params(("id" = String, Path, description = "Sandbox id or name"), ("port" = u16, Path)),
    responses(
        (status = 200, description = "Preview URL and token", body = api::PortPreviewUrl),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn preview_url(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams((id, port)): PathParams<(String, String)>,
) -> Result<Json<api::PortPreviewUrl>, ApiError> {
    let port = parse_port(&port)?;
    let sandbox = find(&state, org, &id).await?;
    Ok(Json(api::PortPreviewUrl {
        sandbox_id: sandbox.id.to_string(),
        url: state.preview_domain().url(port, &sandbox.id.to_string()),
        token: sandbox.preview_token,
    }))
}

/// `GET /api/sandbox/{id}/ports/{port}/signed-preview-url[?expiresInSeconds=]` →
/// `{sandboxId, port, token, url}`: a URL that needs no other credential, valid for
/// `expiresInSeconds` (default 60, at most a day) or until expired.
#[utoipa::path(
    get,
    path = "/api/sandbox/{id}/ports/{port}/signed-preview-url",
    operation_id = "getSignedPortPreviewUrl",
    tag = "preview",
    params(("id" = String, Path, description = "Sandbox id or name"), ("port" = u16, Path), ("expiresInSeconds" = Option<i64>, Query)),
    responses(
        (status = 200, description = "Signed preview URL", body = api::SignedPortPreviewUrl),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn signed_preview_url(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams((id, port)): PathParams<(String, String)>,
    query: QueryPairs,
) -> Result<Json<api::SignedPortPreviewUrl>, ApiError> {
    let port = parse_port(&port)?;
    let ttl = match query.int("expiresInSeconds")? {
        None => DEFAULT_SIGNED_TTL,
        Some(seconds) if seconds > 0 && seconds as u64 <= MAX_SIGNED_TTL.as_secs() => {
            Duration::from_secs(seconds as u64)
        }
        Some(_) => {
            return Err(ApiError::InvalidParameter {
                name: "expiresInSeconds",
                message: format!("must be between 1 and {}", MAX_SIGNED_TTL.as_secs()),
            })
        }
    };
    let sandbox = find(&state, org, &id).await?;
    let token = state.previews().issue(sandbox.id, port, ttl);
    Ok(Json(api::SignedPortPreviewUrl {
        sandbox_id: sandbox.id.to_string(),
        port: i64::from(port),
        url: state.preview_domain().url(port, &token),
        token,
    }))
}

/// `POST /api/sandbox/{id}/ports/{port}/signed-preview-url/{token}/expire` → 200, no body.
/// Expiring an unknown or already expired token succeeds too.
#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/ports/{port}/signed-preview-url/{token}/expire",
    operation_id = "expireSignedPortPreviewUrl",
    tag = "preview",
    params(("id" = String, Path, description = "Sandbox id or name"), ("port" = u16, Path), ("token" = String, Path)),
    responses(
        (status = 200, description = "Expired"),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn expire_signed_preview_url(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams((id, port, token)): PathParams<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let port = parse_port(&port)?;
    let sandbox = find(&state, org, &id).await?;
    state.previews().expire(sandbox.id, port, &token);
    Ok(StatusCode::OK)
}
