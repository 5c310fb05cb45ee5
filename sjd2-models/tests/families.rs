//! `pipeline::Pipeline`: what it refuses, with the file or field named. (Loading real layouts
//! needs checkpoints with real vocabularies; the tiny fixtures have none.)
#![allow(clippy::unwrap_used)]

mod common;

use common::fixtures;
use sjd2_core::Device;
use sjd2_models::LoadError;
use sjd2_models::pipeline::{Family, Files, Pipeline};

#[test]
fn missing_files_and_unknown_sizes_are_named() {
    let d = Device::flex();
    // The Emu3 fixture has no tokenizer: the error names the file to give with --tokenizer.
    let e = Pipeline::load(Family::Emu3, &Files::new(fixtures().join("emu3/hf")), &d).unwrap_err();
    assert!(matches!(e, LoadError::Io { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    // A LlamaGen checkpoint of no gpt.py size cannot be sized from its shapes.
    let files = Files::new(fixtures().join("llamagen_c2i/weights.safetensors"))
        .with_vq(fixtures().join("llamagen_vq/weights.safetensors"));
    let e = Pipeline::load(Family::LlamagenC2i, &files, &d).unwrap_err();
    assert!(e.to_string().contains("tok_embeddings.weight"), "{e}");
    // transformers' Chameleon checkpoints keep only the VQGAN's encoder: decoding asks for the
    // released vqgan.ckpt.
    let e = Pipeline::load(
        Family::Anole,
        &Files::new(fixtures().join("chameleon/hf")),
        &d,
    )
    .unwrap_err();
    assert!(
        matches!(&e, LoadError::Config { field, reason, .. }
            if field == "vq" && reason.contains("vqgan.ckpt")),
        "{e}"
    );
    // A repository id that is not in the cache, offline.
    let tmp = tempfile::tempdir().unwrap();
    let e = sjd2_models::hub::resolve_in(
        &sjd2_models::hub::Cache::new(tmp.path().to_path_buf()),
        "owner/none",
        None,
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("owner/none"), "{e}");
}

#[test]
fn emu3_tokens_come_from_the_vocabulary_map() {
    use sjd2_models::emu3::Emu3Tokens;
    let config = fixtures().join("emu3/hf/config.json");
    let t = Emu3Tokens::from_config(&config).unwrap().unwrap();
    // The ids the fixture's generator recorded (meta.json `token_ids`).
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("emu3/meta.json")).unwrap())
            .unwrap();
    let ids = &meta["token_ids"];
    let id = |k: &str| ids[k].as_u64().unwrap() as u32;
    assert_eq!(
        [t.pad, t.bos, t.eos, t.eol, t.eof, t.boi, t.eoi, t.img],
        [
            id("pad(<|endoftext|>)"),
            id("bos(<|extra_203|>)"),
            id("eos(<|extra_204|>)"),
            id("eol(<|extra_200|>)"),
            id("eof(<|extra_201|>)"),
            id("boi(<|image start|>)"),
            id("eoi(<|image end|>)"),
            id("img(<|image token|>)"),
        ]
    );
    assert_eq!(t.visual_start, id("visual_token_0"));
    assert_eq!(t.visual_start + t.visual_count - 1, id("visual_token_last"));

    // A map without a token Emu3 needs names it; a config without a map defers to the tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["vocabulary_map"]
        .as_object_mut()
        .unwrap()
        .remove("<|image start|>");
    let broken = dir.path().join("config.json");
    std::fs::write(&broken, v.to_string()).unwrap();
    let e = Emu3Tokens::from_config(&broken).unwrap_err();
    assert!(
        matches!(&e, LoadError::Config { field, reason, .. }
            if field == "vocabulary_map" && reason.contains("<|image start|>")),
        "{e}"
    );
    v.as_object_mut().unwrap().remove("vocabulary_map");
    std::fs::write(&broken, v.to_string()).unwrap();
    assert!(Emu3Tokens::from_config(&broken).unwrap().is_none());
}

/// A `tokenizer.json` (word level) for the Emu3 fixture's 160 ids: the special and visual
/// tokens under the names its config's `vocabulary_map` gives them, `3` and `*` for the size
/// string, and a few words.
fn emu3_fixture_tokenizer(config: &std::path::Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let mut vocab: serde_json::Map<String, serde_json::Value> = v["vocabulary_map"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, id)| id.as_u64().unwrap() < 160)
        .map(|(k, id)| (k.clone(), id.clone()))
        .collect();
    let words = ["3", "*", "a", "red", "circle", ",", "."];
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).to_string(), serde_json::json!(9 + i));
    }
    common::word_level_tokenizer(&vocab, "<|endoftext|>", serde_json::json!([]))
}

