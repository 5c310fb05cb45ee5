//! Every adapter runs AR, SJD and SJD2 end to end through `Sjd2Decoder` on its fixture model;
//! greedy SJD and SJD2 must give exactly the greedy AR tokens.
#![allow(clippy::unwrap_used)]

mod common;

use burn::tensor::Device;
use common::{chameleon_image, emu3_image, emu3_tokens, fixtures, janus_tokens, llamagen_config};
use sjd2_core::{JacobiDenoiser, Prompt, Sampling};
use sjd2_models::LlamaT2I;
use sjd2_models::chameleon::Chameleon;
use sjd2_models::emu3::Emu3;
use sjd2_models::janus::Janus;
use sjd2_models::llamagen::{LlamaGen, LlamaGenTask};
use sjd2_models::t5::T5Encoder;
use sjd2_sampler::{DecoderConfig, DraftInit, Sjd2Decoder};

fn device() -> Device {
    Device::flex()
}

fn models() -> Vec<(&'static str, LlamaT2I, Prompt)> {
    let d = device();
    let chameleon = Chameleon::load(
        fixtures().join("chameleon/hf"),
        |_| Ok(chameleon_image(4, 4)),
        &d,
    )
    .unwrap()
    .0;
    let swin = Chameleon::load(
        fixtures().join("chameleon_swin/hf"),
        |_| Ok(chameleon_image(4, 4)),
        &d,
    )
    .unwrap()
    .0;
    let emu3 = Emu3::load(fixtures().join("emu3/hf"), emu3_tokens(), emu3_image(), &d).unwrap();
    let janus = Janus::load(
        fixtures().join("janus/hf/config.json"),
        fixtures().join("janus/hf"),
        janus_tokens(),
        3,
        &d,
    )
    .unwrap();
    let c2i = LlamaGen::load(
        fixtures().join("llamagen_c2i/weights.safetensors"),
        llamagen_config(LlamaGenTask::ClassToImage { num_classes: 10 }),
        &d,
    )
    .unwrap();
    // The t2i fixture's caption width (32) matches the tiny T5 encoder's d_model.
    let t2i = LlamaGen::load(
        fixtures().join("llamagen_t2i/weights.safetensors"),
        llamagen_config(LlamaGenTask::TextToImage {
            caption_dim: 32,
            slots: 120,
        }),
        &d,
    )
    .unwrap()
    .with_caption_encoder(T5Encoder::load(fixtures().join("t5_encoder/hf"), 120, &d).unwrap());
    vec![
        (
            "chameleon",
            chameleon,
            Prompt::new(vec![1, 40, 41, 42, 43, 44, 45, 50]),
        ),
        ("chameleon_swin", swin, Prompt::new(vec![1, 40, 41, 42, 50])),
        ("emu3", emu3, Prompt::new(vec![1, 20, 21, 22, 23, 24])),
        ("janus", janus, Prompt::new(vec![1, 20, 21, 22, 23, 24, 25])),
        ("llamagen_c2i", c2i, Prompt::new(vec![3])),
        ("llamagen_t2i", t2i, Prompt::new(vec![5, 9, 17, 1])),
    ]
}

#[test]
fn greedy_sjd_and_sjd2_match_ar_on_every_adapter() {
    for (name, model, prompt) in models() {
        let layout = model.layout().clone();
        for guidance in [1.0, 3.0] {
            let greedy = |cfg: DecoderConfig| DecoderConfig {
                sampling: Sampling::Greedy,
                guidance_scale: guidance,
                ..cfg
            };
            let ar = Sjd2Decoder::new(model.clone(), greedy(DecoderConfig::autoregressive()))
                .unwrap()
                .generate(&prompt)
                .unwrap();
            assert_eq!(ar.tokens.len(), layout.len(), "{name}");
            for (pos, &t) in ar.tokens.iter().enumerate() {
                match layout.forced_token(pos) {
                    Some(f) => assert_eq!(t, f, "{name}: forced token at {pos}"),
                    None => assert!(
                        layout.image_token_range().contains(&t),
                        "{name}: {t} at {pos}"
                    ),
                }
            }
            for window in [3, 8] {
                let sjd = DecoderConfig {
                    window_len: window.into(),
                    draft_init: DraftInit::HorizontalRepeat,
                    ..DecoderConfig::sjd()
                };
                let out = Sjd2Decoder::new(model.clone(), greedy(sjd))
                    .unwrap()
                    .generate(&prompt)
                    .unwrap();
                assert_eq!(
                    out.tokens, ar.tokens,
                    "{name}: greedy SJD window {window} guidance {guidance}"
                );
                assert!(out.stats.forward_passes <= ar.stats.forward_passes);
                let mut sjd2 = DecoderConfig {
                    window_len: window.into(),
                    ..DecoderConfig::sjd2()
                };
                sjd2.sjd2.denoising_steps = 4;
                let out = Sjd2Decoder::new(model.clone(), greedy(sjd2))
                    .unwrap()
                    .generate(&prompt)
                    .unwrap();
                assert_eq!(
                    out.tokens, ar.tokens,
                    "{name}: greedy SJD2 window {window} guidance {guidance}"
                );
            }
        }
    }
}

#[test]
fn sampled_generation_runs_on_every_adapter() {
    for (name, model, prompt) in models() {
        let cfg = DecoderConfig {
            window_len: sjd2_sampler::Window::Fixed(6),
            guidance_scale: 2.0,
            sampling: Sampling::top_k(16, 1.0),
            ..DecoderConfig::sjd2()
        };
        let d = Sjd2Decoder::new(model, cfg).unwrap();
        let batch = d
            .generate_batch(&[prompt.clone().with_seed(1), prompt.with_seed(2)])
            .unwrap();
        for g in &batch {
            assert_eq!(g.stats.tokens(), g.tokens.len(), "{name}");
        }
        assert_ne!(
            batch[0].tokens, batch[1].tokens,
            "{name}: two seeds gave the same image"
        );
    }
}
