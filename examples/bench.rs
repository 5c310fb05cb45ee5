//! AR vs SJD vs SJD2 on the demo model, side by side in one run.
//!
//! Every configuration decodes the same held-out prompts with the same seeds. The families: `AR`
//! (base and fine-tuned model), `SJD` and `SJD2` as the papers run them (independent draft
//! redraws, window sweeps, SJD's draft initializations), `SJD+MC` and `SJD2+MC` with coupled draft
//! updates (the demo defaults), and `SJD2-variant`: one change each to the default SJD2 setting.
//! Two phases:
//!
//! 1. quality: `--quality-prompts` prompts in batches, once per configuration: caption
//!    faithfulness and the image-token NLL under the base model (means with 95 % confidence
//!    intervals), forward passes per image, tokens committed per pass (histogram);
//! 2. latency: `--prompts` prompts one at a time (batch 1, both CFG rows), `--reps` rounds, with
//!    the configurations interleaved prompt by prompt (the order rotates), so AR and every
//!    accelerated method share the machine's state; per run the wall time, the time spent inside
//!    the model's forward calls, and the process's peak resident memory (weights and burn's buffers included).
//!
//! Then the cost model: one forward pass over a window of `W` slots (after a prompt's prefill)
//! for `W` in 1..128. Writes `bench.md`, `bench.json`, PNG plots and a trajectory picture into
//! `--out`.
//!
//! ```text
//! cargo run --release --example bench                       # the docs/benchmarks.md run
//! cargo run --release --example bench -- --quick            # a smoke run (about 20 s)
//! cargo run --release --example bench -- --replot target/bench   # redraw the plots only
//! ```

mod common;
#[path = "common/timed.rs"]
mod timed;

use timed::Timed;

use std::cell::Cell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use sjd2::core::{DecodeCache, PromptRow, Role};
use sjd2::models::demo::{DemoConfig, DemoModel, DemoWeights};
use sjd2::models::vq::{ImageDecoder, Rgb8, save_png, tile, to_rgb8};
use sjd2::sampler::SlotKind;
use sjd2::{
    Acceptance, Control, DecoderConfig, Device, DraftInit, DraftUpdate, JacobiDenoiser,
    LevelConditioning, LevelPolicy, Mode, NoiseSchedule, Prompt, Sjd2Decoder, Window,
};
use sjd2_train::eval::{held_out, image_token_nll, score_image};
use sjd2_train::run::HELDOUT_SEED;
use sjd2_train::shapes::Sample;

