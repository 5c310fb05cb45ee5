//! Prompt → image tokens (SJD2) → VQ codes → RGB → PNG, for every family on its fixtures.
#![allow(clippy::unwrap_used)]

mod common;

use burn::tensor::Device;
use common::{chameleon_image, emu3_image, emu3_tokens, fixtures, janus_tokens, llamagen_config};
use sjd2_core::{JacobiDenoiser, Prompt};
use sjd2_models::LlamaT2I;
use sjd2_models::chameleon::Chameleon;
use sjd2_models::emu3::Emu3;
use sjd2_models::janus::Janus;
use sjd2_models::llamagen::{LlamaGen, LlamaGenTask};
use sjd2_models::t5::T5Encoder;
use sjd2_models::vq::{
    ImageDecoder, MovqConfig, MovqDecoder, VqConfig, VqLayout, VqModel, save_png, to_rgb8,
};
use sjd2_sampler::{DecoderConfig, Sjd2Decoder};

/// A fixture VQ of the released family `base` under `layout`, sized from its tensors (the
/// fixtures are narrower than the releases).
fn fixture_vq(file: &str, base: VqConfig, layout: VqLayout, d: &Device) -> VqModel {
    let path = fixtures().join(file);
    let cfg = VqConfig { layout, ..base }
        .sized_by_shapes(&sjd2_models::weights::Checkpoint::open(&path).unwrap())
        .unwrap();
    VqModel::load(path, cfg, d).unwrap()
}

fn run(name: &str, model: LlamaT2I, prompt: Prompt, vq: &dyn ImageDecoder) {
    let layout = model.layout().clone();
    let mut cfg = DecoderConfig {
        window_len: sjd2_sampler::Window::Fixed(6),
        guidance_scale: 2.0,
        seed: 5,
        ..DecoderConfig::sjd2()
    };
    cfg.sjd2.denoising_steps = 4;
    let decoder = Sjd2Decoder::new(model, cfg).unwrap();
    let g = decoder.generate(&prompt).unwrap();
    let codes = decoder.model().image_codes(&g.tokens).unwrap();
    assert_eq!(codes.len(), layout.rows() * layout.cols(), "{name}");
    let image = to_rgb8(vq.decode(&codes, layout.rows(), layout.cols()).unwrap()).unwrap();
    let path =
        std::env::temp_dir().join(format!("sjd2-pipeline-{name}-{}.png", std::process::id()));
    save_png(&path, &image).unwrap();
    let back = image::open(&path).unwrap();
    let f = vq.downsample() as u32;
    assert_eq!(
        (back.width(), back.height()),
        (layout.cols() as u32 * f, layout.rows() as u32 * f),
        "{name}"
    );
    std::fs::remove_file(path).unwrap();
}

#[test]
fn chameleon_prompt_to_png() {
    let d = Device::flex();
    let (m, _) = Chameleon::load(
        fixtures().join("chameleon/hf"),
        |_| Ok(chameleon_image(2, 3)),
        &d,
    )
    .unwrap();
    let vq = fixture_vq(
        "chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors",
        VqConfig::chameleon(),
        VqLayout::Taming {
            prefix: String::new(),
        },
        &d,
    );
    run("chameleon", m, Prompt::new(vec![1, 40, 41, 42, 50]), &vq);
}

#[test]
fn emu3_prompt_to_png() {
    let d = Device::flex();
    let m = Emu3::load(fixtures().join("emu3/hf"), emu3_tokens(), emu3_image(), &d).unwrap();
    // Sized by the fixture's `vq_config` (32 channels, 64 codes).
    let cfg = MovqConfig::in_checkpoint(fixtures().join("emu3/hf")).unwrap();
    let vq = MovqDecoder::load(fixtures().join("emu3/hf"), cfg, &d).unwrap();
    run("emu3", m, Prompt::new(vec![1, 20, 21, 22]), &vq);
}

#[test]
fn janus_prompt_to_png() {
    let d = Device::flex();
    let m = Janus::load(
        fixtures().join("janus/hf/config.json"),
        fixtures().join("janus/hf"),
        janus_tokens(),
        3,
        &d,
    )
    .unwrap();
    let vq = fixture_vq(
        "janus/hf",
        VqConfig::vq16(),
        VqLayout::Vq16Hf {
            prefix: "model.vqmodel.".into(),
        },
        &d,
    );
    run("janus", m, Prompt::new(vec![1, 20, 21, 22, 23]), &vq);
}

#[test]
fn llamagen_prompts_to_png() {
    let d = Device::flex();
    let vq = fixture_vq(
        "llamagen_vq/weights.safetensors",
        VqConfig::vq16(),
        VqLayout::Vq16 {
            prefix: String::new(),
        },
        &d,
    );
    let c2i = LlamaGen::load(
        fixtures().join("llamagen_c2i/weights.safetensors"),
        llamagen_config(LlamaGenTask::ClassToImage { num_classes: 10 }),
        &d,
    )
    .unwrap();
    run("llamagen_c2i", c2i, Prompt::new(vec![7]), &vq);
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
    run("llamagen_t2i", t2i, Prompt::new(vec![4, 8, 15, 1]), &vq);
}

#[test]
fn codes_outside_the_image_range_are_errors() {
    let d = Device::flex();
    let (m, _) = Chameleon::load(
        fixtures().join("chameleon/hf"),
        |_| Ok(chameleon_image(2, 3)),
        &d,
    )
    .unwrap();
    // 90 is not an image token; position 0 is an image position.
    assert!(m.image_codes(&[90, 4, 5, 51, 6, 7, 8, 51, 36]).is_err());
    let codes = m.image_codes(&[4, 5, 14, 51, 6, 7, 8, 51, 36]).unwrap();
    assert_eq!(codes, vec![0, 1, 10, 2, 3, 4]);
}
