//! Parity with the reference implementations' outputs on the tiny fixtures (max abs error 1e-4).
#![allow(clippy::unwrap_used)]

mod common;

use burn::tensor::Device;
use common::{
    Reference, assert_close, chameleon_image, check_window, emu3_image, emu3_tokens, fixtures,
    host, ids_tensor, janus_tokens, llamagen_config,
};
use sjd2_core::{JacobiDenoiser, Prompt, PromptRow, Role, guide};
use sjd2_models::chameleon::Chameleon;
use sjd2_models::emu3::Emu3;
use sjd2_models::llamagen::{LlamaGen, LlamaGenTask};
use sjd2_models::{LlamaT2I, weights::Checkpoint};

fn device() -> Device {
    Device::flex()
}

fn slice(v: &[f32], vocab: usize, from: usize, to: usize) -> &[f32] {
    &v[from * vocab..to * vocab]
}

fn both_rows(prompt: &Prompt) -> [PromptRow<'_>; 2] {
    [
        PromptRow {
            prompt,
            role: Role::Conditional,
        },
        PromptRow {
            prompt,
            role: Role::Unconditional,
        },
    ]
}

/// Embeddings, per-layer hidden states and logits of one full pass against the reference.
fn check_full_pass(what: &str, m: &LlamaT2I, ids: &[u32], hidden: &[f32], logits: &[f32]) {
    let (h, n) = (m.hidden_size(), ids.len());
    let mut cache = m.new_cache(1, n).unwrap();
    let out = m
        .backbone()
        .forward(
            &mut cache,
            m.backbone().embed(ids_tensor(ids, &device())),
            true,
        )
        .unwrap();
    for (i, state) in out.layer_states.iter().enumerate() {
        assert_close(
            &host(state.clone()),
            &hidden[i * n * h..(i + 1) * n * h],
            &format!("{what} hidden_states[{i}]"),
        );
    }
    assert_close(
        &host(m.backbone().logits(out.hidden)),
        logits,
        &format!("{what} logits"),
    );
}

/// Prefill of `prefill_len` tokens, then the rest as one window, against the full-pass logits.
fn check_chunked(what: &str, m: &LlamaT2I, ids: &[u32], p: usize, logits: &[f32]) {
    let (d, v) = (device(), m.vocab_size());
    let mut cache = m.new_cache(1, ids.len()).unwrap();
    let a = m
        .forward_tokens(&mut cache, ids_tensor(&ids[..p], &d))
        .unwrap();
    let b = m
        .forward_tokens(&mut cache, ids_tensor(&ids[p..], &d))
        .unwrap();
    assert_close(
        &host(a),
        slice(logits, v, 0, p),
        &format!("{what} chunked prefill"),
    );
    assert_close(
        &host(b),
        &logits[p * v..],
        &format!("{what} chunked window"),
    );
}

/// The image tokens' logits computed alone (the decoder's path with raw-logit guidance) against
/// the reference's full logits narrowed to them.
fn check_image_logits(what: &str, m: &LlamaT2I, ids: &[u32], logits: &[f32]) {
    let (d, v) = (device(), m.vocab_size());
    let range = m.layout().image_token_range();
    let mut cache = m.new_cache(1, ids.len()).unwrap();
    let embeddings = m.embed_tokens(ids_tensor(ids, &d)).unwrap();
    let image = host(m.forward_image_logits(&mut cache, embeddings).unwrap());
    let expected: Vec<f32> = logits
        .chunks(v)
        .flat_map(|row| row[range.start as usize..range.end as usize].to_vec())
        .collect();
    assert!(
        range.len() < v,
        "{what}: the image tokens are part of a larger vocabulary"
    );
    assert_eq!(
        image.len(),
        ids.len() * range.len(),
        "{what} image-token logits"
    );
    assert_close(&image, &expected, &format!("{what} image-token logits"));
}

fn check_chameleon(case: &str) {
    check_chameleon_in(case, &fixtures().join(case).join("hf"));
}

