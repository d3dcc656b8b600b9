//! Shapes and status codes of the API.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{assert_envelope, TestApp, KEY};
use crate::testing::Call;

const REQUIRED: [&str; 15] = [
    "id",
    "organizationId",
    "name",
    "user",
    "env",
    "labels",
    "public",
    "networkBlockAll",
    "kvm",
    "target",
    "cpu",
    "gpu",
    "memory",
    "disk",
    "toolboxProxyUrl",
];

fn assert_sandbox_shape(sb: &Value) {
    for key in REQUIRED {
        assert!(!sb[key].is_null(), "missing {key} in {sb}");
    }
    for key in [
        "cpu",
        "gpu",
        "memory",
        "disk",
        "autoStopInterval",
        "autoArchiveInterval",
        "autoDeleteInterval",
    ] {
        assert!(sb[key].is_i64(), "{key} is not an integer in {sb}");
    }
    let url = sb["toolboxProxyUrl"].as_str().unwrap();
    assert!(!url.ends_with('/'), "{url}");
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401_envelopes() {
    let app = TestApp::new().await;
    let reply = app.send(Method::GET, "/api/sandbox", None, None).await;
    assert_envelope(&reply, 401, "/api/sandbox");
    assert_eq!(reply.body["error"], "Unauthorized");
    let reply = app
        .send(Method::GET, "/api/sandbox/x", Some("wrong"), None)
        .await;
    assert_envelope(&reply, 401, "/api/sandbox/x");
    let reply = app
        .send(Method::POST, "/toolbox/x/process/execute", None, None)
        .await;
    assert_envelope(&reply, 401, "/toolbox/x/process/execute");
    // The Socket.IO path answers a request that is no WebSocket upgrade (polling, or a plain
    // GET) with 400 at once, without auth.
    for uri in [
        "/api/socket.io/?EIO=4&transport=websocket",
        "/api/socket.io/?EIO=4&transport=polling",
        "/api/socket.io/?EIO=3&transport=websocket",
    ] {
        let reply = app.send(Method::GET, uri, None, None).await;
        assert_envelope(&reply, 400, "/api/socket.io/");
    }
    // Unknown routes are 404 envelopes too.
    let reply = app.call(Method::GET, "/api/sandbox/", None).await;
    assert_eq!(reply.status, StatusCode::OK, "trailing slash");
    let reply = app.call(Method::GET, "/api/nope", None).await;
    assert_envelope(&reply, 404, "/api/nope");
    let reply = app.call(Method::PATCH, "/api/sandbox", None).await;
    assert_envelope(&reply, 405, "/api/sandbox");
}

#[tokio::test]
async fn create_applies_defaults_and_answers_started() {
    let app = TestApp::new().await;
    let sb = app
        .create(json!({"env":{},"labels":{"code-toolbox-language":"python"},"volumes":[]}))
        .await;
    assert_sandbox_shape(&sb);
    let id = sb["id"].as_str().unwrap();
    assert_eq!(sb["state"], "started");
    assert_eq!(sb["name"], sb["id"]);
    assert_eq!(sb["user"], "daytona");
    assert_eq!(sb["snapshot"], "sandbar-default");
    assert_eq!(
        (sb["cpu"].clone(), sb["memory"].clone(), sb["disk"].clone()),
        (json!(1), json!(1), json!(3))
    );
    assert_eq!(sb["labels"], json!({"code-toolbox-language":"python"}));
    assert_eq!(sb["toolboxProxyUrl"], "http://localhost:3000/toolbox");
    assert_eq!(sb["autoStopInterval"], 15);
    let spec = app.runtime.spec(id).unwrap();
    assert_eq!(spec.user, "daytona");
    assert_eq!(spec.resources.memory_mib, 1024);
    assert_eq!(spec.snapshot, "sandbar-default");

    // Get by id, by name, through double slashes.
    let got = app
        .call(Method::GET, &format!("/api//sandbox/{id}"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["id"], sb["id"]);
    assert_sandbox_shape(&got.body);
}

#[tokio::test]
async fn create_with_everything_round_trips() {
    let app = TestApp::new().await;
    let vol = app
        .call(
            Method::POST,
            "/api/volumes",
            Some(json!({"name":"seed-vol"})),
        )
        .await;
    assert_eq!(vol.status, StatusCode::OK);
    assert_eq!(vol.body["state"], "ready");
    let sb = app
        .create(json!({
            "name": "my sandbox/x", "user": "root", "env": {"FOO": "bar"},
            "labels": {"app": "seed", "code-toolbox-language": "typescript"},
            "public": true, "networkBlockAll": true, "cpu": 2, "memory": 4, "disk": 8,
            "target": "us", "autoStopInterval": 0, "autoDeleteInterval": 30,
            "volumes": [{"volumeId": "seed-vol", "mountPath": "/workspace", "subpath": "a/b"}],
            "unknownKey": [1, 2]
        }))
        .await;
    assert_sandbox_shape(&sb);
    assert_eq!(sb["user"], "root");
    assert_eq!(sb["env"], json!({"FOO": "bar"}));
    assert_eq!(sb["labels"]["code-toolbox-language"], "typescript");
    assert_eq!(
        (sb["public"].clone(), sb["networkBlockAll"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(
        (sb["cpu"].clone(), sb["memory"].clone(), sb["disk"].clone()),
        (json!(2), json!(4), json!(8))
    );
    assert_eq!(sb["target"], "us");
    assert_eq!(sb["volumes"][0]["volumeId"], vol.body["id"]);
    assert_eq!(sb["volumes"][0]["mountPath"], "/workspace");
    let spec = app.runtime.spec(sb["id"].as_str().unwrap()).unwrap();
    assert_eq!(spec.hostname, "my-sandbox-x");
    assert!(spec.network_block_all);
    assert_eq!(spec.resources.memory_mib, 4096);
    assert_eq!(spec.mounts[0].target, "/workspace");
    assert!(spec.mounts[0]
        .host_path
        .ends_with(format!("{}/mnt", vol.body["id"].as_str().unwrap())));
    assert!(spec.mounts[0].host_path.is_dir());
    assert_eq!(spec.mounts[0].subpath.as_deref(), Some("a/b"));

    // Percent-encoded name, decoded after routing.
    let got = app
        .call(Method::GET, "/api/sandbox/my%20sandbox%2Fx", None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{:?}", got.body);
    assert_eq!(got.body["id"], sb["id"]);

    // The volume is in use until the sandbox is gone.
    let vol_id = vol.body["id"].as_str().unwrap();
    let reply = app
        .call(Method::DELETE, &format!("/api/volumes/{vol_id}"), None)
        .await;
    assert_envelope(&reply, 409, &format!("/api/volumes/{vol_id}"));
    let del = app
        .call(Method::DELETE, "/api/sandbox/my%20sandbox%2Fx", None)
        .await;
    assert_eq!(del.status, StatusCode::OK);
    let reply = app
        .call(Method::DELETE, &format!("/api/volumes/{vol_id}"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = app
        .call(Method::GET, "/api/volumes/by-name/seed-vol", None)
        .await;
    assert_envelope(&reply, 404, "/api/volumes/by-name/seed-vol");
}

#[tokio::test]
async fn create_rejects_conflicts_and_bad_input() {
    let app = TestApp::new().await;
    app.create(json!({"name": "dup"})).await;
    let reply = app
        .call(Method::POST, "/api/sandbox", Some(json!({"name": "dup"})))
        .await;
    let message = assert_envelope(&reply, 409, "/api/sandbox");
    assert!(message.contains("dup"), "{message}");

    let reply = app
        .send(
            Method::POST,
            "/api/sandbox",
            Some(KEY),
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_envelope(&reply, 400, "/api/sandbox");
    assert_eq!(reply.body["code"], "INVALID_REQUEST_BODY");
    let reply = app
        .call(Method::POST, "/api/sandbox", Some(json!({"cpu": 1.5})))
        .await;
    assert_envelope(&reply, 400, "/api/sandbox");
    let reply = app
        .call(
            Method::POST,
            "/api/sandbox",
            Some(json!({"snapshot": "nope"})),
        )
        .await;
    assert_envelope(&reply, 404, "/api/sandbox");
    let reply = app
        .call(
            Method::POST,
            "/api/sandbox",
            Some(json!({"volumes": [{"volumeId": "nope", "mountPath": "/w"}]})),
        )
        .await;
    assert_envelope(&reply, 404, "/api/sandbox");
    let reply = app
        .call(
            Method::POST,
            "/api/sandbox",
            Some(json!({"buildInfo": {"dockerfileContent": "FROM python:3.12-slim\n"}})),
        )
        .await;
    assert_envelope(&reply, 400, "/api/sandbox");
    let reply = app
        .call(Method::POST, "/api/sandbox", Some(json!({"gpu": 1})))
        .await;
    assert_envelope(&reply, 400, "/api/sandbox");
    // A JSON body without Content-Type is accepted (the default request has none here).
    let reply = app
        .send(
            Method::POST,
            "/api/sandbox",
            Some(KEY),
            Some(br#"{"name":"no-ct"}"#.to_vec()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // An empty body means defaults.
    let reply = app
        .send(Method::POST, "/api/sandbox", Some(KEY), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn other_organizations_see_404() {
    let app = TestApp::new().await;
    let sb = app.create(json!({"name": "mine"})).await;
    let id = sb["id"].as_str().unwrap();
    let other = app
        .state
        .store()
        .create_organization("other")
        .await
        .unwrap();
    let (_, other_key) = app.state.store().create_key(other.id, "k").await.unwrap();
    let other_key = Some(other_key.as_str());
    let reply = app
        .send(Method::GET, &format!("/api/sandbox/{id}"), other_key, None)
        .await;
    assert_envelope(&reply, 404, &format!("/api/sandbox/{id}"));
    let reply = app
        .send(Method::GET, "/api/sandbox/mine", other_key, None)
        .await;
    assert_envelope(&reply, 404, "/api/sandbox/mine");
    let reply = app
        .send(
            Method::DELETE,
            &format!("/api/sandbox/{id}"),
            other_key,
            None,
        )
        .await;
    assert_envelope(&reply, 404, &format!("/api/sandbox/{id}"));
    let reply = app
        .send(
            Method::POST,
            &format!("/toolbox/{id}/process/execute"),
            other_key,
            None,
        )
        .await;
    assert_envelope(&reply, 404, &format!("/toolbox/{id}/process/execute"));
    let reply = app.send(Method::GET, "/api/sandbox", other_key, None).await;
    assert_eq!(reply.body["items"], json!([]));
    // The other organization may reuse the name.
    let reply = app
        .send(
            Method::POST,
            "/api/sandbox",
            other_key,
            Some(br#"{"name":"mine"}"#.to_vec()),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn list_filters_by_labels_and_paginates_with_a_cursor() {
    let app = TestApp::new().await;
    let mut seed_ids = Vec::new();
    for i in 0..5 {
        let labels = if i % 2 == 0 {
            json!({"app": "seed", "a b": "c/d"})
        } else {
            json!({"app": "other"})
        };
        let sb = app
            .create(json!({"name": format!("sb-{i}"), "labels": labels}))
            .await;
        if i % 2 == 0 {
            seed_ids.push(sb["id"].as_str().unwrap().to_owned());
        }
    }
    // Python's json.dumps with spaces, urlencoded with `+`.
    let reply = app
        .call(
            Method::GET,
            "/api/sandbox?labels=%7B%22app%22%3A+%22seed%22%7D",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body["nextCursor"].is_null());
    let mut ids: Vec<String> = reply.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    seed_ids.sort();
    assert_eq!(ids, seed_ids);
    for item in reply.body["items"].as_array().unwrap() {
        assert_sandbox_shape(item);
    }
    let reply = app
        .call(Method::GET, "/api/sandbox?limit=50&labels=%7B%22a%20b%22%3A%20%22c/d%22%7D&states=started&states=stopped&createdAtAfter=2025-01-01T00%3A00%3A00.000000%2B0000", None)
        .await;
    assert_eq!(
        reply.body["items"].as_array().unwrap().len(),
        3,
        "{:?}",
        reply.body
    );
    let reply = app
        .call(
            Method::GET,
            "/api/sandbox?labels=%7B%22app%22%3A%22none%22%7D",
            None,
        )
        .await;
    assert_eq!(reply.body["items"], json!([]));
    let reply = app
        .call(Method::GET, "/api/sandbox?states=stopped", None)
        .await;
    assert_eq!(reply.body["items"], json!([]));

    let mut seen = Vec::new();
    let mut path = "/api/sandbox?limit=2".to_owned();
    loop {
        let reply = app.call(Method::GET, &path, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        seen.extend(
            reply.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_owned()),
        );
        match reply.body["nextCursor"].as_str() {
            Some(cursor) => path = format!("/api/sandbox?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, ["sb-4", "sb-3", "sb-2", "sb-1", "sb-0"]);
    let reply = app
        .call(
            Method::GET,
            "/api/sandbox?sort=name&order=asc&limit=1",
            None,
        )
        .await;
    assert_eq!(reply.body["items"][0]["name"], "sb-0");

    let reply = app
        .call(Method::GET, "/api/sandbox?labels=notjson", None)
        .await;
    assert_envelope(&reply, 400, "/api/sandbox");
    let reply = app
        .call(Method::GET, "/api/sandbox?cursor=bogus", None)
        .await;
    assert_envelope(&reply, 400, "/api/sandbox");
    let reply = app
        .call(Method::GET, "/api/sandbox?states=bogus", None)
        .await;
    assert_envelope(&reply, 400, "/api/sandbox");
}

#[tokio::test]
async fn stop_start_delete_shapes() {
    let app = TestApp::new().await;
    let sb = app.create(json!({})).await;
    let id = sb["id"].as_str().unwrap();

    let stopped = app
        .call(
            Method::POST,
            &format!("/api/sandbox/{id}/stop?force=false"),
            None,
        )
        .await;
    assert_eq!(stopped.status, StatusCode::OK);
    assert_sandbox_shape(&stopped.body);
    assert_eq!(stopped.body["state"], "stopped");
    assert_eq!(
        app.wait_state(id, "stopped").await["desiredState"],
        "stopped"
    );
    assert!(app.runtime.calls().contains(&Call::Stop {
        id: id.to_owned(),
        force: false
    }));
    // Stopping again is a no-op.
    let again = app
        .call(
            Method::POST,
            &format!("/api/sandbox/{id}/stop?force=true"),
            None,
        )
        .await;
    assert_eq!(again.body["state"], "stopped");

    let started = app
        .call(Method::POST, &format!("/api/sandbox/{id}/start"), None)
        .await;
    assert_eq!(started.status, StatusCode::OK);
    assert_eq!(started.body["state"], "started");
    assert!(app.runtime.is_running(id));

    let archived = app
        .call(Method::POST, &format!("/api/sandbox/{id}/archive"), None)
        .await;
    assert_envelope(&archived, 409, &format!("/api/sandbox/{id}/archive"));

    let deleted = app
        .call(Method::DELETE, &format!("/api/sandbox/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    assert_sandbox_shape(&deleted.body);
    assert_eq!(deleted.body["state"], "destroyed");
    assert!(app.runtime.calls().contains(&Call::Destroy(id.to_owned())));
    let gone = app
        .call(Method::GET, &format!("/api/sandbox/{id}"), None)
        .await;
    let message = assert_envelope(&gone, 404, &format!("/api/sandbox/{id}"));
    assert_eq!(message, format!("Sandbox with ID or name {id} not found"));
    let gone = app
        .call(Method::GET, "/api/sandbox/does-not-exist", None)
        .await;
    assert_envelope(&gone, 404, "/api/sandbox/does-not-exist");
}

#[tokio::test]
async fn settings_endpoints() {
    let app = TestApp::new().await;
    let sb = app.create(json!({"labels": {"app": "seed"}})).await;
    let id = sb["id"].as_str().unwrap();

    let labels = app
        .call(
            Method::PUT,
            &format!("/api/sandbox/{id}/labels"),
            Some(json!({"labels": {"app": "seed", "run": "2"}})),
        )
        .await;
    assert_eq!(labels.status, StatusCode::OK);
    assert_eq!(labels.body, json!({"labels": {"app": "seed", "run": "2"}}));

    for (path, key, value) in [
        ("autostop/30", "autoStopInterval", json!(30)),
        ("autoarchive/60", "autoArchiveInterval", json!(60)),
        ("autodelete/-1", "autoDeleteInterval", json!(-1)),
        ("public/true", "public", json!(true)),
    ] {
        let reply = app
            .call(Method::POST, &format!("/api/sandbox/{id}/{path}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {:?}", reply.body);
        assert_eq!(reply.body[key], value, "{path}");
        let got = app
            .call(Method::GET, &format!("/api/sandbox/{id}"), None)
            .await;
        assert_eq!(got.body[key], value, "{path}");
    }
    let reply = app
        .call(
            Method::POST,
            &format!("/api/sandbox/{id}/autostop/abc"),
            None,
        )
        .await;
    assert_envelope(&reply, 400, &format!("/api/sandbox/{id}/autostop/abc"));

    let reply = app
        .call(
            Method::POST,
            &format!("/api/sandbox/{id}/network-settings"),
            Some(json!({"networkBlockAll": true})),
        )
        .await;
    assert_eq!(reply.body["networkBlockAll"], true);

    let reply = app
        .call(
            Method::POST,
            &format!("/api/sandbox/{id}/last-activity"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(reply.raw.is_empty());

    let reply = app
        .call(
            Method::GET,
            &format!("/api/sandbox/{id}/toolbox-proxy-url"),
            None,
        )
        .await;
    assert_eq!(reply.body, json!({"url": "http://localhost:3000/toolbox"}));

    let reply = app
        .call(
            Method::GET,
            &format!("/api/sandbox/{id}/ports/8080/preview-url"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["sandboxId"], sb["id"]);
    assert_eq!(
        reply.body["url"],
        format!("http://8080-{id}.localhost:3000")
    );
    assert!(reply.body["token"].as_str().unwrap().len() >= 16);

    let config = app.send(Method::GET, "/api/config", None, None).await;
    assert_eq!(config.status, StatusCode::OK);
    assert_eq!(config.body["defaultSnapshot"], "sandbar-default");
}

#[tokio::test]
async fn volumes_and_snapshots_shapes() {
    let app = TestApp::new().await;
    let reply = app.call(Method::GET, "/api/volumes/by-name/v1", None).await;
    assert_envelope(&reply, 404, "/api/volumes/by-name/v1");
    let vol = app
        .call(Method::POST, "/api/volumes", Some(json!({"name": "v1"})))
        .await;
    assert_eq!(vol.status, StatusCode::OK);
    for key in [
        "id",
        "name",
        "organizationId",
        "state",
        "createdAt",
        "updatedAt",
    ] {
        assert!(vol.body[key].is_string(), "{key}");
    }
    let again = app
        .call(Method::POST, "/api/volumes", Some(json!({"name": "v1"})))
        .await;
    assert_envelope(&again, 409, "/api/volumes");
    let by_name = app.call(Method::GET, "/api/volumes/by-name/v1", None).await;
    assert_eq!(by_name.body["id"], vol.body["id"]);
    let by_id = app
        .call(
            Method::GET,
            &format!("/api/volumes/{}", vol.body["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(by_id.body["name"], "v1");
    let list = app.call(Method::GET, "/api/volumes", None).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);

    let snaps = app
        .call(Method::GET, "/api/snapshots?page=1&limit=10", None)
        .await;
    assert_eq!(snaps.status, StatusCode::OK);
    assert_eq!(
        (
            snaps.body["total"].clone(),
            snaps.body["page"].clone(),
            snaps.body["totalPages"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    let snap = &snaps.body["items"][0];
    assert_eq!(snap["name"], "sandbar-default");
    assert!(snap["mem"].is_i64() && snap["general"].is_boolean());
    let got = app
        .call(Method::GET, "/api/snapshots/sandbar-default", None)
        .await;
    assert_eq!(got.body["id"], snap["id"]);
    let missing = app
        .call(
            Method::GET,
            "/api/snapshots/daytonaio%2Fsandbox%3A0.5.0",
            None,
        )
        .await;
    let message = assert_envelope(&missing, 404, "/api/snapshots/daytonaio%2Fsandbox%3A0.5.0");
    assert!(message.contains("daytonaio/sandbox:0.5.0"), "{message}");
}

#[tokio::test]
async fn resize_applies_live_and_at_next_start() {
    let app = TestApp::new().await;
    let sb = app.create(json!({"cpu": 1, "memory": 2, "disk": 3})).await;
    let id = sb["id"].as_str().unwrap().to_owned();
    let path = format!("/api/sandbox/{id}/resize");

    // Live: new CPU and memory limits on the running sandbox, recorded.
    let reply = app
        .call(Method::POST, &path, Some(json!({"cpu": 2, "memory": 4})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_sandbox_shape(&reply.body);
    assert_eq!(
        (
            &reply.body["cpu"],
            &reply.body["memory"],
            &reply.body["disk"]
        ),
        (&json!(2), &json!(4), &json!(3))
    );
    assert_eq!(reply.body["state"], "started");
    let limits = app.runtime.limits(&id).unwrap();
    assert_eq!((limits.cpu, limits.memory_mib), (2, 4096));
    assert!(app.runtime.calls().iter().any(|c| matches!(
        c,
        Call::Resize { id: got, resources } if *got == id && resources.memory_mib == 4096
    )));
    let got = app
        .call(Method::GET, &format!("/api/sandbox/{id}"), None)
        .await;
    assert_eq!(
        (&got.body["cpu"], &got.body["memory"]),
        (&json!(2), &json!(4))
    );

    // A memory limit below what the sandbox uses now is refused, nothing changes.
    app.runtime.set_memory_usage(&id, 3 * 1024 * 1024 * 1024);
    let reply = app
        .call(Method::POST, &path, Some(json!({"memory": 2})))
        .await;
    let message = assert_envelope(&reply, 400, &path);
    assert!(message.contains("more than the new limit"), "{message}");
    assert_eq!(app.runtime.limits(&id).unwrap().memory_mib, 4096);
    // ... but a decrease that still fits is applied.
    app.runtime.set_memory_usage(&id, 100 * 1024 * 1024);
    let reply = app
        .call(Method::POST, &path, Some(json!({"memory": 1})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(app.runtime.limits(&id).unwrap().memory_mib, 1024);

    // Disk cannot change; the same value, or none at all, is fine.
    let reply = app
        .call(Method::POST, &path, Some(json!({"disk": 10})))
        .await;
    let message = assert_envelope(&reply, 400, &path);
    assert!(message.contains("no per-sandbox disk quota"), "{message}");
    let reply = app
        .call(Method::POST, &path, Some(json!({"cpu": 1, "disk": 3})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    // Nothing to change, invalid values, unknown sandboxes.
    assert_envelope(
        &app.call(Method::POST, &path, Some(json!({}))).await,
        400,
        &path,
    );
    assert_envelope(
        &app.call(Method::POST, &path, Some(json!({"cpu": 0}))).await,
        400,
        &path,
    );
    let missing = "/api/sandbox/nope/resize";
    assert_envelope(
        &app.call(Method::POST, missing, Some(json!({"cpu": 2})))
            .await,
        404,
        missing,
    );

    // Stopped: recorded without touching the runtime, applied by the next start.
    let reply = app
        .call(Method::POST, &format!("/api/sandbox/{id}/stop"), None)
        .await;
    assert_eq!(reply.body["state"], "stopped");
    let resizes_before = app
        .runtime
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Resize { .. }))
        .count();
    let reply = app
        .call(Method::POST, &path, Some(json!({"cpu": 3, "memory": 5})))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.body["state"], "stopped");
    assert_eq!(
        (&reply.body["cpu"], &reply.body["memory"]),
        (&json!(3), &json!(5))
    );
    let resizes_after = app
        .runtime
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Resize { .. }))
        .count();
    assert_eq!(resizes_before, resizes_after);
    let reply = app
        .call(Method::POST, &format!("/api/sandbox/{id}/start"), None)
        .await;
    assert_eq!(reply.body["state"], "started");
    let spec = app.runtime.spec(&id).unwrap();
    assert_eq!(
        (spec.resources.cpu, spec.resources.memory_mib),
        (3, 5 * 1024)
    );
}
