//! PTY (stub).
use crate::Agent;
use axum::Router;
use std::sync::Arc;
#[derive(Debug, Default)]
pub struct Ptys {}
pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
}
