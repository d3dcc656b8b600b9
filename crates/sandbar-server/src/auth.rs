//! API key authentication: `Authorization: Bearer <key>` on every `/api/*` and `/toolbox/*`
//! call. The key's organization is put in the request extensions as [`AuthOrg`].

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

/// The organization of the authenticated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthOrg(pub Uuid);

fn bearer(request: &Request) -> Option<&str> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(key.trim())
        .filter(|key| !key.is_empty())
}

/// Middleware: rejects requests without a valid key with 401.
pub async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let key = bearer(&request).ok_or(ApiError::Unauthorized)?;
    let org = state
        .store()
        .authenticate(key)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    request.extensions_mut().insert(AuthOrg(org));
    Ok(next.run(request).await)
}

impl<S: Send + Sync> FromRequestParts<S> for AuthOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthOrg>()
            .copied()
            .ok_or(ApiError::Unauthorized)
    }
}
