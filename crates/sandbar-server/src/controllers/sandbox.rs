//! `/api/sandbox...` (`shared/daytona-api.md` §2, §3).

use std::collections::{BTreeMap, HashSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use rand::distributions::{Alphanumeric, DistString};
use sandbar_core::sandbox::{
    DEFAULT_AUTO_ARCHIVE_MINUTES, DEFAULT_AUTO_DELETE_MINUTES, DEFAULT_AUTO_STOP_MINUTES,
    DEFAULT_USER,
};
use sandbar_core::{
    DesiredState, Sandbox, SandboxResources, SandboxState, VolumeMount, VolumeState,
};
use sandbar_store::{SandboxChange, SandboxFilter, SortField, SortOrder};
use sandbar_wire::api;
use uuid::Uuid;

use crate::auth::AuthOrg;
use crate::error::ApiError;
use crate::extract::{JsonBody, PathParams, QueryPairs};
use crate::AppState;

/// `target` of sandboxes created without one.
const DEFAULT_TARGET: &str = "local";
/// Default page size of the list.
const DEFAULT_LIMIT: u32 = 100;

/// The wire form of a sandbox.
pub fn to_wire(state: &AppState, sandbox: &Sandbox) -> api::Sandbox {
    let last_activity = match state.activity().pending(sandbox.id) {
        Some(pending) => pending.max(sandbox.last_activity_at),
        None => sandbox.last_activity_at,
    };
    let time = sandbar_core::time::format;
    api::Sandbox {
        id: sandbox.id.to_string(),
        organization_id: sandbox.organization_id.to_string(),
        name: sandbox.name.clone(),
        user: sandbox.user.clone(),
        env: sandbox.env.clone(),
        labels: sandbox.labels.clone(),
        public: sandbox.public,
        network_block_all: sandbox.network_block_all,
        kvm: false,
        target: sandbox.target.clone(),
        cpu: sandbox.resources.cpu,
        gpu: sandbox.resources.gpu,
        memory: sandbox.resources.memory,
        disk: sandbox.resources.disk,
        toolbox_proxy_url: state.urls().toolbox.clone(),
        snapshot: Some(sandbox.snapshot.clone()),
        state: Some(sandbox.state.as_str().to_owned()),
        desired_state: Some(sandbox.desired_state.as_str().to_owned()),
        error_reason: sandbox.error_reason.clone(),
        recoverable: Some(sandbox.recoverable()),
        network_allow_list: sandbox.network_allow_list.clone(),
        domain_allow_list: None,
        spot: false,
        auto_stop_interval: Some(sandbox.auto_stop_interval),
        auto_archive_interval: Some(sandbox.auto_archive_interval),
        auto_delete_interval: Some(sandbox.auto_delete_interval),
        volumes: Some(
            sandbox
                .volumes
                .iter()
                .map(|v| api::SandboxVolume {
                    volume_id: v.volume_id.to_string(),
                    mount_path: v.mount_path.clone(),
                    subpath: v.subpath.clone(),
                })
                .collect(),
        ),
        created_at: Some(time(sandbox.created_at)),
        updated_at: Some(time(sandbox.updated_at)),
        last_activity_at: Some(time(last_activity)),
        state_reason: sandbox.state_reason.clone(),
        state_changed_at: Some(time(sandbox.state_changed_at)),
    }
}

/// The sandbox `id_or_name` of `org`, recording activity on it.
pub async fn find(state: &AppState, org: AuthOrg, id_or_name: &str) -> Result<Sandbox, ApiError> {
    let sandbox = find_quietly(state, org, id_or_name).await?;
    state.activity().touch(sandbox.id);
    Ok(sandbox)
}

/// The sandbox `id_or_name` of `org`, without recording activity (reads: SDKs poll them).
pub async fn find_quietly(
    state: &AppState,
    org: AuthOrg,
    id_or_name: &str,
) -> Result<Sandbox, ApiError> {
    state
        .store()
        .find_sandbox(org.0, id_or_name)
        .await?
        .ok_or_else(|| ApiError::SandboxNotFound(id_or_name.to_owned()))
}

/// Picks the snapshot of a create request: `snapshot`, or the image of a one-line
/// `FROM <image>` build when a snapshot was made from that image, or the default.
async fn resolve_snapshot(state: &AppState, body: &api::CreateSandbox) -> Result<String, ApiError> {
    let requested = match (&body.snapshot, &body.build_info) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidParameter {
                name: "buildInfo",
                message: "cannot be combined with snapshot".to_owned(),
            })
        }
        (Some(snapshot), None) => snapshot.clone(),
        (None, Some(build)) => {
            let dockerfile = build.dockerfile_content.as_deref().unwrap_or("");
            let mut lines = dockerfile
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'));
            let image = match (lines.next(), lines.next()) {
                (Some(line), None) => line
                    .split_once(char::is_whitespace)
                    .filter(|(from, _)| from.eq_ignore_ascii_case("FROM"))
                    .map(|(_, image)| image.trim().to_owned()),
                _ => None,
            };
            let Some(image) = image else {
                return Err(ApiError::ImageBuildUnsupported);
            };
            return match state.store().find_snapshot(&image).await? {
                Some(snapshot) => Ok(snapshot.name),
                None => Err(ApiError::ImageBuildUnsupported),
            };
        }
        (None, None) => state.inner.default_snapshot.clone(),
    };
    match state.store().find_snapshot(&requested).await? {
        Some(snapshot) => Ok(snapshot.name),
        None => Err(ApiError::SnapshotNotFound(requested)),
    }
}