#[derive(Parser, Debug)]
#[command(about = "Benchmark AR, SJD and SJD2 on the demo model, side by side")]
struct Args {
    /// Demo model directory.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo"))]
    model: PathBuf,
    /// Prompts for the quality columns (decoded once, in batches).
    #[arg(long, default_value_t = 100)]
    quality_prompts: usize,
    /// Prompts for the latency columns (decoded one at a time, every repetition).
    #[arg(long, default_value_t = 12)]
    prompts: usize,
    /// Latency repetitions.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Batch size of the quality phase.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Only these configurations (comma-separated names); AR on the base model always runs.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A few prompts, one repetition, a short cost model: checks that everything runs.
    #[arg(long)]
    quick: bool,
    /// Instead of the warm bench: the README's main command as separate processes of the
    /// `generate` example (build it first: `cargo build --release --example generate`),
    /// interleaved with `--mode ar` and fixed windows, `--prompts` prompts × `--reps` rounds.
    #[arg(long)]
    cold: bool,
    /// A TrueType font for the plots' labels (default: DejaVu Sans or Arial where installed).
    #[arg(long)]
    font: Option<PathBuf>,
    /// Only redraw the plots of a finished run from its `bench.json` in this directory (written
    /// back into it); decodes nothing.
    #[arg(long)]
    replot: Option<PathBuf>,
    #[command(flatten)]
    device: common::DeviceArgs,
    /// Output directory.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

/// One benchmarked configuration.
struct Config {
    name: String,
    /// "AR", "SJD" or "SJD2" (the plots' series).
    family: &'static str,
    tuned: bool,
    decoder: DecoderConfig,
}

fn configs(c: &DemoConfig) -> Vec<Config> {
    let mut out = Vec::new();
    let ar = sjd2::demo::decoder_config(c, Mode::Autoregressive);
    out.push(Config {
        name: "ar-base".into(),
        family: "AR",
        tuned: false,
        decoder: ar.clone(),
    });
    out.push(Config {
        name: "ar-finetuned".into(),
        family: "AR",
        tuned: true,
        decoder: ar,
    });
    // One configuration per window: `{prefix}-w{W}{suffix}`.
    let sweep = |out: &mut Vec<Config>,
                 (prefix, suffix): (&str, &str),
                 family: &'static str,
                 tuned: bool,
                 base: &DecoderConfig,
                 windows: &[usize]| {
        out.extend(windows.iter().map(|&w| Config {
            name: format!("{prefix}-w{w}{suffix}"),
            family,
            tuned,
            decoder: DecoderConfig {
                window_len: w.into(),
                ..base.clone()
            },
        }));
    };
    // The papers' algorithms: every pass redraws each draft independently.
    let ind = DraftUpdate::Independent;
    // The fixed windows the demo model was evaluated with (its default is adaptive: the
    // `-auto` rows below).
    let sjd_mc = DecoderConfig {
        window_len: Window::Fixed(sjd2::demo::SJD_WINDOW),
        ..sjd2::demo::decoder_config(c, Mode::Sjd)
    };
    let sjd = DecoderConfig {
        draft_update: ind,
        ..sjd_mc.clone()
    };
    sweep(
        &mut out,
        ("sjd", ""),
        "SJD",
        false,
        &sjd,
        &[4, 8, 16, 32, 64],
    );
    for (init, tag) in [
        (DraftInit::HorizontalRepeat, "horizontal"),
        (DraftInit::VerticalRepeat, "vertical"),
    ] {
        out.push(Config {
            name: format!("sjd-w16-{tag}"),
            family: "SJD-init",
            tuned: false,
            decoder: DecoderConfig {
                draft_init: init,
                ..sjd.clone()
            },
        });
    }
    let sjd2 = DecoderConfig {
        window_len: Window::Fixed(sjd2::demo::SJD2_WINDOW),
        ..sjd2::demo::decoder_config(c, Mode::Sjd2)
    };
    let k = sjd2.sjd2.denoising_steps;
    let suffix = format!("-k{k}");
    let sjd2_ind = DecoderConfig {
        draft_update: ind,
        ..sjd2.clone()
    };
    sweep(
        &mut out,
        ("sjd2", &suffix),
        "SJD2",
        true,
        &sjd2_ind,
        &[32, 64, 96],
    );
    // The demo defaults: coupled draft updates (MC-SJD).
    sweep(
        &mut out,
        ("sjd-mc", ""),
        "SJD+MC",
        false,
        &sjd_mc,
        &[4, 8, 16, 32, 64],
    );
    sweep(
        &mut out,
        ("sjd2-mc", &suffix),
        "SJD2+MC",
        true,
        &sjd2,
        &[16, 32, 64, 96],
    );
    // The demo defaults: adaptive windows of at most 16 (SJD) and 64 (SJD2) slots.
    out.push(Config {
        name: "sjd-mc-auto".into(),
        family: "SJD+MC auto",
        tuned: false,
        decoder: sjd2::demo::decoder_config(c, Mode::Sjd),
    });
    out.push(Config {
        name: format!("sjd2-mc-auto{suffix}"),
        family: "SJD2+MC auto",
        tuned: true,
        decoder: sjd2::demo::decoder_config(c, Mode::Sjd2),
    });
    let w = sjd2.window_len;
    let mut variant = |name: String, f: &dyn Fn(&mut DecoderConfig)| {
        let mut d = sjd2.clone();
        f(&mut d);
        out.push(Config {
            name,
            family: "SJD2-variant",
            tuned: true,
            decoder: d,
        });
    };
    for kk in [2 * k, 4 * k] {
        variant(format!("sjd2-mc-w{w}-k{kk}"), &|d| {
            d.sjd2.denoising_steps = kk
        });
    }
    variant(format!("sjd2-mc-w{w}-k{k}-linear"), &|d| {
        d.sjd2.schedule = NoiseSchedule::Linear;
    });
    variant(format!("sjd2-mc-w{w}-k{k}-no-level"), &|d| {
        d.sjd2.level_conditioning = LevelConditioning::None;
    });
    variant(format!("sjd2-mc-w{w}-k{k}-one-per-iter"), &|d| {
        d.sjd2.level_policy = LevelPolicy::OnePerIteration;
    });
    variant(format!("sjd2-mc-w{w}-k{k}-lossy"), &|d| {
        d.sjd2.acceptance = Acceptance::Lossy;
    });
    out.push(Config {
        name: format!("sjd2-mc-w{w}-k{k}-base-model"),
        family: "SJD2-variant",
        tuned: false,
        decoder: DecoderConfig {
            sjd2: sjd2::Sjd2Options {
                level_conditioning: LevelConditioning::None,
                ..sjd2.sjd2
            },
            ..sjd2
        },
    });
    out
}

/// Quality-phase results of one configuration.
#[derive(Default)]
struct Quality {
    scores: Vec<f64>,
    colour_cell: Vec<f64>,
    nll: Vec<f64>,
    passes: Vec<f64>,
    compression: Vec<f64>,
    /// `hist[n]`: passes (after the prefill) that committed `n` tokens.
    hist: Vec<usize>,
    /// Passes by the window they drafted.
    windows: Vec<usize>,
    images: Vec<Rgb8>,
}

/// Latency-phase results of one configuration, indexed `[rep][prompt]`.
#[derive(Default, Clone)]
struct Latency {
    wall: Vec<Vec<f64>>,
    model: Vec<Vec<f64>>,
    /// The process's peak resident memory during each run (KiB).
    peak_kib: Vec<u64>,
}

/// Mean and half-width of the 95 % normal confidence interval.
fn mean_ci(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (m, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, 1.96 * (var / n).sqrt())
}

fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// The resident-set high-water mark (KiB) from `/proc/self/status` (Linux).
fn peak_rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resets the high-water mark so the next reading is this run's peak (Linux ≥ 4.0).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

struct Models {
    base: DemoModel,
    tuned: DemoModel,
}

impl Models {
    fn pick(&self, tuned: bool) -> &DemoModel {
        if tuned { &self.tuned } else { &self.base }
    }
}

fn quality(
    cfg: &Config,
    models: &Models,
    samples: &[Sample],
    prompts: &[Prompt],
    batch: usize,
) -> Result<Quality> {
    let demo = models.pick(cfg.tuned);
    let c = &demo.config;
    let decoder = Sjd2Decoder::new(demo.model.clone(), cfg.decoder.clone())?;
    let mut q = Quality {
        hist: vec![0; cfg.decoder.window_len.max_len() + 2],
        ..Quality::default()
    };
    for (chunk_p, chunk_s) in prompts
        .chunks(batch.max(1))
        .zip(samples.chunks(batch.max(1)))
    {
        for ((g, s), p) in decoder
            .generate_batch(chunk_p)?
            .iter()
            .zip(chunk_s)
            .zip(chunk_p)
        {
            q.passes.push(g.stats.forward_passes as f64);
            // Every pass after the prefill, plain ones (window 0) included.
            for &w in g.stats.windows.iter().skip(1) {
                if w >= q.windows.len() {
                    q.windows.resize(w + 1, 0);
                }
                q.windows[w] += 1;
            }
            q.compression.push(g.stats.step_compression());
            for &n in g.stats.tokens_per_pass.iter().skip(1) {
                if n >= q.hist.len() {
                    q.hist.resize(n + 1, 0);
                }
                q.hist[n] += 1;
            }
            let codes = demo.model.image_codes(&g.tokens)?;
            let img = to_rgb8(demo.vq.decode(&codes, c.grid, c.grid)?)?;
            let score = score_image(&img.pixels, img.width, &s.objects);
            q.scores.push(100.0 * score.score);
            let asked = score.objects.len().max(1) as f64;
            q.colour_cell.push(
                100.0 * score.objects.iter().filter(|o| o.colour_and_cell).count() as f64 / asked,
            );
            let mut prefix = p.tokens.clone();
            prefix.push(c.boi());
            q.nll.push(image_token_nll(
                &models.base.model,
                &[(prefix, g.tokens.clone())],
                c.pad,
                1,
            )?);
            if q.images.len() < 8 {
                q.images.push(img);
            }
        }
    }
    Ok(q)
}

fn latency(
    cfgs: &[Config],
    models: &Models,
    prompts: &[Prompt],
    reps: usize,
) -> Result<Vec<Latency>> {
    let spent = Rc::new(Cell::new(Duration::ZERO));
    let decoders = cfgs
        .iter()
        .map(|cfg| {
            let model = Timed {
                inner: models.pick(cfg.tuned).model.clone(),
                spent: spent.clone(),
            };
            Ok(Sjd2Decoder::new(model, cfg.decoder.clone())?)
        })
        .collect::<Result<Vec<_>>>()?;
    // Warm-up: one generation per configuration (allocator, thread pool, caches).
    if let Some(p) = prompts.first() {
        for d in &decoders {
            d.generate(p)?;
        }
    }
    let mut out = vec![
        Latency {
            wall: vec![vec![f64::NAN; prompts.len()]; reps],
            model: vec![vec![f64::NAN; prompts.len()]; reps],
            peak_kib: Vec::new(),
        };
        cfgs.len()
    ];
    let can_reset = reset_peak();
    for rep in 0..reps {
        for (i, p) in prompts.iter().enumerate() {
            let n = decoders.len();
            for j in 0..n {
                let k = (j + i + rep) % n; // rotate the order prompt by prompt
                if can_reset {
                    reset_peak();
                }
                spent.set(Duration::ZERO);
                let t0 = Instant::now();
                decoders[k].generate(p)?;
                let wall = t0.elapsed().as_secs_f64();
                out[k].wall[rep][i] = wall;
                out[k].model[rep][i] = spent.get().as_secs_f64();
                if let (true, Some(hwm)) = (can_reset, peak_rss_kib()) {
                    out[k].peak_kib.push(hwm);
                }
            }
        }
        eprintln!("latency: round {}/{reps} done", rep + 1);
    }
    Ok(out)
}

/// Median wall time of one forward pass over `w` slots after a prompt's prefill (both CFG rows).
fn cost_model(
    demo: &DemoModel,
    prompt: &Prompt,
    windows: &[usize],
    reps: usize,
) -> Result<Vec<f64>> {
    let model = &demo.model;
    let rows = [
        PromptRow {
            prompt,
            role: Role::Conditional,
        },
        PromptRow {
            prompt,
            role: Role::Unconditional,
        },
    ];
    let max_w = windows.iter().copied().max().unwrap_or(1);
    let mut cache = model.new_cache(2, model.max_sequence_len())?;
    model.prefill(&mut cache, &rows)?;
    let lens: Vec<usize> = cache.lens().to_vec();
    if lens.iter().any(|&l| l + max_w > cache.capacity()) {
        bail!("window {max_w} does not fit after the prompt");
    }
    let device = model.device();
    let first = model.layout().image_token_range().start;
    let mut out = Vec::new();
    for &w in windows {
        let ids: Vec<i64> = (0..2 * w)
            .map(|i| i64::from(first) + (i % 97) as i64)
            .collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, w]), &device);
        let mut times = Vec::new();
        for r in 0..reps + 1 {
            let emb = model.embed_tokens(ids.clone())?;
            let t0 = Instant::now();
            let logits = model.forward(&mut cache, emb)?;
            let _ = logits.into_data();
            if r > 0 {
                times.push(t0.elapsed().as_secs_f64());
            }
            for (row, &l) in lens.iter().enumerate() {
                cache.rollback_to(row, l)?;
            }
        }
        out.push(quantile(&times, 0.5));
    }
    Ok(out)
}

