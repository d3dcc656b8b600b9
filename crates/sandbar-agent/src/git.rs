//! Git (stub).
use crate::Agent;
use axum::Router;
use std::sync::Arc;
pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
}
