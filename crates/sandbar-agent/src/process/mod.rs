//! Process endpoints (§5.1): one-shot execution, code runs, sessions and PTYs.

pub mod code_run;
pub mod execute;
pub mod pty;
pub mod session;
