//! `sandbar`: one static binary that is the server (`serve`), its administration commands
//! (`keys`, `snapshot`), the single-threaded jail helper (`jail`, internal) and the in-sandbox
//! agent (`agent`, internal). The internal roles are chosen before any thread or async runtime
//! exists, so the jail helper can fork safely.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod admin;

#[derive(Parser)]
#[command(
    name = "sandbar",
    version,
    about = "Self-hosted sandboxes for AI agents, compatible with the Daytona SDKs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (needs root: sandboxes use namespaces, cgroups and mounts).
    Serve(admin::ServeArgs),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: admin::KeysCommand,
    },
    /// Manage snapshots (root filesystem images).
    Snapshot {
        #[command(subcommand)]
        command: admin::SnapshotCommand,
    },
    /// Measure start latency, exec round trip, transfers, density and churn against a private
    /// server (needs root); see docs/BENCHMARKS.md.
    Bench(admin::BenchArgs),
    /// Internal: start one sandbox from a JSON configuration on stdin.
    #[command(hide = true)]
    Jail,
    /// Internal: the in-sandbox agent (PID 1 of a sandbox).
    #[command(hide = true)]
    Agent,
}

/// Default data directory: `./sandbar-data` under the working directory.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("sandbar-data")
}

fn main() -> ExitCode {
    // Internal roles first, without parsing anything else: they must stay single-threaded
    // (jail) and small (agent).
    match std::env::args().nth(1).as_deref() {
        Some("jail") => return jail(),
        Some("agent") => return sandbar_agent::run_from_env(),
        _ => {}
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => admin::serve(args),
        Command::Keys { command } => admin::keys(command),
        Command::Snapshot { command } => admin::snapshot(command),
        Command::Bench(args) => admin::bench(args),
        Command::Jail | Command::Agent => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbar: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn jail() -> ExitCode {
    match sandbar_jail::run_from_stdin() {
        Ok(result) => {
            println!("{}", serde_json::to_string(&result).expect("serialisable"));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", sandbar_jail::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}
