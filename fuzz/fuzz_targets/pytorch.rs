//! Arbitrary bytes as a PyTorch checkpoint (`.pt`, zip or legacy pickle): open, read, and load a
//! tiny transformer from it through the models' burn-store path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sjd2_models::llama::{Backbone, BackboneConfig, KeyNames, NormPlacement, RopeKind};
use sjd2_models::weights::{Checkpoint, WeightLoader};

/// The loading path models use: a tiny backbone (Hugging Face names under `model.`) through
/// burn-store's applier, with every problem collected.
fn load_backbone(ck: Checkpoint) {
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

fuzz_target!(|data: &[u8]| {
    let file = std::env::temp_dir().join(format!("sjd2-fuzz-{}.pt", std::process::id()));
    if std::fs::write(&file, data).is_err() {
        return;
    }
    if let Ok(ck) = Checkpoint::open(&file) {
        let names: Vec<String> = ck.names().map(str::to_string).collect();
        for n in names.iter().take(16) {
            let _ = ck.read_f32(n);
        }
        load_backbone(ck);
    }
});
