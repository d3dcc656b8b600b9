//! Memory per idle sandbox: `n` sandboxes (loopback only, so no slirp4netns each) held at once.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::procfs;
use crate::{Bench, BenchError};

/// Pause after the last creation so that start-up allocations settle.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize)]
pub struct DensityRow {
    pub sandboxes: usize,
    /// Seconds to create all of them (`concurrency` at a time).
    pub fill_seconds: f64,
    /// `(MemTotal - MemAvailable)` after minus before, divided by `sandboxes`, bytes. Noisy when
    /// other work runs on the host.
    pub host_bytes_per_sandbox: f64,
    /// Mean over sandboxes of the summed RSS of every process in the sandbox's cgroup.
    pub agent_rss_bytes: f64,
    /// Mean over sandboxes of the summed PSS (shared pages divided among their users).
    pub agent_pss_bytes: f64,
    /// Mean of the memory cgroup's usage (`memory.usage_in_bytes` / `memory.current`): process
    /// memory plus the kernel memory and page cache charged to the sandbox.
    pub cgroup_bytes: f64,
    /// Processes per sandbox (mean).
    pub processes: f64,
    /// Server RSS growth divided by `sandboxes`, bytes.
    pub server_bytes_per_sandbox: f64,
    /// `(MemTotal - MemAvailable)` after deleting them, minus before, bytes (what deletion did
    /// not give back, plus noise).
    pub host_bytes_after_delete: i64,
}

pub async fn run(bench: &Bench, n: usize, concurrency: usize) -> Result<DensityRow, BenchError> {
    let server = bench.server.pid;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let host_before = procfs::host_used().unwrap_or(0);
    let server_before = procfs::rss(server).unwrap_or(0);

    let t0 = Instant::now();
    let mut clients = bench.clients(concurrency.max(1)).await?;
    let left = std::sync::atomic::AtomicUsize::new(n);
    let take = || {
        left.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |v| v.checked_sub(1),
        )
        .is_ok()
    };
    let created = std::sync::Mutex::new(Vec::with_capacity(n));
    let results = futures_util::future::join_all(clients.iter_mut().map(|client| async {
        while take() {
            let sandbox = bench.create(client, true).await?;
            created.lock().expect("not poisoned").push(sandbox.id);
        }
        Ok::<_, BenchError>(())
    }))
    .await;
    let created = created.into_inner().expect("not poisoned");
    let fill_seconds = t0.elapsed().as_secs_f64();
    let measured = async {
        results.into_iter().collect::<Result<(), _>>()?;
        tokio::time::sleep(SETTLE).await;
        let host_after = procfs::host_used().unwrap_or(0);
        let server_after = procfs::rss(server).unwrap_or(0);
        let (mut rss, mut pss, mut cg, mut procs) = (0u64, 0u64, 0u64, 0usize);
        for id in &created {
            for pid in bench.cgroups.procs(id) {
                if let Some((r, p)) = procfs::rss_pss(pid as u32) {
                    rss += r;
                    pss += p;
                }
                procs += 1;
            }
            cg += bench.cgroups.usage(id).0;
        }
        let count = created.len().max(1) as f64;
        Ok::<_, BenchError>(DensityRow {
            sandboxes: created.len(),
            fill_seconds,
            host_bytes_per_sandbox: host_after.saturating_sub(host_before) as f64 / count,
            agent_rss_bytes: rss as f64 / count,
            agent_pss_bytes: pss as f64 / count,
            cgroup_bytes: cg as f64 / count,
            processes: procs as f64 / count,
            server_bytes_per_sandbox: server_after.saturating_sub(server_before) as f64 / count,
            host_bytes_after_delete: 0,
        })
    }
    .await;
    bench.delete_all(created, concurrency).await?;
    let mut row = measured?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    row.host_bytes_after_delete = procfs::host_used().unwrap_or(0) as i64 - host_before as i64;
    Ok(row)
}
