//! The user-facing commands: `serve`, `keys`, `snapshot`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SANDBAR_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: std::net::SocketAddr,
    /// Data directory (state database, snapshots, sandbox layers).
    #[arg(long, env = "SANDBAR_DATA_DIR", default_value_os_t = crate::default_data_dir())]
    pub data_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it (once).
    Create {
        #[arg(long, env = "SANDBAR_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        /// Organization name (created if missing); default: the default organization.
        #[arg(long)]
        org: Option<String>,
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List API keys (prefixes only).
    List {
        #[arg(long, env = "SANDBAR_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
    /// Revoke an API key by id or prefix.
    Revoke {
        #[arg(long, env = "SANDBAR_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
        key: String,
    },
}

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// Register a copy of a root filesystem directory as a snapshot.
    Import {
        name: String,
        #[arg(long)]
        rootfs: PathBuf,
        #[arg(long, env = "SANDBAR_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
    /// List snapshots.
    List {
        #[arg(long, env = "SANDBAR_DATA_DIR", default_value_os_t = crate::default_data_dir())]
        data_dir: PathBuf,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

pub fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve is not wired yet")
}

pub fn keys(_command: KeysCommand) -> anyhow::Result<()> {
    let _ = runtime()?;
    anyhow::bail!("keys is not wired yet")
}

pub fn snapshot(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Import {
            name,
            rootfs,
            data_dir,
        } => {
            let store =
                sandbar_runtime::native::snapshot::SnapshotStore::new(data_dir.join("snapshots"));
            store
                .import(&name, &rootfs)
                .with_context(|| format!("import snapshot {name}"))?;
            println!("snapshot {name} imported");
        }
        SnapshotCommand::List { data_dir } => {
            let store =
                sandbar_runtime::native::snapshot::SnapshotStore::new(data_dir.join("snapshots"));
            for name in store.list() {
                println!("{name}");
            }
        }
    }
    Ok(())
}