/// Decodes a 3×3 image of `prompt` with coupled SJD at the pipeline's guidance, checks the
/// codes (64 in each fixture's codebook) and writes a PNG of `side` pixels into `dir`.
/// A temporary directory holding copies of `files` of `src`: a checkpoint directory as a user
/// has it, for a test to add to.
fn copy_of(src: &std::path::Path, files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn draw(p: Pipeline, prompt: &sjd2_core::Prompt, dir: &std::path::Path, side: u32) {
    draw_with(p, prompt, dir, side, None);
}

/// Decodes `prompt` with SJD (coupled drafts) at the pipeline's guidance, and with
/// `image_guidance` three ways, then writes and rereads the PNG.
fn draw_with(
    p: Pipeline,
    prompt: &sjd2_core::Prompt,
    dir: &std::path::Path,
    side: u32,
    image_guidance: Option<f32>,
) {
    use sjd2_core::JacobiDenoiser;
    use sjd2_models::vq::{save_png, to_rgb8};
    use sjd2_sampler::{DecoderConfig, DraftUpdate, Sjd2Decoder, Window};
    let cfg = DecoderConfig {
        window_len: Window::Fixed(4),
        draft_update: DraftUpdate::Coupled,
        guidance_scale: p.defaults.guidance,
        image_guidance_scale: image_guidance,
        ..DecoderConfig::sjd()
    };
    let (rows, cols) = (p.model.layout().rows(), p.model.layout().cols());
    let codes_below = p.model.layout().image_token_range().len() as u32;
    let decoder = Sjd2Decoder::new(p.model, cfg).unwrap();
    let g = decoder.generate(&prompt.clone().with_seed(3)).unwrap();
    let codes = decoder.model().image_codes(&g.tokens).unwrap();
    assert!(
        codes.len() == rows * cols && codes.iter().all(|&c| c < codes_below),
        "{codes:?}"
    );
    let image = to_rgb8(p.decoder.decode(&codes, rows, cols).unwrap()).unwrap();
    let png = dir.join("image.png");
    save_png(&png, &image).unwrap();
    let back = image::open(&png).unwrap();
    assert_eq!(
        (back.width(), back.height()),
        (side, side * rows as u32 / cols as u32)
    );
}

/// The Chameleon fixture as a Lumina-mGPT / Anole directory: its weights, its config with
/// reserved tokens renamed to the ones the layouts need (the tiny vocabulary has only
/// `<reserved00038>`…`<reserved00094>`) and `max_position_embeddings` set, and a word-level
/// tokenizer over the config's names plus a few words.
fn chameleon_directory(renames: &[(u32, &str)], max_positions: usize) -> tempfile::TempDir {
    let src = fixtures().join("chameleon/hf");
    let dir = copy_of(&src, &["model.safetensors"]);
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let map = config["vocabulary_map"].as_object_mut().unwrap();
    for &(id, name) in renames {
        map.retain(|_, v| v.as_u64() != Some(u64::from(id)));
        map.insert(name.into(), id.into());
    }
    let words = [
        "Generate",
        "an",
        "image",
        "of",
        "32x32",
        "according",
        "to",
        "the",
        "following",
        "prompt",
        ":",
        "a",
        "red",
        "circle",
    ];
    let mut vocab = map.clone();
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).into(), (60 + i).into());
    }
    config["max_position_embeddings"] = max_positions.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let tok = common::word_level_tokenizer(&vocab, "<unk>", serde_json::json!([]));
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
    dir
}