async fn resolve_volumes(
    state: &AppState,
    org: AuthOrg,
    requested: &[api::SandboxVolume],
) -> Result<Vec<VolumeMount>, ApiError> {
    let mut mounts = Vec::with_capacity(requested.len());
    let mut paths = HashSet::new();
    for volume in requested {
        VolumeMount::validate(&volume.mount_path, volume.subpath.as_deref())?;
        if !paths.insert(volume.mount_path.trim_end_matches('/').to_owned()) {
            return Err(ApiError::InvalidParameter {
                name: "volumes",
                message: format!("mount path {} is used twice", volume.mount_path),
            });
        }
        let found = state
            .store()
            .find_volume(org.0, &volume.volume_id)
            .await?
            .ok_or_else(|| ApiError::VolumeNotFound(volume.volume_id.clone()))?;
        if found.state != VolumeState::Ready {
            return Err(ApiError::VolumeNotReady(found.name));
        }
        mounts.push(VolumeMount {
            volume_id: found.id,
            mount_path: volume.mount_path.clone(),
            subpath: volume.subpath.clone().filter(|s| !s.is_empty()),
        });
    }
    Ok(mounts)
}

/// `POST /api/sandbox` → 200 with the sandbox, answered once it is `started` (or `error`).
#[utoipa::path(
    post,
    path = "/api/sandbox",
    operation_id = "createSandbox",
    tag = "sandbox",
    request_body = api::CreateSandbox,
    responses(
        (status = 200, description = "The sandbox, started", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    org: AuthOrg,
    JsonBody(body): JsonBody<api::CreateSandbox>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let id = Uuid::new_v4();
    let name = body
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| id.to_string());
    Sandbox::validate_name(&name)?;
    let user = body
        .user
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_USER.to_owned());
    Sandbox::validate_user(&user)?;
    let defaults = SandboxResources::default();
    let resources = SandboxResources {
        cpu: body.cpu.unwrap_or(defaults.cpu),
        gpu: body.gpu.unwrap_or(defaults.gpu),
        memory: body.memory.unwrap_or(defaults.memory),
        disk: body.disk.unwrap_or(defaults.disk),
    };
    resources.validate()?;
    let snapshot = resolve_snapshot(&state, &body).await?;
    let volumes = resolve_volumes(&state, org, body.volumes.as_deref().unwrap_or_default()).await?;
    let now = sandbar_core::time::now();
    let sandbox = Sandbox {
        id,
        organization_id: org.0,
        name,
        user,
        env: body.env.unwrap_or_default(),
        labels: body.labels.unwrap_or_default(),
        public: body.public.unwrap_or(false),
        network_block_all: body.network_block_all.unwrap_or(false),
        network_allow_list: body.network_allow_list.filter(|l| !l.is_empty()),
        target: body
            .target
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| DEFAULT_TARGET.to_owned()),
        resources,
        snapshot,
        state: SandboxState::Creating,
        desired_state: DesiredState::Started,
        error_reason: None,
        state_reason: None,
        state_changed_at: now,
        auto_stop_interval: body
            .auto_stop_interval
            .unwrap_or(DEFAULT_AUTO_STOP_MINUTES)
            .max(0),
        auto_archive_interval: body
            .auto_archive_interval
            .unwrap_or(DEFAULT_AUTO_ARCHIVE_MINUTES)
            .max(0),
        auto_delete_interval: body
            .auto_delete_interval
            .unwrap_or(DEFAULT_AUTO_DELETE_MINUTES),
        volumes,
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        launched: None,
        preview_token: Alphanumeric.sample_string(&mut rand::thread_rng(), 32),
    };
    let sandbox = state.lifecycle().create(sandbox).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

