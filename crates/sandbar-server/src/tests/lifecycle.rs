//! Exit watching, failures, and recovery after a restart or a crash.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use sandbar_core::{DesiredState, LaunchedProcess, Sandbox, SandboxResources, SandboxState};
use serde_json::json;
use uuid::Uuid;

use super::TestApp;
use crate::reason;
use crate::testing::{Call, FakeRuntime};

#[tokio::test]
async fn unexpected_exit_records_error_with_reason() {
    let app = TestApp::new().await;
    let a = app.create(json!({"name": "a"})).await;
    let b = app.create(json!({"name": "b"})).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    app.runtime.crash(a, true);
    let errored = app.wait_state(a, "error").await;
    assert_eq!(errored["errorReason"], reason::OOM);
    assert_eq!(errored["recoverable"], true);
    app.runtime.crash(b, false);
    assert_eq!(
        app.wait_state(b, "error").await["errorReason"],
        reason::INIT_EXITED
    );

    // An errored sandbox starts again.
    let started = app
        .call(Method::POST, &format!("/api/sandbox/{a}/start"), None)
        .await;
    assert_eq!(started.body["state"], "started");
    assert!(started.body.get("errorReason").is_none());

    // A stop on purpose is not an unexpected exit.
    app.call(Method::POST, &format!("/api/sandbox/{a}/stop"), None)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(app.wait_state(a, "stopped").await["state"], "stopped");
}

#[tokio::test]
async fn failed_start_answers_error_state() {
    let app = TestApp::new().await;
    app.runtime.fail_next_start("no such rootfs");
    let sb = app.create(json!({"name": "broken"})).await;
    assert_eq!(sb["state"], "error");
    assert!(
        sb["errorReason"]
            .as_str()
            .unwrap()
            .contains("no such rootfs"),
        "{sb}"
    );
    let id = sb["id"].as_str().unwrap();
    // Cleaned up, and it can be started later.
    assert!(app.runtime.calls().contains(&Call::Stop {
        id: id.to_owned(),
        force: true
    }));
    let started = app
        .call(Method::POST, &format!("/api/sandbox/{id}/start"), None)
        .await;
    assert_eq!(started.body["state"], "started");
}

#[tokio::test]
async fn ephemeral_sandboxes_are_destroyed_on_stop() {
    let app = TestApp::new().await;
    let sb = app.create(json!({"autoDeleteInterval": 0})).await;
    let id = sb["id"].as_str().unwrap();
    let stopped = app
        .call(
            Method::POST,
            &format!("/api/sandbox/{id}/stop?force=false"),
            None,
        )
        .await;
    assert_eq!(stopped.status, StatusCode::OK);
    assert_eq!(stopped.body["state"], "destroyed");
    let gone = app
        .call(Method::GET, &format!("/api/sandbox/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn restart_re_adopts_running_sandboxes_and_watches_them() {
    let app = TestApp::new().await;
    let sb = app.create(json!({"name": "survivor"})).await;
    let id = sb["id"].as_str().unwrap().to_owned();
    let runtime = app.runtime.clone();
    let app = app.restart(runtime.clone()).await;
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{id}"), None)
        .await;
    assert_eq!(got.body["state"], "started");
    assert!(!runtime
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Destroy(_))));
    // Watched again after the restart.
    runtime.crash(&id, true);
    assert_eq!(
        app.wait_state(&id, "error").await["errorReason"],
        reason::OOM
    );
}

#[tokio::test]
async fn restart_marks_dead_sandboxes_as_error() {
    let app = TestApp::new().await;
    let sb = app.create(json!({"name": "dead"})).await;
    let id = sb["id"].as_str().unwrap().to_owned();
    let stopped = app.create(json!({"name": "stopped"})).await;
    let stopped_id = stopped["id"].as_str().unwrap().to_owned();
    app.call(
        Method::POST,
        &format!("/api/sandbox/{stopped_id}/stop"),
        None,
    )
    .await;

    // A new runtime: every process is gone (host reboot or crash).
    let fresh = Arc::new(FakeRuntime::new(app.dir.path().join("sockets")));
    let app = app.restart(fresh.clone()).await;
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{id}"), None)
        .await;
    assert_eq!(got.body["state"], "error");
    assert_eq!(got.body["errorReason"], reason::NOT_RUNNING_AFTER_RESTART);
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{stopped_id}"), None)
        .await;
    assert_eq!(got.body["state"], "stopped");
}

