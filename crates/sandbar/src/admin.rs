//! The user-facing commands: `serve`, `keys`, `snapshot`.

use std::path::PathBuf;

use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use sandbar_runtime::native::{NativeConfig, NativeRuntime};

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SANDBAR_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: std::net::SocketAddr,
    /// Data directory (state database, snapshots, sandbox layers).
    #[arg(long, env = "SANDBAR_DATA_DIR", default_value_os_t = crate::default_data_dir())]
    pub data_dir: PathBuf,
    /// Size limit of a volume whose create request names none, in GiB (sparse: unused space
    /// costs nothing on the host).
    #[arg(long, env = "SANDBAR_VOLUME_SIZE_GIB", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=16384))]
    pub volume_size_gib: u64,
    /// Domain of port preview URLs (`http://{port}-{sandboxId}.{domain}`), with a port when it
    /// is not the scheme's default. Default: `localhost:<listen port>` (`*.localhost` resolves
    /// to loopback without DNS set-up). Point a wildcard DNS record at the server to use another.
    #[arg(long, env = "SANDBAR_PREVIEW_DOMAIN")]
    pub preview_domain: Option<String>,
    /// On SIGTERM/SIGINT, stop every started sandbox (default: leave them running; the next
    /// server re-adopts them).
    #[arg(long, env = "SANDBAR_STOP_SANDBOXES_ON_EXIT")]
    pub stop_sandboxes_on_exit: bool,
    /// Serve /metrics without authentication (default: an API key of the default
    /// organization is required).
    #[arg(long, env = "SANDBAR_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Log format on stderr: `text` or `json` (one object per line, with request ids).
    #[arg(long, env = "SANDBAR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
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

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if !nix_is_root() {
        anyhow::bail!(
            "sandbar serve must run as root: sandboxes use namespaces, cgroups and mounts"
        );
    }
    init_logging(&args.log_format);
    let exe = std::env::current_exe().context("locate the sandbar executable")?;
    let data_dir = std::path::absolute(&args.data_dir).context("resolve the data directory")?;
    runtime()?.block_on(async move {
        let mut native_config = NativeConfig::new(data_dir.clone(), exe);
        native_config.volume_size = args.volume_size_gib << 30;
        let native = NativeRuntime::new(native_config).context("prepare the native runtime")?;
        let mut config = sandbar_server::ServerConfig::new(args.listen, data_dir);
        config.stop_sandboxes_on_exit = args.stop_sandboxes_on_exit;
        config.metrics_public = args.metrics_public;
        config.preview_domain = args.preview_domain.clone();
        config.snapshots = native
            .snapshots()
            .list()
            .into_iter()
            .filter(|name| name != &config.default_snapshot)
            .map(|name| (name, None))
            .collect();
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listen on {}", args.listen))?;
        let addr = listener
            .local_addr()
            .context("read the listening address")?;
        println!("listening on http://{addr}");
        sandbar_server::serve_on(
            listener,
            config,
            Arc::new(native),
            sandbar_server::shutdown_signal(),
        )
        .await?;
        Ok(())
    })
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SANDBAR_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn nix_is_root() -> bool {
    // Effective uid 0; read from /proc to avoid another dependency here.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async move {
        match command {
            KeysCommand::Create {
                data_dir,
                org,
                name,
            } => {
                let store = open_store(&data_dir).await?;
                let organization = match org {
                    None => store.ensure_default_org().await?,
                    Some(org_name) => {
                        let existing = store
                            .list_organizations()
                            .await?
                            .into_iter()
                            .find(|o| o.name == org_name);
                        match existing {
                            Some(o) => o,
                            None => store.create_organization(&org_name).await?,
                        }
                    }
                };
                let (_, plaintext) = store.create_key(organization.id, &name).await?;
                println!("{plaintext}");
                store.close().await;
            }
            KeysCommand::List { data_dir } => {
                let store = open_store(&data_dir).await?;
                println!(
                    "{:<36}  {:<16}  {:<12}  {:<20}  status",
                    "id", "organization", "prefix", "name"
                );
                for org in store.list_organizations().await? {
                    for key in store.list_keys(org.id).await? {
                        let status = if key.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        println!(
                            "{:<36}  {:<16}  {:<12}  {:<20}  {status}",
                            key.id, org.name, key.prefix, key.name
                        );
                    }
                }
                store.close().await;
            }
            KeysCommand::Revoke { data_dir, key } => {
                let store = open_store(&data_dir).await?;
                let mut matches = Vec::new();
                for org in store.list_organizations().await? {
                    for k in store.list_keys(org.id).await? {
                        if k.revoked_at.is_none()
                            && (k.id.to_string() == key
                                || (key.len() >= 6 && k.prefix.starts_with(&key)))
                        {
                            matches.push(k);
                        }
                    }
                }
                match matches.as_slice() {
                    [] => anyhow::bail!("no active key matches {key}"),
                    [k] => {
                        store.revoke_key(k.organization_id, k.id).await?;
                        println!("revoked {}", k.id);
                    }
                    _ => anyhow::bail!("{key} matches {} keys; use the key id", matches.len()),
                }
                store.close().await;
            }
        }
        Ok(())
    })
}

async fn open_store(data_dir: &std::path::Path) -> anyhow::Result<sandbar_store::Store> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    sandbar_store::Store::open(data_dir)
        .await
        .context("open the state database")
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
            // Registered in the state database too, so a running server accepts it at once.
            runtime()?.block_on(async {
                let db = open_store(&data_dir).await?;
                db.ensure_snapshot(&name, None)
                    .await
                    .context("register the snapshot")?;
                db.close().await;
                anyhow::Ok(())
            })?;
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

#[derive(Args)]
pub struct BenchArgs {
    /// Every phase with tiny sizes (CI): checks that the harness works; figures meaningless.
    #[arg(long)]
    pub quick: bool,
    /// Directory for bench.json, latency.png and server.log.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let config = sandbar_bench::BenchConfig {
        exe: std::env::current_exe().context("locate the sandbar executable")?,
        out_dir: args.out,
        sizes: if args.quick {
            sandbar_bench::Sizes::quick()
        } else {
            sandbar_bench::Sizes::full()
        },
    };
    runtime()?.block_on(sandbar_bench::run(&config))?;
    Ok(())
}
