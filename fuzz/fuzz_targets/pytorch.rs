//! Arbitrary bytes as a PyTorch checkpoint (`.pt`, zip or legacy pickle): open, read, and load a
//! tiny transformer from it through the models' burn-store path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sjd2_models::weights::Checkpoint;

#[path = "common/backbone.rs"]
mod backbone;
use backbone::load_backbone;

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
