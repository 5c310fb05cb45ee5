//! Arbitrary bytes as a safetensors file (and as a shard index naming it): open, list, read,
//! and load a tiny transformer from it through the models' burn-store path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sjd2_models::weights::Checkpoint;

#[path = "common/backbone.rs"]
mod backbone;
use backbone::load_backbone;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("sjd2-fuzz-st-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("model.safetensors");
    if std::fs::write(&file, data).is_err() {
        return;
    }
    if let Ok(ck) = Checkpoint::open(&file) {
        let names: Vec<String> = ck.names().map(str::to_string).collect();
        for n in names.iter().take(16) {
            let _ = ck.read_f32(n);
            let _ = ck.read_i64(n);
        }
        load_backbone(ck);
    }
    // The same bytes as a shard index next to a file it may name.
    let index = dir.join("model.safetensors.index.json");
    if std::fs::write(&index, data).is_ok() {
        let _ = Checkpoint::open(&index);
    }
});
