//! `pipeline::Pipeline`: what it refuses, with the file or field named. (Loading real layouts
//! needs checkpoints with real vocabularies; the tiny fixtures have none.)
#![allow(clippy::unwrap_used)]

mod common;

use common::fixtures;
use sjd2_core::Device;
use sjd2_models::LoadError;
use sjd2_models::pipeline::{Family, Files, Pipeline};

#[test]
fn missing_files_and_unknown_sizes_are_named() {
    let d = Device::flex();
    // The Emu3 fixture has no tokenizer: the error names the file to give with --tokenizer.
    let e = Pipeline::load(Family::Emu3, &Files::new(fixtures().join("emu3/hf")), &d).unwrap_err();
    assert!(matches!(e, LoadError::Io { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    // A LlamaGen checkpoint of no gpt.py size cannot be sized from its shapes.
    let files = Files::new(fixtures().join("llamagen_c2i/weights.safetensors"))
        .with_vq(fixtures().join("llamagen_vq/weights.safetensors"));
    let e = Pipeline::load(Family::LlamagenC2i, &files, &d).unwrap_err();
    assert!(e.to_string().contains("tok_embeddings.weight"), "{e}");
    // A repository id that is not in the cache, offline.
    let tmp = tempfile::tempdir().unwrap();
    let e = sjd2_models::hub::resolve_in(
        &sjd2_models::hub::Cache::new(tmp.path().to_path_buf()),
        "owner/none",
        None,
        true,
    )
    .unwrap_err();
    assert!(e.to_string().contains("owner/none"), "{e}");
}
