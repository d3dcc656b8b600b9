//! `sandbar bench`: the benchmark harness behind `docs/BENCHMARKS.md`.
//!
//! Owns: starting a private server (the same binary's `serve`, as a child process on a random
//! loopback port with a temporary data directory), driving it over HTTP exactly as the Daytona
//! SDKs do, measuring start latency, exec round trip, transfer throughput and server memory,
//! idle-sandbox density, create+delete throughput with a leak check, and the bubblewrap and
//! runc baselines; writing `bench.json`, a PNG chart and a table on stdout.
//!
//! Must not depend on the server's internals: only its HTTP API, `/proc`, and the cgroup
//! layout of `sandbar-runtime` (to find each sandbox's processes). Figures are reported, never
//! asserted: [`run`] fails only when the harness cannot do its work (or something leaked).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use sandbar_runtime::native::cgroup::Cgroups;

mod baseline;
mod chart;
mod churn;
pub mod client;
mod density;
mod glyphs;
mod latency;
mod leaks;
pub mod procfs;
pub mod report;
mod server;
pub mod stats;
mod transfer;

use client::{Client, ClientError, SandboxHandle};
pub use report::Report;
use server::ServerProcess;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// What to run and how much of it.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `sandbar` executable whose `serve` is measured.
    pub exe: PathBuf,
    /// Where `bench.json`, `latency.png` and `server.log` go.
    pub out_dir: PathBuf,
    pub sizes: Sizes,
}

/// Sample counts and sizes of every phase.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub quick: bool,
    /// `(concurrency, rounds)`: each round starts `concurrency` sandboxes at once.
    pub start_levels: Vec<(usize, usize)>,
    pub exec_rounds: usize,
    /// `(file size, repetitions)`.
    pub transfers: Vec<(u64, usize)>,
    /// Numbers of idle sandboxes to hold at once.
    pub density: Vec<usize>,
    /// Parallel creations/deletions while filling and emptying the density phase.
    pub density_concurrency: usize,
    pub churn: Duration,
    pub churn_workers: usize,
}

impl Sizes {
    /// The published figures.
    pub fn full() -> Self {
        Self {
            quick: false,
            start_levels: vec![(1, 100), (10, 20), (50, 6)],
            exec_rounds: 500,
            transfers: vec![(MIB, 30), (GIB, 2)],
            density: vec![100, 500],
            density_concurrency: 8,
            churn: Duration::from_secs(60),
            churn_workers: 4,
        }
    }

    /// CI: every phase, tiny sizes; checks that the harness works.
    pub fn quick() -> Self {
        Self {
            quick: true,
            start_levels: vec![(1, 3), (2, 1)],
            exec_rounds: 10,
            transfers: vec![(MIB, 2)],
            density: vec![5],
            density_concurrency: 2,
            churn: Duration::from_secs(3),
            churn_workers: 2,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the benchmark needs root (the server it starts creates namespaces, cgroups, mounts)")]
    NotRoot,
    #[error("failed to start the server {exe}")]
    SpawnServer {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server exited during start ({status}); see {log}")]
    ServerExited { status: String, log: PathBuf },
    #[error("the server did not answer in time; see {log}")]
    ServerNotReady { log: PathBuf },
    #[error("the server did not stop after SIGTERM and was killed; see {log}")]
    ServerStop { log: PathBuf },
    #[error("failed to {what}")]
    Client {
        what: &'static str,
        #[source]
        source: ClientError,
    },
    #[error("`{command}` in sandbox {sandbox} exited with {exit_code}: {output}")]
    Exec {
        sandbox: String,
        command: String,
        exit_code: i64,
        output: String,
    },
    #[error("failed to {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{tool} baseline failed: {detail}")]
    Baseline { tool: &'static str, detail: String },
    #[error("failed to draw {path}: {detail}")]
    Chart { path: PathBuf, detail: String },
    #[error("failed to write {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the host still holds parts of deleted sandboxes:\n  {}", .0.join("\n  "))]
    Leaks(Vec<String>),
}

fn client_err(what: &'static str) -> impl FnOnce(ClientError) -> BenchError {
    move |source| BenchError::Client { what, source }
}

/// The running server plus the bookkeeping every phase shares: which sandboxes exist (deleted
/// at the end whatever happens) and which ever existed (checked for leaks).
pub(crate) struct Bench {
    server: ServerProcess,
    cgroups: Cgroups,
    live: Mutex<HashSet<String>>,
    all: Mutex<HashSet<String>>,
}

impl Bench {
    async fn client(&self) -> Result<Client, BenchError> {
        self.server.client().await
    }

    async fn clients(&self, n: usize) -> Result<Vec<Client>, BenchError> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(self.client().await?);
        }
        Ok(clients)
    }

    async fn create(
        &self,
        client: &mut Client,
        network_block_all: bool,
    ) -> Result<SandboxHandle, BenchError> {
        let sandbox = client
            .create_sandbox(network_block_all)
            .await
            .map_err(client_err("create a sandbox"))?;
        self.all
            .lock()
            .expect("not poisoned")
            .insert(sandbox.id.clone());
        self.live
            .lock()
            .expect("not poisoned")
            .insert(sandbox.id.clone());
        Ok(sandbox)
    }

    async fn delete(&self, client: &mut Client, id: &str) -> Result<(), BenchError> {
        client
            .delete_sandbox(id)
            .await
            .map_err(client_err("delete a sandbox"))?;
        self.live.lock().expect("not poisoned").remove(id);
        Ok(())
    }

    /// Deletes `ids` with `concurrency` connections.
    async fn delete_all(&self, ids: Vec<String>, concurrency: usize) -> Result<(), BenchError> {
        let mut clients = self.clients(concurrency.max(1)).await?;
        let queue = Mutex::new(ids);
        let next = || queue.lock().expect("not poisoned").pop();
        let results = futures_util::future::join_all(clients.iter_mut().map(|client| async {
            while let Some(id) = next() {
                self.delete(client, &id).await?;
            }
            Ok::<_, BenchError>(())
        }))
        .await;
        results.into_iter().collect()
    }

    async fn exec_ok(
        &self,
        client: &mut Client,
        sandbox: &SandboxHandle,
        command: &str,
    ) -> Result<String, BenchError> {
        let outcome = client
            .execute(sandbox, command)
            .await
            .map_err(client_err("execute a command"))?;
        if outcome.exit_code != 0 {
            return Err(BenchError::Exec {
                sandbox: sandbox.id.clone(),
                command: command.to_owned(),
                exit_code: outcome.exit_code,
                output: outcome.result,
            });
        }
        Ok(outcome.result)
    }

    /// The sandbox's PID 1 (the agent) on the host: the process of its cgroups whose innermost
    /// pid (`NSpid`) is 1.
    fn init_pid(&self, id: &str) -> Option<u32> {
        self.cgroups.procs(id).into_iter().find_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let nspid = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            (nspid.split_whitespace().last() == Some("1")).then_some(pid as u32)
        })
    }
}