fn upscale(img: &Rgb8, f: usize) -> Rgb8 {
    let (w, h) = (img.width * f, img.height * f);
    let mut pixels = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let src = ((y / f) * img.width + x / f) * 3;
            pixels[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&img.pixels[src..src + 3]);
        }
    }
    Rgb8 {
        width: w,
        height: h,
        pixels,
    }
}

/// One captured pass: the token (if any) at every generated position, and its state colour.
type Frame = (Vec<Option<u32>>, Vec<[u8; 3]>);

/// The SJD2 window at successive passes for one prompt: per captured pass, the picture decoded
/// from what the sequence holds (committed tokens, clean drafts, noisy slots' latest predictions)
/// above a map of the grid (committed: grey, clean draft: yellow, noisy: blue, darker with a
/// higher level, empty: black). The last column is the final image, then AR's image for the seed.
fn trajectory(
    demo: &DemoModel,
    base: &DemoModel,
    cfg: &DecoderConfig,
    prompt: &Prompt,
) -> Result<Rgb8> {
    let c = &demo.config;
    let layout = demo.model.layout().clone();
    let k_max = cfg.sjd2.denoising_steps.max(1);
    let decoder = Sjd2Decoder::new(demo.model.clone(), cfg.clone())?;
    let mut frames: Vec<Frame> = Vec::new();
    let mut pass = 0usize;
    let generation = decoder.generate_with(prompt, |e| {
        pass += 1;
        if pass % 8 == 2 && frames.len() < 10 {
            let mut ids = vec![None; layout.len()];
            let mut state = vec![[0u8; 3]; layout.len()];
            for (p, &t) in e.tokens.iter().enumerate() {
                ids[p] = Some(t);
                state[p] = [150, 150, 150];
            }
            for s in e.window {
                if s.position >= layout.len() {
                    continue;
                }
                match s.kind {
                    SlotKind::Forced(t) => ids[s.position] = Some(t),
                    SlotKind::Clean(t) => {
                        ids[s.position] = Some(t);
                        state[s.position] = [240, 200, 40];
                    }
                    SlotKind::Noisy { level, prediction } => {
                        ids[s.position] = prediction;
                        let shade = 255 - (180 * level / k_max).min(200) as u8;
                        state[s.position] = [30, 60, shade];
                    }
                }
            }
            frames.push((ids, state));
        }
        Control::Continue
    })?;
    let grid = c.grid;
    let size = c.image_size;
    let picture = |ids: &[Option<u32>]| -> Result<Rgb8> {
        let mut codes = vec![0u32; grid * grid];
        for (p, id) in ids.iter().enumerate() {
            if let (Some((r, col)), Some(t)) = (layout.grid_cell(p), id)
                && layout.image_token_range().contains(t)
            {
                codes[r * grid + col] = t - layout.image_token_range().start;
            }
        }
        Ok(to_rgb8(demo.vq.decode(&codes, grid, grid)?)?)
    };
    let map = |state: &[[u8; 3]]| -> Rgb8 {
        let cell = size / grid;
        let mut pixels = vec![0u8; size * size * 3];
        for (p, rgb) in state.iter().enumerate() {
            if let Some((r, col)) = layout.grid_cell(p) {
                for y in r * cell..(r + 1) * cell - 1 {
                    for x in col * cell..(col + 1) * cell - 1 {
                        pixels[(y * size + x) * 3..(y * size + x) * 3 + 3].copy_from_slice(rgb);
                    }
                }
            }
        }
        Rgb8 {
            width: size,
            height: size,
            pixels,
        }
    };
    let mut top = Vec::new();
    let mut bottom = Vec::new();
    for (ids, state) in &frames {
        top.push(picture(ids)?);
        bottom.push(map(state));
    }
    let final_ids: Vec<Option<u32>> = generation.tokens.iter().map(|&t| Some(t)).collect();
    top.push(picture(&final_ids)?);
    bottom.push(map(&vec![[150, 150, 150]; layout.len()]));
    let ar = Sjd2Decoder::new(
        base.model.clone(),
        DecoderConfig {
            mode: Mode::Autoregressive,
            window_len: sjd2::Window::Fixed(1),
            ..cfg.clone()
        },
    )?
    .generate(prompt)?;
    let ar_ids: Vec<Option<u32>> = ar.tokens.iter().map(|&t| Some(t)).collect();
    top.push(picture(&ar_ids)?);
    bottom.push(map(&vec![[0, 0, 0]; layout.len()]));
    Ok(upscale(&tile(&[top, bottom], 2, 255), 2))
}

