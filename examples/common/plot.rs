//! A training run's loss curve as a PNG.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

/// Registers the first TrueType font found in the usual places as "sans-serif"; false when
/// there is none (plotters cannot draw labels without one).
fn register_font() -> bool {
    for p in [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ] {
        if let Ok(bytes) = std::fs::read(p) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Plots `loss` (and `clean_loss` when present) of every line of a `log.jsonl` against `step`.
/// Returns false (and draws nothing) when no font is installed.
pub fn plot_log(log: &Path, png: &Path) -> Result<bool> {
    if !register_font() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(log)?;
    let mut loss = Vec::new();
    let mut clean = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let step = v["step"].as_f64().unwrap_or(0.0);
        if v.get("held_out_loss").is_some() {
            continue;
        }
        if let Some(l) = v["loss"].as_f64() {
            loss.push((step, l));
        }
        if let Some(l) = v["clean_loss"].as_f64() {
            clean.push((step, l));
        }
    }
    if loss.is_empty() {
        return Ok(false);
    }
    let max_step = loss.iter().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = loss
        .iter()
        .chain(&clean)
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let root = BitMapBackend::new(png, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(12)
        .caption("next-clean-token loss", ("sans-serif", 20))
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(0.0..max_step, (lo * 0.95)..(hi * 1.05))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()?;
    chart
        .draw_series(LineSeries::new(loss, &BLUE))?
        .label("all scored targets")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    if !clean.is_empty() {
        chart
            .draw_series(LineSeries::new(clean, &RED))?
            .label("targets of clean inputs")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(true)
}
