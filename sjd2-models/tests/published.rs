//! The published checkpoints' real layouts at real width: random weights with each release's
//! configuration (layers cut to one), file names, sharding, key names and dtypes, written by
//! `scripts/real_layout_fixtures.py` (6.6 GB by default, not in the repository). Each test
//! loads a release through `Pipeline::load` as a user would, checks the configuration mapping
//! against the published values (`tests/fixtures/published/expected.json`) and draws a small
//! image to a PNG.
//!
//! ```sh
//! /work/pyenv/bin/python scripts/real_layout_fixtures.py /tmp/real-layout   # add --families all for Emu3 (+17.5 GB)
//! SJD2_REAL_LAYOUT=/tmp/real-layout cargo test --release -p sjd2-models --test published -- --ignored
//! ```
//!
//! A release whose directory is missing is skipped with a message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use serde_json::Value;
use sjd2_core::{Device, JacobiDenoiser};
use sjd2_models::llama::{BackboneConfig, RopeKind};
use sjd2_models::pipeline::{Family, Files, Pipeline};
use sjd2_sampler::{DecoderConfig, DraftUpdate, Sjd2Decoder, Window};

/// The generated release `repo`, or `None` (with a message) when it was not generated.
fn release(repo: &str) -> Option<PathBuf> {
    let root = std::env::var_os("SJD2_REAL_LAYOUT")
        .map(PathBuf::from)
        .expect("set SJD2_REAL_LAYOUT to the output of scripts/real_layout_fixtures.py");
    let dir = root.join(repo);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} was not generated", dir.display());
        None
    }
}

fn expected(repo: &str) -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/published/expected.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["repos"][repo].clone()
}

