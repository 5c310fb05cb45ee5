//! Parity with the reference implementations' outputs on the tiny fixtures (max abs error 1e-4).
#![allow(clippy::unwrap_used)]

mod common;

use burn::tensor::Device;
use common::{Reference, assert_close, fixtures, host, ids_tensor};
use sjd2_core::{GuidanceStyle, JacobiDenoiser, Prompt, PromptRow, Role, guide};
use sjd2_models::LlamaT2I;
use sjd2_models::chameleon::{Chameleon, ChameleonImage};
use sjd2_models::emu3::{Emu3, Emu3Image, Emu3Tokens};
use sjd2_models::{Unconditional, weights::Checkpoint};

fn device() -> Device {
    Device::flex()
}

/// The fixture's layout: prompt `[1, 40..=45, 50]`, then `<racm3:break>` and two size tokens,
/// 2 rows of 3 image tokens ended by token 51, then `<eoss>`.
fn chameleon(case: &str) -> LlamaT2I {
    let image = ChameleonImage {
        rows: 2,
        cols: 3,
        prefix: vec![37, 52, 53],
        row_end: Some(51),
        end_tokens: vec![36],
        unconditional: Unconditional::PrefixOnly,
    };
    Chameleon::load(fixtures().join(case).join("hf"), |_| Ok(image), &device())
        .unwrap()
        .0
}

fn slice(v: &[f32], vocab: usize, from: usize, to: usize) -> &[f32] {
    &v[from * vocab..to * vocab]
}

