//! sandbar-agent
