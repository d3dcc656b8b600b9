//! Git endpoints (§5.4): not implemented yet. Every `/git/...` request gets a clear 501 in the
//! daemon envelope instead of a generic 404, so SDK callers see why.

use std::sync::Arc;

use axum::routing::any;
use axum::Router;

use crate::Agent;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new().route("/git/{*rest}", any(crate::system::not_offered))
}
