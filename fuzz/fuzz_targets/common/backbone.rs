//! Shared by the checkpoint fuzz targets.

use sjd2_models::llama::{Backbone, BackboneConfig, KeyNames, NormPlacement, RopeKind};
use sjd2_models::weights::{Checkpoint, WeightLoader};

/// The loading path models use: a tiny backbone (Hugging Face names under `model.`) through
/// burn-store's applier, with every problem collected.
pub fn load_backbone(ck: Checkpoint) {
    let config = BackboneConfig {
        hidden: 4,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        head_dim: 2,
        intermediate: 4,
        vocab: 4,
        output_vocab: 4,
        rms_eps: 1e-5,
        rope: RopeKind::Sequence { theta: 10000.0 },
        max_positions: 8,
        qk_norm_eps: Some(1e-5),
        norm: NormPlacement::Pre,
    };
    let device = burn::tensor::Device::flex();
    let mut loader = WeightLoader::new(ck, &device);
    let names = KeyNames::hugging_face("model.", "lm_head.weight");
    let _ = Backbone::load(config, &names, &mut loader, &device);
    let _ = loader.finish(|_| false);
}