#[test]
fn vq_sizes_come_from_the_tensors() {
    use sjd2_models::vq::{VqConfig, VqLayout};
    use sjd2_models::weights::Checkpoint;
    let tiny = |base: VqConfig, codebook, embed, layout| VqConfig {
        ch: 32,
        z_channels: 32,
        codebook_size: codebook,
        embed_dim: embed,
        layout,
        ..base
    };
    let prefix = |p: &str| p.to_string();
    let cases = [
        (
            "chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors",
            tiny(
                VqConfig::chameleon(),
                32,
                16,
                VqLayout::Taming { prefix: prefix("") },
            ),
        ),
        (
            "llamagen_vq/weights.safetensors",
            tiny(
                VqConfig::vq16(),
                64,
                8,
                VqLayout::Vq16 { prefix: prefix("") },
            ),
        ),
        (
            "janus/hf/model.safetensors",
            tiny(
                VqConfig::vq16(),
                64,
                8,
                VqLayout::Vq16Hf {
                    prefix: prefix("model.vqmodel."),
                },
            ),
        ),
    ];
    for (file, expected) in cases {
        let released = VqConfig {
            layout: expected.layout.clone(),
            ..if file.starts_with("chameleon") {
                VqConfig::chameleon()
            } else {
                VqConfig::vq16()
            }
        };
        let sized = released
            .sized_by_shapes(&Checkpoint::open(fixtures().join(file)).unwrap())
            .unwrap();
        assert_eq!(sized, expected, "{file}");
    }
}

#[test]
fn lumina_and_anole_load_through_the_pipeline_and_draw() {
    use sjd2_core::JacobiDenoiser;
    let d = Device::flex();
    // The released VQGAN file beside the checkpoint; its sizes come from its tensors.
    let vq = fixtures().join("chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors");
    let lumina = chameleon_directory(
        &[
            (38, "<reserved08706>"),
            (39, "<reserved08799>"),
            (40, "<reserved08801>"),
            (41, "<reserved08812>"),
        ],
        512,
    );
    let files = Files::new(lumina.path()).with_vq(&vq).with_size(32);
    let p = Pipeline::load(Family::LuminaMgpt, &files, &d).unwrap();
    let layout = p.model.layout().clone();
    assert_eq!((layout.rows(), layout.cols()), (2, 2));
    assert_eq!(p.model.max_sequence_len(), 512);
    let prompt = p.prompts.text("a red circle").unwrap();
    // <s> "Generate an image of 32x32 according to the following prompt : a red circle"
    // <reserved08706>; the model appends <racm3:break> and the size tokens.
    let words: Vec<u32> = (60..74).collect();
    let expected: Vec<u32> = [vec![1], words, vec![38]].concat();
    assert_eq!(prompt.tokens, expected);
    // Three-way guidance with an image in the prompt ("a <racm3:break> image image <eoss> red
    // circle"): the image-conditioned row keeps <s> and the bracketed image.
    let (_, vocab) = sjd2_models::chameleon::Chameleon::load(
        lumina.path(),
        |v| sjd2_models::chameleon::ChameleonImage::lumina(v, 32, 32),
        &d,
    )
    .unwrap();
    let with_image = [&prompt.tokens[..12], &[37, 4, 5, 36], &prompt.tokens[12..]].concat();
    let interleaved = sjd2_core::Prompt::new(with_image.clone())
        .with_image_condition(vocab.image_condition(&with_image));
    assert_eq!(
        interleaved.image_condition.as_deref(),
        Some(&[1, 37, 4, 5, 36][..])
    );
    draw_with(p, &interleaved, lumina.path(), 32, Some(1.2));
    // An image longer than the checkpoint's positions extends its RoPE tables (as transformers
    // computes RoPE for any position), with room for the prompt.
    let p = Pipeline::load(Family::LuminaMgpt, &files.clone().with_size(384), &d).unwrap();
    assert_eq!(p.model.max_sequence_len(), 24 * 25 + 2 + 1 + 512);

    // Anole: a fixed 32 × 32 grid (1 024 tokens).
    let anole = chameleon_directory(&[(38, "<reserved08706>")], 2048);
    let p = Pipeline::load(Family::Anole, &Files::new(anole.path()).with_vq(&vq), &d).unwrap();
    assert_eq!(p.defaults.image_guidance, Some(1.2));
    assert_eq!((p.model.layout().rows(), p.model.layout().cols()), (32, 32));
    let text = p.prompts.text("a red circle").unwrap();
    assert_eq!(text.tokens, vec![1, 71, 72, 73, 38]);
}

