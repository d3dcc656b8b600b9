//! Info, environment, ports and metrics endpoints (§5.3).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, Uri};
use axum::Json;
use sandbar_wire::toolbox::{
    DirResponse, EnvUpdateRequest, PortInUseResponse, PortsResponse, SystemMetrics,
};

use crate::envelope::{DaemonError, JsonBody};
use crate::Agent;

/// `GET /user-home-dir` → `{"dir"}`.
pub async fn home_dir(State(agent): State<Arc<Agent>>) -> Json<DirResponse> {
    Json(DirResponse {
        dir: agent.user.home.display().to_string(),
    })
}

/// `GET /work-dir` → `{"dir"}`: the home directory is the work directory.
pub async fn work_dir(State(agent): State<Arc<Agent>>) -> Json<DirResponse> {
    home_dir(State(agent)).await
}

/// `GET /version` → `{"version"}`.
pub async fn version() -> Json<BTreeMap<&'static str, &'static str>> {
    Json(BTreeMap::from([("version", env!("CARGO_PKG_VERSION"))]))
}

/// `POST /env` `{set, unset}` → 200 the environment later commands get.
pub async fn update_env(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<EnvUpdateRequest>,
) -> Result<Json<BTreeMap<String, String>>, DaemonError> {
    let set = request.set.unwrap_or_default();
    if let Some(bad) = set
        .keys()
        .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return Err(DaemonError::bad_request(format!(
            "invalid environment variable name {bad:?}"
        )));
    }
    if set.values().any(|v| v.contains('\0')) {
        return Err(DaemonError::bad_request(
            "environment values must not contain NUL bytes",
        ));
    }
    let mut env = agent
        .env
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for name in request.unset.unwrap_or_default() {
        env.remove(&name);
    }
    env.extend(set);
    Ok(Json(env.clone()))
}

/// `GET /env` → the environment later commands get.
pub async fn get_env(State(agent): State<Arc<Agent>>) -> Json<BTreeMap<String, String>> {
    Json(agent.env_snapshot())
}

/// Ports in LISTEN state in `/proc/net/tcp` and `/proc/net/tcp6` (the sandbox's network
/// namespace).
fn listening_ports() -> Vec<u16> {
    let mut ports: Vec<u16> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|text| parse_listening(&text))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Parses a `/proc/net/tcp{,6}` table: local ports of sockets in state `0A` (LISTEN).
pub fn parse_listening(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (_, port) = local.rsplit_once(':')?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

/// `GET /port` → `{"ports":[…]}`.
pub async fn ports() -> Json<PortsResponse> {
    Json(PortsResponse {
        ports: listening_ports(),
    })
}

/// `GET /port/{port}/in-use` → `{"isInUse"}`.
pub async fn port_in_use(
    UrlPath(port): UrlPath<String>,
) -> Result<Json<PortInUseResponse>, DaemonError> {
    let port: u16 = port
        .parse()
        .map_err(|_| DaemonError::bad_request(format!("invalid port {port:?}")))?;
    Ok(Json(PortInUseResponse {
        is_in_use: listening_ports().contains(&port),
    }))
}

/// Endpoints Sandbar does not offer (LSP, computer use): a clear error, never a hang.
pub async fn not_offered(uri: Uri) -> DaemonError {
    DaemonError::new(
        StatusCode::NOT_IMPLEMENTED,
        "NOT_IMPLEMENTED",
        format!("{} is not offered by the Sandbar agent", uri.path()),
    )
}

/// Remembers the previous CPU sample so usage is measured between two metric requests (or
/// since the agent started), without sampling in the background.
#[derive(Debug)]
pub struct CpuSampler {
    last: Mutex<Option<CpuSample>>,
}

#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    /// CPU time used by the sandbox (cgroup) in nanoseconds, or busy jiffies of the machine.
    used: u64,
    /// With `/proc/stat`: total jiffies; with cgroups: None (wall time is the reference).
    total: Option<u64>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        CpuSampler {
            last: Mutex::new(take_cpu_sample()),
        }
    }
}