fn row(org: Uuid, name: &str, state: SandboxState) -> Sandbox {
    let now = sandbar_core::time::now();
    Sandbox {
        id: Uuid::new_v4(),
        organization_id: org,
        name: name.into(),
        user: "daytona".into(),
        env: BTreeMap::new(),
        labels: BTreeMap::new(),
        public: false,
        network_block_all: false,
        network_allow_list: None,
        target: "local".into(),
        resources: SandboxResources::default(),
        snapshot: "sandbar-default".into(),
        state,
        desired_state: DesiredState::Started,
        error_reason: None,
        state_reason: None,
        state_changed_at: sandbar_core::time::now(),
        auto_stop_interval: 15,
        auto_archive_interval: 10080,
        auto_delete_interval: -1,
        volumes: vec![],
        created_at: now,
        updated_at: now,
        last_activity_at: now,
        launched: Some(LaunchedProcess {
            pid: 77,
            start_time: 1,
        }),
        preview_token: "t".into(),
    }
}

#[tokio::test]
async fn crash_mid_operation_is_cleaned_up_on_restart() {
    let app = TestApp::new().await;
    let org = app.state.store().ensure_default_org().await.unwrap().id;
    let creating = row(org, "creating", SandboxState::Creating);
    let starting = row(org, "starting", SandboxState::Starting);
    let stopping = row(org, "stopping", SandboxState::Stopping);
    let destroying = row(org, "destroying", SandboxState::Destroying);
    for sb in [&creating, &starting, &stopping, &destroying] {
        app.state.store().insert_sandbox(sb).await.unwrap();
        app.runtime.adopt(&sb.id.to_string(), None);
    }
    let orphan = Uuid::new_v4().to_string();
    app.runtime.adopt(&orphan, None);

    let fresh = Arc::new(FakeRuntime::new(app.dir.path().join("sockets")));
    for id in [creating.id, starting.id, stopping.id, destroying.id] {
        fresh.adopt(&id.to_string(), None);
    }
    fresh.adopt(&orphan, None);
    let app = app.restart(fresh.clone()).await;
    let calls = fresh.calls();

    assert!(calls.contains(&Call::Destroy(creating.id.to_string())));
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{}", creating.id), None)
        .await;
    assert_eq!(got.body["state"], "error");
    assert_eq!(got.body["errorReason"], reason::CREATE_INTERRUPTED);

    assert!(calls.contains(&Call::Stop {
        id: starting.id.to_string(),
        force: true
    }));
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{}", starting.id), None)
        .await;
    assert_eq!(got.body["state"], "error");

    let got = app
        .call(Method::GET, &format!("/api/sandbox/{}", stopping.id), None)
        .await;
    assert_eq!(got.body["state"], "stopped");

    assert!(calls.contains(&Call::Destroy(destroying.id.to_string())));
    let got = app
        .call(
            Method::GET,
            &format!("/api/sandbox/{}", destroying.id),
            None,
        )
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);

    assert!(calls.contains(&Call::Destroy(orphan.clone())));
    assert!(!fresh.has_host_state(&orphan));
    // Sandboxes with rows keep their host state.
    assert!(fresh.has_host_state(&stopping.id.to_string()));
}

#[tokio::test]
async fn idle_sandboxes_are_auto_stopped() {
    let app = TestApp::new().await;
    let sb = app.create(json!({"autoStopInterval": 1})).await;
    let id = sb["id"].as_str().unwrap();
    let keep = app.create(json!({"autoStopInterval": 0})).await;
    let keep = keep["id"].as_str().unwrap();
    // Backdate the last activity.
    let past = sandbar_core::time::now() - chrono::Duration::minutes(5);
    let uuid: Uuid = id.parse().unwrap();
    backdate_activity(&app, uuid, past).await;
    crate::policy::run_due(&app.state, 1.0, &Default::default()).await;
    let stopped = app.wait_state(id, "stopped").await;
    assert_eq!(stopped["state"], "stopped");
    assert_eq!(stopped["stateReason"], crate::lifecycle::reason::idle(1));
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{keep}"), None)
        .await;
    assert_eq!(got.body["state"], "started");
}