mod plots {
    //! PNG plots with plotters (bitmap backend, labels drawn with `ab_glyph`).

    use std::path::Path;

    use anyhow::{Result, anyhow};
    use plotters::coord::types::RangedCoordf64;
    use plotters::prelude::*;

    type Series = (String, Vec<(f64, f64)>);

    const COLOURS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];

    fn e<E: std::fmt::Debug>(err: E) -> anyhow::Error {
        anyhow!("plot: {err:?}")
    }

    type Chart<'a> =
        ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

    /// The layout every plot shares: a white `size` canvas, title, axes with labels over
    /// `xs × ys`, the series `draw` adds, and their legend at `legend`.
    #[allow(clippy::too_many_arguments)]
    fn plot(
        path: &Path,
        size: (u32, u32),
        title: &str,
        (xs, ys): (std::ops::Range<f64>, std::ops::Range<f64>),
        (x, y): (&str, &str),
        legend: SeriesLabelPosition,
        draw: impl FnOnce(&mut Chart<'_>) -> Result<()>,
    ) -> Result<()> {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xs, ys)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(x)
            .y_desc(y)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .position(legend)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
        Ok(())
    }

    /// Line plot of several series.
    pub fn lines(path: &Path, title: &str, x: &str, y: &str, series: &[Series]) -> Result<()> {
        let pts = series.iter().flat_map(|s| s.1.iter());
        let (x0, x1, y1) = pts.fold((f64::MAX, f64::MIN, 0f64), |(a, b, c), p| {
            (a.min(p.0), b.max(p.0), c.max(p.1))
        });
        let ranges = (x0.min(0.0)..x1 * 1.05, 0.0..y1 * 1.15 + 1e-9);
        plot(
            path,
            (720, 480),
            title,
            ranges,
            (x, y),
            SeriesLabelPosition::UpperLeft,
            |chart| {
                for (i, (name, pts)) in series.iter().enumerate() {
                    let colour = COLOURS[i % COLOURS.len()];
                    chart
                        .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
                        .map_err(e)?
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                        .map_err(e)?;
                }
                Ok(())
            },
        )
    }

    /// Grouped bars: `series[i].1[n]` is the share (%) of passes that committed `n + 1` tokens.
    pub fn histogram(path: &Path, title: &str, series: &[(String, Vec<f64>)]) -> Result<()> {
        let bins = series.iter().map(|s| s.1.len()).max().unwrap_or(1);
        let top = series
            .iter()
            .flat_map(|s| s.1.iter().copied())
            .fold(0f64, f64::max);
        let ranges = (0.5..bins as f64 + 0.5, 0.0..top * 1.15 + 1e-9);
        let axes = ("tokens committed by one pass", "% of passes");
        plot(
            path,
            (720, 480),
            title,
            ranges,
            axes,
            SeriesLabelPosition::UpperRight,
            |chart| {
                let width = 0.8 / series.len().max(1) as f64;
                for (i, (name, shares)) in series.iter().enumerate() {
                    let colour = COLOURS[i % COLOURS.len()];
                    chart
                        .draw_series(shares.iter().enumerate().map(|(n, &v)| {
                            let x = (n + 1) as f64 - 0.4 + i as f64 * width;
                            Rectangle::new([(x, 0.0), (x + width, v)], colour.filled())
                        }))
                        .map_err(e)?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                        });
                }
                Ok(())
            },
        )
    }

    /// One labelled point per configuration with a vertical confidence interval.
    pub fn scatter(
        path: &Path,
        title: &str,
        x: &str,
        y: &str,
        points: &[(String, usize, f64, f64, f64)],
        groups: &[String],
    ) -> Result<()> {
        let x1 = points.iter().map(|p| p.2).fold(0f64, f64::max);
        let y1 = points
            .iter()
            .map(|p| p.3 + p.4.max(0.0))
            .fold(0f64, f64::max);
        let ranges = (0.0..x1 * 1.2 + 1e-9, 0.0..y1 * 1.15 + 1e-9);
        plot(
            path,
            (900, 600),
            title,
            ranges,
            (x, y),
            SeriesLabelPosition::UpperRight,
            |chart| {
                for (g, group) in groups.iter().enumerate() {
                    let colour = COLOURS[g % COLOURS.len()];
                    let mine: Vec<_> = points.iter().filter(|p| p.1 == g).collect();
                    chart
                        .draw_series(mine.iter().map(|p| {
                            let (lo, hi) = ((p.3 - p.4).max(0.0), p.3 + p.4);
                            ErrorBar::new_vertical(p.2, lo, p.3, hi, colour.filled(), 6)
                        }))
                        .map_err(e)?
                        .label(group.as_str())
                        .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
                    chart
                        .draw_series(mine.iter().map(|p| {
                            Text::new(p.0.clone(), (p.2, p.3), ("sans-serif", 11).into_font())
                        }))
                        .map_err(e)?;
                }
                Ok(())
            },
        )
    }

    /// Registers `bytes` as the "sans-serif" font.
    pub fn register_font(bytes: &'static [u8]) -> Result<()> {
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| anyhow!("the font file is not a TrueType/OpenType font"))
    }
}

