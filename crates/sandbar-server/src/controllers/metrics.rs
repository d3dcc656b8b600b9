//! `GET /metrics`: Prometheus / OpenMetrics text (series in `docs/lifecycle.md`).
//!
//! Authentication: an API key of the default organization (the operator's) as
//! `Authorization: Bearer`, because the series name every organization's sandboxes; or none
//! when the server runs with `--metrics-public` (for a scraper on a private network).

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::{SandboxSample, CONTENT_TYPE as METRICS_TYPE};
use crate::AppState;

pub async fn scrape(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    if !state.inner.metrics_public {
        let key = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or(ApiError::Unauthorized)?;
        let org = state
            .store()
            .authenticate(key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if org != state.store().ensure_default_org().await?.id {
            return Err(ApiError::Unauthorized);
        }
    }
    let runtime = state.lifecycle().runtime().clone();
    let sandboxes = state.store().all_sandboxes().await?;
    // Disk usage walks layers: off the async threads.
    let samples = tokio::task::spawn_blocking(move || {
        sandboxes
            .into_iter()
            .map(|sandbox| {
                let id = sandbox.id.to_string();
                SandboxSample {
                    usage: runtime.usage(&id),
                    id,
                    organization: sandbox.organization_id.to_string(),
                    state: sandbox.state,
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let text = state.lifecycle().metrics().render(&samples);
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_TYPE));
    Ok(response)
}
