//! VQ decode with arbitrary code grids on the LlamaGen VQ fixture.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sjd2_core::Device;
use sjd2_models::vq::{ImageDecoder, VqConfig, VqLayout, VqModel, to_rgb8};

fn vq() -> &'static VqModel {
    static V: OnceLock<VqModel> = OnceLock::new();
    V.get_or_init(|| {
        let mut c = VqConfig::vq16();
        c.ch = 32;
        c.z_channels = 32;
        c.codebook_size = 64;
        c.layout = VqLayout::Vq16 { prefix: String::new() };
        let dir = std::env::var("SJD2_FIXTURES").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../sjd2-models/tests/fixtures/reference-models").into());
        VqModel::load(format!("{dir}/llamagen_vq/weights.safetensors"), c, &Device::flex()).expect("the VQ fixture loads")
    })
}

fuzz_target!(|b: &[u8]| {
    if b.len() < 2 {
        return;
    }
    let (rows, cols) = (b[0] as usize % 4, b[1] as usize % 4);
    let codes: Vec<u32> = b[2..].iter().take(16).map(|&x| u32::from(x)).collect();
    if let Ok(img) = vq().decode(&codes, rows, cols) {
        let _ = to_rgb8(img);
    }
});
