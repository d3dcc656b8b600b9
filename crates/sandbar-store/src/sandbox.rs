//! Sandbox rows: insert, targeted updates, lookups and the filtered, cursor-paginated list.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sandbar_core::{
    DesiredState, LaunchedProcess, Sandbox, SandboxResources, SandboxState, VolumeMount,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use crate::{
    column, corrupt, fmt_time, insert_failed, parse_time, parse_uuid, query_failed, Store,
    StoreError,
};

const TABLE: &str = "sandboxes";
/// Largest page of `list_sandboxes`.
pub const MAX_PAGE: u32 = 200;

/// One targeted change to a sandbox row. Every change except `Activity` also sets
/// `updated_at`.
#[derive(Debug, Clone)]
pub enum SandboxChange {
    /// A lifecycle step: the new state, the desired state, the error (cleared when `None`),
    /// why it happened when no user asked (cleared when `None`) and the running init (cleared
    /// when `None`). Sets `state_changed_at`.
    State {
        state: SandboxState,
        desired_state: DesiredState,
        error_reason: Option<String>,
        reason: Option<String>,
        launched: Option<LaunchedProcess>,
    },
    Labels(BTreeMap<String, String>),
    AutoStopInterval(i64),
    AutoArchiveInterval(i64),
    AutoDeleteInterval(i64),
    Public(bool),
    Network {
        block_all: bool,
        allow_list: Option<String>,
    },
    /// Moves `last_activity_at` forward (never back).
    Activity(DateTime<Utc>),
    /// New CPU, memory and disk allocation (GPU stays).
    Resources {
        cpu: i64,
        memory: i64,
        disk: i64,
    },
}

/// Sort keys of the list (`SandboxListSortField`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortField {
    Name,
    Cpu,
    MemoryGib,
    DiskGib,
    LastActivityAt,
    #[default]
    CreatedAt,
}

impl SortField {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "name" => Self::Name,
            "cpu" => Self::Cpu,
            "memoryGib" | "memory" => Self::MemoryGib,
            "diskGib" | "disk" => Self::DiskGib,
            "lastActivityAt" => Self::LastActivityAt,
            "createdAt" => Self::CreatedAt,
            _ => return None,
        })
    }

    fn column(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Cpu => "cpu",
            Self::MemoryGib => "memory",
            Self::DiskGib => "disk",
            Self::LastActivityAt => "last_activity_at",
            Self::CreatedAt => "created_at",
        }
    }

    fn is_integer(self) -> bool {
        matches!(self, Self::Cpu | Self::MemoryGib | Self::DiskGib)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    Asc,
    #[default]
    Desc,
}

impl SortOrder {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "asc" => Some(Self::Asc),
            "desc" => Some(Self::Desc),
            _ => None,
        }
    }
}

/// Filters of `GET /api/sandbox`. Empty vectors and `None` do not filter.
#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    /// Every pair must match.
    pub labels: BTreeMap<String, String>,
    /// When empty: every state except `destroyed`.
    pub states: Vec<SandboxState>,
    pub id_prefix: Option<String>,
    pub name_prefix: Option<String>,
    pub snapshots: Vec<String>,
    pub targets: Vec<String>,
    pub min_cpu: Option<i64>,
    pub max_cpu: Option<i64>,
    pub min_memory: Option<i64>,
    pub max_memory: Option<i64>,
    pub min_disk: Option<i64>,
    pub max_disk: Option<i64>,
    pub min_gpu: Option<i64>,
    pub max_gpu: Option<i64>,
    pub is_public: Option<bool>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub last_activity_after: Option<DateTime<Utc>>,
    pub last_activity_before: Option<DateTime<Utc>>,
    pub sort: SortField,
    pub order: SortOrder,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size, 1..=[`MAX_PAGE`] (clamped).
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct SandboxPage {
    pub items: Vec<Sandbox>,
    pub next_cursor: Option<String>,
}

/// Position after the last item of a page: its sort key and id, as hex of a JSON pair.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Cursor(serde_json::Value, String);

