//! Native Linux backend.
