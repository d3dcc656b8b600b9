//! Sandbar's state store: one SQLite database (`<data_dir>/sandbar.db`) in WAL mode with
//! `synchronous=FULL`, so every change a call acknowledges survives a crash or power loss.
//!
//! Owns: the schema (`migrations/`), organizations, API keys (only their SHA-256 hashes),
//! sandboxes, volumes and snapshot names. Must not depend on the runtime or HTTP; it stores
//! the `sandbar-core` records and nothing decides lifecycle here.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use uuid::Uuid;

mod organization;
mod sandbox;
mod snapshot;
mod volume;

pub use sandbox::{SandboxChange, SandboxFilter, SandboxPage, SortField, SortOrder};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "sandbar.db";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle to the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir` and applies pending migrations.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        // sqlx does not lock SQLite migrations: a `sandbar keys …` command started while the
        // server starts would apply the same migration twice. An exclusive lock on a file next
        // to the database serialises the processes (released when `lock` is dropped).
        let lock_path = data_dir.join(format!("{DATABASE_FILE}.migrate-lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::MigrationLock {
                path: lock_path.clone(),
                source,
            })?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| StoreError::MigrationLock {
                path: lock_path.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(|source| StoreError::MigrationLock {
                path: lock_path,
                source,
            })?;
        let migrated = MIGRATOR.run(&pool).await;
        drop(lock);
        migrated.map_err(|source| StoreError::Migrate { path, source })?;
        Ok(Self { pool })
    }

    /// Closes every connection (after in-flight queries finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to create data directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to lock {path} for migrations")]
    MigrationLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("failed to migrate database {path}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database query failed: {operation}")]
    Query {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("a {kind} named {name:?} already exists")]
    NameConflict { kind: &'static str, name: String },
    #[error("stored {table} row {id} is invalid: {detail}")]
    Corrupt {
        table: &'static str,
        id: String,
        detail: String,
    },
    #[error("invalid pagination cursor")]
    InvalidCursor,
}

/// Maps a sqlx error of `operation` to [`StoreError::Query`].
fn query_failed(operation: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { operation, source }
}

/// Maps a unique-constraint failure to [`StoreError::NameConflict`], anything else to `Query`.
fn insert_failed(
    operation: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    let name = name.to_owned();
    move |source| match &source {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::NameConflict { kind, name }
        }
        _ => StoreError::Query { operation, source },
    }
}

/// Reads column `name` of a row.
fn column<'r, T>(row: &'r sqlx::sqlite::SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    use sqlx::Row;
    row.try_get(name).map_err(query_failed("read row"))
}

fn fmt_time(at: DateTime<Utc>) -> String {
    sandbar_core::time::format(at)
}

fn parse_time(table: &'static str, id: &str, text: &str) -> Result<DateTime<Utc>, StoreError> {
    sandbar_core::time::parse(text)
        .ok_or_else(|| corrupt(table, id, format!("bad timestamp {text:?}")))
}

fn parse_uuid(table: &'static str, id: &str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::from_str(text).map_err(|_| corrupt(table, id, format!("bad uuid {text:?}")))
}

fn corrupt(table: &'static str, id: &str, detail: String) -> StoreError {
    StoreError::Corrupt {
        table,
        id: id.to_owned(),
        detail,
    }
}

#[cfg(test)]
mod tests;