impl Cursor {
    fn encode(&self) -> String {
        hex::encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> Result<Self, StoreError> {
        let bytes = hex::decode(text).map_err(|_| StoreError::InvalidCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Serializing maps of strings and plain structs cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn from_json<T: serde::de::DeserializeOwned>(
    id: &str,
    what: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(TABLE, id, format!("bad {what} JSON: {e}")))
}

fn sandbox_from_row(row: &SqliteRow) -> Result<Sandbox, StoreError> {
    let id: String = column(row, "id")?;
    let time = |name: &str| -> Result<DateTime<Utc>, StoreError> {
        parse_time(TABLE, &id, &column::<String>(row, name)?)
    };
    let state: String = column(row, "state")?;
    let desired: String = column(row, "desired_state")?;
    let pid: Option<i64> = column(row, "launched_pid")?;
    let start_time: Option<i64> = column(row, "launched_start_time")?;
    let launched = match (pid, start_time) {
        (Some(pid), Some(start_time)) => Some(LaunchedProcess {
            pid: i32::try_from(pid).map_err(|_| corrupt(TABLE, &id, format!("bad pid {pid}")))?,
            start_time: start_time as u64,
        }),
        _ => None,
    };
    Ok(Sandbox {
        id: parse_uuid(TABLE, &id, &id)?,
        organization_id: parse_uuid(TABLE, &id, &column::<String>(row, "organization_id")?)?,
        name: column(row, "name")?,
        user: column(row, "user")?,
        env: from_json(&id, "env", &column::<String>(row, "env")?)?,
        labels: from_json(&id, "labels", &column::<String>(row, "labels")?)?,
        public: column(row, "public")?,
        network_block_all: column(row, "network_block_all")?,
        network_allow_list: column(row, "network_allow_list")?,
        target: column(row, "target")?,
        resources: SandboxResources {
            cpu: column(row, "cpu")?,
            gpu: column(row, "gpu")?,
            memory: column(row, "memory")?,
            disk: column(row, "disk")?,
        },
        snapshot: column(row, "snapshot")?,
        state: state
            .parse()
            .map_err(|_| corrupt(TABLE, &id, format!("bad state {state:?}")))?,
        desired_state: desired
            .parse()
            .map_err(|_| corrupt(TABLE, &id, format!("bad desired state {desired:?}")))?,
        error_reason: column(row, "error_reason")?,
        state_reason: column(row, "state_reason")?,
        state_changed_at: match column::<Option<String>>(row, "state_changed_at")? {
            Some(_) => time("state_changed_at")?,
            None => time("updated_at")?,
        },
        auto_stop_interval: column(row, "auto_stop_interval")?,
        auto_archive_interval: column(row, "auto_archive_interval")?,
        auto_delete_interval: column(row, "auto_delete_interval")?,
        volumes: from_json::<Vec<VolumeMount>>(&id, "volumes", &column::<String>(row, "volumes")?)?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        last_activity_at: time("last_activity_at")?,
        launched,
        preview_token: column(row, "preview_token")?,
    })
}

impl Store {
    /// Inserts a new sandbox; a name already used in its organization is a
    /// [`StoreError::NameConflict`].
    pub async fn insert_sandbox(&self, sandbox: &Sandbox) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sandboxes (id, organization_id, name, user, env, labels, public, network_block_all, \
             network_allow_list, target, cpu, gpu, memory, disk, snapshot, state, desired_state, error_reason, \
             auto_stop_interval, auto_archive_interval, auto_delete_interval, volumes, created_at, updated_at, \
             last_activity_at, launched_pid, launched_start_time, preview_token, state_reason, state_changed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(sandbox.id.to_string())
        .bind(sandbox.organization_id.to_string())
        .bind(&sandbox.name)
        .bind(&sandbox.user)
        .bind(json(&sandbox.env))
        .bind(json(&sandbox.labels))
        .bind(sandbox.public)
        .bind(sandbox.network_block_all)
        .bind(&sandbox.network_allow_list)
        .bind(&sandbox.target)
        .bind(sandbox.resources.cpu)
        .bind(sandbox.resources.gpu)
        .bind(sandbox.resources.memory)
        .bind(sandbox.resources.disk)
        .bind(&sandbox.snapshot)
        .bind(sandbox.state.as_str())
        .bind(sandbox.desired_state.as_str())
        .bind(&sandbox.error_reason)
        .bind(sandbox.auto_stop_interval)
        .bind(sandbox.auto_archive_interval)
        .bind(sandbox.auto_delete_interval)
        .bind(json(&sandbox.volumes))
        .bind(fmt_time(sandbox.created_at))
        .bind(fmt_time(sandbox.updated_at))
        .bind(fmt_time(sandbox.last_activity_at))
        .bind(sandbox.launched.map(|l| i64::from(l.pid)))
        .bind(sandbox.launched.map(|l| l.start_time as i64))
        .bind(&sandbox.preview_token)
        .bind(&sandbox.state_reason)
        .bind(fmt_time(sandbox.state_changed_at))
        .execute(&self.pool)
        .await
        .map_err(insert_failed("insert sandbox", "sandbox", &sandbox.name))?;
        Ok(())
    }

    /// Applies one change and returns the updated row (`None` when the sandbox is gone).
    pub async fn update_sandbox(
        &self,
        id: Uuid,
        change: SandboxChange,
    ) -> Result<Option<Sandbox>, StoreError> {
        let now = fmt_time(sandbar_core::time::now());
        let id = id.to_string();
        let query = match &change {
            SandboxChange::State { state, desired_state, error_reason, reason, launched } => sqlx::query(
                "UPDATE sandboxes SET state = ?, desired_state = ?, error_reason = ?, state_reason = ?, \
                 state_changed_at = ?, launched_pid = ?, launched_start_time = ?, updated_at = ? \
                 WHERE id = ? RETURNING *",
            )
            .bind(state.as_str())
            .bind(desired_state.as_str())
            .bind(error_reason)
            .bind(reason)
            .bind(now.clone())
            .bind(launched.map(|l| i64::from(l.pid)))
            .bind(launched.map(|l| l.start_time as i64)),
            SandboxChange::Labels(labels) => {
                sqlx::query("UPDATE sandboxes SET labels = ?, updated_at = ? WHERE id = ? RETURNING *").bind(json(labels))
            }
            SandboxChange::AutoStopInterval(minutes) => {
                sqlx::query("UPDATE sandboxes SET auto_stop_interval = ?, updated_at = ? WHERE id = ? RETURNING *")
                    .bind(minutes)
            }
            SandboxChange::AutoArchiveInterval(minutes) => {
                sqlx::query("UPDATE sandboxes SET auto_archive_interval = ?, updated_at = ? WHERE id = ? RETURNING *")
                    .bind(minutes)
            }
            SandboxChange::AutoDeleteInterval(minutes) => {
                sqlx::query("UPDATE sandboxes SET auto_delete_interval = ?, updated_at = ? WHERE id = ? RETURNING *")
                    .bind(minutes)
            }
            SandboxChange::Public(public) => {
                sqlx::query("UPDATE sandboxes SET public = ?, updated_at = ? WHERE id = ? RETURNING *").bind(public)
            }
            SandboxChange::Network { block_all, allow_list } => sqlx::query(
                "UPDATE sandboxes SET network_block_all = ?, network_allow_list = ?, updated_at = ? \
                 WHERE id = ? RETURNING *",
            )
            .bind(block_all)
            .bind(allow_list),
            SandboxChange::Resources { cpu, memory, disk } => sqlx::query(
                "UPDATE sandboxes SET cpu = ?, memory = ?, disk = ?, updated_at = ? WHERE id = ? RETURNING *",
            )
            .bind(cpu)
            .bind(memory)
            .bind(disk),
            SandboxChange::Activity(at) => {
                let row = sqlx::query(
                    "UPDATE sandboxes SET last_activity_at = max(last_activity_at, ?) WHERE id = ? RETURNING *",
                )
                .bind(fmt_time(*at))
                .bind(&id)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_failed("update sandbox activity"))?;
                return row.as_ref().map(sandbox_from_row).transpose();
            }
        };
        let row = query
            .bind(now)
            .bind(&id)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_failed("update sandbox"))?;
        row.as_ref().map(sandbox_from_row).transpose()
    }

    /// The sandbox with this id, in any organization.
    pub async fn get_sandbox(&self, id: Uuid) -> Result<Option<Sandbox>, StoreError> {
        let row = sqlx::query("SELECT * FROM sandboxes WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_failed("get sandbox"))?;
        row.as_ref().map(sandbox_from_row).transpose()
    }

    /// The sandbox of `organization` whose id, or else whose name, is `id_or_name`.
    pub async fn find_sandbox(
        &self,
        organization: Uuid,
        id_or_name: &str,
    ) -> Result<Option<Sandbox>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM sandboxes WHERE organization_id = ? AND (id = ? OR name = ?) \
             ORDER BY (id = ?) DESC LIMIT 1",
        )
        .bind(organization.to_string())
        .bind(id_or_name.to_ascii_lowercase())
        .bind(id_or_name)
        .bind(id_or_name.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_failed("find sandbox"))?;
        row.as_ref().map(sandbox_from_row).transpose()
    }

