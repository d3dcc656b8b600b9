//! The lifecycle scheduler: auto-stop, auto-archive and auto-delete (the sandbox's
//! `auto*Interval` minutes; rules in `docs/lifecycle.md`).
//!
//! - started and idle for `autoStopInterval` minutes → stopped (0 disables);
//! - stopped for `autoArchiveInterval` minutes → archived (0 means the 30-day maximum);
//! - stopped (or archived) for `autoDeleteInterval` minutes → destroyed (negative disables;
//!   0 deletes on stop, handled by the stop itself).
//!
//! Deadlines derive only from persisted fields (`lastActivityAt`, `stateChangedAt` and the
//! intervals), so they survive restarts, and each fires at most once: firing changes the
//! state, which removes the deadline. The scheduler computes every deadline, acts on those
//! due, then sleeps until the earliest one or until a state change or interval change wakes
//! it. Activity never wakes it: activity only moves deadlines later, which the scheduler
//! notices when the old deadline comes. Nothing polls on the request path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sandbar_core::{Sandbox, SandboxState};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::activity::ActivityPolicy;
use crate::lifecycle::{error_chain, reason};
use crate::AppState;

/// `autoArchiveInterval` 0 means this many minutes (30 days).
pub const MAX_ARCHIVE_MINUTES: i64 = 30 * 24 * 60;
/// Longest sleep between two looks, a safety net against clock jumps.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(600);

/// Environment variable speeding up every interval, **for tests only**: with
/// `SANDBAR_TIME_SCALE=60` one interval "minute" lasts one second.
pub const TIME_SCALE_ENV: &str = "SANDBAR_TIME_SCALE";

/// What the scheduler will do to a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoAction {
    Stop,
    Archive,
    Delete,
}

impl AutoAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Archive => "archive",
            Self::Delete => "delete",
        }
    }
}

/// The next automatic action of a sandbox and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub at: DateTime<Utc>,
    pub action: AutoAction,
    /// The interval (in minutes) that set it, for the recorded reason.
    pub minutes: i64,
}

/// Interval `minutes` as a duration, divided by the time scale.
fn interval(minutes: i64, scale: f64) -> Duration {
    let millis = (minutes as f64) * 60_000.0 / scale;
    Duration::milliseconds(millis.min(i64::MAX as f64 / 2.0) as i64)
}

/// The next automatic action of `sandbox`, given its latest activity. Pure: the scheduler's
/// whole decision, tested with a fake clock.
pub fn next_deadline(
    sandbox: &Sandbox,
    last_activity: DateTime<Utc>,
    scale: f64,
) -> Option<Deadline> {
    let since_change = |minutes: i64, action| Deadline {
        at: sandbox.state_changed_at + interval(minutes, scale),
        action,
        minutes,
    };
    let delete = (sandbox.auto_delete_interval >= 0)
        .then(|| since_change(sandbox.auto_delete_interval, AutoAction::Delete));
    match sandbox.state {
        SandboxState::Started if sandbox.auto_stop_interval > 0 => Some(Deadline {
            at: last_activity + interval(sandbox.auto_stop_interval, scale),
            action: AutoAction::Stop,
            minutes: sandbox.auto_stop_interval,
        }),
        SandboxState::Stopped => {
            let minutes = match sandbox.auto_archive_interval {
                0 => MAX_ARCHIVE_MINUTES,
                minutes => minutes,
            };
            let archive = since_change(minutes, AutoAction::Archive);
            match delete {
                // Deleting makes archiving pointless: on a tie, delete.
                Some(delete) if delete.at <= archive.at => Some(delete),
                _ => Some(archive),
            }
        }
        SandboxState::Archived => delete,
        _ => None,
    }
}

/// The scale from [`TIME_SCALE_ENV`] (1 when unset or invalid).
pub fn time_scale_from_env() -> f64 {
    std::env::var(TIME_SCALE_ENV)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(1.0)
}

/// Runs the scheduler until shutdown.
pub fn spawn(state: AppState, scale: f64) {
    if scale != 1.0 {
        warn!(
            scale,
            "{TIME_SCALE_ENV} is set: lifecycle intervals are sped up (test only)"
        );
    }
    tokio::spawn(async move {
        let mut events = state.lifecycle().subscribe();
        let in_flight: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
        loop {
            let next = run_due(&state, scale, &in_flight).await;
            let sleep = next
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .unwrap_or(std::time::Duration::ZERO)
                .min(MAX_SLEEP);
            let sleep = if next.is_none() { MAX_SLEEP } else { sleep };
            tokio::select! {
                () = tokio::time::sleep(sleep) => {}
                _ = events.recv() => {}
                () = state.scheduler_wake().notified() => {}
                () = state.shutdown_token().cancelled() => return,
            }
        }
    });
}

/// Acts on every due deadline (each in its own task) and returns the earliest future one.
pub async fn run_due(
    state: &AppState,
    scale: f64,
    in_flight: &Arc<Mutex<HashSet<Uuid>>>,
) -> Option<DateTime<Utc>> {
    let sandboxes = match state.store().all_sandboxes().await {
        Ok(sandboxes) => sandboxes,
        Err(err) => {
            warn!(error = %error_chain(&err), "scheduler: cannot list sandboxes");
            return Some(Utc::now() + Duration::seconds(5));
        }
    };
    let now = Utc::now();
    let mut earliest: Option<DateTime<Utc>> = None;
    for sandbox in sandboxes {
        let last_activity = state.activity().last(sandbox.id, sandbox.last_activity_at);
        let Some(deadline) = next_deadline(&sandbox, last_activity, scale) else {
            continue;
        };
        if deadline.at > now {
            earliest = Some(earliest.map_or(deadline.at, |e| e.min(deadline.at)));
            continue;
        }
        let id = sandbox.id;
        {
            let mut busy = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(id) {
                continue;
            }
        }
        let state = state.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            act(&state, &sandbox, deadline).await;
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            state.scheduler_wake().notify_one();
        });
    }
    earliest
}

