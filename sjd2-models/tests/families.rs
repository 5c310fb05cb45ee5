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

#[test]
fn emu3_tokens_come_from_the_vocabulary_map() {
    use sjd2_models::emu3::Emu3Tokens;
    let config = fixtures().join("emu3/hf/config.json");
    let t = Emu3Tokens::from_config(&config).unwrap().unwrap();
    // The ids the fixture's generator recorded (meta.json `token_ids`).
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("emu3/meta.json")).unwrap())
            .unwrap();
    let ids = &meta["token_ids"];
    let id = |k: &str| ids[k].as_u64().unwrap() as u32;
    assert_eq!(
        [t.pad, t.bos, t.eos, t.eol, t.eof, t.boi, t.eoi, t.img],
        [
            id("pad(<|endoftext|>)"),
            id("bos(<|extra_203|>)"),
            id("eos(<|extra_204|>)"),
            id("eol(<|extra_200|>)"),
            id("eof(<|extra_201|>)"),
            id("boi(<|image start|>)"),
            id("eoi(<|image end|>)"),
            id("img(<|image token|>)"),
        ]
    );
    assert_eq!(t.visual_start, id("visual_token_0"));
    assert_eq!(t.visual_start + t.visual_count - 1, id("visual_token_last"));

    // A map without a token Emu3 needs names it; a config without a map defers to the tokenizer.
    let dir = tempfile::tempdir().unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["vocabulary_map"]
        .as_object_mut()
        .unwrap()
        .remove("<|image start|>");
    let broken = dir.path().join("config.json");
    std::fs::write(&broken, v.to_string()).unwrap();
    let e = Emu3Tokens::from_config(&broken).unwrap_err();
    assert!(
        matches!(&e, LoadError::Config { field, reason, .. }
            if field == "vocabulary_map" && reason.contains("<|image start|>")),
        "{e}"
    );
    v.as_object_mut().unwrap().remove("vocabulary_map");
    std::fs::write(&broken, v.to_string()).unwrap();
    assert!(Emu3Tokens::from_config(&broken).unwrap().is_none());
}
