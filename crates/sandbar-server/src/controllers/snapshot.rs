//! `/api/snapshots...` (`shared/daytona-api.md` §7): the snapshots the runtime provides.

use axum::extract::State;
use axum::Json;
use sandbar_core::{SandboxResources, Snapshot};
use sandbar_wire::api;

use crate::auth::AuthOrg;
use crate::error::ApiError;
use crate::extract::{PathParams, QueryPairs};
use crate::AppState;

fn to_wire(snapshot: &Snapshot) -> api::Snapshot {
    let defaults = SandboxResources::default();
    let created = sandbar_core::time::format(snapshot.created_at);
    api::Snapshot {
        id: snapshot.id.to_string(),
        organization_id: None,
        general: true,
        name: snapshot.name.clone(),
        image_name: snapshot.image_name.clone(),
        state: "active".to_owned(),
        cpu: defaults.cpu,
        gpu: defaults.gpu,
        mem: defaults.memory,
        disk: defaults.disk,
        created_at: created.clone(),
        updated_at: created,
    }
}

/// `GET /api/snapshots?page=&limit=` → `{items, total, page, totalPages}`.
#[utoipa::path(
    get,
    path = "/api/snapshots",
    operation_id = "getAllSnapshots",
    tag = "snapshots",
    params(("page" = Option<i64>, Query), ("limit" = Option<i64>, Query)),
    responses(
        (status = 200, description = "One page of snapshots", body = api::SnapshotList),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    _org: AuthOrg,
    query: QueryPairs,
) -> Result<Json<api::SnapshotList>, ApiError> {
    let page = query
        .int("page")?
        .unwrap_or(1)
        .clamp(1, i64::from(u32::MAX));
    let limit = query.int("limit")?.unwrap_or(100).clamp(1, 200);
    let (items, total) = state
        .store()
        .list_snapshots(page as u32, limit as u32)
        .await?;
    Ok(Json(api::SnapshotList {
        items: items.iter().map(to_wire).collect(),
        total,
        page,
        total_pages: (total + limit - 1) / limit,
    }))
}

/// `GET /api/snapshots/{idOrName}`.
#[utoipa::path(
    get,
    path = "/api/snapshots/{id}",
    operation_id = "getSnapshot",
    tag = "snapshots",
    params(("id" = String, Path, description = "Snapshot id or name")),
    responses(
        (status = 200, description = "The snapshot", body = api::Snapshot),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    _org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::Snapshot>, ApiError> {
    let snapshot = state
        .store()
        .find_snapshot(&id)
        .await?
        .ok_or(ApiError::SnapshotNotFound(id))?;
    Ok(Json(to_wire(&snapshot)))
}