fn n(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

/// The backbone's sizes against the release's (`llm` of expected.json), one layer kept.
fn check_llm(c: &BackboneConfig, llm: &Value) {
    assert_eq!(c.layers, n(&llm["num_layers"]["fixture"]));
    assert_eq!(
        (c.hidden, c.heads, c.kv_heads, c.head_dim, c.intermediate),
        (
            n(&llm["hidden_size"]),
            n(&llm["num_attention_heads"]),
            n(&llm["num_key_value_heads"]),
            n(&llm["head_dim"]),
            n(&llm["intermediate_size"]),
        )
    );
    assert_eq!(c.rms_eps, llm["rms_norm_eps"].as_f64().unwrap());
    assert_eq!(c.vocab, n(&llm["vocab_size"]));
    assert_eq!(c.max_positions, n(&llm["max_position_embeddings"]));
    let RopeKind::Sequence { theta } = c.rope else {
        panic!("{:?}", c.rope)
    };
    assert_eq!(theta, llm["rope_theta"].as_f64().unwrap());
}

/// Decodes `prompt` with SJD and writes the image; returns its size.
fn draw(p: Pipeline, prompt: &sjd2_core::Prompt, name: &str) -> (u32, u32) {
    let (rows, cols) = (p.model.layout().rows(), p.model.layout().cols());
    let cfg = DecoderConfig {
        window_len: Window::Fixed(4),
        draft_update: DraftUpdate::Coupled,
        guidance_scale: p.defaults.guidance,
        seed: 1,
        ..DecoderConfig::sjd()
    };
    let decoder = Sjd2Decoder::new(p.model, cfg).unwrap();
    let g = decoder.generate(prompt).unwrap();
    let codes = decoder.model().image_codes(&g.tokens).unwrap();
    assert_eq!(codes.len(), rows * cols);
    let image = sjd2_models::vq::to_rgb8(p.decoder.decode(&codes, rows, cols).unwrap()).unwrap();
    let png = std::env::temp_dir().join(format!("sjd2-published-{name}.png"));
    sjd2_models::vq::save_png(&png, &image).unwrap();
    let back = image::open(&png).unwrap();
    std::fs::remove_file(png).unwrap();
    (back.width(), back.height())
}

#[test]
#[ignore = "needs SJD2_REAL_LAYOUT (scripts/real_layout_fixtures.py)"]
fn lumina_mgpt_7b_768() {
    let repo = "Alpha-VLLM/Lumina-mGPT-7B-768";
    let (Some(dir), Some(anole)) = (release(repo), release("GAIR/Anole-7b-v0.1")) else {
        return;
    };
    let e = expected(repo);
    // Lumina's repositories carry no VQGAN: Chameleon's `vqgan.ckpt` comes with `--vq`.
    let files = Files::new(&dir)
        .with_vq(anole.join("tokenizer/vqgan.ckpt"))
        .with_size(64);
    let p = Pipeline::load(Family::LuminaMgpt, &files, &Device::flex()).unwrap();
    check_llm(p.model.backbone().config(), &e["llm"]);
    let t = &e["tokens"];
    let layout = p.model.layout();
    let range = layout.image_token_range();
    assert_eq!(
        (range.start as usize, range.len()),
        (n(&t["first_image_token"]), n(&t["image_token_count"]))
    );
    let grid = layout.rows() * (layout.cols() + 1);
    let ends: Vec<Option<u32>> = (grid..layout.len())
        .map(|p| layout.forced_token(p))
        .collect();
    let id = |name: &str| Some(n(&t[name]) as u32);
    assert_eq!(ends, [id("<eoss>"), id("<reserved08706>")]);
    assert_eq!(layout.forced_token(layout.cols()), id("<reserved08799>"));
    assert_eq!((layout.rows(), layout.cols()), (4, 4));
    let prompt = p.prompts.text("a red circle").unwrap();
    assert_eq!(draw(p, &prompt, "lumina"), (64, 64));
    // At the release's own size the image fits its 4 096 positions.
    let files = Files::new(&dir).with_vq(anole.join("tokenizer/vqgan.ckpt"));
    let p = Pipeline::load(Family::LuminaMgpt, &files, &Device::flex()).unwrap();
    let grid = &e["image"]["grid"];
    assert_eq!(
        (p.model.layout().rows(), p.model.layout().cols()),
        (n(&grid[0]), n(&grid[1]))
    );
    assert_eq!(p.model.max_sequence_len(), 4096);
    // Lumina-mGPT-7B-1024's image (64 rows of 65 tokens and the end tokens) is longer than
    // 4 096 positions: the RoPE tables are extended, as transformers computes them.
    let p = Pipeline::load(Family::LuminaMgpt, &files.with_size(1024), &Device::flex()).unwrap();
    assert_eq!(p.model.layout().len(), 64 * 65 + 2);
    assert!(p.model.max_sequence_len() > 64 * 65 + 2 + 100);
}

#[test]
#[ignore = "needs SJD2_REAL_LAYOUT (scripts/real_layout_fixtures.py)"]
fn anole_7b_release_layout() {
    let repo = "GAIR/Anole-7b-v0.1";
    let Some(dir) = release(repo) else { return };
    let e = expected(repo);
    // As downloaded: models/7b (bf16 consolidated.pth, params.json), tokenizer/ beside it.
    let p = Pipeline::load(
        Family::Anole,
        &Files::new(dir.join("models/7b")),
        &Device::flex(),
    )
    .unwrap();
    check_llm(p.model.backbone().config(), &e["llm"]);
    let grid = &e["image"]["grid"];
    assert_eq!(
        (p.model.layout().rows(), p.model.layout().cols()),
        (n(&grid[0]), n(&grid[1]))
    );
    // The VQGAN (`tokenizer/vqgan.ckpt`, found by the pipeline) is sized from its tensors.
    assert_eq!(p.decoder.downsample(), n(&e["vq"]["downsample"]));
    let prompt = p.prompts.text("a red circle").unwrap();
    assert_eq!(draw(p, &prompt, "anole"), (512, 512));
}

/// Janus-Pro's original layout (`pytorch_model*.bin`, `language_config` listing only a few
/// fields: the 7B's width comes from LlamaConfig's defaults).
fn janus_pro(repo: &str) {
    let Some(dir) = release(repo) else { return };
    let e = expected(repo);
    let p = Pipeline::load(
        Family::JanusPro,
        &Files::new(&dir).with_size(64),
        &Device::flex(),
    )
    .unwrap();
    check_llm(p.model.backbone().config(), &e["llm"]);
    assert_eq!((p.model.layout().rows(), p.model.layout().cols()), (4, 4));
    assert_eq!(p.decoder.downsample(), n(&e["image"]["downsample"]));
    let prompt = p.prompts.text("a red circle").unwrap();
    assert_eq!(draw(p, &prompt, "janus"), (64, 64));
}

#[test]
#[ignore = "needs SJD2_REAL_LAYOUT (scripts/real_layout_fixtures.py)"]
fn janus_pro_1b() {
    janus_pro("deepseek-ai/Janus-Pro-1B");
}

#[test]
#[ignore = "needs SJD2_REAL_LAYOUT with --families heavy (scripts/real_layout_fixtures.py)"]
fn janus_pro_7b() {
    janus_pro("deepseek-ai/Janus-Pro-7B");
}

#[test]
#[ignore = "needs SJD2_REAL_LAYOUT (scripts/real_layout_fixtures.py)"]
fn llamagen_xl_c2i() {
    let repo = "FoundationVision/LlamaGen";
    let Some(dir) = release(repo) else { return };
    let e = expected(repo);
    let files = Files::new(dir.join("c2i_XL_384.pt"))
        .with_vq(dir.join("vq_ds16_c2i.pt"))
        .with_size(64);
    let p = Pipeline::load(Family::LlamagenC2i, &files, &Device::flex()).unwrap();
    let c = p.model.backbone().config();
    let g = &e["gpt"];
    assert_eq!(c.layers, n(&g["num_layers"]["fixture"]));
    assert_eq!(
        (c.hidden, c.heads, c.head_dim, c.intermediate),
        (
            n(&g["dim"]),
            n(&g["n_head"]),
            n(&g["head_dim"]),
            n(&g["ffn_hidden"])
        )
    );
    assert_eq!(
        p.model.layout().image_token_range().len(),
        n(&g["vocab_size"])
    );
    let prompt = p.prompts.class(207).unwrap();
    assert_eq!(draw(p, &prompt, "llamagen"), (64, 64));
}

#[test]
#[ignore = "needs SJD2_REAL_LAYOUT with --families heavy (scripts/real_layout_fixtures.py)"]
fn emu3_gen_original_and_hf() {
    let Some(vq) = release("BAAI/Emu3-VisionTokenizer") else {
        return;
    };
    for repo in ["BAAI/Emu3-Gen", "BAAI/Emu3-Gen-hf"] {
        let Some(dir) = release(repo) else { continue };
        let e = expected(repo);
        let mut files = Files::new(&dir).with_size(64);
        if repo == "BAAI/Emu3-Gen" {
            files = files.with_vq(&vq);
        }
        let p = Pipeline::load(Family::Emu3, &files, &Device::flex()).unwrap();
        check_llm(p.model.backbone().config(), &e["llm"]);
        let t = &e["tokens"];
        let range = p.model.layout().image_token_range();
        assert_eq!(
            (range.start as usize, range.len()),
            (
                n(&t["first_visual_token <|visual token 000000|>"]),
                n(&t["visual_token_count"])
            )
        );
        let prompt = p.prompts.text("a red circle").unwrap();
        assert_eq!(draw(p, &prompt, "emu3"), (64, 64));
    }
}

#[test]
#[ignore = "needs SJD2_REAL_LAYOUT (scripts/real_layout_fixtures.py)"]
fn llamagen_xl_t2i_with_flan_t5_xl() {
    let (Some(dir), Some(t5)) = (
        release("FoundationVision/LlamaGen"),
        release("google/flan-t5-xl"),
    ) else {
        return;
    };
    if !dir.join("t2i_XL_stage2_512.pt").is_file() {
        eprintln!("skipped: regenerate the LlamaGen fixtures (t2i_XL_stage2_512.pt)");
        return;
    }
    let files = Files::new(dir.join("t2i_XL_stage2_512.pt"))
        .with_vq(dir.join("vq_ds16_t2i.pt"))
        .with_t5(&t5)
        .with_size(64);
    let p = Pipeline::load(Family::LlamagenT2i, &files, &Device::flex()).unwrap();
    let e = expected("FoundationVision/LlamaGen");
    let c = p.model.backbone().config();
    assert_eq!(
        (c.hidden, c.heads),
        (n(&e["gpt"]["dim"]), n(&e["gpt"]["n_head"]))
    );
    // The caption is cleaned as LlamaGen's t5.py cleans it before FLAN-T5-XL encodes it.
    let prompt = p.prompts.text("A Red Circle, 1024x768").unwrap();
    assert_eq!(draw(p, &prompt, "llamagen-t2i"), (64, 64));
}
