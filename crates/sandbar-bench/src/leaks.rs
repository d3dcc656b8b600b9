//! What the host still holds of deleted sandboxes: data directories, cgroups, mounts,
//! processes.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use sandbar_runtime::native::cgroup::Cgroups;
use serde::Serialize;

use crate::procfs;

/// Summary of a leak check for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeakCheck {
    /// Sandboxes checked.
    pub sandboxes: usize,
    pub clean: bool,
    /// One line per leftover (empty when clean).
    pub leftovers: Vec<String>,
}

impl LeakCheck {
    pub fn new(sandboxes: usize, leftovers: &[String]) -> Self {
        Self {
            sandboxes,
            clean: leftovers.is_empty(),
            leftovers: leftovers.to_vec(),
        }
    }
}

/// Leftovers of `ids` on the host, waiting up to `patience` for them to go (deletion may finish
/// asynchronously). Empty when nothing is left.
pub async fn check(
    ids: &HashSet<String>,
    data_dir: &Path,
    cgroups: &Cgroups,
    patience: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        let found = scan(ids, data_dir, cgroups);
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn scan(ids: &HashSet<String>, data_dir: &Path, cgroups: &Cgroups) -> Vec<String> {
    let mut found = Vec::new();
    for id in ids {
        let dir = data_dir.join("sandboxes").join(id);
        if dir.exists() {
            found.push(format!("sandbox directory {}", dir.display()));
        }
        for cg in cgroups.dirs(id) {
            if cg.exists() {
                found.push(format!("cgroup {}", cg.display()));
            }
        }
    }
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        let sandboxes = data_dir.join("sandboxes");
        let sandboxes = sandboxes.to_string_lossy();
        for line in mountinfo.lines() {
            if line.contains(sandboxes.as_ref()) || ids.iter().any(|id| line.contains(id.as_str()))
            {
                found.push(format!("mount: {line}"));
            }
        }
    }
    for (pid, id) in procfs::pids_in_cgroups_matching(ids) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        found.push(format!("process {pid} of sandbox {id}: {}", cmdline.trim()));
    }
    found
}