impl CpuSampler {
    /// CPU use since the previous call, in percent of `cpus` CPUs.
    fn used_pct(&self, cpus: u32) -> f64 {
        let Some(now) = take_cpu_sample() else {
            return 0.0;
        };
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = last.replace(now);
        let Some(previous) = previous else {
            return 0.0;
        };
        let used = now.used.saturating_sub(previous.used) as f64;
        let pct = match (now.total, previous.total) {
            (Some(total), Some(previous_total)) => {
                let total = total.saturating_sub(previous_total) as f64;
                if total == 0.0 {
                    0.0
                } else {
                    used / total * 100.0
                }
            }
            _ => {
                let wall = now.at.duration_since(previous.at).as_nanos() as f64;
                if wall == 0.0 {
                    0.0
                } else {
                    used / (wall * f64::from(cpus.max(1))) * 100.0
                }
            }
        };
        (pct.clamp(0.0, 100.0) * 100.0).round() / 100.0
    }
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A field of a `key value` file such as `cpu.stat` or `memory.stat`.
fn stat_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn take_cpu_sample() -> Option<CpuSample> {
    let at = Instant::now();
    if let Some(usec) = stat_field("/sys/fs/cgroup/cpu.stat", "usage_usec") {
        return Some(CpuSample {
            at,
            used: usec * 1000,
            total: None,
        });
    }
    for v1 in [
        "/sys/fs/cgroup/cpuacct/cpuacct.usage",
        "/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage",
    ] {
        if let Some(ns) = read_u64(v1) {
            return Some(CpuSample {
                at,
                used: ns,
                total: None,
            });
        }
    }
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().sum();
    // idle + iowait
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some(CpuSample {
        at,
        used: total.saturating_sub(idle),
        total: Some(total),
    })
}

fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// (total, used, cache) in bytes: the cgroup's limit and usage when visible, else the
/// machine's.
fn memory() -> (u64, u64, u64) {
    let host_total = meminfo("MemTotal").unwrap_or(0);
    let limit_or_host = |limit: Option<u64>| match limit {
        Some(limit) if limit > 0 && limit < host_total => limit,
        _ => host_total,
    };
    if let Some(current) = read_u64("/sys/fs/cgroup/memory.current") {
        let limit = read_u64("/sys/fs/cgroup/memory.max");
        let cache = stat_field("/sys/fs/cgroup/memory.stat", "file").unwrap_or(0);
        return (limit_or_host(limit), current, cache);
    }
    if let Some(usage) = read_u64("/sys/fs/cgroup/memory/memory.usage_in_bytes") {
        let limit = read_u64("/sys/fs/cgroup/memory/memory.limit_in_bytes");
        let cache = stat_field("/sys/fs/cgroup/memory/memory.stat", "total_cache")
            .or_else(|| stat_field("/sys/fs/cgroup/memory/memory.stat", "cache"))
            .unwrap_or(0);
        return (limit_or_host(limit), usage, cache);
    }
    let available = meminfo("MemAvailable").unwrap_or(0);
    let cache = meminfo("Cached").unwrap_or(0);
    (host_total, host_total.saturating_sub(available), cache)
}

fn disk(root: &Path) -> (u64, u64, u64) {
    match nix::sys::statvfs::statvfs(root) {
        Ok(stat) => {
            let frsize = stat.fragment_size();
            let total = stat.blocks() * frsize;
            let free = stat.blocks_available() * frsize;
            let used = (stat.blocks() - stat.blocks_free()) * frsize;
            (total, used, free)
        }
        Err(_) => (0, 0, 0),
    }
}

/// `GET /system/metrics`.
pub async fn metrics(State(agent): State<Arc<Agent>>) -> Json<SystemMetrics> {
    let cpu_count = std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(1))
        .unwrap_or(1);
    let cpu_used_pct = agent.cpu.used_pct(cpu_count);
    let (mem_total, mem_used, mem_cache) = memory();
    let (disk_total, disk_used, disk_free) = disk(Path::new("/"));
    let now = chrono::Utc::now();
    Json(SystemMetrics {
        cpu_count,
        cpu_used_pct,
        mem_total,
        mem_used,
        mem_cache,
        disk_total,
        disk_used,
        disk_free,
        timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        timestamp_unix: now.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_sockets() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:0016 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(parse_listening(table), vec![8080]);
    }
}
