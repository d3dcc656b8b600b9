//! `GET /api/openapi.json`: the OpenAPI document of Sandbar's API, generated from the handlers'
//! `#[utoipa::path]` attributes and the wire types. `docs/openapi.json` is a committed copy;
//! a test fails when they differ (so every API change is a reviewable diff) and another checks
//! that every documented operation is routed.
//!
//! Volume routes are documented here rather than on their handlers (their module is owned by the
//! volume work); the routing test keeps these entries honest too. The toolbox (`/toolbox/{id}/…`)
//! is one reverse-proxy operation here: its endpoints are the Daytona daemon's
//! (`shared/daytona-api.md` §5).

use sandbar_wire::api;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sandbar API",
        description = "Daytona-compatible sandbox API served by `sandbar serve`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::config::get,
        super::sandbox::create,
        super::sandbox::list,
        super::sandbox::get,
        super::sandbox::delete,
        super::sandbox::start,
        super::sandbox::stop,
        super::sandbox::archive,
        super::sandbox::recover,
        super::sandbox::set_labels,
        super::sandbox::set_auto_stop,
        super::sandbox::set_auto_archive,
        super::sandbox::set_auto_delete,
        super::sandbox::set_public,
        super::sandbox::set_network,
        super::sandbox::resize,
        super::sandbox::touch,
        super::sandbox::toolbox_proxy_url,
        super::preview::preview_url,
        super::preview::signed_preview_url,
        super::preview::expire_signed_preview_url,
        super::snapshot::list,
        super::snapshot::get,
        create_volume,
        list_volumes,
        get_volume_by_name,
        get_volume,
        delete_volume,
        toolbox,
        document,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: `Authorization: Bearer <key>`"))
                    .build(),
            ),
        );
    }
}

/// The document, as served and as committed in `docs/openapi.json`.
pub fn document_json() -> String {
    let mut json = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"));
    json.push('\n');
    json
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "getOpenApi",
    tag = "config",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")),
)]
pub async fn document() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

/// Creates a volume, directly `ready`. 409 when the name exists.
#[utoipa::path(
    post,
    path = "/api/volumes",
    operation_id = "createVolume",
    tag = "volumes",
    request_body = api::CreateVolume,
    responses(
        (status = 200, description = "The volume", body = api::Volume),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[expect(dead_code, reason = "documents the volume controller's route")]
fn create_volume() {}

/// Volumes of the organization.
#[utoipa::path(
    get,
    path = "/api/volumes",
    operation_id = "getAllVolumes",
    tag = "volumes",
    responses(
        (status = 200, description = "Volumes", body = Vec<api::Volume>),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[expect(dead_code, reason = "documents the volume controller's route")]
fn list_volumes() {}

/// A volume by name.
#[utoipa::path(
    get,
    path = "/api/volumes/by-name/{name}",
    operation_id = "getVolumeByName",
    tag = "volumes",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "The volume", body = api::Volume),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[expect(dead_code, reason = "documents the volume controller's route")]
fn get_volume_by_name() {}

/// A volume by id or name.
#[utoipa::path(
    get,
    path = "/api/volumes/{id}",
    operation_id = "getVolume",
    tag = "volumes",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The volume", body = api::Volume),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[expect(dead_code, reason = "documents the volume controller's route")]
fn get_volume() {}

/// Deletes a volume; 409 while a sandbox uses it.
#[utoipa::path(
    delete,
    path = "/api/volumes/{id}",
    operation_id = "deleteVolume",
    tag = "volumes",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "The deleted volume", body = api::Volume),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[expect(dead_code, reason = "documents the volume controller's route")]
fn delete_volume() {}

/// Toolbox reverse proxy: any method, forwarded to the sandbox agent as `/{path}` (the Daytona
/// daemon API: process, sessions, PTY, files, git, info). WebSocket upgrades are spliced.
/// Agent-internal paths (`/sandbar/…`) are refused with 404.
#[utoipa::path(
    post,
    path = "/toolbox/{id}/{path}",
    operation_id = "toolboxProxy",
    tag = "toolbox",
    params(("id" = String, Path, description = "Sandbox id or name"), ("path" = String, Path, description = "Daemon path")),
    responses(
        (status = 200, description = "The agent's answer"),
        (status = "4XX", description = "Error envelope (source DAYTONA_DAEMON or DAYTONA_PROXY)", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[expect(dead_code, reason = "documents the toolbox proxy route")]
fn toolbox() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn committed_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json")
    }

    /// `UPDATE_OPENAPI=1 cargo test -p sandbar-server openapi` rewrites the committed copy.
    #[test]
    fn committed_document_is_current() {
        let generated = document_json();
        let path = committed_path();
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the generated document; review the API change and \
             rerun with UPDATE_OPENAPI=1 to update it"
        );
    }

    /// Every documented operation reaches a handler: no 404 "Cannot METHOD path" and no 405.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let app = crate::tests::TestApp::new().await;
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let concrete = path
                .replace("{id}", "no-such-sandbox")
                .replace("{port}", "8080")
                .replace("{minutes}", "5")
                .replace("{public}", "true")
                .replace("{token}", "tok")
                .replace("{name}", "no-such-volume")
                .replace("{path}", "files");
            for method in item.as_object().unwrap().keys() {
                let method: axum::http::Method = method.to_uppercase().parse().unwrap();
                let reply = app.call(method.clone(), &concrete, None).await;
                let message = reply.body["message"].as_str().unwrap_or_default();
                assert!(
                    reply.status != axum::http::StatusCode::METHOD_NOT_ALLOWED
                        && !message.starts_with("Cannot "),
                    "{method} {path} is documented but not routed: {} {message}",
                    reply.status
                );
            }
        }
    }

    #[test]
    fn document_names_the_sdk_operations() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/sandbox",
            "/api/sandbox/{id}",
            "/api/sandbox/{id}/ports/{port}/preview-url",
            "/api/sandbox/{id}/ports/{port}/signed-preview-url",
            "/api/volumes/by-name/{name}",
        ] {
            assert!(paths.contains_key(path), "{path} missing");
        }
        assert!(doc["components"]["schemas"]["Sandbox"]["required"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("toolboxProxyUrl")));
    }
}