/// Activity only moves forward through the store API, so rewrite the row with an old value.
async fn backdate_activity(app: &TestApp, id: Uuid, at: chrono::DateTime<chrono::Utc>) {
    let mut sandbox = app.state.store().get_sandbox(id).await.unwrap().unwrap();
    app.state.store().delete_sandbox(id).await.unwrap();
    sandbox.last_activity_at = at;
    app.state.store().insert_sandbox(&sandbox).await.unwrap();
}

/// The scheduler with a 600× time scale (a "minute" is 0.1 s): stop when idle, archive when
/// stopped, delete when archived, each once, with the reason recorded.
#[tokio::test]
async fn the_scheduler_stops_archives_and_deletes_in_order() {
    let app = TestApp::new().await;
    crate::policy::spawn(app.state.clone(), 600.0);
    let sb = app
        .create(json!({"autoStopInterval": 1, "autoArchiveInterval": 1, "autoDeleteInterval": 5}))
        .await;
    let id = sb["id"].as_str().unwrap().to_owned();
    let busy = app
        .create(json!({"autoStopInterval": 0, "autoArchiveInterval": 1}))
        .await;
    let busy = busy["id"].as_str().unwrap().to_owned();

    let archived = app.wait_state(&id, "archived").await;
    assert_eq!(
        archived["stateReason"],
        crate::lifecycle::reason::archived(1)
    );
    assert!(app.runtime.calls().contains(&Call::Archive(id.clone())));
    // Gone after the delete interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = app
            .call(Method::GET, &format!("/api/sandbox/{id}"), None)
            .await;
        if got.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not deleted: {}",
            got.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stops = app
        .runtime
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Stop { id: s, force: false } if *s == id))
        .count();
    assert_eq!(stops, 1, "auto-stop fires once");
    // autoStopInterval 0: never stopped.
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{busy}"), None)
        .await;
    assert_eq!(got.body["state"], "started");
    app.state.shutdown().await;
}

#[tokio::test]
async fn archived_sandboxes_restore_on_start_and_settle_after_a_crash() {
    let app = TestApp::new().await;
    let sb = app.create(json!({})).await;
    let id = sb["id"].as_str().unwrap().to_owned();
    app.call(Method::POST, &format!("/api/sandbox/{id}/stop"), None)
        .await;
    let got = app
        .call(Method::POST, &format!("/api/sandbox/{id}/archive"), None)
        .await;
    assert_eq!(got.body["state"], "archived");
    assert!(
        got.body.get("stateReason").is_none(),
        "a requested archive has no reason"
    );
    assert!(app.runtime.is_archived(&id));
    let got = app
        .call(Method::POST, &format!("/api/sandbox/{id}/start"), None)
        .await;
    assert_eq!(got.body["state"], "started");
    assert!(!app.runtime.is_archived(&id));

    // A crash while `archiving` with a complete archive finishes the archive at recovery.
    app.call(Method::POST, &format!("/api/sandbox/{id}/stop"), None)
        .await;
    let uuid: Uuid = id.parse().unwrap();
    sandbar_runtime::SandboxRuntime::archive(&*app.runtime, &id)
        .await
        .unwrap();
    app.state
        .store()
        .update_sandbox(
            uuid,
            sandbar_store::SandboxChange::State {
                state: SandboxState::Archiving,
                desired_state: sandbar_core::DesiredState::Archived,
                error_reason: None,
                reason: None,
                launched: None,
            },
        )
        .await
        .unwrap();
    let runtime = app.runtime.clone();
    let app = app.restart(runtime).await;
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{id}"), None)
        .await;
    assert_eq!(got.body["state"], "archived");
    assert_eq!(
        got.body["stateReason"],
        crate::lifecycle::reason::ARCHIVE_FINISHED_AFTER_RESTART
    );
}
