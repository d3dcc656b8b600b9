//! The agent as PID 1 of a fresh PID namespace, started the way the jail starts it
//! (`run_from_env`: config in the environment, listening socket on fd 3): it reaps orphans and,
//! on SIGTERM, forwards the signal to every process and exits once they are gone.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestAgent;
use serde_json::json;

const CHILD_ENV: &str = "SANDBAR_AGENT_INIT_CHILD";

/// Entry point of the re-executed test binary: becomes the agent.
#[test]
#[ignore = "run only as the child of agent_as_pid1_reaps_orphans_and_forwards_sigterm"]
fn agent_child_entry() {
    if std::env::var_os(CHILD_ENV).is_some() {
        assert_eq!(
            sandbar_agent::run_from_env(),
            std::process::ExitCode::SUCCESS
        );
    }
}

/// Binds the socket, puts it on fd 3 and execs the agent (python does the fd plumbing so the
/// test needs no unsafe code).
const LAUNCHER: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(16)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
print("listening", flush=True)
os.dup2(2, 1)
os.execv(sys.argv[2], sys.argv[2:])
"#;

#[tokio::test]
async fn agent_as_pid1_reaps_orphans_and_forwards_sigterm() {
    let scratch = tempfile::tempdir().unwrap();
    let socket = scratch.path().join("agent.sock");
    let exe = std::env::current_exe().unwrap();
    let mut unshare = Command::new("unshare")
        .args([
            "--pid",
            "--mount-proc",
            "--fork",
            "--kill-child",
            "python3",
            "-c",
            LAUNCHER,
        ])
        .arg(&socket)
        .arg(&exe)
        .args(["--exact", "agent_child_entry", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env(
            sandbar_wire::agent::CONFIG_ENV,
            json!({"user": "root", "env": {"FROM_CONFIG": "yes"}, "init": true}).to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = unshare.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    })
    .await
    .unwrap();
    assert_eq!(ready, "listening\n");
    let agent = TestAgent {
        socket,
        dir: scratch,
    };
    let dir = agent.path("");

    let reply = agent
        .post(
            "/process/execute",
            json!({"command": "echo $$ $FROM_CONFIG; env | grep -c SANDBAR_AGENT_CONFIG"}),
        )
        .await;
    assert_eq!(reply.status, 200);
    // The config variable does not leak into commands.
    assert!(
        reply.json()["result"]
            .as_str()
            .unwrap()
            .ends_with(" yes\n0\n"),
        "{}",
        reply.json()
    );

    // An orphan: its parent shell exits at once; it blocks on a FIFO until released.
    let reply = agent
        .post(
            "/process/execute",
            json!({"command": format!("mkfifo {dir}fifo; (cat {dir}fifo > /dev/null & echo $! > {dir}orphan.pid); echo started")}),
        )
        .await;
    assert_eq!(reply.json()["result"], "started\n");
    let reply = tokio::time::timeout(
        Duration::from_secs(60),
        agent.post(
            "/process/execute",
            json!({"command": format!("echo go > {dir}fifo; pid=$(cat {dir}orphan.pid); while [ -e /proc/$pid ]; do sleep 0.05; done; echo reaped")}),
        ),
    )
    .await
    .expect("the orphan disappears from /proc once PID 1 reaps it");
    assert_eq!(reply.json()["result"], "reaped\n");

    // A process that records the SIGTERM it receives.
    let reply = agent
        .post(
            "/process/execute",
            json!({"command": format!("sh -c 'trap \"echo got-term > {dir}term; exit 0\" TERM; echo ready > {dir}ready; while :; do sleep 1; done' > /dev/null 2>&1 & while [ ! -e {dir}ready ]; do sleep 0.05; done; echo ok")}),
        )
        .await;
    assert_eq!(reply.json()["result"], "ok\n");

    // PID 1 of the namespace is the only child of unshare.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let pid1: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || unshare.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "agent exited cleanly: {status:?} {:?}",
        status.signal()
    );
    assert_eq!(
        std::fs::read_to_string(agent.path("term")).unwrap(),
        "got-term\n"
    );
}
