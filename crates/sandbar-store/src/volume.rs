//! Volume rows.

use sandbar_core::{Volume, VolumeState};
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::{
    column, corrupt, fmt_time, insert_failed, parse_time, parse_uuid, query_failed, Store,
    StoreError,
};

const TABLE: &str = "volumes";

fn volume_from_row(row: &SqliteRow) -> Result<Volume, StoreError> {
    let id: String = column(row, "id")?;
    let state: String = column(row, "state")?;
    let last_used_at: Option<String> = column(row, "last_used_at")?;
    Ok(Volume {
        id: parse_uuid(TABLE, &id, &id)?,
        organization_id: parse_uuid(TABLE, &id, &column::<String>(row, "organization_id")?)?,
        name: column(row, "name")?,
        state: VolumeState::parse(&state)
            .ok_or_else(|| corrupt(TABLE, &id, format!("bad state {state:?}")))?,
        error_reason: column(row, "error_reason")?,
        created_at: parse_time(TABLE, &id, &column::<String>(row, "created_at")?)?,
        updated_at: parse_time(TABLE, &id, &column::<String>(row, "updated_at")?)?,
        last_used_at: last_used_at
            .map(|t| parse_time(TABLE, &id, &t))
            .transpose()?,
    })
}

impl Store {
    /// Creates a volume in `state`; a name already used in the organization is a
    /// [`StoreError::NameConflict`].
    pub async fn create_volume(
        &self,
        organization: Uuid,
        name: &str,
        state: VolumeState,
    ) -> Result<Volume, StoreError> {
        let now = sandbar_core::time::now();
        let volume = Volume {
            id: Uuid::new_v4(),
            organization_id: organization,
            name: name.to_owned(),
            state,
            error_reason: None,
            created_at: now,
            updated_at: now,
            last_used_at: None,
        };
        sqlx::query(
            "INSERT INTO volumes (id, organization_id, name, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(volume.id.to_string())
        .bind(organization.to_string())
        .bind(name)
        .bind(state.as_str())
        .bind(fmt_time(now))
        .bind(fmt_time(now))
        .execute(&self.pool)
        .await
        .map_err(insert_failed("insert volume", "volume", name))?;
        Ok(volume)
    }

    /// The volume of `organization` with this id.
    pub async fn get_volume(
        &self,
        organization: Uuid,
        id: Uuid,
    ) -> Result<Option<Volume>, StoreError> {
        let row = sqlx::query("SELECT * FROM volumes WHERE organization_id = ? AND id = ?")
            .bind(organization.to_string())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_failed("get volume"))?;
        row.as_ref().map(volume_from_row).transpose()
    }

    /// The volume of `organization` with this name.
    pub async fn get_volume_by_name(
        &self,
        organization: Uuid,
        name: &str,
    ) -> Result<Option<Volume>, StoreError> {
        let row = sqlx::query("SELECT * FROM volumes WHERE organization_id = ? AND name = ?")
            .bind(organization.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_failed("get volume by name"))?;
        row.as_ref().map(volume_from_row).transpose()
    }

    /// The volume of `organization` whose id, or else whose name, is `id_or_name`.
    pub async fn find_volume(
        &self,
        organization: Uuid,
        id_or_name: &str,
    ) -> Result<Option<Volume>, StoreError> {
        if let Ok(id) = Uuid::parse_str(id_or_name) {
            if let Some(volume) = self.get_volume(organization, id).await? {
                return Ok(Some(volume));
            }
        }
        self.get_volume_by_name(organization, id_or_name).await
    }

    /// The volumes of `organization`, oldest first.
    pub async fn list_volumes(&self, organization: Uuid) -> Result<Vec<Volume>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM volumes WHERE organization_id = ? ORDER BY created_at, id")
                .bind(organization.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(query_failed("list volumes"))?;
        rows.iter().map(volume_from_row).collect()
    }

    /// Every volume of every organization (for mounting them all at start).
    pub async fn list_all_volumes(&self) -> Result<Vec<Volume>, StoreError> {
        let rows = sqlx::query("SELECT * FROM volumes ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list all volumes"))?;
        rows.iter().map(volume_from_row).collect()
    }

    /// Records that a sandbox started with the volume.
    pub async fn touch_volume(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE volumes SET last_used_at = ? WHERE id = ?")
            .bind(fmt_time(sandbar_core::time::now()))
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_failed("touch volume"))?;
        Ok(())
    }

    /// Removes a volume row; false when `organization` had no such volume.
    pub async fn delete_volume(&self, organization: Uuid, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM volumes WHERE organization_id = ? AND id = ?")
            .bind(organization.to_string())
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(query_failed("delete volume"))?;
        Ok(done.rows_affected() == 1)
    }
}
