//! The results: `bench.json` (everything, with raw samples) and the table on stdout.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::churn::ChurnRow;
use crate::density::DensityRow;
use crate::leaks::LeakCheck;
use crate::stats::{sorted_ms, Summary};
use crate::transfer::TransferRow;
use crate::{BenchError, Sizes, GIB, MIB};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub quick: bool,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub machine: Machine,
    /// Create → first exec result (Sandbar) and start → exit of `sh -c true` (baselines).
    pub start: Vec<StartRow>,
    /// `POST /process/execute` of `true` in a running sandbox.
    pub exec: Option<Summary>,
    pub transfers: Vec<TransferRow>,
    pub density: Vec<DensityRow>,
    pub churn: Option<ChurnRow>,
    /// Every sandbox of the run, after the server stopped.
    pub final_leak_check: LeakCheck,
    /// Server RSS right after start, bytes.
    pub server_rss_idle: Option<u64>,
    pub skipped: Vec<Skipped>,
    pub targets: Vec<TargetCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub mem_total_bytes: u64,
    pub kernel: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StartRow {
    /// `sandbar` (the SDK's default body: outbound network through slirp4netns),
    /// `sandbar-nonet` (`networkBlockAll: true`), `bwrap` or `runc`.
    pub system: &'static str,
    pub concurrency: usize,
    pub summary: Option<Summary>,
    pub samples_ms: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub what: &'static str,
    pub reason: String,
}

/// One of the targets of `docs/BENCHMARKS.md` against what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub what: &'static str,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mib(bytes: f64) -> f64 {
    bytes / MIB as f64
}

