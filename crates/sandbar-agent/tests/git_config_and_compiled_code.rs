//! Git reset/restore/remotes/config/credentials and code-run of compiled languages, driven
//! over the agent's unix socket. Runs as root on the host with `user = root` and `HOME` in a
//! scratch directory (global git config and credentials land there).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::TestAgent;
use serde_json::json;

struct Fixture {
    agent: TestAgent,
    home: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let home = tempfile::tempdir().unwrap();
    let agent = TestAgent::start_with_env(BTreeMap::from([(
        "HOME".to_owned(),
        home.path().display().to_string(),
    )]))
    .await;
    Fixture { agent, home }
}

async fn sh(agent: &TestAgent, command: &str) -> String {
    let reply = agent
        .post("/process/execute", json!({"command": command}))
        .await;
    let json = reply.json();
    assert_eq!(json["exitCode"], 0, "{command}: {json}");
    json["result"].as_str().unwrap().to_owned()
}

/// A repository with two commits of `a.txt` ("one", then "two").
async fn repo(agent: &TestAgent) -> String {
    let repo = agent.path("repo");
    sh(
        agent,
        &format!(
            "git init -q -b main {repo} && cd {repo} && git config user.name t && \
             git config user.email t@e && echo one > a.txt && git add a.txt && \
             git commit -qm one && echo two > a.txt && git commit -qam two"
        ),
    )
    .await;
    repo
}

