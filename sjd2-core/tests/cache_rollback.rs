//! Logits computed through the KV cache, after rollbacks and re-feeds, equal a fresh full pass.
#![allow(clippy::unwrap_used)]

use burn::tensor::Device;
use sjd2_core::error::tensor_to_vec;
use sjd2_core::ids_tensor;
use sjd2_core::testing::{ToyConfig, ToyModel};
use sjd2_core::{DecodeCache, JacobiDenoiser, Prompt, PromptRow, Role};

const TOL: f32 = 1e-4;

fn model() -> ToyModel {
    let cfg = ToyConfig {
        image_vocab: 16,
        text_vocab: 6,
        hidden: 32,
        heads: 4,
        rows: 4,
        cols: 4,
        seed: 5,
        ..ToyConfig::default()
    };
    ToyModel::new(cfg, &Device::flex()).unwrap()
}

fn assert_rows_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let max = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max < TOL, "{what}: max abs error {max}");
}

#[test]
fn rollback_and_refeed_equals_full_pass() {
    let m = model();
    let v = m.config().vocab();
    let device = Device::flex();
    let prompts = [
        Prompt::new(vec![m.config().text_token(0), m.config().text_token(3)]),
        Prompt::new(vec![
            m.config().text_token(1),
            m.config().text_token(2),
            m.config().text_token(4),
            m.config().text_token(5),
        ]),
    ];
    let truth: [Vec<u32>; 2] = [vec![3, 7, 7, 1, 12, 0, 9], vec![15, 2, 8, 8, 4, 6, 11]];
    let rows: Vec<PromptRow> = prompts
        .iter()
        .map(|p| PromptRow {
            prompt: p,
            role: Role::Conditional,
        })
        .collect();
    let mut cache = m.new_cache(2, 32).unwrap();
    let first = tensor_to_vec(m.prefill(&mut cache, &rows).unwrap(), "prefill").unwrap();
    let full: Vec<Vec<f32>> = (0..2)
        .map(|r| {
            let mut seq = prompts[r].tokens.clone();
            seq.extend(&truth[r]);
            m.full_pass(&seq).unwrap()
        })
        .collect();
    for r in 0..2 {
        let p = prompts[r].tokens.len();
        assert_rows_close(
            &first[r * v..(r + 1) * v],
            &full[r][(p - 1) * v..p * v],
            "prefill",
        );
    }
    // Pass 1: feed the true first token and three drafts, the second one wrong.
    let window = |a: &[u32], b: &[u32]| {
        let mut ids = a.to_vec();
        ids.extend(b);
        m.embed_tokens(ids_tensor(&ids, [2, a.len()], &device))
            .unwrap()
    };
    let w1 = [
        [truth[0][0], truth[0][1], 0, 0],
        [truth[1][0], truth[1][1], 1, 1],
    ];
    let out = tensor_to_vec(
        m.forward(&mut cache, window(&w1[0], &w1[1])).unwrap(),
        "pass 1",
    )
    .unwrap();
    for r in 0..2 {
        let p = prompts[r].tokens.len();
        // Outputs 0 and 1 follow true tokens only.
        assert_rows_close(
            &out[(r * 4) * v..(r * 4 + 2) * v],
            &full[r][p * v..(p + 2) * v],
            "pass 1 prefix",
        );
    }
    // Accept two tokens in row 0, one in row 1 (different lengths), then re-feed the truth.
    let lens = cache.lens().to_vec();
    cache.rollback_to(0, lens[0] - 2).unwrap();
    cache.rollback_to(1, lens[1] - 3).unwrap();
    let w2 = [truth[0][2..5].to_vec(), truth[1][1..4].to_vec()];
    let out = tensor_to_vec(
        m.forward(&mut cache, window(&w2[0], &w2[1])).unwrap(),
        "pass 2",
    )
    .unwrap();
    let starts = [prompts[0].tokens.len() + 2, prompts[1].tokens.len() + 1];
    for r in 0..2 {
        assert_rows_close(
            &out[(r * 3) * v..(r * 3 + 3) * v],
            &full[r][starts[r] * v..(starts[r] + 3) * v],
            "after rollback",
        );
    }
    assert_eq!(
        cache.lens(),
        &[prompts[0].tokens.len() + 5, prompts[1].tokens.len() + 4]
    );
}
