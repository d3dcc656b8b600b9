//! The server under test: the same binary's `serve`, started as a child process on
//! `127.0.0.1:0` with a temporary data directory and a random API key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::{Client, READY_TIMEOUT};
use crate::BenchError;

/// How long the server may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub api_key: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts `<exe> serve`, waits until it answers `GET /api/sandbox`. Its stderr (logs) goes to
    /// `log`.
    pub async fn start(exe: &Path, data_dir: &Path, log: &Path) -> Result<Self, BenchError> {
        let api_key = format!("bench-{:032x}", rand::random::<u128>());
        let log_file = std::fs::File::create(log).map_err(|source| BenchError::Io {
            what: format!("create {}", log.display()),
            source,
        })?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .env("SANDBAR_API_KEY", &api_key)
            .env_remove("SANDBAR_LISTEN")
            .env_remove("SANDBAR_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::SpawnServer {
                exe: exe.to_path_buf(),
                source,
            })?;
        let pid = child.id().expect("a just-spawned child has a pid");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = loop {
            let line = tokio::time::timeout_at(deadline.into(), lines.next_line()).await;
            match line {
                Ok(Ok(Some(line))) => {
                    if let Some(addr) = line
                        .strip_prefix("listening on http://")
                        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                    {
                        break addr;
                    }
                }
                Ok(_) => {
                    let status = child
                        .wait()
                        .await
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    return Err(BenchError::ServerExited {
                        status,
                        log: log.to_path_buf(),
                    });
                }
                Err(_) => {
                    return Err(BenchError::ServerNotReady {
                        log: log.to_path_buf(),
                    })
                }
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let server = Self {
            child,
            pid,
            addr,
            api_key,
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
        };
        // Recovery and the default snapshot happen after the listening line: wait for an answer.
        loop {
            let attempt = async {
                let mut client = Client::connect(server.addr, &server.api_key).await?;
                client.ping().await
            };
            match attempt.await {
                Ok(()) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {
                    return Err(BenchError::ServerNotReady {
                        log: log.to_path_buf(),
                    })
                }
            }
        }
        Ok(server)
    }

    pub async fn client(&self) -> Result<Client, BenchError> {
        Client::connect(self.addr, &self.api_key)
            .await
            .map_err(|source| BenchError::Client {
                what: "connect to the server",
                source,
            })
    }

    /// SIGTERM, then SIGKILL if it has not exited within [`STOP_TIMEOUT`].
    pub async fn stop(mut self) -> Result<(), BenchError> {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(BenchError::ServerStop {
                    log: self.log.clone(),
                })
            }
        }
    }
}
