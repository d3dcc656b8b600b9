//! Runs the API with the in-memory `FakeRuntime` (no real sandboxes, no toolbox agent), for
//! client compatibility checks: `cargo run -p sandbar-server --example fake_server --features
//! testing -- 127.0.0.1:3999 /tmp/sandbar-fake`. With `SANDBAR_FAKE_AGENT_SOCKET=<path>`, every
//! sandbox's toolbox is proxied to the agent listening there.

use std::sync::Arc;

use sandbar_server::testing::FakeRuntime;
use sandbar_server::{serve, ServerConfig};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:3999".to_owned())
        .parse()
        .expect("listen address");
    let data_dir: std::path::PathBuf = args
        .next()
        .unwrap_or_else(|| "/tmp/sandbar-fake".to_owned())
        .into();
    let mut runtime = FakeRuntime::new(data_dir.join("sockets"));
    if let Some(socket) = std::env::var_os("SANDBAR_FAKE_AGENT_SOCKET") {
        runtime = runtime.with_shared_agent_socket(socket.into());
    }
    let runtime = Arc::new(runtime);
    if let Err(err) = serve(ServerConfig::new(listen, data_dir), runtime).await {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}
