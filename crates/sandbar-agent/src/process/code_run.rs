//! `POST /process/code-run`: a snippet of Python, JavaScript, TypeScript or shell, run by its
//! interpreter, or of Go, Rust, Java, C or C++, compiled with the snapshot's toolchain into a
//! private temporary directory inside the sandbox, run, and removed.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use sandbar_wire::toolbox::{CodeRunArtifacts, CodeRunRequest, CodeRunResponse};

use crate::envelope::{DaemonError, JsonBody};
use crate::launch::run_captured;
use crate::process::execute::in_band;
use crate::Agent;

pub async fn code_run(
    State(agent): State<Arc<Agent>>,
    JsonBody(request): JsonBody<CodeRunRequest>,
) -> Result<Json<CodeRunResponse>, DaemonError> {
    let argv = request.argv.clone().unwrap_or_default();
    let path_var = agent
        .env_snapshot()
        .get("PATH")
        .cloned()
        .unwrap_or_default();
    let language = request.language.to_ascii_lowercase();
    if let Some(compiled) = Compiled::parse(&language) {
        return run_compiled(&agent, compiled, &path_var, &request, argv).await;
    }
    let runner = match language.as_str() {
        "python" | "python3" | "" => find_program(&path_var, &["python3", "python"])
            .map(|p| (p, vec!["-c".into(), request.code.clone().into()])),
        "javascript" | "js" | "node" => find_program(&path_var, &["node"])
            .map(|p| (p, vec!["-e".into(), request.code.clone().into()])),
        "typescript" | "ts" => find_program(&path_var, &["tsx", "ts-node"])
            .map(|p| (p, vec!["-e".into(), request.code.clone().into()])),
        "bash" | "sh" | "shell" => Some((
            agent.shell.clone(),
            vec!["-c".into(), request.code.clone().into(), "code-run".into()],
        )),
        other => {
            return Err(DaemonError::bad_request(format!(
                "unsupported language {other:?}: expected python, typescript, javascript, bash, \
                 go, rust, java, c or cpp"
            )))
        }
    };
    let Some((program, mut args)) = runner else {
        let message = format!(
            "no interpreter for {} found in PATH ({path_var})",
            request.language
        );
        return Ok(Json(response(-1, message)));
    };
    args.extend(argv.into_iter().map(OsString::from));
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let cwd = agent.resolve_path(None);
    let timeout = request.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    match run_captured(
        &agent,
        &program,
        &args,
        &cwd,
        request.envs.as_ref(),
        timeout,
    )
    .await
    {
        Ok(captured) => Ok(Json(response(captured.exit_code, captured.output))),
        Err(err) => in_band(err).map(|message| Json(response(-1, message))),
    }
}

/// Runs the built program, without the variables of the build script.
macro_rules! run_built {
    () => {
        r#"bin=$SANDBAR_DIR/main; unset SANDBAR_DIR SANDBAR_SRC SANDBAR_TOOL; "$bin" "$@""#
    };
}

/// A language that is compiled before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compiled {
    Go,
    Rust,
    Java,
    C,
    Cpp,
}

impl Compiled {
    fn parse(language: &str) -> Option<Self> {
        Some(match language {
            "go" | "golang" => Self::Go,
            "rust" | "rs" => Self::Rust,
            "java" => Self::Java,
            "c" => Self::C,
            "cpp" | "c++" | "cxx" => Self::Cpp,
            _ => return None,
        })
    }