#[test]
fn emu3_loads_from_a_checkpoint_directory_and_draws() {
    use sjd2_core::JacobiDenoiser;
    // The fixture's files as a user has them, plus a tokenizer: nothing is passed but the
    // directory and the size.
    let src = fixtures().join("emu3/hf");
    let dir = copy_of(
        &src,
        &["config.json", "generation_config.json", "model.safetensors"],
    );
    let tok = emu3_fixture_tokenizer(&src.join("config.json"));
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
    let files = Files::new(dir.path()).with_size(24);
    let p = Pipeline::load(Family::Emu3, &files, &Device::flex()).unwrap();
    // The token ids come from the config's vocabulary map, the MoVQ's sizes from its
    // `vq_config` (32 base channels, 64 codes: not the released 256 / 32 768).
    let layout = p.model.layout().clone();
    assert_eq!((layout.rows(), layout.cols()), (3, 3));
    assert_eq!(layout.image_token_range(), 96..160);
    assert_eq!(p.decoder.downsample(), 8);
    // BOS, the caption and Emu3's quality suffix (its other words are unknown here: id 0); the
    // model appends BOI, "3*3" and <|image token|>.
    let prompt = p.prompts.text("a red circle").unwrap();
    assert_eq!(
        prompt.tokens,
        vec![1, 11, 12, 13, 0, 14, 0, 0, 14, 0, 0, 15]
    );
    draw(p, &prompt, dir.path(), 24);
}

#[test]
fn janus_loads_from_a_checkpoint_directory_and_draws() {
    use sjd2_core::JacobiDenoiser;
    // The fixture's files (transformers' layout, the VQ inside the checkpoint) plus a
    // word-level tokenizer with Janus' special tokens at the fixture's ids.
    let src = fixtures().join("janus/hf");
    let dir = copy_of(
        &src,
        &["config.json", "generation_config.json", "model.safetensors"],
    );
    let vocab = serde_json::json!({
        "<unk>": 0, "<｜begin▁of▁sentence｜>": 1, "<｜end▁of▁sentence｜>": 2, "<｜▁pad▁｜>": 3,
        "<begin_of_image>": 10, "a": 11, "red": 12, "circle": 13,
        // The chat template's words, as this pre-tokenizer splits them.
        "<|": 14, "User": 15, "|>:": 16, "Assistant": 17,
    });
    let vocab = vocab.as_object().unwrap();
    let tok = common::word_level_tokenizer(vocab, "<unk>", serde_json::json!([]));
    std::fs::write(dir.path().join("tokenizer.json"), tok.to_string()).unwrap();
    let p = Pipeline::load(
        Family::JanusPro,
        &Files::new(dir.path()).with_size(48),
        &Device::flex(),
    )
    .unwrap();
    // The VQ's sizes come from the checkpoint's `vq_config` (32 channels, 64 codes), not the
    // released VQ-16's (128, 16 384): with the released sizes its tensors would not fit.
    let layout = p.model.layout().clone();
    assert_eq!((layout.rows(), layout.cols()), (3, 3));
    assert_eq!(p.decoder.downsample(), 16);
    // BOS, then "<|User|>: a red circle\n\n<|Assistant|>:"; the model appends
    // <begin_of_image>.
    let prompt = p.prompts.text("a red circle").unwrap();
    assert_eq!(prompt.tokens, vec![1, 14, 15, 16, 11, 12, 13, 14, 17, 16]);
    draw(p, &prompt, dir.path(), 48);
}

#[test]
fn anole_release_layout_loads_through_the_pipeline() {
    use sjd2_core::JacobiDenoiser;
    use sjd2_sampler::{DecoderConfig, Sjd2Decoder};
    // GAIR's Anole-7b-v0.1 as downloaded: models/7b/consolidated.pth + params.json, the
    // vocabulary in tokenizer/text_tokenizer.json (found from models/7b), the VQGAN given.
    let release = common::meta_release("chameleon", &["a", "red", "circle"]);
    let vq = fixtures().join("chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors");
    let files = Files::new(release.path().join("models/7b")).with_vq(vq);
    let p = Pipeline::load(Family::Anole, &files, &Device::flex()).unwrap();
    // params.json's sizes as transformers' converter maps them; 4 096 positions at theta 10 000.
    let c = p.model.backbone().config().clone();
    assert_eq!(
        (c.hidden, c.layers, c.heads, c.kv_heads, c.intermediate),
        (64, 2, 4, 4, 160)
    );
    assert_eq!(p.model.max_sequence_len(), 4096);
    let prompt = p.prompts.text("a red circle").unwrap();
    assert_eq!(prompt.tokens, vec![1, 60, 61, 62, 38]);
    let cfg = DecoderConfig {
        max_new_tokens: Some(12),
        guidance_scale: p.defaults.guidance,
        ..DecoderConfig::sjd()
    };
    let g = Sjd2Decoder::new(p.model, cfg)
        .unwrap()
        .generate(&prompt)
        .unwrap();
    assert_eq!(g.tokens.len(), 12);
}
