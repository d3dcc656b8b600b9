//! Wire types: the JSON shapes of Sandbar's HTTP API and of the toolbox (in-sandbox agent) API,
//! exactly as the official Daytona SDKs expect them (`shared/daytona-api.md`), plus the start-up
//! configuration the runtime hands to the agent.
//!
//! Owns: serde types and their field names. Must not depend on any other Sandbar crate, on
//! tokio, or on HTTP frameworks, so the agent and the server share it cheaply.

pub mod agent;
pub mod api;
pub mod toolbox;
