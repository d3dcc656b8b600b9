//! Prometheus metrics (`GET /metrics`, OpenMetrics text format; see `docs/lifecycle.md`).
//!
//! Counters and histograms live for the whole process and are updated where things happen
//! (lifecycle operations, the toolbox proxy, the scheduler). Gauges that describe the present
//! (sandboxes by state, per-sandbox CPU, memory and disk) are computed at scrape time from the
//! store and the runtime, so nothing polls between scrapes.

use std::time::Instant;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sandbar_core::SandboxState;
use std::sync::atomic::AtomicU64;

/// Content type of the scrape answer.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Timed operations.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Operation {
    Create,
    Start,
    Stop,
    Archive,
    Exec,
    FileUpload,
    FileDownload,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Archive => "archive",
            Self::Exec => "exec",
            Self::FileUpload => "file_upload",
            Self::FileDownload => "file_download",
        }
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: Operation,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    /// State the sandbox was in when it failed.
    from_state: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AutoLabels {
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxLabels {
    sandbox: String,
    organization: String,
    state: &'static str,
}

/// Process-wide metrics; cheap to share behind an `Arc`.
pub struct Metrics {
    latency: Family<OperationLabels, Histogram>,
    failures: Family<FailureLabels, Counter>,
    auto_actions: Family<AutoLabels, Counter>,
    oom_kills: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One sandbox as the scrape sees it.
pub struct SandboxSample {
    pub id: String,
    pub organization: String,
    pub state: SandboxState,
    pub usage: sandbar_runtime::Usage,
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
            failures: Family::default(),
            auto_actions: Family::default(),
            oom_kills: Counter::default(),
        }
    }

    /// Starts timing `operation`; call [`Timer::finish`] with the outcome.
    pub fn timer(&self, operation: Operation) -> Timer<'_> {
        Timer {
            metrics: self,
            operation,
            started: Instant::now(),
        }
    }

    /// A sandbox entered `error` (or an operation failed) from `from`, for `reason`.
    pub fn failure(&self, from: SandboxState, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                from_state: from.as_str(),
                reason: classify(reason),
            })
            .inc();
    }

    /// The scheduler acted (`stop`, `archive`, `delete`).
    pub fn auto_action(&self, action: &'static str) {
        self.auto_actions
            .get_or_create(&AutoLabels { action })
            .inc();
    }

    /// A command run through `process/execute` was killed by the memory limit.
    pub fn oom_killed_command(&self) {
        self.oom_kills.inc();
    }

    /// Renders every metric, with the present described by `sandboxes`.
    pub fn render(&self, sandboxes: &[SandboxSample]) -> String {
        let mut registry = Registry::with_prefix("sandbar");
        registry.register(
            "operation_duration_seconds",
            "Latency of sandbox operations (create, start, stop, archive) and of toolbox exec and file transfers (to the response head)",
            self.latency.clone(),
        );
        registry.register(
            "sandbox_failures",
            "Sandboxes that entered the error state or operations that failed, by reason",
            self.failures.clone(),
        );
        registry.register(
            "auto_actions",
            "Automatic lifecycle actions taken by the scheduler",
            self.auto_actions.clone(),
        );
        registry.register(
            "exec_oom_kills",
            "process/execute commands killed for exceeding the sandbox memory limit",
            self.oom_kills.clone(),
        );
        let by_state = Family::<StateLabels, Gauge>::default();
        for state in [
            SandboxState::Creating,
            SandboxState::Starting,
            SandboxState::Started,
            SandboxState::Stopping,
            SandboxState::Stopped,
            SandboxState::Archiving,
            SandboxState::Archived,
            SandboxState::Restoring,
            SandboxState::Destroying,
            SandboxState::Error,
        ] {
            by_state
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(0);
        }
        let cpu = Family::<SandboxLabels, Gauge<f64, AtomicU64>>::default();
        let memory = Family::<SandboxLabels, Gauge>::default();
        let disk = Family::<SandboxLabels, Gauge>::default();
        for sample in sandboxes {
            by_state
                .get_or_create(&StateLabels {
                    state: sample.state.as_str(),
                })
                .inc();
            let labels = SandboxLabels {
                sandbox: sample.id.clone(),
                organization: sample.organization.clone(),
                state: sample.state.as_str(),
            };
            cpu.get_or_create(&labels)
                .set(sample.usage.cpu_ns as f64 / 1e9);
            memory
                .get_or_create(&labels)
                .set(i64::try_from(sample.usage.memory_bytes).unwrap_or(i64::MAX));
            disk.get_or_create(&labels)
                .set(i64::try_from(sample.usage.disk_bytes).unwrap_or(i64::MAX));
        }
        registry.register("sandboxes", "Sandboxes by state", by_state);
        registry.register(
            "sandbox_cpu_seconds",
            "CPU time used by the sandbox's current run (cgroup)",
            cpu,
        );
        registry.register(
            "sandbox_memory_bytes",
            "Memory the sandbox uses now (cgroup, page cache included)",
            memory,
        );
        registry.register(
            "sandbox_disk_bytes",
            "Disk taken by the sandbox's writable layer, or by its archive when archived",
            disk,
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

/// Times one operation.
pub struct Timer<'a> {
    metrics: &'a Metrics,
    operation: Operation,
    started: Instant,
}

impl Timer<'_> {
    pub fn finish(self, success: bool) {
        self.metrics
            .latency
            .get_or_create(&OperationLabels {
                operation: self.operation,
                outcome: if success { "success" } else { "failure" },
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

/// A bounded label value for a free-text reason.
fn classify(reason: &str) -> &'static str {
    use crate::lifecycle::reason;
    let known = [
        (reason::OOM, "oom"),
        (reason::INIT_EXITED, "agent_exited"),
        (reason::NOT_RUNNING_AFTER_RESTART, "host_restart"),
        (reason::CREATE_INTERRUPTED, "server_restart"),
        (reason::START_INTERRUPTED, "server_restart"),
        (reason::STOP_INTERRUPTED, "server_restart"),
        (reason::ARCHIVE_FAILED, "archive_failed"),
    ];
    known
        .iter()
        .find(|(prefix, _)| reason.starts_with(prefix))
        .map_or(
            if reason.contains("did not start within") {
                "start_timeout"
            } else {
                "runtime_error"
            },
            |(_, label)| label,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_static_and_scraped_series() {
        let metrics = Metrics::new();
        metrics.timer(Operation::Create).finish(true);
        metrics.failure(SandboxState::Started, crate::lifecycle::reason::OOM);
        metrics.auto_action("stop");
        let text = metrics.render(&[SandboxSample {
            id: "abc".into(),
            organization: "org".into(),
            state: SandboxState::Started,
            usage: sandbar_runtime::Usage {
                cpu_ns: 1_500_000_000,
                memory_bytes: 42,
                disk_bytes: 7,
            },
        }]);
        assert!(
            text.contains("sandbar_sandboxes{state=\"started\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sandbar_sandboxes{state=\"archived\"} 0"),
            "{text}"
        );
        assert!(text.contains(
            "sandbar_operation_duration_seconds_count{operation=\"create\",outcome=\"success\"} 1"
        ));
        assert!(text
            .contains("sandbar_sandbox_failures_total{from_state=\"started\",reason=\"oom\"} 1"));
        assert!(text.contains("sandbar_sandbox_cpu_seconds{sandbox=\"abc\",organization=\"org\",state=\"started\"} 1.5"));
        assert!(text.contains("sandbar_sandbox_memory_bytes{sandbox=\"abc\",organization=\"org\",state=\"started\"} 42"));
        assert!(text.contains("sandbar_auto_actions_total{action=\"stop\"} 1"));
    }
}
