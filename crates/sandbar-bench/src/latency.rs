//! Start latency (create → first exec result) at a given concurrency, and the exec round trip
//! through the toolbox API.

use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::stats::Summary;
use crate::{Bench, BenchError};

/// `rounds` times: `concurrency` clients each create a sandbox (as `daytona.create()` does) and
/// run `true` in it, all at once; each sample is one client's time from sending the create to
/// receiving the exec result. Sandboxes are deleted between rounds (not timed). No warm pool.
/// `network_block_all: false` is the SDK's default (the sandbox gets slirp4netns).
pub async fn create_to_first_exec(
    bench: &Bench,
    concurrency: usize,
    rounds: usize,
    network_block_all: bool,
) -> Result<Vec<Duration>, BenchError> {
    let mut clients = bench.clients(concurrency).await?;
    let mut samples = Vec::with_capacity(concurrency * rounds);
    for _ in 0..rounds {
        let results = join_all(clients.iter_mut().map(|client| async {
            let t0 = Instant::now();
            let sandbox = bench.create(client, network_block_all).await?;
            let result = bench.exec_ok(client, &sandbox, "true").await;
            let elapsed = t0.elapsed();
            Ok::<_, BenchError>((sandbox.id, result.map(|_| elapsed)))
        }))
        .await;
        let mut created = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok((id, Ok(elapsed))) => {
                    created.push(id);
                    samples.push(elapsed);
                }
                Ok((id, Err(e))) => {
                    created.push(id);
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        bench.delete_all(created, concurrency.min(8)).await?;
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    Ok(samples)
}

/// `rounds` sequential `true` calls in one running sandbox, after a few warm-up calls.
pub async fn exec_round_trip(bench: &Bench, rounds: usize) -> Result<Option<Summary>, BenchError> {
    let mut client = bench.client().await?;
    let sandbox = bench.create(&mut client, true).await?;
    let mut samples = Vec::with_capacity(rounds);
    let result = async {
        for _ in 0..5 {
            bench.exec_ok(&mut client, &sandbox, "true").await?;
        }
        for _ in 0..rounds {
            let t0 = Instant::now();
            bench.exec_ok(&mut client, &sandbox, "true").await?;
            samples.push(t0.elapsed());
        }
        Ok::<_, BenchError>(())
    }
    .await;
    bench.delete(&mut client, &sandbox.id).await?;
    result?;
    Ok(Summary::of(&samples))
}
