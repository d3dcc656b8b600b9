//! sandbar-store
