//! sandbar-server