/// `case`'s reference against the checkpoint directory `dir`.
fn check_chameleon_in(case: &str, dir: &std::path::Path) {
    let r = Reference::open(case);
    let m = Chameleon::load(dir, |_| Ok(chameleon_image(2, 3)), &device())
        .unwrap()
        .0;
    let ids = r.ids("input_ids");
    let (_, raw) = r.f32("logits_raw");
    let (_, uncond_raw) = r.f32("uncond_logits_raw");
    let (_, hidden) = r.f32("hidden_states");
    let v = m.vocab_size();
    check_full_pass(case, &m, &ids, &hidden, &raw);
    check_chunked(case, &m, &ids, r.ids("prefill_len")[0] as usize, &raw);
    check_image_logits(case, &m, &ids, &raw);
    // Decoder path: ragged [cond; uncond] prefill through the adapter's prompt rules (prompt
    // `[1, 40..=45, 50]`, prefix `[37, 52, 53]`), then the image span as one window on both rows.
    let prompt = Prompt::new(ids[..8].to_vec());
    let mut cache = m.new_cache(2, 32).unwrap();
    let first = host(m.prefill(&mut cache, &both_rows(&prompt)).unwrap());
    assert_close(
        &first[..v],
        slice(&raw, v, 10, 11),
        &format!("{case} prefill cond"),
    );
    assert_close(
        &first[v..],
        slice(&uncond_raw, v, 2, 3),
        &format!("{case} prefill uncond"),
    );
    let (_, tail) = r.f32("cfg_guided_logits_tail");
    // The unconditional row starts at BOI: its position 3 is the conditional row's position 11.
    let cond_from_11: Vec<f32> = raw[11 * v..].to_vec();
    let uncond_from_3: Vec<f32> = uncond_raw[3 * v..].to_vec();
    check_window(
        case,
        &m,
        &mut cache,
        &ids[11..19],
        &cond_from_11,
        &uncond_from_3,
        0,
        (&tail, 3, r.scalar("cfg_scale")),
    );
}

#[test]
fn chameleon_parity() {
    check_chameleon("chameleon");
}

#[test]
fn chameleon_swin_gqa_parity() {
    check_chameleon("chameleon_swin");
}

#[test]
fn chameleon_meta_layout_parity() {
    for case in ["chameleon", "chameleon_swin"] {
        let release = common::meta_release(case, &[]);
        check_chameleon_in(
            &format!("{case}/original"),
            &release.path().join("models/7b"),
        );
    }
}

#[test]
fn chameleon_meta_layout_config_maps_as_transformers_converts() {
    let release = common::meta_release("chameleon_swin", &[]);
    let (c, tokenizer) =
        sjd2_models::chameleon::meta_config(&release.path().join("models/7b")).unwrap();
    assert!(tokenizer.ends_with("tokenizer/text_tokenizer.json"));
    // The HF fixture is what transformers' converter makes of these files.
    let hf: sjd2_models::config::TextConfig = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("chameleon_swin/hf/config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (c.hidden_size, c.num_hidden_layers, c.num_attention_heads),
        (hf.hidden_size, hf.num_hidden_layers, hf.num_attention_heads)
    );
    assert_eq!(
        c.num_key_value_heads,
        hf.num_key_value_heads.or(Some(hf.num_attention_heads))
    );
    assert_eq!(c.intermediate_size, hf.intermediate_size);
    assert_eq!(
        (c.rms_norm_eps, c.swin_norm),
        (hf.rms_norm_eps, hf.swin_norm)
    );
    assert_eq!(c.backbone(true).rope, hf.backbone(true).rope);
    assert_eq!(c.vocabulary_map, hf.vocabulary_map);
    // Meta's model-parallel shards are refused with what to do instead.
    let shards = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::write(shards.path().join(format!("consolidated.0{i}.pth")), b"").unwrap();
    }
    let e = Checkpoint::open(shards.path()).unwrap_err();
    assert!(
        e.to_string().contains("convert_chameleon_weights_to_hf"),
        "{e}"
    );
}