impl Report {
    pub fn new(sizes: &Sizes) -> Self {
        let mem_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
            .unwrap_or(0)
            * 1024;
        Self {
            version: env!("CARGO_PKG_VERSION"),
            quick: sizes.quick,
            started_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                mem_total_bytes: mem_total,
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default(),
                loadavg_start: loadavg(),
                loadavg_end: String::new(),
            },
            start: Vec::new(),
            exec: None,
            transfers: Vec::new(),
            density: Vec::new(),
            churn: None,
            final_leak_check: LeakCheck::default(),
            server_rss_idle: None,
            skipped: Vec::new(),
            targets: Vec::new(),
        }
    }

    pub fn add_start(&mut self, system: &'static str, concurrency: usize, samples: &[Duration]) {
        self.start.push(StartRow {
            system,
            concurrency,
            summary: Summary::of(samples),
            samples_ms: sorted_ms(samples),
        });
    }

    pub fn skip(&mut self, what: &'static str, reason: &str) {
        eprintln!("bench: skipping the {what} baseline: {reason}");
        self.skipped.push(Skipped {
            what,
            reason: reason.to_owned(),
        });
    }

    pub fn start_summary(&self, system: &str, concurrency: usize) -> Option<&Summary> {
        self.start
            .iter()
            .find(|r| r.system == system && r.concurrency == concurrency)
            .and_then(|r| r.summary.as_ref())
    }

    /// Records the end load and checks the targets of this 2-core machine class.
    pub fn finish(&mut self) {
        self.machine.loadavg_end = loadavg();
        let mut targets = Vec::new();
        if let Some(s) = self.start_summary("sandbar", 1) {
            targets.push(TargetCheck {
                what: "create -> first exec p50, concurrency 1",
                target: "<= 20 ms".into(),
                measured: format!("{:.1} ms", s.p50_ms),
                met: s.p50_ms <= 20.0,
            });
            targets.push(TargetCheck {
                what: "create -> first exec p99, concurrency 1",
                target: "<= 60 ms".into(),
                measured: format!("{:.1} ms", s.p99_ms),
                met: s.p99_ms <= 60.0,
            });
        }
        if let Some(s) = &self.exec {
            targets.push(TargetCheck {
                what: "exec round trip p50",
                target: "<= 3 ms".into(),
                measured: format!("{:.2} ms", s.p50_ms),
                met: s.p50_ms <= 3.0,
            });
        }
        if let Some(d) = self.density.iter().max_by_key(|d| d.sandboxes) {
            targets.push(TargetCheck {
                what: "host memory per idle sandbox",
                target: "<= 3 MiB".into(),
                measured: format!(
                    "{:.2} MiB ({} sandboxes)",
                    mib(d.host_bytes_per_sandbox),
                    d.sandboxes
                ),
                met: d.host_bytes_per_sandbox <= 3.0 * MIB as f64,
            });
        }
        for t in self.transfers.iter().filter(|t| t.bytes >= GIB) {
            targets.push(TargetCheck {
                what: if t.direction == "upload" {
                    "1 GiB upload"
                } else {
                    "1 GiB download"
                },
                target: ">= 500 MB/s, server growth < 64 MiB".into(),
                measured: format!(
                    "{:.0} MB/s, +{:.1} MiB",
                    t.mb_per_s,
                    mib(t.server_growth.unwrap_or(0) as f64)
                ),
                met: t.mb_per_s >= 500.0 && t.server_growth.unwrap_or(u64::MAX) < 64 * MIB,
            });
        }
        self.targets = targets;
    }

    pub fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        std::fs::write(path, text + "\n").map_err(|source| BenchError::Io {
            what: format!("write {}", path.display()),
            source,
        })
    }

    /// The human-readable summary. Write errors (closed stdout) are ignored.
    pub fn print_table(&self, out: &mut impl Write) {
        let _ = self.write_table(out);
    }

    fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let m = &self.machine;
        writeln!(
            out,
            "\nsandbar bench {}{} — {} CPUs, {:.1} GiB, kernel {}, load {} -> {}",
            self.version,
            if self.quick {
                " (quick: harness check only, figures meaningless)"
            } else {
                ""
            },
            m.cpus,
            m.mem_total_bytes as f64 / GIB as f64,
            m.kernel,
            m.loadavg_start,
            m.loadavg_end
        )?;
        writeln!(
            out,
            "\nstart: create -> first exec (sandbar) / sh -c true start+exit (baselines), ms"
        )?;
        writeln!(
            out,
            "  {:<13} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "system", "conc", "n", "min", "p50", "p90", "p99", "max"
        )?;
        for row in &self.start {
            if let Some(s) = &row.summary {
                writeln!(
                    out,
                    "  {:<13} {:>5} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                    row.system,
                    row.concurrency,
                    s.n,
                    s.min_ms,
                    s.p50_ms,
                    s.p90_ms,
                    s.p99_ms,
                    s.max_ms
                )?;
            }
        }
        for s in &self.skipped {
            writeln!(out, "  {:<13} skipped: {}", s.what, s.reason)?;
        }
        if let Some(s) = &self.exec {
            writeln!(
                out,
                "\nexec `true` round trip: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms (n={})",
                s.p50_ms, s.p90_ms, s.p99_ms, s.n
            )?;
        }
        if !self.transfers.is_empty() {
            writeln!(
                out,
                "\ntransfers (median of repetitions; server RSS growth = peak - before)"
            )?;
            writeln!(
                out,
                "  {:<9} {:>10} {:>5} {:>10} {:>10} {:>14} {:>14}",
                "direction", "size", "reps", "MB/s", "best MB/s", "server +MiB", "agent peak MiB"
            )?;
            for t in &self.transfers {
                writeln!(
                    out,
                    "  {:<9} {:>10} {:>5} {:>10.0} {:>10.0} {:>14.1} {:>14.1}",
                    t.direction,
                    human_size(t.bytes),
                    t.repetitions,
                    t.mb_per_s,
                    t.best_mb_per_s,
                    mib(t.server_growth.unwrap_or(0) as f64),
                    mib(t.agent_rss_peak.unwrap_or(0) as f64)
                )?;
            }
        }
        if !self.density.is_empty() {
            writeln!(out, "\ndensity: per idle sandbox (networkBlockAll), MiB")?;
            writeln!(
                out,
                "  {:>6} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>12}",
                "count", "fill s", "host", "cgroup", "RSS", "PSS", "server", "left/delete"
            )?;
            for d in &self.density {
                writeln!(
                    out,
                    "  {:>6} {:>8.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.3} {:>12.1}",
                    d.sandboxes,
                    d.fill_seconds,
                    mib(d.host_bytes_per_sandbox),
                    mib(d.cgroup_bytes),
                    mib(d.agent_rss_bytes),
                    mib(d.agent_pss_bytes),
                    mib(d.server_bytes_per_sandbox),
                    mib(d.host_bytes_after_delete as f64)
                )?;
            }
        }
        if let Some(c) = &self.churn {
            writeln!(
                out,
                "\ncreate+delete: {:.1} sandboxes/s over {:.0} s ({} cycles, {} workers); create p50 {:.1} ms, delete p50 {:.1} ms; leaks: {}",
                c.per_second,
                c.seconds,
                c.cycles,
                c.workers,
                c.create.as_ref().map_or(f64::NAN, |s| s.p50_ms),
                c.delete.as_ref().map_or(f64::NAN, |s| s.p50_ms),
                if c.leak_check.clean { "none".to_owned() } else { format!("{} found", c.leak_check.leftovers.len()) }
            )?;
        }
        writeln!(
            out,
            "final leak check ({} sandboxes, server stopped): {}",
            self.final_leak_check.sandboxes,
            if self.final_leak_check.clean {
                "clean".to_owned()
            } else {
                self.final_leak_check.leftovers.join("; ")
            }
        )?;
        if !self.quick && !self.targets.is_empty() {
            writeln!(out, "\ntargets (2-core machine class)")?;
            for t in &self.targets {
                writeln!(
                    out,
                    "  {:<4} {:<42} {:<40} measured {}",
                    if t.met { "ok" } else { "MISS" },
                    t.what,
                    t.target,
                    t.measured
                )?;
            }
        }
        Ok(())
    }
}

fn human_size(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} B")
    }
}