/// Runs every phase against a fresh server and writes the report files. Returns the report; an
/// error when the harness could not run or when deleted sandboxes left something behind.
pub async fn run(config: &BenchConfig) -> Result<Report, BenchError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BenchError::NotRoot);
    }
    std::fs::create_dir_all(&config.out_dir).map_err(|source| BenchError::Io {
        what: format!("create {}", config.out_dir.display()),
        source,
    })?;
    raise_fd_limit();
    let mut report = Report::new(&config.sizes);

    // Baselines first, on a quiet machine (no server yet).
    let work = tempfile::Builder::new()
        .prefix("sandbar-bench-")
        .tempdir()
        .map_err(|source| BenchError::Io {
            what: "create a temporary directory".into(),
            source,
        })?;
    baseline::run_all(work.path(), &config.sizes, &mut report).await?;

    let data_dir = work.path().join("data");
    let log = config.out_dir.join("server.log");
    let server = ServerProcess::start(&config.exe, &data_dir, &log).await?;
    let cgroups = Cgroups::detect().map_err(|e| BenchError::Io {
        what: "detect the cgroup layout".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let bench = Bench {
        server,
        cgroups,
        live: Mutex::new(HashSet::new()),
        all: Mutex::new(HashSet::new()),
    };
    let outcome = run_phases(&bench, config, &mut report).await;

    // Whatever happened: delete what is left, stop the server, look for leftovers.
    let left: Vec<String> = bench
        .live
        .lock()
        .expect("not poisoned")
        .iter()
        .cloned()
        .collect();
    let cleanup = bench.delete_all(left, 4).await;
    let all: HashSet<String> = bench.all.lock().expect("not poisoned").clone();
    let Bench {
        server, cgroups, ..
    } = bench;
    let stopped = server.stop().await;
    let leaks = leaks::check(&all, &data_dir, &cgroups, Duration::from_secs(10)).await;
    report.final_leak_check = leaks::LeakCheck::new(all.len(), &leaks);
    report.finish();

    let json_path = config.out_dir.join("bench.json");
    report.write_json(&json_path)?;
    let chart_path = config.out_dir.join("latency.png");
    chart::draw(&report, &chart_path)?;
    report.print_table(&mut std::io::stdout().lock());
    println!(
        "\nwrote {} and {}",
        json_path.display(),
        chart_path.display()
    );

    outcome?;
    cleanup?;
    stopped?;
    if !leaks.is_empty() {
        return Err(BenchError::Leaks(leaks));
    }
    Ok(report)
}

async fn run_phases(
    bench: &Bench,
    config: &BenchConfig,
    report: &mut Report,
) -> Result<(), BenchError> {
    let sizes = &config.sizes;
    report.server_rss_idle = procfs::rss(bench.server.pid);
    for &(concurrency, rounds) in &sizes.start_levels {
        eprintln!("bench: create -> first exec, concurrency {concurrency}, {rounds} rounds");
        let samples = latency::create_to_first_exec(bench, concurrency, rounds, false).await?;
        report.add_start("sandbar", concurrency, &samples);
    }
    // The same without outbound network (no slirp4netns): what the network costs.
    if let Some(&(concurrency, rounds)) = sizes.start_levels.first() {
        eprintln!("bench: create -> first exec with networkBlockAll, concurrency {concurrency}");
        let samples = latency::create_to_first_exec(bench, concurrency, rounds, true).await?;
        report.add_start("sandbar-nonet", concurrency, &samples);
    }
    eprintln!("bench: exec round trip, {} calls", sizes.exec_rounds);
    report.exec = latency::exec_round_trip(bench, sizes.exec_rounds).await?;
    for &(size, reps) in &sizes.transfers {
        eprintln!("bench: bulk upload/download of {size} bytes x{reps}");
        report
            .transfers
            .extend(transfer::run(bench, size, reps).await?);
    }
    for &n in &sizes.density {
        eprintln!("bench: density with {n} idle sandboxes");
        report
            .density
            .push(density::run(bench, n, sizes.density_concurrency).await?);
    }
    eprintln!(
        "bench: create+delete for {:?} with {} workers",
        sizes.churn, sizes.churn_workers
    );
    report.churn = Some(churn::run(bench, sizes.churn, sizes.churn_workers).await?);
    Ok(())
}

/// The server holds a pidfd and a socket per sandbox: raise the soft descriptor limit to the hard
/// one (inherited by the server).
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
