//! sandbar-jail
