//! `latency.png`: the distribution (CDF) of start latency for Sandbar and the baselines at every
//! concurrency level, log-scale milliseconds across, percent of starts up. Labels are drawn with
//! [`crate::glyphs`], never with a font library.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::glyphs;
use crate::report::Report;
use crate::BenchError;

const SIZE: (u32, u32) = (1100, 650);
const LEFT: i32 = 70;
const TOP: i32 = 50;
const RIGHT: i32 = 260;
const BOTTOM: i32 = 60;

/// One hue per system, lighter with each concurrency level.
fn color(system: &str, level: usize) -> RGBColor {
    let light = [0u8, 90, 160, 200][level.min(3)];
    let mix = |base: u8| base + ((255 - base) as u16 * light as u16 / 255) as u8;
    match system {
        "sandbar" => RGBColor(mix(10), mix(50), mix(190)),
        "sandbar-nonet" => RGBColor(mix(120), mix(40), mix(170)),
        "bwrap" => RGBColor(mix(10), mix(130), mix(10)),
        _ => RGBColor(mix(190), mix(20), mix(20)),
    }
}

fn text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    scale: i32,
    label: &str,
    color: &RGBColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    for (px, py) in glyphs::pixels(label) {
        let (x0, y0) = (x + px * scale, y + py * scale);
        area.draw(&Rectangle::new(
            [(x0, y0), (x0 + scale - 1, y0 + scale - 1)],
            color.filled(),
        ))?;
    }
    Ok(())
}

pub fn draw(report: &Report, path: &Path) -> Result<(), BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Chart {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw_on(report, &root).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

fn draw_on<DB: DrawingBackend>(
    report: &Report,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let rows: Vec<_> = report
        .start
        .iter()
        .filter(|r| !r.samples_ms.is_empty())
        .collect();
    let all = rows.iter().flat_map(|r| r.samples_ms.iter().copied());
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (1.0, 100.0) };
    // Whole decades, so the grid lines land on 1, 10, 100 ms.
    let x_lo = 10f64.powf(lo.max(0.01).log10().floor());
    let x_hi = 10f64.powf(hi.max(x_lo * 10.0).log10().ceil());

    let mut chart = ChartBuilder::on(root)
        .margin_left(LEFT)
        .margin_top(TOP)
        .margin_right(RIGHT)
        .margin_bottom(BOTTOM)
        .build_cartesian_2d((x_lo..x_hi).log_scale(), 0f64..100f64)?;

    let grid = RGBColor(225, 225, 225);
    let ink = RGBColor(40, 40, 40);
    let mut decade = x_lo;
    while decade <= x_hi * 1.0001 {
        for step in 1..10 {
            let x = decade * f64::from(step);
            if x > x_hi * 1.0001 {
                break;
            }
            let style = if step == 1 {
                ink.mix(0.5)
            } else {
                grid.mix(1.0)
            };
            chart.draw_series(LineSeries::new([(x, 0.0), (x, 100.0)], style))?;
        }
        let (px, py) = chart.backend_coord(&(decade, 0.0));
        let label = format_ms(decade);
        text(root, (px - glyphs::width(&label), py + 8), 2, &label, &ink)?;
        decade *= 10.0;
    }
    for p in [0.0, 50.0, 90.0, 99.0] {
        chart.draw_series(LineSeries::new([(x_lo, p), (x_hi, p)], ink.mix(0.35)))?;
        let (px, py) = chart.backend_coord(&(x_lo, p));
        let label = format!("P{p:.0}");
        text(
            root,
            (px - 10 - glyphs::width(&label) * 2, py - 7),
            2,
            &label,
            &ink,
        )?;
    }

    for row in &rows {
        let level = report
            .start
            .iter()
            .filter(|r| r.system == row.system)
            .position(|r| r.concurrency == row.concurrency)
            .unwrap_or(0);
        let n = row.samples_ms.len() as f64;
        let points = row
            .samples_ms
            .iter()
            .enumerate()
            .flat_map(|(i, &v)| [(v, 100.0 * i as f64 / n), (v, 100.0 * (i + 1) as f64 / n)]);
        chart.draw_series(LineSeries::new(
            points,
            color(row.system, level).stroke_width(2),
        ))?;
    }

    let title = if report.quick {
        "START LATENCY CDF (QUICK RUN)"
    } else {
        "START LATENCY CDF: CREATE -> FIRST EXEC"
    };
    text(root, (LEFT, 14), 3, title, &ink)?;
    let (_, bottom) = chart.backend_coord(&(x_lo, 0.0));
    text(
        root,
        (LEFT, bottom + 34),
        2,
        "MILLISECONDS (LOG SCALE)",
        &ink,
    )?;
    let legend_x = SIZE.0 as i32 - RIGHT + 20;
    for (i, row) in rows.iter().enumerate() {
        let level = report
            .start
            .iter()
            .filter(|r| r.system == row.system)
            .position(|r| r.concurrency == row.concurrency)
            .unwrap_or(0);
        let y = TOP + 10 + i as i32 * 26;
        let c = color(row.system, level);
        root.draw(&Rectangle::new(
            [(legend_x, y + 4), (legend_x + 24, y + 8)],
            c.filled(),
        ))?;
        let label = format!("{} C{}", row.system, row.concurrency);
        text(root, (legend_x + 32, y), 2, &label, &ink)?;
    }
    Ok(())
}

fn format_ms(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}
