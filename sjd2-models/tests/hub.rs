//! Checkpoints by Hugging Face repository id, offline, from a cache laid out as
//! `huggingface_hub` lays it out (`models--owner--name/{refs/main, snapshots/<commit>/…}`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{chameleon_image, fixtures};
use sjd2_core::JacobiDenoiser;
use sjd2_models::LoadError;
use sjd2_models::chameleon::Chameleon;
use sjd2_models::hub::{Cache, resolve_in};

/// A cache holding `files` (name → source file) of `repo` at commit `abc123` on `main`.
fn cache_with(root: &Path, repo: &str, files: &[(&str, &Path)]) -> Cache {
    let hub = root.join("hub");
    let folder = hub.join(format!("models--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(folder.join("refs")).unwrap();
    std::fs::write(folder.join("refs/main"), "abc123").unwrap();
    let snap = folder.join("snapshots/abc123");
    std::fs::create_dir_all(&snap).unwrap();
    for (name, src) in files {
        std::fs::copy(src, snap.join(name)).unwrap();
    }
    Cache::new(hub)
}

#[test]
fn a_cached_repository_resolves_offline_and_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("chameleon/hf");
    let cache = cache_with(
        tmp.path(),
        "Alpha-VLLM/Lumina-mGPT-7B-768",
        &[
            ("config.json", &src.join("config.json")),
            ("model.safetensors", &src.join("model.safetensors")),
            (
                "generation_config.json",
                &src.join("generation_config.json"),
            ),
        ],
    );
    let dir = resolve_in(&cache, "Alpha-VLLM/Lumina-mGPT-7B-768", None, true).unwrap();
    assert!(dir.ends_with("snapshots/abc123"), "{}", dir.display());
    let (m, _) = Chameleon::load(
        &dir,
        |_| Ok(chameleon_image(2, 3)),
        &sjd2_core::Device::flex(),
    )
    .unwrap();
    assert_eq!(m.layout().rows(), 2);
}

#[test]
fn a_sharded_repository_needs_every_shard_and_names_the_missing_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("chameleon/hf");
    let index = tmp.path().join("index.json");
    std::fs::write(
        &index,
        r#"{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    let cache = cache_with(
        tmp.path(),
        "owner/sharded",
        &[
            ("config.json", &src.join("config.json")),
            ("model.safetensors.index.json", &index),
            (
                "model-00001-of-00002.safetensors",
                &src.join("model.safetensors"),
            ),
        ],
    );
    let e = resolve_in(&cache, "owner/sharded", None, true).unwrap_err();
    assert!(matches!(e, LoadError::Hub { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("model-00002-of-00002.safetensors") && msg.contains("owner/sharded"),
        "{msg}"
    );
    // Another revision is another snapshot: not cached, so offline it is an error too.
    let e = resolve_in(&cache, "owner/sharded", Some("v2"), true).unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
    // Not a repository id at all.
    assert!(resolve_in(&cache, "not/a/repo", None, true).is_err());
}
