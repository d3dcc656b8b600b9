//! Sustained create+delete throughput, then a check that the host holds nothing of the
//! sandboxes it went through.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::leaks::{self, LeakCheck};
use crate::stats::Summary;
use crate::{Bench, BenchError};

#[derive(Debug, Clone, Serialize)]
pub struct ChurnRow {
    pub workers: usize,
    pub seconds: f64,
    /// Sandboxes created and deleted.
    pub cycles: usize,
    pub per_second: f64,
    pub create: Option<Summary>,
    pub delete: Option<Summary>,
    pub leak_check: LeakCheck,
}

pub async fn run(
    bench: &Bench,
    duration: Duration,
    workers: usize,
) -> Result<ChurnRow, BenchError> {
    let mut clients = bench.clients(workers.max(1)).await?;
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let results = futures_util::future::join_all(clients.iter_mut().map(|client| async move {
        let mut ids = Vec::new();
        let mut creates = Vec::new();
        let mut deletes = Vec::new();
        while Instant::now() < deadline {
            let t = Instant::now();
            let sandbox = bench.create(client, true).await?;
            creates.push(t.elapsed());
            let t = Instant::now();
            bench.delete(client, &sandbox.id).await?;
            deletes.push(t.elapsed());
            ids.push(sandbox.id);
        }
        Ok::<_, BenchError>((ids, creates, deletes))
    }))
    .await;
    let seconds = t0.elapsed().as_secs_f64();
    let mut ids = HashSet::new();
    let (mut creates, mut deletes) = (Vec::new(), Vec::new());
    for result in results {
        let (i, c, d) = result?;
        ids.extend(i);
        creates.extend(c);
        deletes.extend(d);
    }
    let found = leaks::check(
        &ids,
        &bench.server.data_dir,
        &bench.cgroups,
        Duration::from_secs(10),
    )
    .await;
    Ok(ChurnRow {
        workers,
        seconds,
        cycles: ids.len(),
        per_second: ids.len() as f64 / seconds,
        create: Summary::of(&creates),
        delete: Summary::of(&deletes),
        leak_check: LeakCheck::new(ids.len(), &found),
    })
}
