//! Host memory readings from `/proc`: a process's resident set and its peak, the peak reset
//! (`clear_refs`), proportional set sizes (`smaps_rollup`) and host-wide use (`meminfo`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One `Key:   123 kB` field of a `/proc` file, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// Current resident set (VmRSS) of `pid`, bytes.
pub fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&status, "VmRSS")
}

/// Peak resident set since start or the last [`reset_peak`] (VmHWM), bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kb_field(&status, "VmHWM")
}

/// Resets VmHWM to the current RSS (`echo 5 > /proc/<pid>/clear_refs`). False when the kernel
/// refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// `(Rss, Pss)` of `pid` from `smaps_rollup`, bytes.
pub fn rss_pss(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some((kb_field(&text, "Rss")?, kb_field(&text, "Pss")?))
}

/// Host memory in use: `MemTotal - MemAvailable`, bytes.
pub fn host_used() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(kb_field(&text, "MemTotal")?.saturating_sub(kb_field(&text, "MemAvailable")?))
}

/// Samples a process's RSS in the background and keeps the largest value seen (next to the
/// kernel's own VmHWM, in case the reset is refused).
pub struct PeakSampler {
    pid: u32,
    max: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let max = Arc::new(AtomicU64::new(rss(pid).unwrap_or(0)));
        let seen = max.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Some(v) = rss(pid) {
                    seen.fetch_max(v, Ordering::Relaxed);
                }
            }
        });
        Self { pid, max, task }
    }

    /// Stops sampling; returns the peak: the larger of the samples and VmHWM.
    pub fn stop(self) -> u64 {
        self.task.abort();
        let sampled = self.max.load(Ordering::Relaxed);
        sampled.max(peak_rss(self.pid).unwrap_or(0))
    }
}

/// Pids listed in `<dir>/cgroup.procs`.
pub fn cgroup_procs(dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Pids of processes whose `/proc/<pid>/cgroup` mentions any of `needles`.
pub fn pids_in_cgroups_matching(needles: &std::collections::HashSet<String>) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path: PathBuf = entry.path().join("cgroup");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines() {
            let cg = line.rsplit(':').next().unwrap_or_default();
            if let Some(id) = cg.strip_prefix("/sandbar/") {
                let id = id.split('/').next().unwrap_or_default();
                if needles.contains(id) {
                    found.push((pid, id.to_owned()));
                    break;
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_fields() {
        let text = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(kb_field(text, "VmHWM"), Some(2 * 1024 * 1024));
        assert_eq!(kb_field(text, "VmRSS"), Some(1024 * 1024));
        assert_eq!(kb_field(text, "Vm"), None);
    }

    #[test]
    fn reads_own_memory() {
        let me = std::process::id();
        assert!(rss(me).unwrap() > 0);
        assert!(peak_rss(me).unwrap() >= rss(me).unwrap() / 2);
        assert!(host_used().unwrap() > 0);
    }
}
