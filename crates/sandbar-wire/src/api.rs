//! API (`/api/...`) request and response bodies.
