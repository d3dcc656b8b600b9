//! sandbar-core
