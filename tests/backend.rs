//! Backend checks: cached vs uncached logits, greedy tokens equal to the CPU run, and fixture
//! parity, for the toy model, the fixtures and the shipped demo model, on the device named by `SJD2_TEST_DEVICE` (default `cpu`). `scripts/wgpu-check.sh`
//! runs them on wgpu (Mesa's lavapipe here, an NVIDIA GPU through `scripts/gpu-check.sh`);
//! burn's fusion + autotune has produced wrong cached-decode results on wgpu/Vulkan upstream
//! (tracel-ai/burn#5257), hence the cached-vs-uncached test on every backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sjd2::core::error::tensor_to_vec;
use sjd2::core::ids_tensor;
use sjd2::core::testing::{ToyConfig, ToyModel};
use sjd2::core::{DecodeCache, JacobiDenoiser, Prompt, PromptRow, Role, parse_device};
use sjd2::models::LlamaT2I;
use sjd2::models::chameleon::{Chameleon, ChameleonImage};
use sjd2::models::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use sjd2::models::weights::Checkpoint;
use sjd2::{DecoderConfig, Device, DraftInit, Sampling, Sjd2Decoder};

const TOL: f32 = 1e-3;

fn device() -> Device {
    let spec = std::env::var("SJD2_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    parse_device(&spec).expect("SJD2_TEST_DEVICE names a device this build supports")
}

fn toy(device: &Device) -> ToyModel {
    let cfg = ToyConfig {
        image_vocab: 16,
        text_vocab: 4,
        hidden: 32,
        heads: 4,
        rows: 4,
        cols: 4,
        end_of_image: true,
        logit_scale: 3.0,
        seed: 21,
        ..ToyConfig::default()
    };
    ToyModel::new(cfg, device).unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cached_vs_uncached_logits() {
    let d = device();
    let m = toy(&d);
    let v = m.config().vocab();
    let seq = [8u32, 9, 3, 7, 7, 1, 12, 0, 5];
    let full = m.full_pass(&seq).unwrap();
    let p = Prompt::new(seq[..2].to_vec());
    let mut cache = m.new_cache(1, 16).unwrap();
    let _ = m
        .prefill(
            &mut cache,
            &[PromptRow {
                prompt: &p,
                role: Role::Conditional,
            }],
        )
        .unwrap();
    // A window with two wrong drafts, rolled back, then the truth re-fed.
    let w = m
        .embed_tokens(ids_tensor(&[3, 7, 15, 15], [1, 4], &d))
        .unwrap();
    let _ = m.forward(&mut cache, w).unwrap();
    cache.rollback_to(0, 4).unwrap();
    let w = m.embed_tokens(ids_tensor(&seq[4..], [1, 5], &d)).unwrap();
    let got = tensor_to_vec(m.forward(&mut cache, w).unwrap(), "logits").unwrap();
    let e = max_abs(&got, &full[4 * v..]);
    eprintln!("cached vs uncached: {e:.2e}");
    assert!(e < TOL, "cached vs uncached logits differ by {e}");
}

#[test]
fn greedy_tokens_and_logits_match_the_cpu() {
    let d = device();
    let cpu = Device::flex();
    let (m, mc) = (toy(&d), toy(&cpu));
    let seq = [8u32, 9, 3, 7, 1];
    let e = max_abs(&m.full_pass(&seq).unwrap(), &mc.full_pass(&seq).unwrap());
    eprintln!("device vs cpu logits: {e:.2e}");
    assert!(e < TOL, "logits differ from the CPU by {e}");
    let p = Prompt::new(vec![9]);
    for cfg in [
        DecoderConfig::autoregressive(),
        DecoderConfig {
            window_len: sjd2::Window::Fixed(6),
            draft_init: DraftInit::HorizontalRepeat,
            ..DecoderConfig::sjd()
        },
        DecoderConfig {
            window_len: sjd2::Window::Fixed(6),
            ..DecoderConfig::sjd2()
        },
    ] {
        let cfg = DecoderConfig {
            sampling: Sampling::Greedy,
            guidance_scale: 2.0,
            ..cfg
        };
        let a = Sjd2Decoder::new(m.clone(), cfg.clone())
            .unwrap()
            .generate(&p)
            .unwrap();
        let b = Sjd2Decoder::new(mc.clone(), cfg.clone())
            .unwrap()
            .generate(&p)
            .unwrap();
        assert_eq!(
            a.tokens, b.tokens,
            "{:?}: tokens differ from the CPU",
            cfg.mode
        );
    }
}

fn fixtures() -> PathBuf {
    std::env::var_os("SJD2_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("sjd2-models/tests/fixtures/reference-models")
        })
}

fn reference(case: &str, name: &str) -> Vec<f32> {
    Checkpoint::open(fixtures().join(case).join("reference.safetensors"))
        .unwrap()
        .read_f32(name)
        .unwrap()
        .1
}

fn ids(case: &str, name: &str) -> Vec<u32> {
    let r = Checkpoint::open(fixtures().join(case).join("reference.safetensors")).unwrap();
    r.read_i64(name)
        .unwrap()
        .1
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

fn logits_of(m: &LlamaT2I, seq: &[u32], d: &Device) -> Vec<f32> {
    let mut cache = m.new_cache(1, seq.len()).unwrap();
    tensor_to_vec(
        m.forward_tokens(&mut cache, ids_tensor(seq, [1, seq.len()], d))
            .unwrap(),
        "logits",
    )
    .unwrap()
}

#[test]
fn fixture_models_match_their_references() {
    let d = device();
    let image = ChameleonImage {
        rows: 2,
        cols: 3,
        prefix: vec![37, 52, 53],
        row_end: Some(51),
        end_tokens: vec![36],
        unconditional: sjd2::models::Unconditional::PrefixOnly,
    };
    let (m, _) = Chameleon::load(fixtures().join("chameleon_swin/hf"), |_| Ok(image), &d).unwrap();
    let e = max_abs(
        &logits_of(&m, &ids("chameleon_swin", "input_ids"), &d),
        &reference("chameleon_swin", "logits_raw"),
    );
    eprintln!("chameleon_swin logits: {e:.2e}");
    assert!(e < TOL, "chameleon_swin logits differ by {e}");
    let cfg = LlamaGenConfig::tiny(LlamaGenTask::ClassToImage { num_classes: 10 });
    let lg = LlamaGen::load(fixtures().join("llamagen_c2i/weights.safetensors"), cfg, &d).unwrap();
    let p = Prompt::new(ids("llamagen_c2i", "class_label"));
    let mut cache = lg.new_cache(1, 17).unwrap();
    let first = tensor_to_vec(
        lg.prefill(
            &mut cache,
            &[PromptRow {
                prompt: &p,
                role: Role::Conditional,
            }],
        )
        .unwrap(),
        "logits",
    )
    .unwrap();
    let toks = ids("llamagen_c2i", "image_tokens");
    let rest = tensor_to_vec(
        lg.forward(
            &mut cache,
            lg.embed_tokens(ids_tensor(&toks[..15], [1, 15], &d))
                .unwrap(),
        )
        .unwrap(),
        "logits",
    )
    .unwrap();
    let got: Vec<f32> = first.into_iter().chain(rest).collect();
    let e = max_abs(&got, &reference("llamagen_c2i", "logits_cond"));
    eprintln!("llamagen_c2i logits: {e:.2e}");
    assert!(e < TOL, "llamagen_c2i logits differ by {e}");
}

/// The shipped demo model on the device: full-pass logits equal to the CPU's, cached decoding
/// (a window of wrong drafts, rolled back, then the truth) equal to the full pass, and greedy
/// AR / SJD / SJD2 (two image rows, both CFG rows) giving the CPU's tokens.
#[test]
fn demo_model_matches_the_cpu() {
    use sjd2::Mode;
    use sjd2::models::demo::{DemoModel, DemoWeights};
    use sjd2::models::prompt::Template;

    let d = device();
    let cpu = Device::flex();
    // SJD2_DEMO_DIR: where a test binary carried to another machine finds the model.
    let dir = std::env::var_os("SJD2_DEMO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo"));
    let m = DemoModel::load(&dir, DemoWeights::Sjd2, &d).unwrap();
    let mc = DemoModel::load(&dir, DemoWeights::Sjd2, &cpu).unwrap();
    let prompt = m
        .tokenizer
        .encode("a big green star in the center", &Template::Chameleon)
        .unwrap()
        .with_seed(11);
    let c = &m.config;
    // The prompt as the model sees it, then <boi> and 20 image tokens with a row end.
    let mut seq = prompt.tokens.clone();
    seq.push(c.boi());
    let start = seq.len();
    for i in 0..20u32 {
        seq.push(if i == 16 {
            c.eol()
        } else {
            c.image_start() + (i * 37) % 512
        });
    }
    let full = logits_of(&m.model, &seq, &d);
    let e = max_abs(&full, &logits_of(&mc.model, &seq, &cpu));
    eprintln!("demo model, device vs cpu logits: {e:.2e}");
    assert!(e < TOL, "demo model logits differ from the CPU by {e}");

    let v = m.model.vocab_size();
    let mut cache = m.model.new_cache(1, seq.len() + 8).unwrap();
    let _ = m
        .model
        .forward_tokens(&mut cache, ids_tensor(&seq[..start], [1, start], &d))
        .unwrap();
    let wrong = [c.image_start() + 5; 6];
    let w = m
        .model
        .embed_tokens(ids_tensor(&wrong, [1, 6], &d))
        .unwrap();
    let _ = m.model.forward(&mut cache, w).unwrap();
    cache.rollback_to(0, start).unwrap();
    let rest = &seq[start..];
    let w = m
        .model
        .embed_tokens(ids_tensor(rest, [1, rest.len()], &d))
        .unwrap();
    let got = tensor_to_vec(m.model.forward(&mut cache, w).unwrap(), "logits").unwrap();
    let e = max_abs(&got, &full[start * v..]);
    eprintln!("demo model, cached vs uncached: {e:.2e}");
    assert!(
        e < TOL,
        "demo model cached vs uncached logits differ by {e}"
    );

    for mode in [Mode::Autoregressive, Mode::Sjd, Mode::Sjd2] {
        let cfg = DecoderConfig {
            sampling: Sampling::Greedy,
            max_new_tokens: Some(2 * (c.grid + 1)),
            ..sjd2::demo::decoder_config(c, mode)
        };
        let a = Sjd2Decoder::new(m.model.clone(), cfg.clone())
            .unwrap()
            .generate(&prompt)
            .unwrap();
        let b = Sjd2Decoder::new(mc.model.clone(), cfg)
            .unwrap()
            .generate(&prompt)
            .unwrap();
        assert_eq!(a.tokens.len(), 2 * (c.grid + 1));
        assert_eq!(a.tokens, b.tokens, "{mode:?}: tokens differ from the CPU");
    }
}