async fn act(state: &AppState, sandbox: &Sandbox, deadline: Deadline) {
    let id = sandbox.id;
    let lifecycle = state.lifecycle();
    let result = match deadline.action {
        AutoAction::Stop => {
            let policy = ActivityPolicy::of(sandbox);
            if let Some(why) = state.activity().busy(state, id, policy).await {
                // Counted as activity now: the deadline moves one interval on.
                debug!(sandbox = %id, why, "idle deadline reached but the sandbox is busy");
                state.activity().touch(id);
                return;
            }
            info!(sandbox = %id, minutes = deadline.minutes, "auto-stopping idle sandbox");
            lifecycle
                .stop_because(id, false, Some(reason::idle(deadline.minutes)))
                .await
                .map(drop)
        }
        AutoAction::Archive => {
            info!(sandbox = %id, minutes = deadline.minutes, "auto-archiving stopped sandbox");
            lifecycle
                .archive_because(id, Some(reason::archived(deadline.minutes)))
                .await
                .map(drop)
        }
        AutoAction::Delete => {
            info!(sandbox = %id, minutes = deadline.minutes, "auto-deleting sandbox");
            lifecycle
                .destroy_because(id, reason::deleted(deadline.minutes))
                .await
                .map(drop)
        }
    };
    match result {
        Ok(()) => lifecycle.metrics().auto_action(deadline.action.as_str()),
        Err(err) => {
            warn!(sandbox = %id, action = deadline.action.as_str(), error = %error_chain(&err), "automatic lifecycle action failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbar_core::{DesiredState, SandboxResources};

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    fn sandbox(state: SandboxState, stop: i64, archive: i64, delete: i64) -> Sandbox {
        Sandbox {
            id: Uuid::new_v4(),
            organization_id: Uuid::new_v4(),
            name: "s".into(),
            user: "daytona".into(),
            env: Default::default(),
            labels: Default::default(),
            public: false,
            network_block_all: false,
            network_allow_list: None,
            target: "local".into(),
            resources: SandboxResources::default(),
            snapshot: "default".into(),
            state,
            desired_state: DesiredState::Started,
            error_reason: None,
            state_reason: None,
            state_changed_at: at(0),
            auto_stop_interval: stop,
            auto_archive_interval: archive,
            auto_delete_interval: delete,
            volumes: vec![],
            created_at: at(0),
            updated_at: at(0),
            last_activity_at: at(0),
            launched: None,
            preview_token: String::new(),
        }
    }

    #[test]
    fn idle_started_sandboxes_stop_one_interval_after_the_last_activity() {
        let sb = sandbox(SandboxState::Started, 15, 0, -1);
        let d = next_deadline(&sb, at(100), 1.0).unwrap();
        assert_eq!(d.action, AutoAction::Stop);
        assert_eq!(d.at, at(100 + 15 * 60));
        // Later activity moves the deadline; the fake clock passing the old one does nothing.
        let d2 = next_deadline(&sb, at(500), 1.0).unwrap();
        assert_eq!(d2.at, at(500 + 15 * 60));
        assert!(next_deadline(&sandbox(SandboxState::Started, 0, 0, -1), at(0), 1.0).is_none());
    }

    #[test]
    fn stopped_sandboxes_archive_or_delete_whichever_comes_first() {
        let sb = sandbox(SandboxState::Stopped, 15, 60, -1);
        let d = next_deadline(&sb, at(0), 1.0).unwrap();
        assert_eq!((d.action, d.at), (AutoAction::Archive, at(3600)));
        let sb = sandbox(SandboxState::Stopped, 15, 60, 30);
        let d = next_deadline(&sb, at(0), 1.0).unwrap();
        assert_eq!((d.action, d.at), (AutoAction::Delete, at(1800)));
        // Archive 0 means the 30-day maximum.
        let sb = sandbox(SandboxState::Stopped, 15, 0, -1);
        let d = next_deadline(&sb, at(0), 1.0).unwrap();
        assert_eq!(d.at, at(MAX_ARCHIVE_MINUTES * 60));
        // Activity does not delay archive or delete.
        assert_eq!(next_deadline(&sb, at(999_999), 1.0).unwrap().at, d.at);
    }

    #[test]
    fn archived_sandboxes_only_wait_for_deletion() {
        let sb = sandbox(SandboxState::Archived, 15, 60, -1);
        assert!(next_deadline(&sb, at(0), 1.0).is_none());
        let sb = sandbox(SandboxState::Archived, 15, 60, 120);
        let d = next_deadline(&sb, at(0), 1.0).unwrap();
        assert_eq!((d.action, d.at), (AutoAction::Delete, at(7200)));
    }

    #[test]
    fn transitional_and_error_states_have_no_deadline() {
        for state in [
            SandboxState::Creating,
            SandboxState::Starting,
            SandboxState::Stopping,
            SandboxState::Archiving,
            SandboxState::Restoring,
            SandboxState::Error,
        ] {
            assert!(next_deadline(&sandbox(state, 1, 1, 1), at(0), 1.0).is_none());
        }
    }

    #[test]
    fn the_time_scale_shortens_every_interval() {
        let sb = sandbox(SandboxState::Started, 2, 0, -1);
        // 60×: a "minute" is a second.
        assert_eq!(next_deadline(&sb, at(0), 60.0).unwrap().at, at(2));
    }
}
