//! The native backend against the real kernel: real sandboxes started by the real `sandbar`
//! binary (jail helper + agent). Needs root; the test suite runs as root in CI.

use std::collections::BTreeMap;
use std::path::PathBuf;

use sandbar_runtime::native::{NativeConfig, NativeRuntime};
use sandbar_runtime::{Resources, SandboxRuntime, SandboxSpec};

fn sandbar_exe() -> PathBuf {
    if let Ok(p) = std::env::var("SANDBAR_EXE") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("target/x86_64-unknown-linux-gnu/debug/sandbar")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn spec(id: &str) -> SandboxSpec {
    SandboxSpec {
        id: id.to_string(),
        hostname: format!("sb-{}", &id[..8]),
        snapshot: "sandbar-default".into(),
        user: "daytona".into(),
        env: BTreeMap::new(),
        resources: Resources::default(),
        network_block_all: true,
        mounts: vec![],
    }
}

/// One HTTP/1.1 request over the agent's unix socket, answered with (status, body).
async fn agent_request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the agent");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn exec(rt: &NativeRuntime, id: &str, command: &str) -> serde_json::Value {
    let body = serde_json::json!({ "command": command }).to_string();
    let (status, body) =
        agent_request(&rt.agent_socket(id), "POST", "/process/execute", &body).await;
    assert_eq!(status, 200, "exec {command:?}: {body}");
    // Tolerate chunked framing: take the JSON object in the body.
    let start = body.find('{').expect("json body");
    let end = body.rfind('}').expect("json body");
    serde_json::from_str(&body[start..=end]).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_starts_runs_commands_stops_and_leaves_nothing() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to create namespaces and cgroups");
        return;
    }
    let data = tempdir();
    let rt = NativeRuntime::new(NativeConfig::new(data.clone(), sandbar_exe())).expect("runtime");
    let id = uuid();
    let launched = rt.start(&spec(&id)).await.expect("start");
    assert!(rt.is_alive(launched));

    let r = exec(
        &rt,
        &id,
        "echo hello; id -u; hostname; cat /proc/1/cmdline | tr '\\0' ' '",
    )
    .await;
    let out = r["result"].as_str().unwrap();
    assert_eq!(r["exitCode"], 0, "{out}");
    assert!(out.contains("hello"), "{out}");
    assert!(out.contains("1000"), "default user is daytona: {out}");
    assert!(out.contains(&format!("sb-{}", &id[..8])), "hostname: {out}");
    assert!(out.contains("sandbar agent"), "PID 1 is the agent: {out}");

    // Host view: PID 1 runs as an unprivileged host uid.
    let status = std::fs::read_to_string(format!("/proc/{}/status", launched.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let host_uid: u32 = uid_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        host_uid >= 100_000,
        "sandbox root must not be host root: {uid_line}"
    );

    // A file written before stop survives stop/start.
    exec(&rt, &id, "echo kept > /home/daytona/kept.txt").await;
    rt.stop(&id, Some(launched), false).await.expect("stop");
    assert!(!rt.is_alive(launched));
    let launched = rt.start(&spec(&id)).await.expect("restart");
    let r = exec(&rt, &id, "cat /home/daytona/kept.txt").await;
    assert_eq!(r["result"].as_str().unwrap().trim(), "kept");

    rt.destroy(&id, Some(launched)).await.expect("destroy");
    assert!(
        !data.join("sandboxes").join(&id).exists(),
        "sandbox directory removed"
    );
    assert!(
        rt.cgroups().dirs(&id).iter().all(|d| !d.exists()),
        "cgroups removed"
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(&id), "no host mount mentions the sandbox");
    std::fs::remove_dir_all(&data).unwrap();
}

fn uuid() -> String {
    let bytes: [u8; 16] = std::array::from_fn(|_| rand_byte());
    let h = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish() as u8
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sbrt-{}", &uuid()[..8]));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Reports (does not assert) the runtime-level create → first exec latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_create_to_first_exec_latency() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to create namespaces and cgroups");
        return;
    }
    let data = tempdir();
    let rt = NativeRuntime::new(NativeConfig::new(data.clone(), sandbar_exe())).expect("runtime");
    let mut samples = Vec::new();
    for _ in 0..10 {
        let id = uuid();
        let t = std::time::Instant::now();
        let launched = rt.start(&spec(&id)).await.expect("start");
        let r = exec(&rt, &id, "true").await;
        samples.push(t.elapsed());
        assert_eq!(r["exitCode"], 0);
        rt.destroy(&id, Some(launched)).await.expect("destroy");
    }
    samples.sort();
    println!(
        "runtime create -> first exec: median {:?}, max {:?}",
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
    std::fs::remove_dir_all(&data).unwrap();
}