fn check_chameleon(case: &str) {
    let r = Reference::open(case);
    let m = chameleon(case);
    let d = device();
    let ids = r.ids("input_ids");
    let (_, raw) = r.f32("logits_raw");
    let (_, uncond_raw) = r.f32("uncond_logits_raw");
    let (_, hidden) = r.f32("hidden_states");
    let v = m.vocab_size();
    let h = m.hidden_size();

    // Full pass: logits and hidden states.
    let mut cache = m.new_cache(1, ids.len()).unwrap();
    let out = m
        .backbone()
        .forward(&mut cache, m.backbone().embed(ids_tensor(&ids, &d)), true)
        .unwrap();
    let n = ids.len();
    for (i, state) in out.layer_states.iter().enumerate() {
        assert_close(
            &host(state.clone()),
            &hidden[i * n * h..(i + 1) * n * h],
            &format!("{case} hidden_states[{i}]"),
        );
    }
    let last = out.layer_states.len();
    assert_close(
        &host(out.hidden.clone()),
        &hidden[last * n * h..],
        &format!("{case} final hidden"),
    );
    assert_close(
        &host(m.backbone().logits(out.hidden)),
        &raw,
        &format!("{case} logits_raw"),
    );

    // Chunked: prefill `prefill_len` tokens, then the rest as one window.
    let p = r.ids("prefill_len")[0] as usize;
    let mut cache = m.new_cache(1, n).unwrap();
    let a = m
        .forward_tokens(&mut cache, ids_tensor(&ids[..p], &d))
        .unwrap();
    let b = m
        .forward_tokens(&mut cache, ids_tensor(&ids[p..], &d))
        .unwrap();
    assert_close(
        &host(a),
        slice(&raw, v, 0, p),
        &format!("{case} chunked prefill"),
    );
    assert_close(
        &host(b),
        slice(&raw, v, p, n),
        &format!("{case} chunked window"),
    );

    // Decoder path: ragged [cond; uncond] prefill through the adapter's prompt rules, then the
    // image span as one window on both rows, then guidance.
    let prompt = Prompt::new(ids[..8].to_vec());
    let rows = [
        PromptRow {
            prompt: &prompt,
            role: Role::Conditional,
        },
        PromptRow {
            prompt: &prompt,
            role: Role::Unconditional,
        },
    ];
    let mut cache = m.new_cache(2, 32).unwrap();
    let first = host(m.prefill(&mut cache, &rows).unwrap());
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
    let span = &ids[11..19];
    let mut both = span.to_vec();
    both.extend_from_slice(span);
    let window = m.embed_tokens(ids2(&both, [2, span.len()], &d)).unwrap();
    let logits = m.forward(&mut cache, window).unwrap();
    let got = host(logits.clone());
    assert_close(
        &got[..8 * v],
        slice(&raw, v, 11, 19),
        &format!("{case} window cond"),
    );
    assert_close(
        &got[8 * v..],
        slice(&uncond_raw, v, 3, 11),
        &format!("{case} window uncond"),
    );
    let scale = r.scalar("cfg_scale");
    let guided = guide(
        logits.clone().narrow(0, 0, 1),
        logits.narrow(0, 1, 1),
        scale,
        GuidanceStyle::RawLogits,
    );
    let (_, tail) = r.f32("cfg_guided_logits_tail");
    assert_close(
        &host(guided),
        slice(&tail, v, 3, 11),
        &format!("{case} guided window"),
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

fn emu3_tokens() -> Emu3Tokens {
    Emu3Tokens {
        pad: 0,
        bos: 1,
        eos: 2,
        eol: 3,
        eof: 4,
        boi: 5,
        eoi: 6,
        img: 7,
        visual_start: 96,
        visual_count: 64,
    }
}

fn emu3_image() -> Emu3Image {
    Emu3Image {
        rows: 3,
        cols: 4,
        size_tokens: vec![30, 31, 32],
        negative: vec![1, 25, 26],
    }
}

fn emu3_from(dir: &std::path::Path) -> LlamaT2I {
    Emu3::load(dir, emu3_tokens(), emu3_image(), &device()).unwrap()
}

fn check_emu3(m: &LlamaT2I, what: &str) {
    let r = Reference::open("emu3");
    let d = device();
    let ids = r.ids("input_ids");
    let (_, logits) = r.f32("logits");
    let (_, hidden) = r.f32("hidden_states");
    let (v, h, n) = (m.vocab_size(), m.hidden_size(), ids.len());
    let mut cache = m.new_cache(1, n).unwrap();
    let out = m
        .backbone()
        .forward(&mut cache, m.backbone().embed(ids_tensor(&ids, &d)), true)
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
        &logits,
        &format!("{what} logits"),
    );

    // Prompt rows through the adapter: [BOS + text] + BOI + size + IMG; negative [1, 25, 26].
    let prompt = Prompt::new(ids[..6].to_vec());
    let rows = [
        PromptRow {
            prompt: &prompt,
            role: Role::Conditional,
        },
        PromptRow {
            prompt: &prompt,
            role: Role::Unconditional,
        },
    ];
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

    // Chunked KV: prefill `prefill_len`, then the rest.
    let p = r.ids("prefill_len")[0] as usize;
    let mut cache = m.new_cache(1, n).unwrap();
    let _ = m
        .forward_tokens(&mut cache, ids_tensor(&ids[..p], &d))
        .unwrap();
    let b = m
        .forward_tokens(&mut cache, ids_tensor(&ids[p..], &d))
        .unwrap();
    assert_close(
        &host(b),
        &logits[p * v..],
        &format!("{what} chunked window"),
    );
}

#[test]
fn emu3_parity_hf_layout() {
    let m = emu3_from(&fixtures().join("emu3/hf"));
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
    let m = emu3_from(&dir);
    check_emu3(&m, "emu3 (model.*)");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn ids2(ids: &[u32], shape: [usize; 2], device: &Device) -> burn::Tensor<2, burn::tensor::Int> {
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    burn::Tensor::from_data(burn::tensor::TensorData::new(v, shape), device)
}

fn janus_tokens() -> sjd2_models::janus::JanusTokens {
    sjd2_models::janus::JanusTokens {
        pad: 3,
        begin_of_image: 10,
    }
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
    let v = m.vocab_size();
    let h = m.hidden_size();
    // Inputs: prompt through the language model embedding, codes through gen_embed + aligner.
    let text = m.backbone().embed(ids_tensor(&prompt_ids, &d));
    let image = m.embed_tokens(ids_tensor(&codes[..8], &d)).unwrap();
    let (_, want_inputs) = r.f32("inputs_embeds");
    let inputs = burn::Tensor::cat(vec![text, image], 1);
    assert_close(
        &host(inputs.clone()),
        &want_inputs,
        &format!("{what} inputs_embeds"),
    );
    let n = 16;
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
    let rows = [
        PromptRow {
            prompt: &prompt,
            role: Role::Conditional,
        },
        PromptRow {
            prompt: &prompt,
            role: Role::Unconditional,
        },
    ];
    let uncond_ids = r.ids("uncond_prompt_ids");
    assert_eq!(
        m.row_tokens(&rows[1]).to_vec(),
        uncond_ids,
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
    let mut both = codes[..8].to_vec();
    both.extend_from_slice(&codes[..8]);
    let window = m.embed_tokens(ids2(&both, [2, 8], &d)).unwrap();
    let logits = m.forward(&mut cache, window).unwrap();
    let got = host(logits.clone());
    assert_close(
        &got[..8 * v],
        slice(&gen_cond, v, 8, 16),
        &format!("{what} window cond"),
    );
    assert_close(
        &got[8 * v..],
        slice(&gen_uncond, v, 8, 16),
        &format!("{what} window uncond"),
    );
    let guided = guide(
        logits.clone().narrow(0, 0, 1),
        logits.narrow(0, 1, 1),
        r.scalar("cfg_scale"),
        GuidanceStyle::RawLogits,
    );
    let (_, want) = r.f32("cfg_guided_gen_logits");
    assert_close(
        &host(guided),
        slice(&want, v, 1, 9),
        &format!("{what} guided window"),
    );
}

#[test]
fn janus_parity_hf_layout() {
    check_janus(&fixtures().join("janus/hf"), "janus (model.*)");
}

#[test]
fn janus_parity_original_layout() {
    check_janus(
        &fixtures().join("janus/weights_orig_layout_gen_path.safetensors"),
        "janus (gen_*)",
    );
}

fn llamagen_config(case: &str) -> sjd2_models::llamagen::LlamaGenConfig {
    use sjd2_models::llamagen::{LlamaGenConfig, LlamaGenTask};
    let task = if case == "llamagen_c2i" {
        LlamaGenTask::ClassToImage { num_classes: 10 }
    } else {
        LlamaGenTask::TextToImage {
            caption_dim: 32,
            slots: 120,
        }
    };
    LlamaGenConfig {
        dim: 64,
        n_layer: 2,
        n_head: 4,
        n_kv_head: None,
        multiple_of: 32,
        ffn_dim_multiplier: None,
        vocab_size: 64,
        grid: 4,
        rope_base: 10_000.0,
        norm_eps: 1e-5,
        task,
    }
}

fn llamagen(case: &str) -> LlamaT2I {
    sjd2_models::llamagen::LlamaGen::load(
        fixtures().join(case).join("weights.safetensors"),
        llamagen_config(case),
        &device(),
    )
    .unwrap()
}

/// Compares the first-token logits of `[cond; uncond]` and the image tokens fed as one window.
fn check_llamagen_steps(case: &str, m: &LlamaT2I, mut cache: sjd2_core::KvCache, first: Vec<f32>) {
    let r = Reference::open(case);
    let d = device();
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
    let mut both = tokens[..15].to_vec();
    both.extend_from_slice(&tokens[..15]);
    let logits = m
        .forward(
            &mut cache,
            m.embed_tokens(ids2(&both, [2, 15], &d)).unwrap(),
        )
        .unwrap();
    let got = host(logits.clone());
    assert_close(
        &got[..15 * v],
        slice(&cond, v, 1, 16),
        &format!("{case} window cond"),
    );
    assert_close(
        &got[15 * v..],
        slice(&uncond, v, 1, 16),
        &format!("{case} window uncond"),
    );
    let guided = guide(
        logits.clone().narrow(0, 0, 1),
        logits.narrow(0, 1, 1),
        r.scalar("cfg_scale"),
        GuidanceStyle::RawLogits,
    );
    let (_, want) = r.f32("cfg_guided_logits");
    assert_close(
        &host(guided),
        slice(&want, v, 1, 16),
        &format!("{case} guided window"),
    );
}

#[test]
fn llamagen_c2i_parity() {
    let r = Reference::open("llamagen_c2i");
    let m = llamagen("llamagen_c2i");
    let class = r.ids("class_label");
    let prompt = Prompt::new(class.clone()).with_negative(r.ids("null_class"));
    let rows = [
        PromptRow {
            prompt: &prompt,
            role: Role::Conditional,
        },
        PromptRow {
            prompt: &prompt,
            role: Role::Unconditional,
        },
    ];
    let mut cache = m.new_cache(2, 17).unwrap();
    let first = host(m.prefill(&mut cache, &rows).unwrap());
    check_llamagen_steps("llamagen_c2i", &m, cache, first.clone());
    // The default unconditional row is the null class too.
    let plain = Prompt::new(class);
    let rows = [
        PromptRow {
            prompt: &plain,
            role: Role::Conditional,
        },
        PromptRow {
            prompt: &plain,
            role: Role::Unconditional,
        },
    ];
    let mut cache = m.new_cache(2, 17).unwrap();
    assert_close(
        &host(m.prefill(&mut cache, &rows).unwrap()),
        &first,
        "c2i default null class",
    );
}

#[test]
fn llamagen_t2i_parity() {
    let r = Reference::open("llamagen_t2i");
    let m = llamagen("llamagen_t2i");
    let (_, caps) = r.f32("caption_embs_left_padded");
    let (_, mask) = r.f32("emb_mask");
    let valid = mask.iter().filter(|&&x| x > 0.5).count();
    let cap = 32;
    let rows_valid = &caps[(120 - valid) * cap..];
    let embeddings = burn::Tensor::<2>::from_data(
        burn::tensor::TensorData::new(rows_valid.to_vec(), [valid, cap]),
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
    let per = shape[0] * shape[1] * enc.config().d_model;
    // Padded positions are not meaningful outputs; compare the real tokens only.
    let dm = enc.config().d_model;
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
