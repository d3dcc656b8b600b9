//! Snapshot rows: names of the root filesystem images the runtime provides.

use sandbar_core::Snapshot;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::{
    column, fmt_time, insert_failed, parse_time, parse_uuid, query_failed, Store, StoreError,
};

const TABLE: &str = "snapshots";

fn snapshot_from_row(row: &SqliteRow) -> Result<Snapshot, StoreError> {
    let id: String = column(row, "id")?;
    Ok(Snapshot {
        id: parse_uuid(TABLE, &id, &id)?,
        name: column(row, "name")?,
        image_name: column(row, "image_name")?,
        created_at: parse_time(TABLE, &id, &column::<String>(row, "created_at")?)?,
    })
}

impl Store {
    /// Registers a snapshot name (idempotent) and returns its record.
    pub async fn ensure_snapshot(
        &self,
        name: &str,
        image_name: Option<&str>,
    ) -> Result<Snapshot, StoreError> {
        if let Some(existing) = self.find_snapshot(name).await? {
            return Ok(existing);
        }
        let snapshot = Snapshot {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            image_name: image_name.map(str::to_owned),
            created_at: sandbar_core::time::now(),
        };
        let inserted = sqlx::query(
            "INSERT INTO snapshots (id, name, image_name, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(snapshot.id.to_string())
        .bind(name)
        .bind(image_name)
        .bind(fmt_time(snapshot.created_at))
        .execute(&self.pool)
        .await
        .map_err(insert_failed("insert snapshot", "snapshot", name));
        match inserted {
            Ok(_) => Ok(snapshot),
            Err(StoreError::NameConflict { .. }) => {
                self.find_snapshot(name)
                    .await?
                    .ok_or_else(|| StoreError::NameConflict {
                        kind: "snapshot",
                        name: name.to_owned(),
                    })
            }
            Err(other) => Err(other),
        }
    }

    /// The snapshot whose id, or else whose name or image name, is `id_or_name`.
    pub async fn find_snapshot(&self, id_or_name: &str) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM snapshots WHERE id = ? OR name = ? OR image_name = ? \
             ORDER BY (id = ?) DESC, (name = ?) DESC LIMIT 1",
        )
        .bind(id_or_name)
        .bind(id_or_name)
        .bind(id_or_name)
        .bind(id_or_name)
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_failed("find snapshot"))?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// One page (1-based) of snapshots by name, and the total count.
    pub async fn list_snapshots(
        &self,
        page: u32,
        limit: u32,
    ) -> Result<(Vec<Snapshot>, i64), StoreError> {
        let limit = limit.clamp(1, 200);
        let offset = i64::from(page.max(1) - 1) * i64::from(limit);
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots")
            .fetch_one(&self.pool)
            .await
            .map_err(query_failed("count snapshots"))?;
        let rows = sqlx::query("SELECT * FROM snapshots ORDER BY name LIMIT ? OFFSET ?")
            .bind(i64::from(limit))
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list snapshots"))?;
        Ok((
            rows.iter()
                .map(snapshot_from_row)
                .collect::<Result<_, _>>()?,
            total,
        ))
    }
}
