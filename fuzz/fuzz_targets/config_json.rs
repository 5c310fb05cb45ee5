//! Arbitrary bytes as model config JSON: parse, resolve the backbone config, validate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sjd2_models::config::TextConfig;
use sjd2_models::t5::T5Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = serde_json::from_slice::<TextConfig>(data) {
        for qk in [false, true] {
            let _ = c.backbone(qk).validate();
        }
    }
    let _ = serde_json::from_slice::<T5Config>(data);
});