    /// Programs that can do the job, in order of preference; the first found is used.
    fn tools(self) -> &'static [&'static str] {
        match self {
            Self::Go => &["go"],
            Self::Rust => &["rustc"],
            // Single-file source launch (JDK 11+) needs the compiler module: ask for javac.
            Self::Java => &["javac"],
            Self::C => &["gcc", "cc", "clang"],
            Self::Cpp => &["g++", "c++", "clang++"],
        }
    }

    fn source_name(self) -> &'static str {
        match self {
            Self::Go => "main.go",
            Self::Rust => "main.rs",
            Self::Java => "Main.java",
            Self::C => "main.c",
            Self::Cpp => "main.cpp",
        }
    }

    /// Shell script that builds `$SANDBAR_SRC` with `$SANDBAR_TOOL` into `$SANDBAR_DIR` and
    /// runs the result with the request's arguments (`"$@"`) in the working directory. A
    /// failed build ends the script with the compiler's output and exit code.
    fn script(self) -> &'static str {
        match self {
            Self::Go => concat!(
                r#""$SANDBAR_TOOL" build -o "$SANDBAR_DIR/main" "$SANDBAR_SRC" || exit $?; "#,
                run_built!()
            ),
            Self::Rust => concat!(
                r#""$SANDBAR_TOOL" --edition 2021 -o "$SANDBAR_DIR/main" "$SANDBAR_SRC" || exit $?; "#,
                run_built!()
            ),
            Self::Java => concat!(
                r#"java=$(dirname "$SANDBAR_TOOL")/java; "#,
                r#"[ -x "$java" ] || java=java; "#,
                r#"src=$SANDBAR_SRC; "#,
                r#"unset SANDBAR_DIR SANDBAR_SRC SANDBAR_TOOL; "#,
                r#""$java" "$src" "$@""#
            ),
            Self::C => concat!(
                r#""$SANDBAR_TOOL" -O1 -o "$SANDBAR_DIR/main" "$SANDBAR_SRC" -lm || exit $?; "#,
                run_built!()
            ),
            Self::Cpp => concat!(
                r#""$SANDBAR_TOOL" -O1 -o "$SANDBAR_DIR/main" "$SANDBAR_SRC" || exit $?; "#,
                run_built!()
            ),
        }
    }
}

/// Monotonic part of temporary directory names (the pid tells agents apart).
static NEXT_DIR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A private directory for one build, owned by the sandbox user, removed when dropped
/// (also after a timeout killed the build or the program).
struct BuildDir(PathBuf);

impl BuildDir {
    fn create(agent: &Agent) -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let n = NEXT_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sandbar-code-run-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let built = BuildDir(dir);
        if agent.is_root && agent.user.uid != 0 {
            std::os::unix::fs::chown(&built.0, Some(agent.user.uid), Some(agent.user.gid))?;
        }
        Ok(built)
    }

    fn write(&self, agent: &Agent, name: &str, contents: &str) -> std::io::Result<PathBuf> {
        let path = self.0.join(name);
        std::fs::write(&path, contents)?;
        if agent.is_root && agent.user.uid != 0 {
            std::os::unix::fs::chown(&path, Some(agent.user.uid), Some(agent.user.gid))?;
        }
        Ok(path)
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %err, "cannot remove code-run build directory");
        }
    }
}

async fn run_compiled(
    agent: &Agent,
    language: Compiled,
    path_var: &str,
    request: &CodeRunRequest,
    argv: Vec<String>,
) -> Result<Json<CodeRunResponse>, DaemonError> {
    let tools = language.tools();
    let Some(tool) = find_program(path_var, tools) else {
        return Err(DaemonError::bad_request(format!(
            "cannot run {} code: {} is not installed in this sandbox (searched PATH {path_var})",
            request.language,
            tools.join(" or ")
        )));
    };
    let io = |what: &str, err: std::io::Error| {
        DaemonError::internal(format!(
            "cannot {what} for the {} build: {err}",
            request.language
        ))
    };
    let dir = BuildDir::create(agent).map_err(|err| io("create a temporary directory", err))?;
    let source = dir
        .write(agent, language.source_name(), &request.code)
        .map_err(|err| io("write the source", err))?;
    let cwd = agent.resolve_path(None);
    let mut envs = request.envs.clone().unwrap_or_default();
    envs.insert("SANDBAR_DIR".to_owned(), dir.0.display().to_string());
    envs.insert("SANDBAR_SRC".to_owned(), source.display().to_string());
    envs.insert("SANDBAR_TOOL".to_owned(), tool.display().to_string());
    let mut args: Vec<OsString> = vec!["-c".into(), language.script().into(), "code-run".into()];
    args.extend(argv.into_iter().map(OsString::from));
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let timeout = request.timeout.filter(|t| *t > 0).map(Duration::from_secs);
    let result = run_captured(agent, &agent.shell, &args, &cwd, Some(&envs), timeout).await;
    drop(dir);
    match result {
        Ok(captured) => Ok(Json(response(captured.exit_code, captured.output))),
        Err(err) => in_band(err).map(|message| Json(response(-1, message))),
    }
}

fn response(exit_code: i32, result: String) -> CodeRunResponse {
    CodeRunResponse {
        exit_code,
        artifacts: CodeRunArtifacts {
            stdout: result.clone(),
            charts: Vec::new(),
        },
        result,
    }
}

/// The first of `names` that is an executable file in one of the `PATH` directories.
/// Earlier names win over earlier directories.
pub fn find_program(path_var: &str, names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|name| {
        path_var
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| PathBuf::from(dir).join(name))
            .find(|candidate| {
                std::fs::metadata(candidate)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    })
}
