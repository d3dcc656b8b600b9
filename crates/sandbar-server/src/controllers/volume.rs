//! `/api/volumes...` (`shared/daytona-api.md` §6). A volume's files live in the runtime's
//! volume storage (an ext4 image per volume with the native runtime, see `docs/volumes.md`);
//! it is created in state `ready`.

use axum::extract::State;
use axum::Json;
use sandbar_core::{Volume, VolumeState};
use sandbar_wire::api;
use tracing::warn;

use crate::auth::AuthOrg;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams};
use crate::lifecycle::error_chain;
use crate::AppState;

fn to_wire(volume: &Volume) -> api::Volume {
    let time = sandbar_core::time::format;
    api::Volume {
        id: volume.id.to_string(),
        name: volume.name.clone(),
        organization_id: volume.organization_id.to_string(),
        state: volume.state.as_str().to_owned(),
        created_at: time(volume.created_at),
        updated_at: time(volume.updated_at),
        last_used_at: volume.last_used_at.map(time),
        error_reason: volume.error_reason.clone(),
    }
}

/// Largest size a create request may ask for, in GiB.
const MAX_SIZE_GIB: u32 = 16 * 1024;

/// `POST /api/volumes` → 200, state `ready`. `size` (GiB, optional) sets the volume's limit.
pub async fn create(
    State(state): State<AppState>,
    org: AuthOrg,
    JsonBody(body): JsonBody<api::CreateVolume>,
) -> Result<Json<api::Volume>, ApiError> {
    let name = body.name.unwrap_or_default();
    Volume::validate_name(&name)?;
    let size = match body.size {
        None => None,
        Some(gib @ 1..=MAX_SIZE_GIB) => Some(u64::from(gib) << 30),
        Some(gib) => {
            return Err(ApiError::InvalidParameter {
                name: "size",
                message: format!("size must be between 1 and {MAX_SIZE_GIB} GiB, not {gib}"),
            })
        }
    };
    let volume = state
        .store()
        .create_volume(org.0, &name, VolumeState::Ready)
        .await?;
    let storage = state.lifecycle().volumes();
    if let Err(source) = storage.create(&volume.id.to_string(), size).await {
        warn!(volume = %volume.id, error = %error_chain(&source), "failed to create volume storage");
        if let Err(err) = state.store().delete_volume(org.0, volume.id).await {
            warn!(volume = %volume.id, error = %error_chain(&err), "failed to roll back volume");
        }
        return Err(ApiError::VolumeStorage(source));
    }
    Ok(Json(to_wire(&volume)))
}

pub async fn list(
    State(state): State<AppState>,
    org: AuthOrg,
) -> Result<Json<Vec<api::Volume>>, ApiError> {
    let volumes = state.store().list_volumes(org.0).await?;
    Ok(Json(volumes.iter().map(to_wire).collect()))
}

pub async fn get_by_name(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(name): PathParams<String>,
) -> Result<Json<api::Volume>, ApiError> {
    let volume = state
        .store()
        .get_volume_by_name(org.0, &name)
        .await?
        .ok_or(ApiError::VolumeNotFound(name))?;
    Ok(Json(to_wire(&volume)))
}

/// `GET /api/volumes/{idOrName}`.
pub async fn get(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::Volume>, ApiError> {
    let volume = state
        .store()
        .find_volume(org.0, &id)
        .await?
        .ok_or(ApiError::VolumeNotFound(id))?;
    Ok(Json(to_wire(&volume)))
}

/// `DELETE /api/volumes/{id}` → 200 with the volume (state `deleted`); 409 while a sandbox
/// that is not destroyed mounts it.
pub async fn delete(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::Volume>, ApiError> {
    let mut volume = state
        .store()
        .find_volume(org.0, &id)
        .await?
        .ok_or_else(|| ApiError::VolumeNotFound(id))?;
    if state.store().volume_in_use(volume.id).await? {
        return Err(ApiError::VolumeInUse(volume.name));
    }
    state.store().delete_volume(org.0, volume.id).await?;
    let id = volume.id.to_string();
    state.dav().forget(&id);
    state
        .lifecycle()
        .volumes()
        .delete(&id)
        .await
        .map_err(ApiError::VolumeStorage)?;
    volume.state = VolumeState::Deleted;
    volume.updated_at = sandbar_core::time::now();
    Ok(Json(to_wire(&volume)))
}