#[tokio::test]
async fn reset_and_restore() {
    let Fixture { agent, home: _home } = fixture().await;
    let repo = repo(&agent).await;
    let a = Path::new(&repo).join("a.txt");

    // Mixed reset of a path unstages it; restore of the worktree discards the change.
    std::fs::write(&a, "three\n").unwrap();
    sh(&agent, &format!("cd {repo} && git add a.txt")).await;
    let reply = agent
        .post("/git/reset", json!({"path": repo, "files": ["a.txt"]}))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let status = sh(&agent, &format!("cd {repo} && git status --porcelain")).await;
    assert_eq!(status, " M a.txt\n");
    let reply = agent
        .post("/git/restore", json!({"path": repo, "files": ["a.txt"]}))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "two\n");

    // Staged restore from an older revision, then a hard reset back to HEAD.
    let reply = agent
        .post(
            "/git/restore",
            json!({"path": repo, "files": ["a.txt"], "source": "HEAD~1", "staged": true, "worktree": true}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "one\n");
    let reply = agent
        .post("/git/reset", json!({"path": repo, "mode": "hard"}))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "two\n");

    // Hard reset to the first commit moves the branch.
    let reply = agent
        .post(
            "/git/reset",
            json!({"path": repo, "mode": "hard", "target": "HEAD~1"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(std::fs::read_to_string(&a).unwrap(), "one\n");
    let log = sh(&agent, &format!("cd {repo} && git log --format=%s")).await;
    assert_eq!(log, "one\n");

    // Errors.
    agent
        .post("/git/reset", json!({"path": repo, "mode": "sideways"}))
        .await
        .assert_error(400, "BAD_REQUEST", "/git/reset", "POST");
    agent
        .post(
            "/git/reset",
            json!({"path": repo, "mode": "hard", "files": ["a.txt"]}),
        )
        .await
        .assert_error(400, "BAD_REQUEST", "/git/reset", "POST");
    agent
        .post(
            "/git/restore",
            json!({"path": repo, "files": ["missing.txt"]}),
        )
        .await
        .assert_error(404, "FILE_NOT_FOUND", "/git/restore", "POST");
    agent
        .post("/git/restore", json!({"path": repo, "files": []}))
        .await
        .assert_error(400, "BAD_REQUEST", "/git/restore", "POST");
    let not_repo = agent.path("");
    agent
        .post("/git/reset", json!({"path": not_repo}))
        .await
        .assert_error(404, "GIT_REPO_NOT_FOUND", "/git/reset", "POST");
}

#[tokio::test]
async fn remotes_are_added_listed_and_overwritten() {
    let Fixture { agent, home: _home } = fixture().await;
    let repo = repo(&agent).await;
    let upstream = agent.path("upstream.git");
    sh(&agent, &format!("git clone -q --bare {repo} {upstream}")).await;

    let reply = agent.get(&format!("/git/remotes?path={repo}")).await;
    assert_eq!(reply.json(), json!({"remotes": []}));
    let reply = agent
        .post(
            "/git/remotes",
            json!({"path": repo, "name": "origin", "url": upstream, "fetch": true}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let refs = sh(&agent, &format!("cd {repo} && git branch -r")).await;
    assert!(refs.contains("origin/main"), "fetched: {refs}");
    agent
        .post(
            "/git/remotes",
            json!({"path": repo, "name": "origin", "url": "https://example.com/x.git"}),
        )
        .await
        .assert_error(409, "CONFLICT", "/git/remotes", "POST");
    let reply = agent
        .post(
            "/git/remotes",
            json!({"path": repo, "name": "origin", "url": "https://example.com/x.git", "overwrite": true}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let reply = agent
        .post(
            "/git/remotes",
            json!({"path": repo, "name": "backup", "url": upstream}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    let reply = agent.get(&format!("/git/remotes?path={repo}")).await;
    assert_eq!(
        reply.json(),
        json!({"remotes": [
            {"name": "backup", "url": upstream},
            {"name": "origin", "url": "https://example.com/x.git"},
        ]})
    );
    agent
        .post(
            "/git/remotes",
            json!({"path": repo, "name": "--upload-pack=x", "url": upstream}),
        )
        .await
        .assert_error(400, "BAD_REQUEST", "/git/remotes", "POST");
    agent
        .get(&format!("/git/remotes?path={}", agent.path("")))
        .await
        .assert_error(404, "GIT_REPO_NOT_FOUND", "/git/remotes", "GET");
}

#[tokio::test]
async fn config_user_and_credentials() {
    let Fixture { agent, home } = fixture().await;
    let repo = repo(&agent).await;

    // Global scope (the default) lives in $HOME/.gitconfig.
    let reply = agent.get("/git/config?key=sandbar.test").await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.json(), json!({"value": null}));
    let reply = agent
        .post(
            "/git/config",
            json!({"key": "sandbar.test", "value": "a b"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let reply = agent.get("/git/config?key=sandbar.test&scope=global").await;
    assert_eq!(reply.json(), json!({"value": "a b"}));
    let global = std::fs::read_to_string(home.path().join(".gitconfig")).unwrap();
    assert!(global.contains("test = a b"), "{global}");

    // Local scope needs the repository.
    let reply = agent
        .post(
            "/git/config/user",
            json!({"name": "Local Name", "email": "local@example.com", "scope": "local", "path": repo}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let reply = agent
        .get(&format!(
            "/git/config?key=user.email&scope=local&path={repo}"
        ))
        .await;
    assert_eq!(reply.json(), json!({"value": "local@example.com"}));
    let reply = agent
        .post(
            "/git/config/user",
            json!({"name": "Global Name", "email": "global@example.com"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let reply = agent.get("/git/config?key=user.name").await;
    assert_eq!(reply.json(), json!({"value": "Global Name"}));

    agent
        .post(
            "/git/config",
            json!({"key": "a.b", "value": "c", "scope": "local"}),
        )
        .await
        .assert_error(400, "BAD_REQUEST", "/git/config", "POST");
    agent
        .get("/git/config?key=a.b&scope=everywhere")
        .await
        .assert_error(400, "BAD_REQUEST", "/git/config", "GET");
    agent.get("/git/config?key=nosection").await.assert_error(
        400,
        "BAD_REQUEST",
        "/git/config",
        "GET",
    );

    // Credentials go to the store helper's file, and git hands them out again.
    let reply = agent
        .post(
            "/git/credentials",
            json!({"username": "bot", "password": "s3cret", "host": "git.example.com"}),
        )
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let stored = std::fs::read_to_string(home.path().join(".git-credentials")).unwrap();
    assert_eq!(stored, "https://bot:s3cret@git.example.com\n");
    let reply = agent.get("/git/config?key=credential.helper").await;
    assert_eq!(reply.json(), json!({"value": "store"}));
    let filled = sh(
        &agent,
        "printf 'protocol=https\\nhost=git.example.com\\n\\n' | git credential fill",
    )
    .await;
    assert!(filled.contains("password=s3cret"), "{filled}");
    agent
        .post(
            "/git/credentials",
            json!({"username": "bot", "password": "a\nb"}),
        )
        .await
        .assert_error(400, "BAD_REQUEST", "/git/credentials", "POST");
}

fn on_path(names: &[&str]) -> bool {
    names.iter().any(|name| {
        ["/usr/local/bin", "/usr/bin", "/bin"]
            .iter()
            .any(|dir| Path::new(dir).join(name).is_file())
    })
}

/// Runs `code` in `language` when its toolchain is installed; otherwise expects the 400 that
/// names the missing tool.
async fn compiled(agent: &TestAgent, language: &str, tools: &[&str], code: &str) {
    let reply = agent
        .post(
            "/process/code-run",
            json!({"code": code, "language": language, "argv": ["x y", "z"], "envs": {"GREETING": "hi"}}),
        )
        .await;
    if !on_path(tools) {
        reply.assert_error(400, "BAD_REQUEST", "/process/code-run", "POST");
        let message = reply.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(tools[0]), "{message}");
        return;
    }
    assert_eq!(reply.status, 200, "{language}: {:?}", reply.body);
    let json = reply.json();
    assert_eq!(json["exitCode"], 3, "{language}: {json}");
    assert_eq!(json["result"], "hi [x y] [z]\n", "{language}: {json}");
}

#[tokio::test]
async fn code_run_compiles_and_runs_c_cpp_java_go_and_rust() {
    let Fixture { agent, home: _home } = fixture().await;
    compiled(
        &agent,
        "c",
        &["gcc", "cc", "clang"],
        r#"#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    printf("%s [%s] [%s]\n", getenv("GREETING"), argv[1], argv[2]);
    return 3;
}"#,
    )
    .await;
    compiled(
        &agent,
        "cpp",
        &["g++", "c++", "clang++"],
        r#"#include <iostream>
#include <cstdlib>
int main(int argc, char **argv) {
    std::cout << std::getenv("GREETING") << " [" << argv[1] << "] [" << argv[2] << "]" << std::endl;
    return 3;
}"#,
    )
    .await;
    compiled(
        &agent,
        "java",
        &["javac"],
        r#"public class Hello {
    public static void main(String[] args) {
        System.out.println(System.getenv("GREETING") + " [" + args[0] + "] [" + args[1] + "]");
        System.exit(3);
    }
}"#,
    )
    .await;
    compiled(
        &agent,
        "go",
        &["go"],
        r#"package main
import ("fmt"; "os")
func main() {
    fmt.Printf("%s [%s] [%s]\n", os.Getenv("GREETING"), os.Args[1], os.Args[2])
    os.Exit(3)
}"#,
    )
    .await;
    compiled(
        &agent,
        "rust",
        &["rustc"],
        r#"fn main() {
    let a: Vec<String> = std::env::args().collect();
    println!("{} [{}] [{}]", std::env::var("GREETING").unwrap(), a[1], a[2]);
    std::process::exit(3);
}"#,
    )
    .await;

    // A compile error is the compiler's output and exit code; the build directory is gone.
    if on_path(&["gcc", "cc", "clang"]) {
        let reply = agent
            .post(
                "/process/code-run",
                json!({"code": "int main( { return 0; }", "language": "c"}),
            )
            .await;
        let json = reply.json();
        assert_ne!(json["exitCode"], 0, "{json}");
        assert!(json["result"].as_str().unwrap().contains("error"), "{json}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("sandbar-code-run-{}-", std::process::id()))
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