fn filter_from_query(query: &QueryPairs) -> Result<SandboxFilter, ApiError> {
    let mut filter = SandboxFilter {
        limit: DEFAULT_LIMIT,
        ..SandboxFilter::default()
    };
    if let Some(labels) = query.get("labels").filter(|l| !l.trim().is_empty()) {
        let parsed: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(labels).map_err(|err| ApiError::InvalidParameter {
                name: "labels",
                message: format!("not a JSON object: {err}"),
            })?;
        filter.labels = parsed
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
    }
    for state in query.all("states") {
        let parsed = state.parse().map_err(|_| ApiError::InvalidParameter {
            name: "states",
            message: format!("unknown state {state:?}"),
        })?;
        filter.states.push(parsed);
    }
    filter.id_prefix = query.get("id").filter(|v| !v.is_empty()).map(str::to_owned);
    filter.name_prefix = query
        .get("name")
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    filter.snapshots = query.all("snapshots");
    filter.targets = query.all("regionIds");
    filter.min_cpu = query.int("minCpu")?;
    filter.max_cpu = query.int("maxCpu")?;
    filter.min_memory = query.int("minMemoryGiB")?;
    filter.max_memory = query.int("maxMemoryGiB")?;
    filter.min_disk = query.int("minDiskGiB")?;
    filter.max_disk = query.int("maxDiskGiB")?;
    filter.min_gpu = query.int("minGpu")?;
    filter.max_gpu = query.int("maxGpu")?;
    filter.is_public = query.bool("isPublic")?;
    let time = |name: &'static str| -> Result<_, ApiError> {
        match query.get(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(text) => sandbar_core::time::parse(text).map(Some).ok_or_else(|| {
                ApiError::InvalidParameter {
                    name,
                    message: format!("{text:?} is not a datetime"),
                }
            }),
        }
    };
    filter.created_after = time("createdAtAfter")?;
    filter.created_before = time("createdAtBefore")?;
    filter.last_activity_after = time("lastEventAfter")?;
    filter.last_activity_before = time("lastEventBefore")?;
    if let Some(sort) = query.get("sort").filter(|v| !v.is_empty()) {
        filter.sort = SortField::parse(sort).ok_or_else(|| ApiError::InvalidParameter {
            name: "sort",
            message: format!("unknown field {sort:?}"),
        })?;
    }
    if let Some(order) = query.get("order").filter(|v| !v.is_empty()) {
        filter.order = SortOrder::parse(order).ok_or_else(|| ApiError::InvalidParameter {
            name: "order",
            message: format!("{order:?} is not asc or desc"),
        })?;
    }
    filter.cursor = query
        .get("cursor")
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    if let Some(limit) = query.int("limit")? {
        if !(1..=200).contains(&limit) {
            return Err(ApiError::InvalidParameter {
                name: "limit",
                message: "must be between 1 and 200".to_owned(),
            });
        }
        filter.limit = limit as u32;
    }
    Ok(filter)
}