    /// Removes a sandbox row; false when it did not exist.
    pub async fn delete_sandbox(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sandboxes WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_failed("delete sandbox"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Every sandbox of every organization (for recovery after a restart).
    pub async fn all_sandboxes(&self) -> Result<Vec<Sandbox>, StoreError> {
        let rows = sqlx::query("SELECT * FROM sandboxes ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list all sandboxes"))?;
        rows.iter().map(sandbox_from_row).collect()
    }

    /// One page of `organization`'s sandboxes matching `filter`.
    pub async fn list_sandboxes(
        &self,
        organization: Uuid,
        filter: &SandboxFilter,
    ) -> Result<SandboxPage, StoreError> {
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT * FROM sandboxes WHERE organization_id = ");
        q.push_bind(organization.to_string());
        if filter.states.is_empty() {
            q.push(" AND state <> ")
                .push_bind(SandboxState::Destroyed.as_str());
        } else {
            q.push(" AND state IN (");
            let mut list = q.separated(", ");
            for state in &filter.states {
                list.push_bind(state.as_str());
            }
            q.push(")");
        }
        for (key, value) in &filter.labels {
            q.push(" AND EXISTS (SELECT 1 FROM json_each(sandboxes.labels) WHERE json_each.key = ")
                .push_bind(key.clone())
                .push(" AND json_each.value = ")
                .push_bind(value.clone())
                .push(")");
        }
        for (column, prefix) in [("id", &filter.id_prefix), ("name", &filter.name_prefix)] {
            if let Some(prefix) = prefix {
                q.push(format_args!(" AND substr({column}, 1, length("))
                    .push_bind(prefix.clone())
                    .push(")) = ")
                    .push_bind(prefix.clone());
            }
        }
        for (column, values) in [("snapshot", &filter.snapshots), ("target", &filter.targets)] {
            if !values.is_empty() {
                q.push(format_args!(" AND {column} IN ("));
                let mut list = q.separated(", ");
                for value in values {
                    list.push_bind(value.clone());
                }
                q.push(")");
            }
        }
        let bounds = [
            ("cpu", ">=", filter.min_cpu),
            ("cpu", "<=", filter.max_cpu),
            ("memory", ">=", filter.min_memory),
            ("memory", "<=", filter.max_memory),
            ("disk", ">=", filter.min_disk),
            ("disk", "<=", filter.max_disk),
            ("gpu", ">=", filter.min_gpu),
            ("gpu", "<=", filter.max_gpu),
        ];
        for (column, op, bound) in bounds {
            if let Some(bound) = bound {
                q.push(format_args!(" AND {column} {op} ")).push_bind(bound);
            }
        }
        if let Some(public) = filter.is_public {
            q.push(" AND public = ").push_bind(public);
        }
        let times = [
            ("created_at", ">", filter.created_after),
            ("created_at", "<", filter.created_before),
            ("last_activity_at", ">", filter.last_activity_after),
            ("last_activity_at", "<", filter.last_activity_before),
        ];
        for (column, op, at) in times {
            if let Some(at) = at {
                q.push(format_args!(" AND {column} {op} "))
                    .push_bind(fmt_time(at));
            }
        }

        let column = filter.sort.column();
        let (cmp, dir) = match filter.order {
            SortOrder::Asc => (">", "ASC"),
            SortOrder::Desc => ("<", "DESC"),
        };
        if let Some(cursor) = &filter.cursor {
            let Cursor(value, after_id) = Cursor::decode(cursor)?;
            q.push(" AND (");
            if filter.sort.is_integer() {
                let value = value.as_i64().ok_or(StoreError::InvalidCursor)?;
                q.push(format_args!("{column} {cmp} ")).push_bind(value);
                q.push(format_args!(" OR ({column} = ")).push_bind(value);
            } else {
                let value = value.as_str().ok_or(StoreError::InvalidCursor)?.to_owned();
                q.push(format_args!("{column} {cmp} "))
                    .push_bind(value.clone());
                q.push(format_args!(" OR ({column} = ")).push_bind(value);
            }
            q.push(format_args!(" AND id {cmp} "))
                .push_bind(after_id)
                .push("))");
        }
        q.push(format_args!(" ORDER BY {column} {dir}, id {dir} LIMIT "))
            .push_bind(i64::from(limit) + 1);

        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list sandboxes"))?;
        let mut items = rows
            .iter()
            .map(sandbox_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|last| {
                let key = match filter.sort {
                    SortField::Name => serde_json::json!(last.name),
                    SortField::Cpu => serde_json::json!(last.resources.cpu),
                    SortField::MemoryGib => serde_json::json!(last.resources.memory),
                    SortField::DiskGib => serde_json::json!(last.resources.disk),
                    SortField::LastActivityAt => serde_json::json!(fmt_time(last.last_activity_at)),
                    SortField::CreatedAt => serde_json::json!(fmt_time(last.created_at)),
                };
                Cursor(key, last.id.to_string()).encode()
            })
        } else {
            None
        };
        Ok(SandboxPage { items, next_cursor })
    }

    /// True when a sandbox that is not destroyed mounts `volume`.
    pub async fn volume_in_use(&self, volume: Uuid) -> Result<bool, StoreError> {
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sandboxes, json_each(sandboxes.volumes) \
             WHERE sandboxes.state <> ? AND json_extract(json_each.value, '$.volume_id') = ? LIMIT 1",
        )
        .bind(SandboxState::Destroyed.as_str())
        .bind(volume.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(query_failed("check volume use"))?;
        Ok(used.is_some())
    }
}