fn check_emu3(m: &LlamaT2I, what: &str) {
    let r = Reference::open("emu3");
    let ids = r.ids("input_ids");
    let (_, logits) = r.f32("logits");
    let (_, hidden) = r.f32("hidden_states");
    let v = m.vocab_size();
    check_full_pass(what, m, &ids, &hidden, &logits);
    check_chunked(what, m, &ids, r.ids("prefill_len")[0] as usize, &logits);
    // Prompt rows through the adapter: [BOS + text] + BOI + size + IMG; negative [1, 25, 26].
    let prompt = Prompt::new(ids[..6].to_vec());
    let rows = both_rows(&prompt);
    assert_eq!(
        m.prompt_len(&rows[1]).unwrap(),
        r.ids("neg_input_ids").len()
    );
    let mut cache = m.new_cache(2, 64).unwrap();
    let first = m.prefill(&mut cache, &rows).unwrap();
    let got = host(first.clone());
    let (_, cond_last) = r.f32("cond_last_logits");
    let (_, uncond_last) = r.f32("uncond_last_logits");
    assert_close(&got[..v], &cond_last, &format!("{what} cond last logits"));
    assert_close(
        &got[v..],
        &uncond_last,
        &format!("{what} uncond last logits"),
    );
    let f = first.unsqueeze_dim::<3>(1);
    let guided = guide(
        f.clone().narrow(0, 0, 1),
        f.narrow(0, 1, 1),
        r.scalar("cfg_scale"),
        m.guidance_style(),
    );
    let (_, want) = r.f32("cfg_guided_logprob");
    assert_close(
        &host(guided),
        &want,
        &format!("{what} guided log-probabilities"),
    );
}

#[test]
fn emu3_parity_hf_layout() {
    let m = Emu3::load(
        fixtures().join("emu3/hf"),
        emu3_tokens(),
        emu3_image(),
        &device(),
    )
    .unwrap();
    check_emu3(&m, "emu3 (text_model.*)");
}