/// `GET /api/sandbox` → `{items, nextCursor}`.
#[utoipa::path(
    get,
    path = "/api/sandbox",
    operation_id = "listSandboxes",
    tag = "sandbox",
    params(("cursor" = Option<String>, Query), ("limit" = Option<i64>, Query), ("labels" = Option<String>, Query, description = "JSON object; every pair must match"), ("states" = Option<Vec<String>>, Query), ("sort" = Option<String>, Query), ("order" = Option<String>, Query)),
    responses(
        (status = 200, description = "One page of sandboxes", body = api::SandboxList),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    org: AuthOrg,
    query: QueryPairs,
) -> Result<Json<api::SandboxList>, ApiError> {
    let filter = filter_from_query(&query)?;
    let page = state.store().list_sandboxes(org.0, &filter).await?;
    Ok(Json(api::SandboxList {
        items: page.items.iter().map(|s| to_wire(&state, s)).collect(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/api/sandbox/{id}",
    operation_id = "getSandbox",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "The sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::Sandbox>, ApiError> {
    // A read is activity only when the sandbox's `sandbar.io/activity` label says `read`.
    let sandbox = find_quietly(&state, org, &id).await?;
    if crate::activity::ActivityPolicy::of(&sandbox).read {
        state.activity().touch(sandbox.id);
    }
    Ok(Json(to_wire(&state, &sandbox)))
}

/// `DELETE /api/sandbox/{id}` → 200 with the sandbox in state `destroyed`.
#[utoipa::path(
    delete,
    path = "/api/sandbox/{id}",
    operation_id = "deleteSandbox",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "The destroyed sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let sandbox = find(&state, org, &id).await?;
    let gone = state.lifecycle().destroy(sandbox.id).await?;
    Ok(Json(to_wire(&state, &gone)))
}

#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/start",
    operation_id = "startSandbox",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "The started sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn start(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let sandbox = find(&state, org, &id).await?;
    let sandbox = state.lifecycle().start(sandbox.id).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

/// `POST /api/sandbox/{id}/recover`: starts an errored sandbox again.
#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/recover",
    operation_id = "recoverSandbox",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "The started sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn recover(
    state: State<AppState>,
    org: AuthOrg,
    id: PathParams<String>,
) -> Result<Json<api::Sandbox>, ApiError> {
    start(state, org, id).await
}

/// `POST /api/sandbox/{id}/stop?force=`.
#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/stop",
    operation_id = "stopSandbox",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name"), ("force" = Option<bool>, Query)),
    responses(
        (status = 200, description = "The stopped sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn stop(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
    query: QueryPairs,
) -> Result<Json<api::Sandbox>, ApiError> {
    let force = query.bool("force")?.unwrap_or(false);
    let sandbox = find(&state, org, &id).await?;
    let sandbox = state.lifecycle().stop(sandbox.id, force).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/archive",
    operation_id = "archiveSandbox",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "The archived sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn archive(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let sandbox = find(&state, org, &id).await?;
    let sandbox = state.lifecycle().archive(sandbox.id).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

async fn change(
    state: &AppState,
    org: AuthOrg,
    id: &str,
    change: SandboxChange,
) -> Result<Sandbox, ApiError> {
    let sandbox = find(state, org, id).await?;
    let changed = state
        .store()
        .update_sandbox(sandbox.id, change)
        .await?
        .ok_or_else(|| ApiError::SandboxNotFound(id.to_owned()))?;
    // A new interval or activity label may bring a deadline forward.
    state.scheduler_wake().notify_one();
    Ok(changed)
}

/// `PUT /api/sandbox/{id}/labels` → 200 `{labels}`; replaces every label.
#[utoipa::path(
    put,
    path = "/api/sandbox/{id}/labels",
    operation_id = "replaceLabels",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    request_body = api::SandboxLabels,
    responses(
        (status = 200, description = "The new labels", body = api::SandboxLabels),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn set_labels(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<api::SandboxLabels>,
) -> Result<Json<api::SandboxLabels>, ApiError> {
    let sandbox = change(&state, org, &id, SandboxChange::Labels(body.labels)).await?;
    Ok(Json(api::SandboxLabels {
        labels: sandbox.labels,
    }))
}

/// [`minutes`] for intervals where a negative value means nothing (auto-stop, auto-archive).
fn non_negative_minutes(text: &str) -> Result<i64, ApiError> {
    let value = minutes(text)?;
    if value < 0 {
        return Err(ApiError::InvalidParameter {
            name: "interval",
            message: "must not be negative".to_owned(),
        });
    }
    Ok(value)
}

fn minutes(text: &str) -> Result<i64, ApiError> {
    text.parse().map_err(|_| ApiError::InvalidParameter {
        name: "interval",
        message: format!("{text:?} is not an integer"),
    })
}

#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/autostop/{minutes}",
    operation_id = "setAutostopInterval",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name"), ("minutes" = i64, Path)),
    responses(
        (status = 200, description = "The sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn set_auto_stop(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams((id, value)): PathParams<(String, String)>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let value = non_negative_minutes(&value)?;
    let sandbox = change(&state, org, &id, SandboxChange::AutoStopInterval(value)).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/autoarchive/{minutes}",
    operation_id = "setAutoArchiveInterval",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name"), ("minutes" = i64, Path)),
    responses(
        (status = 200, description = "The sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn set_auto_archive(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams((id, value)): PathParams<(String, String)>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let value = non_negative_minutes(&value)?;
    let sandbox = change(&state, org, &id, SandboxChange::AutoArchiveInterval(value)).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/autodelete/{minutes}",
    operation_id = "setAutoDeleteInterval",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name"), ("minutes" = i64, Path, description = "-1 disables")),
    responses(
        (status = 200, description = "The sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn set_auto_delete(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams((id, value)): PathParams<(String, String)>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let value = minutes(&value)?;
    let sandbox = change(&state, org, &id, SandboxChange::AutoDeleteInterval(value)).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/public/{public}",
    operation_id = "updatePublicStatus",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name"), ("public" = bool, Path)),
    responses(
        (status = 200, description = "The sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn set_public(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams((id, public)): PathParams<(String, String)>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let public = match public.as_str() {
        "true" => true,
        "false" => false,
        other => {
            return Err(ApiError::InvalidParameter {
                name: "public",
                message: format!("{other:?} is not a boolean"),
            })
        }
    };
    let sandbox = change(&state, org, &id, SandboxChange::Public(public)).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

/// `POST /api/sandbox/{id}/network-settings`. Takes effect at the next start.
#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/network-settings",
    operation_id = "updateNetworkSettings",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    request_body = api::NetworkSettings,
    responses(
        (status = 200, description = "The sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn set_network(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<api::NetworkSettings>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let sandbox = find(&state, org, &id).await?;
    let block_all = body.network_block_all.unwrap_or(sandbox.network_block_all);
    let allow_list = match body.network_allow_list {
        Some(list) if list.is_empty() => None,
        Some(list) => Some(list),
        None => sandbox.network_allow_list.clone(),
    };
    let sandbox = change(
        &state,
        org,
        &id,
        SandboxChange::Network {
            block_all,
            allow_list,
        },
    )
    .await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

/// `POST /api/sandbox/{id}/resize` `{cpu?, memory?, disk?}` → 200 Sandbox. A started sandbox
/// gets the new CPU and memory limits live; a stopped one at its next start. Disk cannot
/// change: Sandbar has no per-sandbox disk quota.
#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/resize",
    operation_id = "resizeSandbox",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    request_body = api::ResizeSandbox,
    responses(
        (status = 200, description = "The resized sandbox", body = api::Sandbox),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn resize(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<api::ResizeSandbox>,
) -> Result<Json<api::Sandbox>, ApiError> {
    let sandbox = find(&state, org, &id).await?;
    if body.cpu.is_none() && body.memory.is_none() && body.disk.is_none() {
        return Err(ApiError::InvalidParameter {
            name: "resources",
            message: "give at least one of cpu, memory and disk".to_owned(),
        });
    }
    let current = sandbox.resources;
    if let Some(disk) = body.disk.filter(|disk| *disk != current.disk) {
        return Err(ApiError::InvalidParameter {
            name: "disk",
            message: format!(
                "cannot change disk from {} to {disk} GiB: Sandbar has no per-sandbox disk quota \
                 (the writable layer lives on the host's filesystem), so disk cannot be resized",
                current.disk
            ),
        });
    }
    let resources = SandboxResources {
        cpu: body.cpu.unwrap_or(current.cpu),
        memory: body.memory.unwrap_or(current.memory),
        ..current
    };
    resources.validate()?;
    let sandbox = state.lifecycle().resize(sandbox.id, resources).await?;
    Ok(Json(to_wire(&state, &sandbox)))
}

/// `POST /api/sandbox/{id}/last-activity` → 201, no body.
#[utoipa::path(
    post,
    path = "/api/sandbox/{id}/last-activity",
    operation_id = "updateLastActivity",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 201, description = "Recorded"),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn touch(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    change(
        &state,
        org,
        &id,
        SandboxChange::Activity(sandbar_core::time::now()),
    )
    .await?;
    Ok(StatusCode::CREATED)
}

#[utoipa::path(
    get,
    path = "/api/sandbox/{id}/toolbox-proxy-url",
    operation_id = "getToolboxProxyUrl",
    tag = "sandbox",
    params(("id" = String, Path, description = "Sandbox id or name")),
    responses(
        (status = 200, description = "Base URL of toolbox calls", body = api::ToolboxProxyUrl),
        (status = "4XX", description = "Error envelope", body = api::ErrorBody),
        (status = "5XX", description = "Error envelope", body = api::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn toolbox_proxy_url(
    State(state): State<AppState>,
    org: AuthOrg,
    PathParams(id): PathParams<String>,
) -> Result<Json<api::ToolboxProxyUrl>, ApiError> {
    find(&state, org, &id).await?;
    Ok(Json(api::ToolboxProxyUrl {
        url: state.urls().toolbox.clone(),
    }))
}
