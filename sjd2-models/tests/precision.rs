//! A bf16 checkpoint loaded onto a device configured for bf16 keeps its weights, KV cache and
//! compute in bf16 (never expanded to f32) and still computes the reference logits to bf16
//! precision. Its own test binary: a device's float dtype is set once per process.
#![allow(clippy::unwrap_used)]

mod common;

use burn::tensor::{DType, Device};
use common::{Reference, fixtures, host, ids_tensor, max_abs};
use sjd2_core::{JacobiDenoiser, Precision, configure_precision};
use sjd2_models::chameleon::Chameleon;
use sjd2_models::weights::StoredDtype;

#[test]
fn bf16_checkpoint_on_a_bf16_device_stays_bf16() {
    let mut device = Device::flex();
    configure_precision(&mut device, Precision::BF16).unwrap();

    // The chameleon fixture rewritten in bf16.
    let dir = std::env::temp_dir().join(format!("sjd2-precision-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tensors = common::all_tensors(&fixtures().join("chameleon/hf"));
    common::write_tensors(&dir.join("model.safetensors"), &tensors, StoredDtype::BF16);
    std::fs::copy(
        fixtures().join("chameleon/hf/config.json"),
        dir.join("config.json"),
    )
    .unwrap();

    let (m, _) = Chameleon::load(&dir, |_| Ok(common::chameleon_image(2, 3)), &device).unwrap();
    let b = m.backbone();
    assert_eq!(b.embedding_table().dtype(), DType::BF16);
    for layer in &b.layers {
        assert_eq!(layer.self_attn.q_proj.weight.val().dtype(), DType::BF16);
        assert_eq!(layer.mlp.down_proj.weight.val().dtype(), DType::BF16);
        assert_eq!(layer.input_layernorm.gamma.val().dtype(), DType::BF16);
    }
    assert_eq!(b.lm_head.weight.val().dtype(), DType::BF16);

    let r = Reference::open("chameleon");
    let ids = r.ids("input_ids");
    let (_, want) = r.f32("logits_raw");
    let mut cache = m.new_cache(1, ids.len()).unwrap();
    let logits = m
        .forward_tokens(&mut cache, ids_tensor(&ids, &device))
        .unwrap();
    let got = host(logits);
    let err = max_abs(&got, &want);
    let scale = want.iter().fold(0.0f32, |a, x| a.max(x.abs()));
    eprintln!("bf16 logits: max abs error {err:.3e} (largest logit {scale:.3})");
    // bf16 keeps 8 significant bits: a few percent of the largest logit.
    assert!(err < 0.05 * scale.max(1.0), "{err} vs scale {scale}");
    std::fs::remove_dir_all(dir).unwrap();
}
