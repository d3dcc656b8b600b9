//! The agent's toolbox API driven over a real unix socket with HTTP/1.1, as the server's
//! reverse proxy drives it. Runs as root on the host with `user = root`.

mod common;

use std::time::Duration;

use common::{chunked, full, parse_multipart, Multipart, TestAgent};
use hyper::{Method, Request};
use rand::RngCore;
use serde_json::json;

/// Guards against a hang turning into a stuck test run; not a performance assertion.
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the agent answered")
}

// ------------------------------------------------------------------------------------------
// POST /process/execute

#[tokio::test]
async fn execute_returns_exit_code_and_combined_output_in_order() {
    let agent = TestAgent::start().await;
    let reply = agent
        .post(
            "/process/execute",
            json!({"command": "echo hello && echo err 1>&2 && echo again && exit 3"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["exitCode"], 3);
    assert_eq!(json["result"], "hello\nerr\nagain\n");
}

#[tokio::test]
async fn execute_honours_cwd_and_environment() {
    let agent = TestAgent::start().await;
    let dir = agent.path("");
    let reply = agent
        .post("/process/execute", json!({"command": "pwd", "cwd": dir}))
        .await;
    assert_eq!(
        reply.json()["result"].as_str().unwrap().trim(),
        agent.dir.path().to_str().unwrap()
    );

    let reply = agent
        .post(
            "/process/execute",
            json!({"command": "echo $X-$SANDBAR_TEST_ENV-$HOME-$USER", "envs": {"X": "1"}}),
        )
        .await;
    assert_eq!(reply.json()["result"], "1-from-config-/root-root\n");

    // Without a cwd the command runs in the user's home.
    let reply = agent
        .post("/process/execute", json!({"command": "pwd"}))
        .await;
    assert_eq!(reply.json()["result"], "/root\n");

    // POST /env is sent without a Content-Type and affects later commands.
    let reply = agent
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/env")
                .header("host", "agent")
                .body(full(
                    r#"{"set":{"NEWVAR":"yes"},"unset":["SANDBAR_TEST_ENV"]}"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["NEWVAR"], "yes");
    assert!(reply.json().get("SANDBAR_TEST_ENV").is_none());
    let reply = agent
        .post(
            "/process/execute",
            json!({"command": "echo ${NEWVAR}-${SANDBAR_TEST_ENV:-unset}"}),
        )
        .await;
    assert_eq!(reply.json()["result"], "yes-unset\n");
}

#[tokio::test]
async fn execute_timeout_is_408_and_kills_the_whole_group() {
    // Orphans of the killed shell are re-parented to this test process, so it can wait for
    // the background child and learn how it ended.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let agent = TestAgent::start().await;
    let pid_file = agent.path("bg.pid");
    let command = format!("sleep 300 & echo $! > {pid_file}; sleep 300");
    let reply = within(agent.post(
        "/process/execute",
        json!({"command": command, "timeout": 1}),
    ))
    .await;
    reply.assert_error(408, "PROCESS_EXECUTION_TIMEOUT", "/process/execute", "POST");

    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap()
    })
    .await
    .unwrap();
    assert!(
        matches!(
            status,
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
        ),
        "background sleep was killed by SIGKILL: {status:?}"
    );
}

#[tokio::test]
async fn execute_does_not_wait_for_background_children() {
    let agent = TestAgent::start().await;
    let reply = within(agent.post(
        "/process/execute",
        json!({"command": "sleep 120 & echo started"}),
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["exitCode"], 0);
    assert_eq!(reply.json()["result"], "started\n");
}

#[tokio::test]
async fn execute_rejects_empty_commands_and_reports_spawn_failures_in_band() {
    let agent = TestAgent::start().await;
    agent
        .post("/process/execute", json!({"command": "  \n"}))
        .await
        .assert_error(400, "BAD_REQUEST", "/process/execute", "POST");

    let reply = agent
        .post(
            "/process/execute",
            json!({"command": "true", "cwd": "/definitely/not/here"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["exitCode"], -1);
    assert!(reply.json()["result"]
        .as_str()
        .unwrap()
        .contains("/definitely/not/here"));

    agent
        .post("/process/execute", json!({"cmd": "typo"}))
        .await
        .assert_error(400, "INVALID_REQUEST_BODY", "/process/execute", "POST");
}

#[tokio::test]
async fn code_run_runs_shell_and_rejects_unknown_languages() {
    let agent = TestAgent::start().await;
    let reply = agent
        .post(
            "/process/code-run",
            json!({"code": "echo \"$1\"; exit 4", "language": "bash", "argv": ["arg"]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["exitCode"], 4);
    assert_eq!(reply.json()["result"], "arg\n");
    agent
        .post(
            "/process/code-run",
            json!({"code": "x", "language": "cobol"}),
        )
        .await
        .assert_error(400, "BAD_REQUEST", "/process/code-run", "POST");
}

// ------------------------------------------------------------------------------------------
// Files

#[tokio::test]
async fn bulk_upload_then_bulk_download_round_trips_binary_data() {
    let agent = TestAgent::start().await;
    let mut binary = vec![0u8; 1 << 20];
    rand::thread_rng().fill_bytes(&mut binary);
    let bin_path = agent.path("nested/deeper/data.bin");
    let txt_path = agent.path("a.txt");
    // Python's order: every path first, then every file.
    let (content_type, body) = Multipart::new()
        .text("files[0].path", &bin_path)
        .text("files[1].path", &txt_path)
        .file("files[0].file", &bin_path, &binary)
        .file("files[1].file", &txt_path, b"hello bytes")
        .finish();
    let reply = agent
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/files/bulk-upload")
                .header("host", "agent")
                .header("content-type", content_type)
                .body(full(body))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(std::fs::read(&bin_path).unwrap(), binary);
    // Parent directories were created, and no temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(agent.path("nested/deeper"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("data.bin")]);

    let missing = agent.path("nope.txt");
    let reply = agent
        .post(
            "/files/bulk-download",
            json!({"paths": [bin_path, txt_path, missing]}),
        )
        .await;
    assert_eq!(reply.status, 200);
    let content_type = reply.headers["content-type"].to_str().unwrap().to_owned();
    let boundary = content_type
        .strip_prefix("multipart/form-data; boundary=")
        .expect("multipart content type");
    let parts = parse_multipart(&reply.body, boundary);
    assert_eq!(parts.len(), 3);

    let encoded = |p: &str| p.replace('/', "%2F");
    assert_eq!(
        parts[0].header("Content-Disposition").unwrap(),
        format!(
            "form-data; name=\"file\"; filename=\"{bin_path}\"; filename*=utf-8''{}",
            encoded(&bin_path)
        )
    );
    assert_eq!(
        parts[0].header("Content-Type"),
        Some("application/octet-stream")
    );
    assert_eq!(parts[0].header("Content-Length"), Some("1048576"));
    assert!(parts[0].body == binary, "binary content round-trips");

    assert_eq!(parts[1].header("Content-Type"), Some("text/plain"));
    assert_eq!(parts[1].body, b"hello bytes");

    assert!(parts[2]
        .header("Content-Disposition")
        .unwrap()
        .starts_with(&format!(
            "form-data; name=\"error\"; filename=\"{missing}\""
        )));
    assert!(parts[2]
        .header("Content-Type")
        .unwrap()
        .starts_with("application/json"));
    let error: serde_json::Value = serde_json::from_slice(&parts[2].body).unwrap();
    assert_eq!(error["statusCode"], 404);
    assert_eq!(error["code"], "FILE_NOT_FOUND");
    assert_eq!(error["source"], "DAYTONA_DAEMON");
}

#[tokio::test]
async fn bulk_upload_accepts_interleaved_chunked_bodies_and_overwrites() {
    let agent = TestAgent::start().await;
    let first = agent.path("one.txt");
    let second = agent.path("dir/two.txt");
    std::fs::write(&first, "old content that is longer").unwrap();
    // TypeScript's order (path, file per index), and a file part before its path.
    let (content_type, body) = Multipart::new()
        .text("files[0].path", &first)
        .file("files[0].file", "one.txt", b"new")
        .file("files[1].file", "two.txt", b"second")
        .text("files[1].path", &second)
        .finish();
    let chunks: Vec<Vec<u8>> = body.chunks(7).map(<[u8]>::to_vec).collect();
    let reply = agent
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/files/bulk-upload")
                .header("host", "agent")
                .header("content-type", content_type)
                .body(chunked(chunks))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(std::fs::read_to_string(&first).unwrap(), "new");
    assert_eq!(std::fs::read_to_string(&second).unwrap(), "second");

    let reply = agent
        .get(&format!("/files/download?path={}", encode(&second)))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_ref(), b"second");
    agent
        .get(&format!(
            "/files/download?path={}",
            encode(&agent.path("gone"))
        ))
        .await
        .assert_error(404, "FILE_NOT_FOUND", "/files/download", "GET");
}

fn encode(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn file_operations_answer_the_contract_status_codes() {
    let agent = TestAgent::start().await;
    let folder = agent.path("work");
    let reply = agent
        .call(
            Method::POST,
            &format!("/files/folder?path={}&mode=755", encode(&folder)),
            None,
        )
        .await;
    assert_eq!(reply.status, 201);
    std::fs::write(format!("{folder}/a.txt"), "hello bytes").unwrap();

    let reply = agent.get(&format!("/files?path={}", encode(&folder))).await;
    assert_eq!(reply.status, 200);
    let list = reply.json();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["name"], "a.txt");
    assert_eq!(entries[0]["size"], 11);
    assert_eq!(entries[0]["isDir"], false);

    let reply = agent
        .get(&format!("/files/info?path={}", encode(&folder)))
        .await;
    assert_eq!(reply.status, 200);
    let info = reply.json();
    assert_eq!(info["isDir"], true);
    assert_eq!(info["mode"], "drwxr-xr-x");
    assert_eq!(info["permissions"], "0755");
    assert_eq!(info["owner"], "0");
    assert!(info["modTime"].as_str().unwrap().ends_with("+0000 UTC"));
    assert!(chrono::DateTime::parse_from_rfc3339(info["modifiedAt"].as_str().unwrap()).is_ok());

    let file = format!("{folder}/a.txt");
    let info = agent
        .get(&format!("/files/info?path={}", encode(&file)))
        .await
        .json();
    assert_eq!(info["mode"], "-rw-r--r--");
    assert_eq!(info["permissions"], "0644");

    agent
        .get(&format!("/files/info?path={}", encode(&agent.path("nope"))))
        .await
        .assert_error(404, "FILE_NOT_FOUND", "/files/info", "GET");
    agent.get("/files/info?path=").await.assert_error(
        400,
        "INVALID_FILE_PATH",
        "/files/info",
        "GET",
    );

    let moved = agent.path("moved.txt");
    let reply = agent
        .call(
            Method::POST,
            &format!(
                "/files/move?source={}&destination={}",
                encode(&file),
                encode(&moved)
            ),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(std::fs::read_to_string(&moved).unwrap(), "hello bytes");
    agent
        .get(&format!("/files/info?path={}", encode(&file)))
        .await
        .assert_error(404, "FILE_NOT_FOUND", "/files/info", "GET");

    let reply = agent
        .call(
            Method::POST,
            &format!("/files/permissions?path={}&mode=600", encode(&moved)),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let info = agent
        .get(&format!("/files/info?path={}", encode(&moved)))
        .await
        .json();
    assert_eq!(info["permissions"], "0600");

    std::fs::write(format!("{folder}/inner.txt"), "x").unwrap();
    agent
        .call(
            Method::DELETE,
            &format!("/files?path={}&recursive=false", encode(&folder)),
            None,
        )
        .await
        .assert_error(400, "BAD_REQUEST", "/files", "DELETE");
    let reply = agent
        .call(
            Method::DELETE,
            &format!("/files?path={}&recursive=true", encode(&folder)),
            None,
        )
        .await;
    assert_eq!(reply.status, 204);
    assert!(!std::path::Path::new(&folder).exists());
    agent
        .call(
            Method::DELETE,
            &format!("/files?path={}&recursive=false", encode(&folder)),
            None,
        )
        .await
        .assert_error(404, "FILE_NOT_FOUND", "/files", "DELETE");
}

#[tokio::test]
async fn find_search_and_replace_work_on_a_tree() {
    let agent = TestAgent::start().await;
    std::fs::create_dir_all(agent.path("tree/sub")).unwrap();
    std::fs::write(agent.path("tree/a.txt"), "one\nneedle here\nthree\n").unwrap();
    std::fs::write(agent.path("tree/sub/b.md"), "needle again\n").unwrap();
    std::fs::write(agent.path("tree/sub/c.txt"), "nothing\n").unwrap();
    let root = encode(&agent.path("tree"));

    let found = agent
        .get(&format!("/files/find?path={root}&pattern=needle"))
        .await
        .json();
    assert_eq!(
        found,
        json!([
            {"file": agent.path("tree/a.txt"), "line": 2, "content": "needle here"},
            {"file": agent.path("tree/sub/b.md"), "line": 1, "content": "needle again"},
        ])
    );

    let searched = agent
        .get(&format!("/files/search?path={root}&pattern=*.txt"))
        .await
        .json();
    assert_eq!(
        searched,
        json!({"files": [agent.path("tree/a.txt"), agent.path("tree/sub/c.txt")]})
    );

    let replaced = agent
        .post(
            "/files/replace",
            json!({"files": [agent.path("tree/a.txt"), agent.path("tree/missing")], "pattern": "needle", "newValue": "pin"}),
        )
        .await
        .json();
    assert_eq!(replaced[0]["success"], true);
    assert_eq!(replaced[1]["success"], false);
    assert_eq!(
        std::fs::read_to_string(agent.path("tree/a.txt")).unwrap(),
        "one\npin here\nthree\n"
    );
}

// ------------------------------------------------------------------------------------------
// Sessions

#[tokio::test]
async fn sessions_keep_shell_state_and_split_streams() {
    let agent = TestAgent::start().await;
    let reply = agent
        .post("/process/session", json!({"sessionId": "s1"}))
        .await;
    assert_eq!(reply.status, 201);
    agent
        .post("/process/session", json!({"sessionId": "s1"}))
        .await
        .assert_error(409, "CONFLICT", "/process/session", "POST");

    let reply = within(agent.post(
        "/process/session/s1/exec",
        json!({"command": "export A=1; cd /tmp"}),
    ))
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["exitCode"], 0);

    let reply = within(agent.post(
        "/process/session/s1/exec",
        json!({"command": "echo $A; pwd; echo oops >&2; false"}),
    ))
    .await;
    assert_eq!(reply.status, 200);
    let json = reply.json();
    assert_eq!(json["stdout"], "1\n/tmp\n");
    assert_eq!(json["stderr"], "oops\n");
    assert_eq!(json["exitCode"], 1);
    let cmd_id = json["cmdId"].as_str().unwrap().to_owned();

    // A syntax error does not break the session.
    let reply = within(agent.post(
        "/process/session/s1/exec",
        json!({"command": "echo \"unterminated"}),
    ))
    .await;
    assert_ne!(reply.json()["exitCode"], 0);
    let reply = within(agent.post(
        "/process/session/s1/exec",
        json!({"command": "printf no-newline"}),
    ))
    .await;
    assert_eq!(reply.json()["stdout"], "no-newline");

    let reply = agent
        .get(&format!("/process/session/s1/command/{cmd_id}/logs"))
        .await;
    assert_eq!(
        reply.json(),
        json!({"output": "1\n/tmp\noops\n", "stdout": "1\n/tmp\n", "stderr": "oops\n"})
    );
    let reply = agent
        .get(&format!("/process/session/s1/command/{cmd_id}"))
        .await;
    assert_eq!(reply.json()["exitCode"], 1);
    assert_eq!(
        reply.json()["command"],
        "echo $A; pwd; echo oops >&2; false"
    );

    let session = agent.get("/process/session/s1").await.json();
    assert_eq!(session["sessionId"], "s1");
    assert_eq!(session["commands"].as_array().unwrap().len(), 4);

    let reply = agent
        .call(Method::DELETE, "/process/session/s1", None)
        .await;
    assert_eq!(reply.status, 204);
    agent.get("/process/session/s1").await.assert_error(
        404,
        "PROCESS_NOT_FOUND",
        "/process/session/s1",
        "GET",
    );
}

#[tokio::test]
async fn async_session_commands_take_input_and_stream_logs_over_websocket() {
    let agent = TestAgent::start().await;
    assert_eq!(
        agent
            .post("/process/session", json!({"sessionId": "s2"}))
            .await
            .status,
        201
    );
    let reply = agent
        .post(
            "/process/session/s2/exec",
            json!({"command": "read line; echo got-$line; echo warn >&2; exit_code=5; (exit $exit_code)", "runAsync": true}),
        )
        .await;
    assert_eq!(reply.status, 202);
    let cmd_id = reply.json()["cmdId"].as_str().unwrap().to_owned();
    let command = agent
        .get(&format!("/process/session/s2/command/{cmd_id}"))
        .await
        .json();
    assert!(command.get("exitCode").is_none(), "still waiting for input");

    let reply = agent
        .post(
            &format!("/process/session/s2/command/{cmd_id}/input"),
            json!({"data": "hi\n"}),
        )
        .await;
    assert_eq!(reply.status, 204);

    let (frames, close) = within(agent.websocket_frames(&format!(
        "/process/session/s2/command/{cmd_id}/logs?follow=true"
    )))
    .await;
    assert_eq!(close, Some(1000));
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    for frame in frames {
        let (target, data) = if let Some(rest) = frame.strip_prefix(b"\x01\x01\x01") {
            (&mut stdout, rest.to_vec())
        } else if let Some(rest) = frame.strip_prefix(b"\x02\x02\x02") {
            (&mut stderr, rest.to_vec())
        } else {
            panic!("frame without a stream marker: {frame:?}");
        };
        target.extend_from_slice(&data);
    }
    assert_eq!(stdout, b"got-hi\n");
    assert_eq!(stderr, b"warn\n");

    let command = agent
        .get(&format!("/process/session/s2/command/{cmd_id}"))
        .await
        .json();
    assert_eq!(command["exitCode"], 5);
    agent
        .post(
            &format!("/process/session/s2/command/{cmd_id}/input"),
            json!({"data": "late\n"}),
        )
        .await
        .assert_error(
            409,
            "COMMAND_ALREADY_COMPLETED",
            &format!("/process/session/s2/command/{cmd_id}/input"),
            "POST",
        );
}

#[tokio::test]
async fn a_session_whose_shell_exits_reports_the_status_and_then_ends() {
    let agent = TestAgent::start().await;
    agent
        .post("/process/session", json!({"sessionId": "s3"}))
        .await;
    let reply = within(agent.post(
        "/process/session/s3/exec",
        json!({"command": "echo bye; exit 7"}),
    ))
    .await;
    assert_eq!(reply.json()["exitCode"], 7);
    assert_eq!(reply.json()["stdout"], "bye\n");
    agent
        .post("/process/session/s3/exec", json!({"command": "echo again"}))
        .await
        .assert_error(410, "SESSION_ENDED", "/process/session/s3/exec", "POST");
}

#[tokio::test]
async fn pty_sessions_run_an_interactive_shell_over_websocket() {
    let agent = TestAgent::start().await;
    let cwd = agent.dir.path().to_string_lossy().into_owned();
    // Envs travel base64url-encoded in a subprotocol: {"PTYVAR": "from-protocol"}.
    let envs = "eyJQVFlWQVIiOiAiZnJvbS1wcm90b2NvbCJ9";
    let (frames, close, reason) = within(agent.websocket(
        &format!(
            "/process/pty/create-connect?id=p1&cols=100&rows=30&cwd={}",
            encode(&cwd)
        ),
        &[
            "X-Daytona-Pty-Exit-Control",
            &format!("X-Daytona-Pty-Envs~{envs}"),
        ],
        Some(b"echo \"v=$PTYVAR cols=$(tput cols 2>/dev/null || stty size)\"; pwd; exit 3\n"),
    ))
    .await;
    let control: serde_json::Value = serde_json::from_slice(&frames[0]).unwrap();
    assert_eq!(control, json!({"type": "control", "status": "connected"}));
    let output: Vec<u8> = frames[1..frames.len() - 1].concat();
    let output = String::from_utf8_lossy(&output);
    assert!(output.contains("v=from-protocol"), "{output}");
    assert!(output.contains(&cwd), "{output}");
    let last: serde_json::Value = serde_json::from_slice(frames.last().unwrap()).unwrap();
    assert_eq!(last["status"], "exited");
    assert_eq!(last["exitCode"], 3);
    assert_eq!(close, Some(1000));
    assert_eq!(reason, r#"{"exitCode":3}"#);

    let info = agent.get("/process/pty/p1").await.json();
    assert_eq!(info["active"], false);
    assert_eq!(info["cols"], 100);
    agent.get("/process/pty/nope").await.assert_error(
        404,
        "PROCESS_NOT_FOUND",
        "/process/pty/nope",
        "GET",
    );
}

// ------------------------------------------------------------------------------------------
// Info and errors

#[tokio::test]
async fn info_endpoints_and_unknown_routes() {
    let agent = TestAgent::start().await;
    assert_eq!(
        agent.get("/user-home-dir").await.json(),
        json!({"dir": "/root"})
    );
    assert_eq!(agent.get("/work-dir").await.json(), json!({"dir": "/root"}));
    let metrics = agent.get("/system/metrics").await.json();
    assert!(metrics["cpuCount"].as_u64().unwrap() >= 1);
    assert!(metrics["memTotal"].as_u64().unwrap() > 0);
    assert!(metrics["diskTotal"].as_u64().unwrap() > 0);
    assert!(metrics["cpuUsedPct"].is_f64());

    // A listening TCP socket shows up in /port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ports = agent.get("/port").await.json();
    assert!(ports["ports"].as_array().unwrap().contains(&json!(port)));
    assert_eq!(
        agent.get(&format!("/port/{port}/in-use")).await.json(),
        json!({"isInUse": true})
    );

    agent
        .get("/no/such/thing")
        .await
        .assert_error(404, "NOT_FOUND", "/no/such/thing", "GET");
    let reply = agent.post("/lsp/start", json!({})).await;
    assert_eq!(reply.status, 501);
    assert_eq!(reply.json()["source"], "DAYTONA_DAEMON");
}