#[test]
fn emu3_parity_original_layout() {
    // Rewrite the fixture's language model under the original BAAI names (`model.*`, `lm_head`).
    let src = Checkpoint::open(fixtures().join("emu3/hf")).unwrap();
    let dir = std::env::temp_dir().join(format!("sjd2-emu3-orig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut tensors = Vec::new();
    for name in src.names().filter(|n| n.starts_with("text_model.")) {
        let (shape, data) = src.read_f32(name).unwrap();
        tensors.push((
            name.trim_start_matches("text_model.").to_string(),
            shape,
            data,
        ));
    }
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
        .collect();
    sjd2_models::weights::write_safetensors(
        dir.join("model.safetensors"),
        &refs,
        Default::default(),
    )
    .unwrap();
    // The original config keeps the Llama fields at the top level.
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("emu3/hf/config.json")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&cfg["text_config"]).unwrap(),
    )
    .unwrap();
    let m = Emu3::load(&dir, emu3_tokens(), emu3_image(), &device()).unwrap();
    check_emu3(&m, "emu3 (model.*)");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn emu3_parity_transformers_5_layout() {
    // The fixture as transformers 5 saves it: `model.text_model.*`, `lm_head`, `model.vqmodel.*`.
    let src = Checkpoint::open(fixtures().join("emu3/hf")).unwrap();
    let dir = std::env::temp_dir().join(format!("sjd2-emu3-tf5-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = src
        .names()
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .map(|name| {
            let (shape, data) = src.read_f32(name).unwrap();
            let renamed = if let Some(rest) = name.strip_prefix("text_model.lm_head") {
                format!("lm_head{rest}")
            } else if let Some(rest) = name.strip_prefix("text_model.model.") {
                format!("model.text_model.{rest}")
            } else {
                format!("model.{name}")
            };
            (renamed, shape, data)
        })
        .collect();
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
        .collect();
    sjd2_models::weights::write_safetensors(
        dir.join("model.safetensors"),
        &refs,
        Default::default(),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("emu3/hf/config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let m = Emu3::load(&dir, emu3_tokens(), emu3_image(), &device()).unwrap();
    check_emu3(&m, "emu3 (model.text_model.*)");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn check_janus(weights: &std::path::Path, what: &str) {
    let r = Reference::open("janus");
    let d = device();
    let m = sjd2_models::janus::Janus::load(
        fixtures().join("janus/hf/config.json"),
        weights,
        janus_tokens(),
        3,
        &d,
    )
    .unwrap();
    let prompt_ids = r.ids("prompt_ids");
    let codes = r.ids("image_codes");
    let (v, h, n) = (m.vocab_size(), m.hidden_size(), 16);
    // Inputs: prompt through the language model embedding, codes through gen_embed + aligner.
    let text = m.backbone().embed(ids_tensor(&prompt_ids, &d));
    let image = m.embed_tokens(ids_tensor(&codes[..8], &d)).unwrap();
    let inputs = burn::Tensor::cat(vec![text, image], 1);
    let (_, want_inputs) = r.f32("inputs_embeds");
    assert_close(
        &host(inputs.clone()),
        &want_inputs,
        &format!("{what} inputs_embeds"),
    );
    let mut cache = m.new_cache(1, n).unwrap();
    let out = m.backbone().forward(&mut cache, inputs, true).unwrap();
    let (_, hidden) = r.f32("hidden_states");
    for (i, state) in out.layer_states.iter().enumerate() {
        assert_close(
            &host(state.clone()),
            &hidden[i * n * h..(i + 1) * n * h],
            &format!("{what} hidden_states[{i}]"),
        );
    }
    let (_, text_logits) = r.f32("text_logits");
    assert_close(
        &host(m.backbone().logits(out.hidden.clone())),
        &text_logits,
        &format!("{what} text logits"),
    );
    let (_, gen_cond) = r.f32("gen_logits_cond");
    assert_close(
        &host(m.head(out.hidden)),
        &gen_cond,
        &format!("{what} generation logits"),
    );

    // Decoder path: [cond; uncond] rows, then the codes as one window on both rows.
    let prompt = Prompt::new(prompt_ids[..7].to_vec());
    let rows = both_rows(&prompt);
    assert_eq!(
        m.row_tokens(&rows[1]).to_vec(),
        r.ids("uncond_prompt_ids"),
        "unconditional row"
    );
    let mut cache = m.new_cache(2, 32).unwrap();
    let first = host(m.prefill(&mut cache, &rows).unwrap());
    let (_, gen_uncond) = r.f32("gen_logits_uncond");
    assert_close(
        &first[..v],
        slice(&gen_cond, v, 7, 8),
        &format!("{what} prefill cond"),
    );
    assert_close(
        &first[v..],
        slice(&gen_uncond, v, 7, 8),
        &format!("{what} prefill uncond"),
    );
    let (_, want) = r.f32("cfg_guided_gen_logits");
    check_window(
        what,
        &m,
        &mut cache,
        &codes[..8],
        &gen_cond,
        &gen_uncond,
        8,
        (&want, 1, r.scalar("cfg_scale")),
    );
}

#[test]
fn janus_parity_hf_layout() {
    check_janus(&fixtures().join("janus/hf"), "janus (model.*)");
}

#[test]
fn janus_parity_original_layout() {
    check_janus(&common::janus_original_layout(), "janus (gen_*)");
}

fn llamagen(case: &str, task: LlamaGenTask) -> LlamaT2I {
    LlamaGen::load(
        fixtures().join(case).join("weights.safetensors"),
        llamagen_config(task),
        &device(),
    )
    .unwrap()
}

/// Compares the first-token logits of `[cond; uncond]` and the image tokens fed as one window.
fn check_llamagen_steps(case: &str, m: &LlamaT2I, mut cache: sjd2_core::KvCache, first: Vec<f32>) {
    let r = Reference::open(case);
    let v = m.vocab_size();
    let (_, cond) = r.f32("logits_cond");
    let (_, uncond) = r.f32("logits_uncond");
    assert_close(
        &first[..v],
        slice(&cond, v, 0, 1),
        &format!("{case} first token cond"),
    );
    assert_close(
        &first[v..],
        slice(&uncond, v, 0, 1),
        &format!("{case} first token uncond"),
    );
    let tokens = r.ids("image_tokens");
    let (_, want) = r.f32("cfg_guided_logits");
    check_window(
        case,
        m,
        &mut cache,
        &tokens[..15],
        &cond,
        &uncond,
        1,
        (&want, 1, r.scalar("cfg_scale")),
    );
}

#[test]
fn llamagen_c2i_parity() {
    let r = Reference::open("llamagen_c2i");
    let m = llamagen(
        "llamagen_c2i",
        LlamaGenTask::ClassToImage { num_classes: 10 },
    );
    let class = r.ids("class_label");
    let prompt = Prompt::new(class.clone()).with_negative(r.ids("null_class"));
    let mut cache = m.new_cache(2, 17).unwrap();
    let first = host(m.prefill(&mut cache, &both_rows(&prompt)).unwrap());
    check_llamagen_steps("llamagen_c2i", &m, cache, first.clone());
    // The default unconditional row is the null class too.
    let plain = Prompt::new(class);
    let mut cache = m.new_cache(2, 17).unwrap();
    assert_close(
        &host(m.prefill(&mut cache, &both_rows(&plain)).unwrap()),
        &first,
        "c2i default null class",
    );
}

#[test]
fn llamagen_t2i_parity() {
    let r = Reference::open("llamagen_t2i");
    let m = llamagen(
        "llamagen_t2i",
        LlamaGenTask::TextToImage {
            caption_dim: 32,
            slots: 120,
        },
    );
    let (_, caps) = r.f32("caption_embs_left_padded");
    let (_, mask) = r.f32("emb_mask");
    let valid = mask.iter().filter(|&&x| x > 0.5).count();
    let cap = 32;
    let embeddings = burn::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(caps[(120 - valid) * cap..].to_vec(), [valid, cap]),
        &device(),
    );
    let mut cache = m.new_cache(2, 136).unwrap();
    let first = m
        .prefill_captions(
            &mut cache,
            &[Some(sjd2_models::CaptionRow { embeddings }), None],
            &[valid, valid],
        )
        .unwrap();
    check_llamagen_steps("llamagen_t2i", &m, cache, host(first));
}

#[test]
fn t5_encoder_parity() {
    use sjd2_models::t5::T5Encoder;
    let r = Reference::open("t5_encoder");
    let d = device();
    let enc = T5Encoder::load(fixtures().join("t5_encoder/hf"), 120, &d).unwrap();
    let (shape, ids) = r.0.read_i64("input_ids").unwrap();
    let (_, mask) = r.0.read_i64("attention_mask").unwrap();
    let ids_t = burn::Tensor::<2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(ids.clone(), [shape[0], shape[1]]),
        &d,
    );
    let mask_b: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
    let out = enc.encode(ids_t, &mask_b).unwrap();
    let (_, last) = r.f32("last_hidden_state");
    let (_, hidden) = r.f32("hidden_states");
    let dm = enc.config().d_model;
    let per = shape[0] * shape[1] * dm;
    // Padded positions are not meaningful outputs; compare the real tokens only.
    let keep = |v: &[f32]| -> Vec<f32> {
        v.chunks(dm)
            .zip(&mask_b)
            .filter(|(_, m)| **m)
            .flat_map(|(c, _)| c.to_vec())
            .collect()
    };
    for (i, s) in out.hidden_states.iter().enumerate() {
        assert_close(
            &keep(&host(s.clone())),
            &keep(&hidden[i * per..(i + 1) * per]),
            &format!("t5 hidden_states[{i}]"),
        );
    }
    assert_close(
        &keep(&host(out.last_hidden_state)),
        &keep(&last),
        "t5 last_hidden_state",
    );
    // As a caption encoder, one unpadded caption gives the same rows.
    let n0 = mask_b[..shape[1]].iter().filter(|&&m| m).count();
    let first: Vec<u32> = ids[..n0].iter().map(|&x| x as u32).collect();
    let e = sjd2_models::CaptionEncoder::encode(&enc, &first).unwrap();
    assert_close(&host(e), &last[..n0 * dm], "t5 caption encoder");
}

#[test]
fn t5_truncation_keeps_the_final_end_of_sequence() {
    use sjd2_models::CaptionEncoder;
    use sjd2_models::t5::T5Encoder;
    let d = device();
    let enc = T5Encoder::load(fixtures().join("t5_encoder/hf"), 4, &d).unwrap();
    let eos = enc.config().eos_token_id;
    // As transformers truncates `text</s>` to 4 tokens: three words, then `</s>`.
    let long = host(CaptionEncoder::encode(&enc, &[5, 6, 7, 8, 9, eos]).unwrap());
    let cut = host(CaptionEncoder::encode(&enc, &[5, 6, 7, eos]).unwrap());
    assert_eq!(long, cut);
    // Ids without a final `</s>` are only cut.
    let raw = host(CaptionEncoder::encode(&enc, &[5, 6, 7, 8, 9]).unwrap());
    assert_eq!(
        raw,
        host(CaptionEncoder::encode(&enc, &[5, 6, 7, 8]).unwrap())
    );
}
