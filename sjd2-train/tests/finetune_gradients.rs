//! The training forward's loss and gradients against an independent PyTorch reference
//! (`scripts/finetune_reference.py`: transformers' Chameleon on the fixture, the layout, the
//! normalization and the level embedding written out in torch): 1e-4 relative.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use burn::tensor::Device;
use sjd2_core::{
    EmbeddingNormalizer, JacobiDenoiser, NoiseSchedule, NormalizationKind, Prompt, Role,
};
use sjd2_models::TrainingExample;
use sjd2_models::chameleon::{Chameleon, ChameleonImage};
use sjd2_models::weights::Checkpoint;
use sjd2_train::finetune::{NoisePlan, next_clean_token_loss};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err / scale < 1e-4,
        "{what}: max error {err} against max |value| {scale}"
    );
}

#[test]
fn loss_and_gradients_match_pytorch() {
    let r = Checkpoint::open(root().join("tests/fixtures/finetune_reference.safetensors")).unwrap();
    let ints = |n: &str| r.read_i64(n).unwrap();
    let floats = |n: &str| r.read_f32(n).unwrap().1;
    let (shape, _) = ints("ids");
    let (b, len) = (shape[0], shape[1]);
    let device = Device::flex().autodiff();
    let image = ChameleonImage {
        rows: 4,
        cols: 4,
        prefix: vec![37, 52, 53],
        row_end: Some(51),
        end_tokens: vec![36],
        unconditional: sjd2_models::Unconditional::PrefixOnly,
    };
    let dir = root().join("../sjd2-models/tests/fixtures/reference-models/chameleon/hf");
    let (model, _) = Chameleon::load(&dir, |_| Ok(image), &device).unwrap();
    // The grid's token ids, as VQ codes through the model's own code map.
    let grid: Vec<u32> = ints("grid").1.iter().map(|&t| t as u32).collect();
    let mut span = Vec::new();
    for row in grid.chunks(4) {
        span.extend_from_slice(row);
        span.push(51);
    }
    span.push(36);
    let codes = model.image_codes(&span).unwrap();
    assert_eq!(model.image_ids(&codes).unwrap(), span);
    let prompt = Prompt::new(vec![1, 40, 41, 42]);
    let rows = [Role::Conditional, Role::Unconditional].map(|role| TrainingExample {
        prompt: &prompt,
        role,
        codes: &codes,
    });
    let batch = model.training_batch(&rows).unwrap();
    assert_eq!(batch.len, len);
    // Layout: the same targets and scored positions as the hand-written reference layout
    // (before the noise plan trims scoring after the last noisy input).
    let targets: Vec<i64> = batch.targets.iter().map(|&t| i64::from(t)).collect();
    assert_eq!(targets, ints("targets").1);
    let noisy: Vec<bool> = ints("noisy").1.iter().map(|&v| v != 0).collect();
    let scored: Vec<bool> = ints("scored").1.iter().map(|&v| v != 0).collect();
    for (i, (&mine, &theirs)) in batch.scored.iter().zip(&scored).enumerate() {
        assert!(mine || !theirs, "position {i} scored by the reference only");
    }
    for (r, g) in batch.grid_inputs.iter().enumerate() {
        for p in 0..len {
            if noisy[r * len + p] {
                assert!(g.contains(&p), "noise outside the grid at {r},{p}");
            }
        }
    }
    // The reference's α, σ are this schedule's at its levels.
    let level = floats("level");
    let (alpha, sigma) = (floats("alpha"), floats("sigma"));
    let table = NoiseSchedule::default().table(4).unwrap();
    for i in 0..b * len {
        if noisy[i] {
            let k = (level[i] * 4.0).round() as usize;
            assert!((table.alpha(k) as f32 - alpha[i]).abs() < 1e-6);
            assert!((table.sigma(k) as f32 - sigma[i]).abs() < 1e-6);
        }
    }
    let plan = NoisePlan {
        alpha,
        sigma,
        level,
        noisy,
        scored,
        eps: floats("eps"),
    };
    let normalizer = EmbeddingNormalizer::from_table(
        model.image_embedding_table().unwrap().inner(),
        NormalizationKind::PerDimension,
    )
    .unwrap();
    let (loss, _) = next_clean_token_loss(&model, batch, &plan, &normalizer, true).unwrap();
    let got: f32 = loss.clone().inner().into_scalar();
    let want = floats("loss")[0];
    assert!(
        (got - want).abs() / want.abs() < 1e-4,
        "loss {got} vs {want}"
    );
    let grads = loss.backward();
    let bb = model.backbone();
    let host = |t: burn::Tensor<2>| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    // burn's Linear stores [in, out]: transpose to PyTorch's [out, in].
    let checks: Vec<(&str, Vec<f32>)> = vec![
        (
            "model.embed_tokens.weight",
            host(bb.embed_tokens.weight.grad(&grads).unwrap()),
        ),
        (
            "model.layers.0.self_attn.q_proj.weight",
            host(
                bb.layers[0]
                    .self_attn
                    .q_proj
                    .weight
                    .grad(&grads)
                    .unwrap()
                    .transpose(),
            ),
        ),
        (
            "model.layers.1.mlp.down_proj.weight",
            host(
                bb.layers[1]
                    .mlp
                    .down_proj
                    .weight
                    .grad(&grads)
                    .unwrap()
                    .transpose(),
            ),
        ),
        (
            "lm_head.weight",
            host(bb.lm_head.weight.grad(&grads).unwrap().transpose()),
        ),
    ];
    for (name, got) in checks {
        close(&got, &floats(&format!("grad.{name}")), name);
    }
}
