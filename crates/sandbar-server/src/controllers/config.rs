//! `GET /api/config`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use sandbar_wire::api::{Config, OidcConfig};

use crate::AppState;

/// Server configuration the SDKs read (`analyticsApiUrl` is absent: no telemetry).
#[utoipa::path(
    get,
    path = "/api/config",
    operation_id = "getConfig",
    tag = "config",
    responses((status = 200, description = "Configuration", body = Config)),
)]
pub async fn get(State(state): State<AppState>) -> Json<Config> {
    let urls = state.urls();
    Json(Config {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        oidc: OidcConfig {
            issuer: String::new(),
            client_id: String::new(),
            audience: String::new(),
        },
        linked_accounts_enabled: false,
        announcements: BTreeMap::new(),
        proxy_template_url: urls.preview.url_template(),
        proxy_toolbox_url: urls.toolbox.clone(),
        default_snapshot: state.inner.default_snapshot.clone(),
        dashboard_url: urls.public.clone(),
        max_auto_archive_interval: 30 * 24 * 60,
        maintanance_mode: false,
        environment: "sandbar".to_owned(),
    })
}
