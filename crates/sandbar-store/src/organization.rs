//! Organizations and API keys.

use rand::distributions::{Alphanumeric, DistString};
use sandbar_core::organization::{DEFAULT_ORGANIZATION, KEY_PREFIX};
use sandbar_core::{ApiKey, Organization};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::{
    column, fmt_time, insert_failed, parse_time, parse_uuid, query_failed, Store, StoreError,
};

/// Random characters after [`KEY_PREFIX`] in a generated key (~238 bits).
const KEY_RANDOM_LEN: usize = 40;
/// Characters of a key kept for display.
const DISPLAY_PREFIX_LEN: usize = 10;

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

fn org_from_row(row: &SqliteRow) -> Result<Organization, StoreError> {
    let id: String = column(row, "id")?;
    Ok(Organization {
        id: parse_uuid("organizations", &id, &id)?,
        name: column(row, "name")?,
        created_at: parse_time("organizations", &id, &column::<String>(row, "created_at")?)?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKey, StoreError> {
    let id: String = column(row, "id")?;
    let revoked_at: Option<String> = column(row, "revoked_at")?;
    Ok(ApiKey {
        id: parse_uuid("api_keys", &id, &id)?,
        organization_id: parse_uuid("api_keys", &id, &column::<String>(row, "organization_id")?)?,
        name: column(row, "name")?,
        prefix: column(row, "prefix")?,
        created_at: parse_time("api_keys", &id, &column::<String>(row, "created_at")?)?,
        revoked_at: revoked_at
            .map(|t| parse_time("api_keys", &id, &t))
            .transpose()?,
    })
}

impl Store {
    /// Creates an organization; its name must be unique.
    pub async fn create_organization(&self, name: &str) -> Result<Organization, StoreError> {
        let org = Organization {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created_at: sandbar_core::time::now(),
        };
        sqlx::query("INSERT INTO organizations (id, name, created_at) VALUES (?, ?, ?)")
            .bind(org.id.to_string())
            .bind(&org.name)
            .bind(fmt_time(org.created_at))
            .execute(&self.pool)
            .await
            .map_err(insert_failed("insert organization", "organization", name))?;
        Ok(org)
    }

    pub async fn get_organization(&self, id: Uuid) -> Result<Option<Organization>, StoreError> {
        let row = sqlx::query("SELECT * FROM organizations WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(query_failed("get organization"))?;
        row.as_ref().map(org_from_row).transpose()
    }

    pub async fn list_organizations(&self) -> Result<Vec<Organization>, StoreError> {
        let rows = sqlx::query("SELECT * FROM organizations ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(query_failed("list organizations"))?;
        rows.iter().map(org_from_row).collect()
    }

    /// Returns the organization named `default`, creating it on first use.
    pub async fn ensure_default_org(&self) -> Result<Organization, StoreError> {
        let row = sqlx::query("SELECT * FROM organizations WHERE name = ?")
            .bind(DEFAULT_ORGANIZATION)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_failed("get default organization"))?;
        if let Some(row) = row {
            return org_from_row(&row);
        }
        match self.create_organization(DEFAULT_ORGANIZATION).await {
            // Created concurrently by another caller: read it back.
            Err(StoreError::NameConflict { .. }) => Box::pin(self.ensure_default_org()).await,
            other => other,
        }
    }

    /// Creates a new `sb_…` key for `organization`. The plaintext is returned once and never
    /// stored.
    pub async fn create_key(
        &self,
        organization: Uuid,
        name: &str,
    ) -> Result<(ApiKey, String), StoreError> {
        let plaintext = format!(
            "{KEY_PREFIX}{}",
            Alphanumeric.sample_string(&mut rand::thread_rng(), KEY_RANDOM_LEN)
        );
        let key = self.register_key(organization, name, &plaintext).await?;
        Ok((key, plaintext))
    }

    /// Registers a key chosen by the operator (e.g. `SANDBAR_API_KEY`). Registering a key that
    /// already exists returns the existing record (and un-revokes nothing).
    pub async fn register_key(
        &self,
        organization: Uuid,
        name: &str,
        plaintext: &str,
    ) -> Result<ApiKey, StoreError> {
        let hash = hash_key(plaintext);
        let existing = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?")
            .bind(&hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_failed("find api key"))?;
        if let Some(row) = existing {
            return key_from_row(&row);
        }
        let key = ApiKey {
            id: Uuid::new_v4(),
            organization_id: organization,
            name: name.to_owned(),
            prefix: display_prefix(plaintext),
            created_at: sandbar_core::time::now(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, organization_id, name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(key.id.to_string())
        .bind(organization.to_string())
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&hash)
        .bind(fmt_time(key.created_at))
        .execute(&self.pool)
        .await
        .map_err(query_failed("insert api key"))?;
        Ok(key)
    }

    /// Every key of `organization`, revoked ones included, oldest first.
    pub async fn list_keys(&self, organization: Uuid) -> Result<Vec<ApiKey>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM api_keys WHERE organization_id = ? ORDER BY created_at, id")
                .bind(organization.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(query_failed("list api keys"))?;
        rows.iter().map(key_from_row).collect()
    }

    /// Revokes a key; false when `organization` has no such active key.
    pub async fn revoke_key(&self, organization: Uuid, key_id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND organization_id = ? AND revoked_at IS NULL",
        )
        .bind(fmt_time(sandbar_core::time::now()))
        .bind(key_id.to_string())
        .bind(organization.to_string())
        .execute(&self.pool)
        .await
        .map_err(query_failed("revoke api key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The organization of an active key, or `None` for an unknown or revoked key.
    pub async fn authenticate(&self, key: &str) -> Result<Option<Uuid>, StoreError> {
        let org: Option<String> = sqlx::query_scalar(
            "SELECT organization_id FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL",
        )
        .bind(hash_key(key))
        .fetch_optional(&self.pool)
        .await
        .map_err(query_failed("authenticate"))?;
        org.map(|org| parse_uuid("api_keys", "?", &org)).transpose()
    }
}
