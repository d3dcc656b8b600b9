//! Bulk upload and download throughput through the toolbox API, with the peak memory of the
//! server (which proxies the bodies) and of the sandbox's agent (which writes and reads them).

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::RngCore;
use serde::Serialize;

use crate::procfs::{self, PeakSampler};
use crate::{client_err, Bench, BenchError};

/// How often RSS is sampled during a transfer.
const SAMPLE_EVERY: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Serialize)]
pub struct TransferRow {
    /// `upload` or `download`.
    pub direction: &'static str,
    pub bytes: u64,
    pub repetitions: usize,
    /// Median over the repetitions; MB = 10^6 bytes.
    pub mb_per_s: f64,
    pub best_mb_per_s: f64,
    pub median_seconds: f64,
    /// Server RSS before the transfers of this row, bytes.
    pub server_rss_before: Option<u64>,
    /// Largest server peak RSS (VmHWM, reset before each transfer, and 5 ms samples), bytes.
    pub server_rss_peak: Option<u64>,
    /// `server_rss_peak - server_rss_before`, bytes.
    pub server_growth: Option<u64>,
    /// Whether `/proc/<pid>/clear_refs` accepted the peak reset.
    pub peak_reset: bool,
    /// The agent's (sandbox PID 1) peak RSS during the transfers, bytes.
    pub agent_rss_peak: Option<u64>,
}

/// Uploads then downloads a file of `size` bytes `reps` times in one sandbox.
pub async fn run(bench: &Bench, size: u64, reps: usize) -> Result<Vec<TransferRow>, BenchError> {
    let mut client = bench.client().await?;
    let sandbox = bench.create(&mut client, true).await?;
    let result = async {
        let home = bench.exec_ok(&mut client, &sandbox, "pwd").await?;
        let remote = format!("{}/bench-{size}.bin", home.trim().trim_end_matches('/'));
        let agent = bench.init_pid(&sandbox.id);
        let mut chunk = vec![0u8; (size.min(1 << 20)) as usize];
        rand::thread_rng().fill_bytes(&mut chunk);
        let chunk = Bytes::from(chunk);
        let server = bench.server.pid;

        let mut rows = Vec::new();
        for direction in ["upload", "download"] {
            let before = procfs::rss(server);
            let mut times = Vec::with_capacity(reps);
            let mut peak = 0u64;
            let mut agent_peak = 0u64;
            let mut reset = true;
            for _ in 0..reps {
                reset &= procfs::reset_peak(server);
                let server_sampler = PeakSampler::start(server, SAMPLE_EVERY);
                let agent_sampler = agent.map(|pid| {
                    procfs::reset_peak(pid);
                    PeakSampler::start(pid, SAMPLE_EVERY)
                });
                let t0 = Instant::now();
                let outcome = if direction == "upload" {
                    client
                        .upload(&sandbox, &remote, size, chunk.clone())
                        .await
                        .map_err(client_err("upload a file"))
                } else {
                    match client.download(&sandbox, &remote).await {
                        Ok(got) if got < size => Err(BenchError::Exec {
                            sandbox: sandbox.id.clone(),
                            command: format!("bulk-download {remote}"),
                            exit_code: -1,
                            output: format!("{got} bytes for a {size}-byte file"),
                        }),
                        Ok(_) => Ok(()),
                        Err(e) => Err(client_err("download a file")(e)),
                    }
                };
                times.push(t0.elapsed());
                peak = peak.max(server_sampler.stop());
                if let Some(s) = agent_sampler {
                    agent_peak = agent_peak.max(s.stop());
                }
                outcome?;
            }
            times.sort();
            let median = times[times.len() / 2].as_secs_f64();
            let best = times[0].as_secs_f64();
            rows.push(TransferRow {
                direction,
                bytes: size,
                repetitions: reps,
                mb_per_s: size as f64 / median / 1e6,
                best_mb_per_s: size as f64 / best / 1e6,
                median_seconds: median,
                server_rss_before: before,
                server_rss_peak: (peak > 0).then_some(peak),
                server_growth: before.map(|b| peak.saturating_sub(b)),
                peak_reset: reset,
                agent_rss_peak: agent.map(|_| agent_peak),
            });
        }
        bench
            .exec_ok(&mut client, &sandbox, &format!("rm -f {remote}"))
            .await?;
        Ok(rows)
    }
    .await;
    bench.delete(&mut client, &sandbox.id).await?;
    result
}
