//! Sandbar's domain: sandboxes, their states and the rules that move them between states,
//! volumes, snapshots, organizations and API keys.
//!
//! Owns: the records the store persists and the server serves, and the lifecycle rules (which
//! transition an action may take from which state). Must not depend on the store, the runtime,
//! tokio or HTTP: everything here is plain data and pure functions.

pub mod lifecycle;
pub mod organization;
pub mod sandbox;
pub mod snapshot;
pub mod state;
pub mod time;
pub mod volume;

pub use lifecycle::{Action, LifecycleError, Plan};
pub use organization::{ApiKey, Organization};
pub use sandbox::{LaunchedProcess, Sandbox, SandboxError, SandboxResources, VolumeMount};
pub use snapshot::{Snapshot, DEFAULT_SNAPSHOT};
pub use state::{DesiredState, SandboxState, StateParseError};
pub use volume::{Volume, VolumeError, VolumeState};