fn load_font(arg: Option<&Path>) -> Option<PathBuf> {
    const CANDIDATES: [&str; 5] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/Library/Fonts/Arial.ttf",
        "C:\\Windows\\Fonts\\arial.ttf",
    ];
    arg.map(Path::to_path_buf)
        .or_else(|| CANDIDATES.iter().map(PathBuf::from).find(|p| p.exists()))
}

/// `--replot DIR`: the plots of `DIR/bench.json`, drawn again into `DIR`.
fn replot(dir: &Path, font: Option<&Path>) -> Result<()> {
    let path = dir.join("bench.json");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let rows = json["configs"]
        .as_array()
        .with_context(|| format!("{}: no \"configs\" array", path.display()))?;
    let cost_model: Vec<(usize, f64)> = json["cost_model"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| Some((c["window"].as_u64()? as usize, c["seconds"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let font = load_font(font).context("no font found (pass --font FILE.ttf)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(&font)?.into_boxed_slice());
    plots::register_font(bytes)?;
    draw_plots(dir, rows, &cost_model)?;
    eprintln!("redrew the plots in {}", dir.display());
    Ok(())
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if let Some(dir) = &args.replot {
        return replot(dir, args.font.as_deref());
    }
    if args.quick {
        args.quality_prompts = args.quality_prompts.min(6);
        args.prompts = args.prompts.min(2);
        args.reps = 1;
        args.batch = args.batch.min(3);
    }
    if args.reps == 0 || args.prompts == 0 || args.quality_prompts == 0 {
        bail!("--reps, --prompts and --quality-prompts must be at least 1");
    }
    if args.cold {
        return cold(&args);
    }
    let device = args.device.device()?;
    let models = Models {
        base: DemoModel::load(&args.model, DemoWeights::Base, &device)
            .with_context(|| format!("loading {}", args.model.display()))?,
        tuned: DemoModel::load(&args.model, DemoWeights::Sjd2, &device)?,
    };
    let c = models.base.config.clone();
    let mut cfgs = configs(&c);
    if !args.only.is_empty() {
        cfgs.retain(|k| k.name == "ar-base" || args.only.contains(&k.name));
    }
    if args.quick {
        // AR, and the SJD and SJD2 defaults with both draft updates.
        cfgs.retain(|k| {
            k.name == "ar-base"
                || k.decoder.window_len.is_auto()
                || at_default_window(k.family, k.decoder.window_len.max_len())
        });
    }
    std::fs::create_dir_all(&args.out)?;

    // Phase 1: quality.
    let (samples, prompts) = held_out(
        &models.base.tokenizer,
        args.quality_prompts.max(args.prompts),
        c.image_size,
    )?;
    let mut qual = Vec::new();
    for cfg in &cfgs {
        let t0 = Instant::now();
        let q = quality(
            cfg,
            &models,
            &samples[..args.quality_prompts],
            &prompts[..args.quality_prompts],
            args.batch,
        )?;
        eprintln!(
            "quality {:<28} faithfulness {:5.1}  passes {:6.1}  ({:.0} s)",
            cfg.name,
            mean_ci(&q.scores).0,
            mean_ci(&q.passes).0,
            t0.elapsed().as_secs_f64()
        );
        qual.push(q);
    }

    // Phase 2: latency, interleaved.
    let lat = latency(&cfgs, &models, &prompts[..args.prompts], args.reps)?;

    // Phase 3: cost model.
    let windows: Vec<usize> = if args.quick {
        vec![1, 16, 33]
    } else {
        vec![1, 2, 4, 8, 16, 17, 24, 33, 48, 65, 97, 128]
    };
    let costs = cost_model(
        &models.base,
        &prompts[0],
        &windows,
        if args.quick { 3 } else { 15 },
    )?;

    // Report.
    let ar = 0usize; // ar-base is always first
    let ar_passes = mean_ci(&qual[ar].passes).0;
    let speedups = |k: usize| -> Vec<f64> {
        let mut v = Vec::new();
        for rep in 0..args.reps {
            for i in 0..args.prompts {
                v.push(lat[ar].wall[rep][i] / lat[k].wall[rep][i]);
            }
        }
        v
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Demo model `{}`; quality on {} held-out prompts (seed {HELDOUT_SEED}, batches of {}), latency on {} prompts × {} interleaved repetitions at batch 1 (both CFG rows); temperature 1, guidance {}, {} threads.\n",
        args.model.display(),
        args.quality_prompts,
        args.batch,
        args.prompts,
        args.reps,
        c.guidance_scale,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    md.push_str("| configuration | passes / image | vs AR | tokens / pass | latency s (median) | speed-up median [IQR] | loop overhead | peak RSS MiB | faithfulness ± 95% CI | colour + cell % | NLL under base ± CI |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut json_rows = Vec::new();
    for (k, cfg) in cfgs.iter().enumerate() {
        let q = &qual[k];
        let l = &lat[k];
        let (passes, _) = mean_ci(&q.passes);
        let (comp, _) = mean_ci(&q.compression);
        let (faith, faith_ci) = mean_ci(&q.scores);
        let (cc, _) = mean_ci(&q.colour_cell);
        let (nll, nll_ci) = mean_ci(&q.nll);
        let walls: Vec<f64> = l.wall.iter().flatten().copied().collect();
        let models_t: Vec<f64> = l.model.iter().flatten().copied().collect();
        let overhead = 1.0 - models_t.iter().sum::<f64>() / walls.iter().sum::<f64>();
        let sp = speedups(k);
        let peak = l.peak_kib.iter().copied().max().map(|v| v as f64 / 1024.0);
        let _ = writeln!(
            md,
            "| {} | {:.1} | {:.2}× | {:.2} | {:.3} | {:.2}× [{:.2}–{:.2}] | {:.1}% | {} | {:.1} ± {:.1} | {:.1} | {:.3} ± {:.3} |",
            cfg.name,
            passes,
            ar_passes / passes,
            comp,
            quantile(&walls, 0.5),
            quantile(&sp, 0.5),
            quantile(&sp, 0.25),
            quantile(&sp, 0.75),
            100.0 * overhead,
            peak.map_or("n/a".to_string(), |p| format!("{p:.1}")),
            faith,
            faith_ci,
            cc,
            nll,
            nll_ci
        );
        let per_rep: Vec<f64> = (0..args.reps)
            .map(|rep| {
                let v: Vec<f64> = (0..args.prompts)
                    .map(|i| lat[ar].wall[rep][i] / l.wall[rep][i])
                    .collect();
                quantile(&v, 0.5)
            })
            .collect();
        json_rows.push(serde_json::json!({
            "name": cfg.name, "family": cfg.family, "tuned": cfg.tuned,
            "window": cfg.decoder.window_len.max_len(), "window_policy": cfg.decoder.window_len.to_string(), "denoising_steps": cfg.decoder.sjd2.denoising_steps,
            "passes": passes, "step_compression": comp, "faithfulness": faith,
            "faithfulness_ci95": faith_ci, "colour_cell": cc, "nll_base": nll, "nll_ci95": nll_ci,
            "latency_median_s": quantile(&walls, 0.5), "speedup_median": quantile(&sp, 0.5),
            "speedup_p25": quantile(&sp, 0.25), "speedup_p75": quantile(&sp, 0.75),
            "speedup_median_per_rep": per_rep, "loop_overhead": overhead,
            "peak_mib": peak, "tokens_per_pass_histogram": q.hist, "window_histogram": q.windows,
        }));
    }
    md.push_str("\nSpeed-up median per repetition (each over the latency prompts; shows run-to-run noise):\n\n| configuration | ");
    md.push_str(
        &(1..=args.reps)
            .map(|r| format!("rep {r}"))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    md.push_str(" |\n|---|");
    md.push_str(&"---|".repeat(args.reps));
    md.push('\n');
    for row in &json_rows {
        let reps: Vec<String> = row["speedup_median_per_rep"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| format!("{:.2}×", v.as_f64().unwrap_or(f64::NAN)))
                    .collect()
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} |",
            row["name"].as_str().unwrap_or(""),
            reps.join(" | ")
        );
    }
    let t1 = costs[0];
    md.push_str("\nCost model: one forward pass over `W` slots after the prompt (both CFG rows), median of repetitions.\n\n| W | ms | t(W)/t(1) |\n|---|---|---|\n");
    for (w, t) in windows.iter().zip(&costs) {
        let _ = writeln!(md, "| {w} | {:.2} | {:.2} |", 1e3 * t, t / t1);
    }
    md.push_str("\nLatency ceiling implied by the cost model (step compression × t(1)/t(W+1), the window's slots plus the token before it; sampling, verification and the loop not counted):\n\n| configuration | step compression | t(W+1)/t(1) | ceiling |\n|---|---|---|---|\n");
    let interp = |w: usize| -> f64 {
        let w = w as f64;
        let pts: Vec<(f64, f64)> = windows
            .iter()
            .map(|&x| x as f64)
            .zip(costs.iter().copied())
            .collect();
        for p in pts.windows(2) {
            if w >= p[0].0 && w <= p[1].0 {
                return p[0].1 + (p[1].1 - p[0].1) * (w - p[0].0) / (p[1].0 - p[0].0);
            }
        }
        pts.last().map_or(f64::NAN, |p| p.1 * w / p.0)
    };
    for (k, cfg) in cfgs.iter().enumerate() {
        if cfg.decoder.window_len.is_auto() {
            continue; // no single window
        }
        let comp = mean_ci(&qual[k].compression).0;
        let w = if cfg.decoder.mode == Mode::Autoregressive {
            1
        } else {
            cfg.decoder.window_len.max_len() + 1
        };
        let ratio = interp(w) / t1;
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.2}× |",
            cfg.name,
            comp,
            ratio,
            comp / ratio
        );
    }
    md.push_str("\nWindows the adaptive policy chose (quality phase; passes after the prefill by drafted window, 0 = a plain pass; shortened near the image's end included):\n\n| configuration | passes | window: share of passes |\n|---|---|---|\n");
    for (k, cfg) in cfgs.iter().enumerate() {
        if !cfg.decoder.window_len.is_auto() {
            continue;
        }
        let h = &qual[k].windows;
        let total = h.iter().sum::<usize>().max(1);
        let shares: Vec<String> = h
            .iter()
            .enumerate()
            .filter(|&(_, &n)| 100 * n >= total) // 1 % or more
            .map(|(w, &n)| format!("{w}: {:.0}%", 100.0 * n as f64 / total as f64))
            .collect();
        let _ = writeln!(md, "| {} | {total} | {} |", cfg.name, shares.join(", "));
    }
    std::fs::write(args.out.join("bench.md"), &md)?;
    std::fs::write(
        args.out.join("bench.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "configs": json_rows,
            "cost_model": windows.iter().zip(&costs).map(|(w, t)| serde_json::json!({"window": w, "seconds": t})).collect::<Vec<_>>(),
        }))?,
    )?;

    // Pictures.
    let contact: Vec<Vec<Rgb8>> = qual.iter().map(|q| q.images.clone()).collect();
    save_png(args.out.join("contact.png"), &tile(&contact, 2, 255))?;
    let mut names = String::new();
    for cfg in &cfgs {
        let _ = writeln!(names, "{}", cfg.name);
    }
    std::fs::write(args.out.join("contact-rows.txt"), names)?;
    let sjd2_default = DecoderConfig {
        window_len: Window::Fixed(sjd2::demo::SJD2_WINDOW),
        ..sjd2::demo::decoder_config(&c, Mode::Sjd2)
    };
    let traj = trajectory(&models.tuned, &models.base, &sjd2_default, &prompts[0])?;
    save_png(args.out.join("trajectory.png"), &traj)?;

    match load_font(args.font.as_deref()) {
        Some(path) => {
            let bytes: &'static [u8] = Box::leak(std::fs::read(&path)?.into_boxed_slice());
            plots::register_font(bytes)?;
            let cost_model: Vec<(usize, f64)> =
                windows.iter().copied().zip(costs.iter().copied()).collect();
            draw_plots(&args.out, &json_rows, &cost_model)?;
        }
        None => eprintln!("no font found (pass --font FILE.ttf): plots skipped"),
    }
    print!("{md}");
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Whether a configuration of an SJD / SJD2 window sweep runs at the demo's default window.
/// `--cold`: what a user sees. Each run is a fresh process of the `generate` example with the
/// README's main command (the demo model's defaults) or a variant of it, interleaved prompt by
/// prompt in a rotating order; the wall time of the whole process (start-up, loading, decoding,
/// the image decoder, the PNG) is timed. The adaptive window's cost curve goes to a file in the
/// output folder, removed first, so the first default run includes its measurement.
fn cold(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?.with_file_name("generate");
    if !exe.exists() {
        bail!(
            "{} not found: build it first (cargo build --release --example generate)",
            exe.display()
        );
    }
    std::fs::create_dir_all(&args.out)?;
    let costs = args.out.join("cold-window-costs.json");
    let _ = std::fs::remove_file(&costs);
    let tokenizer = DemoModel::load(&args.model, DemoWeights::Base, &Device::flex())?.tokenizer;
    let (samples, _) = held_out(&tokenizer, args.prompts, 32)?;
    let costs_arg = costs.display().to_string();
    let variants: Vec<(&str, Vec<&str>)> = vec![
        ("default (README)", vec!["--window-costs", &costs_arg]),
        ("ar", vec!["--mode", "ar"]),
        ("sjd-w4", vec!["--mode", "sjd", "--window", "4"]),
        ("sjd-w16", vec!["--mode", "sjd", "--window", "16"]),
        ("sjd2-w8", vec!["--window", "8"]),
        ("sjd2-w16", vec!["--window", "16"]),
        ("sjd2-w32", vec!["--window", "32"]),
        ("sjd2-w64", vec!["--window", "64"]),
    ];
    let n = variants.len();
    // Seconds by configuration, then by (round, prompt).
    let mut wall = vec![vec![f64::NAN; args.prompts * args.reps]; n];
    let png = args.out.join("cold.png");
    for rep in 0..args.reps {
        for (i, s) in samples.iter().enumerate() {
            for j in 0..n {
                let k = (j + i + rep) % n;
                let t0 = Instant::now();
                let status = std::process::Command::new(&exe)
                    .args(["--model", &args.model.display().to_string()])
                    .args(["--prompt", &s.caption, "--seed", &i.to_string()])
                    .args(["--out", &png.display().to_string()])
                    .args([
                        "--device",
                        &args.device.device,
                        "--dtype",
                        &args.device.dtype,
                    ])
                    .args(&variants[k].1)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()?;
                if !status.success() {
                    bail!("{} {:?} failed: {status}", exe.display(), variants[k].1);
                }
                wall[k][rep * args.prompts + i] = t0.elapsed().as_secs_f64();
            }
        }
        eprintln!("cold: round {}/{} done", rep + 1, args.reps);
    }
    let ar = 1;
    let mut md = format!(
        "Cold runs: one process per image (`generate` with the demo model, the README's main command or a variant), {} prompts × {} rounds interleaved, {} threads. Speed-up = AR's time over the configuration's on the same prompt and round.\n\n| configuration | median s [IQR] | speed-up over AR, median [IQR] |\n|---|---|---|\n",
        args.prompts,
        args.reps,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut rows = Vec::new();
    for (k, (name, extra)) in variants.iter().enumerate() {
        let t = &wall[k];
        let sp: Vec<f64> = t.iter().zip(&wall[ar]).map(|(m, a)| a / m).collect();
        let _ = writeln!(
            md,
            "| {name} | {:.3} [{:.3}–{:.3}] | {:.2}× [{:.2}–{:.2}] |",
            quantile(t, 0.5),
            quantile(t, 0.25),
            quantile(t, 0.75),
            quantile(&sp, 0.5),
            quantile(&sp, 0.25),
            quantile(&sp, 0.75),
        );
        rows.push(serde_json::json!({"name": name, "args": extra, "seconds": wall[k]}));
    }
    let first = wall[0][0];
    let _ = writeln!(
        md,
        "\nThe first default run measured the cost curve: {first:.3} s (its later runs read `{}`).",
        costs.display()
    );
    print!("{md}");
    std::fs::write(args.out.join("cold.md"), &md)?;
    std::fs::write(
        args.out.join("cold.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "rows": rows }))?,
    )?;
    Ok(())
}

fn at_default_window(family: &str, window: usize) -> bool {
    match family {
        "SJD" | "SJD+MC" => window == sjd2::demo::SJD_WINDOW,
        "SJD2" | "SJD2+MC" => window == sjd2::demo::SJD2_WINDOW,
        _ => false,
    }
}

/// Draws the four plots from `bench.json`'s rows and cost model alone, so that `--replot` can
/// redraw them from a saved run.
fn draw_plots(out: &Path, rows: &[serde_json::Value], cost_model: &[(usize, f64)]) -> Result<()> {
    let get = |k: usize, f: &str| rows[k][f].as_f64().unwrap_or(f64::NAN);
    let family = |k: usize| rows[k]["family"].as_str().unwrap_or("");
    let window = |k: usize| rows[k]["window"].as_u64().unwrap_or(0) as usize;
    let name = |k: usize| rows[k]["name"].as_str().unwrap_or("").to_string();
    let mut series = Vec::new();
    for fam in ["SJD", "SJD2", "SJD+MC", "SJD2+MC"] {
        let idx: Vec<usize> = (0..rows.len()).filter(|&k| family(k) == fam).collect();
        if idx.is_empty() {
            continue;
        }
        series.push((
            format!("{fam}: fewer passes"),
            idx.iter()
                .map(|&k| (window(k) as f64, get(0, "passes") / get(k, "passes")))
                .collect(),
        ));
        series.push((
            format!("{fam}: latency speed-up"),
            idx.iter()
                .map(|&k| (window(k) as f64, get(k, "speedup_median")))
                .collect(),
        ));
    }
    plots::lines(
        &out.join("speedup-vs-window.png"),
        "Speed-up over AR against window length (demo model, CPU)",
        "window length W",
        "× vs AR",
        &series,
    )?;
    // Passes committing 1..=TAIL-1 tokens, then one bar for TAIL or more.
    const TAIL: usize = 13;
    let hist: Vec<(String, Vec<f64>)> = (0..rows.len())
        .filter(|&k| at_default_window(family(k), window(k)))
        .map(|k| {
            let h: Vec<f64> = rows[k]["tokens_per_pass_histogram"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect())
                .unwrap_or_default();
            let total = h.iter().sum::<f64>().max(1.0);
            let mut shares: Vec<f64> = (1..TAIL)
                .map(|n| 100.0 * h.get(n).copied().unwrap_or(0.0) / total)
                .collect();
            shares.push(100.0 * h.iter().skip(TAIL).sum::<f64>() / total);
            (name(k), shares)
        })
        .collect();
    plots::histogram(
        &out.join("acceptance-histogram.png"),
        &format!("Tokens committed per pass (bar {TAIL}: {TAIL} or more)"),
        &hist,
    )?;
    let mut groups: Vec<String> = Vec::new();
    let points: Vec<(String, usize, f64, f64, f64)> = (0..rows.len())
        .map(|k| {
            let g = match groups.iter().position(|x| x == family(k)) {
                Some(g) => g,
                None => {
                    groups.push(family(k).to_string());
                    groups.len() - 1
                }
            };
            (
                name(k),
                g,
                get(k, "speedup_median"),
                get(k, "faithfulness"),
                get(k, "faithfulness_ci95"),
            )
        })
        .collect();
    plots::scatter(
        &out.join("quality-vs-speedup.png"),
        "Caption faithfulness against latency speed-up",
        "latency speed-up over AR (median)",
        "faithfulness (95% CI)",
        &points,
        &groups,
    )?;
    let t1 = cost_model.first().map_or(1.0, |c| c.1);
    plots::lines(
        &out.join("cost-model.png"),
        "Cost of one forward pass against window length",
        "slots W",
        "t(W) / t(1)",
        &[(
            "demo model, CPU".to_string(),
            cost_model
                .iter()
                .map(|&(w, t)| (w as f64, t / t1))
                .collect(),
        )],
    )?;
    Ok(())
}
