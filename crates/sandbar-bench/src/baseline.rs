//! Baselines measured in the same run, so that ratios survive a noisy machine: a namespaced
//! `sh -c true` started (and torn down) by bubblewrap and by runc, at the same concurrency levels
//! as the Sandbar start phase. A missing tool skips its baseline with a message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::process::Command;

use crate::report::Report;
use crate::{BenchError, Sizes};

/// Where busybox-static may live (the runc bundle's whole root filesystem).
const BUSYBOX: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// Finds `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> BenchError {
    move |source| BenchError::Io { what, source }
}

/// Runs every baseline whose tool exists and records it in `report`; missing tools are noted in
/// `report.skipped`.
pub async fn run_all(work: &Path, sizes: &Sizes, report: &mut Report) -> Result<(), BenchError> {
    match which("bwrap") {
        None => report.skip("bwrap", "bwrap not found (Debian package bubblewrap)"),
        Some(bwrap) => {
            for &(concurrency, rounds) in &sizes.start_levels {
                eprintln!("bench: bwrap baseline, concurrency {concurrency}");
                let samples = measure("bwrap", concurrency, rounds, |_| {
                    let mut cmd = Command::new(&bwrap);
                    cmd.args([
                        "--unshare-all",
                        "--die-with-parent",
                        "--ro-bind",
                        "/usr",
                        "/usr",
                        "--symlink",
                        "usr/bin",
                        "/bin",
                        "--symlink",
                        "usr/lib",
                        "/lib",
                        "--symlink",
                        "usr/lib64",
                        "/lib64",
                        "--proc",
                        "/proc",
                        "--dev",
                        "/dev",
                        "/bin/sh",
                        "-c",
                        "true",
                    ]);
                    cmd
                })
                .await?;
                report.add_start("bwrap", concurrency, &samples);
            }
        }
    }
    let busybox = BUSYBOX.iter().map(Path::new).find(|p| p.is_file());
    match (which("runc"), busybox) {
        (None, _) => report.skip("runc", "runc not found (Debian package runc)"),
        (_, None) => report.skip(
            "runc",
            "busybox not found for the bundle's root filesystem (Debian package busybox-static)",
        ),
        (Some(runc), Some(busybox)) => {
            let bundle = work.join("runc-bundle");
            let state = work.join("runc-state");
            make_bundle(&runc, busybox, &bundle).await?;
            let mut n = 0usize;
            for &(concurrency, rounds) in &sizes.start_levels {
                eprintln!("bench: runc baseline, concurrency {concurrency}");
                let samples = measure("runc", concurrency, rounds, |_| {
                    n += 1;
                    let mut cmd = Command::new(&runc);
                    cmd.arg("--root")
                        .arg(&state)
                        .arg("run")
                        .arg("--bundle")
                        .arg(&bundle)
                        .arg(format!("sandbar-bench-{}-{n}", std::process::id()));
                    cmd
                })
                .await?;
                report.add_start("runc", concurrency, &samples);
            }
        }
    }
    Ok(())
}

/// A bundle whose root filesystem is busybox-static alone, running `sh -c true`, read-only.
async fn make_bundle(runc: &Path, busybox: &Path, bundle: &Path) -> Result<(), BenchError> {
    let bin = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&bin).map_err(io_err(format!("create {}", bin.display())))?;
    std::fs::copy(busybox, bin.join("busybox"))
        .map_err(io_err(format!("copy {}", busybox.display())))?;
    std::os::unix::fs::symlink("busybox", bin.join("sh"))
        .map_err(io_err(format!("link {}/sh", bin.display())))?;
    let out = Command::new(runc)
        .arg("spec")
        .current_dir(bundle)
        .output()
        .await
        .map_err(io_err("run `runc spec`".into()))?;
    if !out.status.success() {
        return Err(BenchError::Baseline {
            tool: "runc",
            detail: format!("runc spec: {}", String::from_utf8_lossy(&out.stderr)),
        });
    }
    let path = bundle.join("config.json");
    let text =
        std::fs::read_to_string(&path).map_err(io_err(format!("read {}", path.display())))?;
    let mut spec: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| BenchError::Json {
            path: path.clone(),
            source,
        })?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "true"]);
    spec["root"]["readonly"] = true.into();
    std::fs::write(&path, spec.to_string()).map_err(io_err(format!("write {}", path.display())))
}

/// `rounds` times, `concurrency` commands at once; each sample is spawn → successful exit.
async fn measure(
    tool: &'static str,
    concurrency: usize,
    rounds: usize,
    mut command: impl FnMut(usize) -> Command,
) -> Result<Vec<Duration>, BenchError> {
    let mut samples = Vec::with_capacity(concurrency * rounds);
    for _ in 0..rounds {
        let commands: Vec<Command> = (0..concurrency).map(&mut command).collect();
        let results = join_all(commands.into_iter().map(|mut cmd| async move {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let t0 = Instant::now();
            let out = cmd.output().await;
            (t0.elapsed(), out)
        }))
        .await;
        for (elapsed, out) in results {
            match out {
                Ok(out) if out.status.success() => samples.push(elapsed),
                Ok(out) => {
                    return Err(BenchError::Baseline {
                        tool,
                        detail: format!(
                            "exited with {}: {}",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    })
                }
                Err(e) => {
                    return Err(BenchError::Baseline {
                        tool,
                        detail: format!("cannot run: {e}"),
                    })
                }
            }
        }
    }
    Ok(samples)
}
