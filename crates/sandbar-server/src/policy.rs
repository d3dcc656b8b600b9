//! Auto-stop, auto-archive and auto-delete (the sandbox's `auto*Interval` minutes).
//!
//! - started and idle (no API or toolbox call) for `autoStopInterval` minutes → stopped
//!   (0 disables);
//! - stopped for `autoDeleteInterval` minutes → destroyed (negative disables; 0 is handled by
//!   the stop itself);
//! - stopped for `autoArchiveInterval` minutes → archived (0 means the 30-day maximum).

use chrono::{Duration, Utc};
use sandbar_core::SandboxState;
use tracing::{info, warn};

use crate::lifecycle::error_chain;
use crate::AppState;

const MAX_ARCHIVE_MINUTES: i64 = 30 * 24 * 60;

/// Applies the policies once to every sandbox.
pub async fn run_once(state: &AppState) {
    let sandboxes = match state.store().all_sandboxes().await {
        Ok(sandboxes) => sandboxes,
        Err(err) => {
            warn!(error = %error_chain(&err), "auto-stop policy: cannot list sandboxes");
            return;
        }
    };
    let now = Utc::now();
    for sandbox in sandboxes {
        let id = sandbox.id;
        let idle_since = state
            .activity()
            .pending(id)
            .map_or(sandbox.last_activity_at, |at| {
                at.max(sandbox.last_activity_at)
            });
        let result = match sandbox.state {
            SandboxState::Started
                if sandbox.auto_stop_interval > 0
                    && now - idle_since >= Duration::minutes(sandbox.auto_stop_interval) =>
            {
                info!(sandbox = %id, minutes = sandbox.auto_stop_interval, "auto-stopping idle sandbox");
                state.lifecycle().stop(id, false).await.map(drop)
            }
            SandboxState::Stopped | SandboxState::Archived
                if sandbox.auto_delete_interval >= 0
                    && now - sandbox.updated_at
                        >= Duration::minutes(sandbox.auto_delete_interval) =>
            {
                info!(sandbox = %id, minutes = sandbox.auto_delete_interval, "auto-deleting stopped sandbox");
                state.lifecycle().destroy(id).await.map(drop)
            }
            SandboxState::Stopped => {
                let minutes = match sandbox.auto_archive_interval {
                    0 => MAX_ARCHIVE_MINUTES,
                    minutes => minutes,
                };
                if minutes > 0 && now - sandbox.updated_at >= Duration::minutes(minutes) {
                    info!(sandbox = %id, minutes, "auto-archiving stopped sandbox");
                    state.lifecycle().archive(id).await.map(drop)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        };
        if let Err(err) = result {
            warn!(sandbox = %id, error = %error_chain(&err), "auto lifecycle policy failed");
        }
    }
}
