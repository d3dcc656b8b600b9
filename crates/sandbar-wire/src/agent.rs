//! How the runtime starts the agent inside a sandbox.
//!
//! The agent is the sandbox's PID 1, started as `sandbar agent` with:
//! - file descriptor [`LISTEN_FD`]: a listening unix stream socket (created on the host side by
//!   the jail helper) on which it serves the toolbox API as HTTP/1.1;
//! - the environment variable [`CONFIG_ENV`]: an [`AgentConfig`] as JSON (removed from the
//!   environment before any command runs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// File descriptor number of the inherited listening socket.
pub const LISTEN_FD: i32 = 3;
/// Environment variable carrying the JSON [`AgentConfig`].
pub const CONFIG_ENV: &str = "SANDBAR_AGENT_CONFIG";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentConfig {
    /// Default user for commands and file operations, resolved through the sandbox's own
    /// `/etc/passwd` (uid, gid, home, shell). Its home directory is the work directory.
    pub user: String,
    /// Environment given to every command (the sandbox's `env`).
    pub env: BTreeMap<String, String>,
    /// True when the agent is PID 1 of the sandbox and must reap orphans and forward signals.
    pub init: bool,
}

/// Path prefix of the agent's internal TCP tunnel: `GET {TUNNEL_PATH}/{port}` with
/// `Connection: upgrade` and `Upgrade: {TUNNEL_PROTOCOL}` connects to `127.0.0.1:{port}` inside
/// the sandbox's network namespace and, after `101 Switching Protocols`, splices bytes both ways.
/// Used by the server's preview proxy; the public toolbox proxy refuses this path.
pub const TUNNEL_PATH: &str = "/sandbar/tunnel";
/// `Upgrade` protocol token of the tunnel.
pub const TUNNEL_PROTOCOL: &str = "sandbar-tunnel";
