//! HTTP handlers, one module per resource, and the route table.

use axum::http::{Method, Uri};
use axum::routing::{any, get, post, put};
use axum::Router;

use crate::error::ApiError;
use crate::AppState;

mod config;
mod dav;
mod metrics;
mod observe;
mod openapi;
mod preview;
mod sandbox;
mod snapshot;
mod socketio;
pub(crate) mod toolbox;
mod volume;

/// Every route. Authentication applies to all of `/api` except `/api/config` and the
/// Socket.IO path, and to all of `/toolbox`.
pub fn router(state: AppState) -> Router<AppState> {
    let api = Router::new()
        .route("/api/sandbox", post(sandbox::create).get(sandbox::list))
        .route(
            "/api/sandbox/{id}",
            get(sandbox::get).delete(sandbox::delete),
        )
        .route("/api/sandbox/{id}/start", post(sandbox::start))
        .route("/api/sandbox/{id}/stop", post(sandbox::stop))
        .route("/api/sandbox/{id}/archive", post(sandbox::archive))
        .route("/api/sandbox/{id}/recover", post(sandbox::recover))
        .route("/api/sandbox/{id}/labels", put(sandbox::set_labels))
        .route(
            "/api/sandbox/{id}/autostop/{minutes}",
            post(sandbox::set_auto_stop),
        )
        .route(
            "/api/sandbox/{id}/autoarchive/{minutes}",
            post(sandbox::set_auto_archive),
        )
        .route(
            "/api/sandbox/{id}/autodelete/{minutes}",
            post(sandbox::set_auto_delete),
        )
        .route(
            "/api/sandbox/{id}/public/{public}",
            post(sandbox::set_public),
        )
        .route(
            "/api/sandbox/{id}/network-settings",
            post(sandbox::set_network),
        )
        .route("/api/sandbox/{id}/resize", post(sandbox::resize))
        .route("/api/sandbox/{id}/last-activity", post(sandbox::touch))
        .route(
            "/api/sandbox/{id}/toolbox-proxy-url",
            get(sandbox::toolbox_proxy_url),
        )
        .route(
            "/api/sandbox/{id}/ports/{port}/preview-url",
            get(preview::preview_url),
        )
        .route(
            "/api/sandbox/{id}/ports/{port}/signed-preview-url",
            get(preview::signed_preview_url),
        )
        .route(
            "/api/sandbox/{id}/ports/{port}/signed-preview-url/{token}/expire",
            post(preview::expire_signed_preview_url),
        )
        .route("/api/volumes", post(volume::create).get(volume::list))
        .route("/api/volumes/by-name/{name}", get(volume::get_by_name))
        .route("/api/volumes/{id}", get(volume::get).delete(volume::delete))
        .route("/api/snapshots", get(snapshot::list))
        .route("/api/snapshots/{id}", get(snapshot::get))
        .route("/toolbox/{id}", any(toolbox::proxy))
        .route("/toolbox/{id}/", any(toolbox::proxy))
        .route("/toolbox/{id}/{*path}", any(toolbox::proxy))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::require_key,
        ));
    Router::new()
        .route("/api/config", get(config::get))
        .route("/metrics", get(metrics::scrape))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/socket.io", get(socketio::handler))
        // WebDAV authenticates on its own (Basic as well as Bearer, WWW-Authenticate on 401).
        .route("/dav/{volume}", any(dav::serve))
        .route("/dav/{volume}/", any(dav::serve))
        .route("/dav/{volume}/{*path}", any(dav::serve))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
