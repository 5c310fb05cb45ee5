//! Bad checkpoints give clear errors naming the tensor or file; never a panic.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use common::{fixtures, host, ids_tensor, max_abs};
use sjd2_models::chameleon::{Chameleon, ChameleonImage};
use sjd2_models::emu3::{Emu3, Emu3Image, Emu3Tokens};
use sjd2_models::weights::{Checkpoint, StoredDtype, write_safetensors};
use sjd2_models::{LlamaT2I, LoadError};

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sjd2-load-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn chameleon_tensors() -> Tensors {
    common::all_tensors(&fixtures().join("chameleon/hf"))
}

fn write(dir: &Path, file: &str, tensors: &Tensors, dtype: StoredDtype) {
    common::write_tensors(&dir.join(file), tensors, dtype);
    std::fs::copy(
        fixtures().join("chameleon/hf/config.json"),
        dir.join("config.json"),
    )
    .unwrap();
}

fn image() -> ChameleonImage {
    common::chameleon_image(2, 3)
}

fn load(dir: &Path) -> Result<LlamaT2I, LoadError> {
    Chameleon::load(dir, |_| Ok(image()), &Device::flex()).map(|(m, _)| m)
}

fn logits(m: &LlamaT2I) -> Vec<f32> {
    let ids = [1, 40, 41, 42, 37, 52, 53, 19, 8];
    let mut cache = m.new_cache_for_test(ids.len());
    host(
        m.forward_tokens(&mut cache, ids_tensor(&ids, &Device::flex()))
            .unwrap(),
    )
}

trait TestCache {
    fn new_cache_for_test(&self, n: usize) -> sjd2_core::KvCache;
}

impl TestCache for LlamaT2I {
    fn new_cache_for_test(&self, n: usize) -> sjd2_core::KvCache {
        use sjd2_core::JacobiDenoiser;
        self.new_cache(1, n).unwrap()
    }
}

#[test]
fn missing_renamed_and_reshaped_tensors_are_named() {
    let dir = temp_dir("mismatch");
    let mut t = chameleon_tensors();
    t.retain(|(n, _, _)| n != "model.layers.1.mlp.up_proj.weight");
    for (n, s, _) in t.iter_mut() {
        if n == "model.layers.0.self_attn.q_norm.weight" {
            *n = "model.layers.0.self_attn.q_norm.gain".into();
        }
        if n == "model.norm.weight" {
            *s = vec![1, 64];
        }
    }
    write(&dir, "model.safetensors", &t, StoredDtype::F32);
    match load(&dir) {
        Err(LoadError::Mismatch {
            missing,
            unexpected,
            mis_shaped,
            ..
        }) => {
            assert!(
                missing.contains(&"model.layers.1.mlp.up_proj.weight".to_string()),
                "{missing:?}"
            );
            assert!(
                missing.contains(&"model.layers.0.self_attn.q_norm.weight".to_string()),
                "{missing:?}"
            );
            assert_eq!(
                unexpected,
                vec!["model.layers.0.self_attn.q_norm.gain".to_string()]
            );
            assert_eq!(
                mis_shaped,
                vec![("model.norm.weight".to_string(), vec![64], vec![1, 64])]
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    let msg = load(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("up_proj") && msg.contains("q_norm.gain") && msg.contains("model.norm.weight"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn truncated_and_garbage_files_are_corrupt() {
    let dir = temp_dir("truncated");
    write(
        &dir,
        "model.safetensors",
        &chameleon_tensors(),
        StoredDtype::F32,
    );
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let e = load(&dir).unwrap_err();
    assert!(
        matches!(&e, LoadError::Corrupt { detail, .. } if detail.contains("truncated")),
        "{e}"
    );
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(matches!(load(&dir).unwrap_err(), LoadError::Corrupt { .. }));
    std::fs::write(&path, [1u8, 2, 3]).unwrap();
    assert!(matches!(load(&dir).unwrap_err(), LoadError::Corrupt { .. }));
    std::fs::write(dir.join("config.json"), b"{ not json").unwrap();
    let e = load(&dir).unwrap_err();
    assert!(
        matches!(&e, LoadError::Corrupt { path, .. } if path.ends_with("config.json")),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(load(&dir).unwrap_err(), LoadError::Io { .. }));
}

#[test]
fn wrong_family_is_a_mismatch() {
    let e = Emu3::load(
        fixtures().join("chameleon/hf"),
        Emu3Tokens {
            pad: 0,
            bos: 1,
            eos: 2,
            eol: 3,
            eof: 4,
            boi: 5,
            eoi: 6,
            img: 7,
            visual_start: 4,
            visual_count: 32,
        },
        Emu3Image {
            rows: 2,
            cols: 2,
            size_tokens: vec![],
            negative: vec![1],
        },
        &Device::flex(),
    )
    .unwrap_err();
    match e {
        LoadError::Mismatch { unexpected, .. } => assert!(
            unexpected.iter().any(|n| n.contains("q_norm")),
            "{unexpected:?}"
        ),
        other => panic!("expected a mismatch, got {other}"),
    }
}

#[test]
fn half_precision_checkpoints_load_as_f32() {
    let reference = logits(&load(&fixtures().join("chameleon/hf")).unwrap());
    for (dtype, tol) in [(StoredDtype::BF16, 0.3), (StoredDtype::F16, 0.05)] {
        let dir = temp_dir(&format!("{dtype:?}"));
        write(&dir, "model.safetensors", &chameleon_tensors(), dtype);
        let got = logits(&load(&dir).unwrap());
        let e = max_abs(&got, &reference);
        assert!(e < tol, "{dtype:?}: max abs error {e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn sharded_checkpoints_load_and_inconsistent_indexes_fail() {
    let reference = logits(&load(&fixtures().join("chameleon/hf")).unwrap());
    let dir = temp_dir("sharded");
    let t = chameleon_tensors();
    let (a, b) = t.split_at(t.len() / 2);
    write(
        &dir,
        "model-00001-of-00002.safetensors",
        &a.to_vec(),
        StoredDtype::F32,
    );
    write(
        &dir,
        "model-00002-of-00002.safetensors",
        &b.to_vec(),
        StoredDtype::F32,
    );
    let mut map = serde_json::Map::new();
    for (n, _, _) in a {
        map.insert(n.clone(), "model-00001-of-00002.safetensors".into());
    }
    for (n, _, _) in b {
        map.insert(n.clone(), "model-00002-of-00002.safetensors".into());
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map.clone() });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert_eq!(logits(&load(&dir).unwrap()), reference);
    map.insert(
        "model.norm.weight".into(),
        "model-00002-of-00002.safetensors".into(),
    );
    map.insert(a[0].0.clone(), "model-00002-of-00002.safetensors".into());
    let index = serde_json::json!({ "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    assert!(matches!(load(&dir).unwrap_err(), LoadError::Corrupt { .. }));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn lumina_style_single_row_qk_norms_are_repeated_over_heads() {
    // Lumina-mGPT's fork stores q/k norms as [1, head_dim]; the loader repeats them per head.
    let mut single = chameleon_tensors();
    let mut repeated = chameleon_tensors();
    for t in [&mut single, &mut repeated] {
        for (n, s, d) in t.iter_mut() {
            if n.contains("_norm.") && s.len() == 2 {
                *d = d[..s[1]].to_vec();
                *s = vec![1, s[1]];
            }
        }
    }
    for (n, s, d) in repeated.iter_mut() {
        if n.contains("_norm.") && s.len() == 2 {
            let heads = if n.contains("k_norm") || n.contains("q_norm") {
                4
            } else {
                1
            };
            *d = d.repeat(heads);
            *s = vec![heads, s[1]];
        }
    }
    let a = temp_dir("qk-single");
    let b = temp_dir("qk-repeated");
    write(&a, "model.safetensors", &single, StoredDtype::F32);
    write(&b, "model.safetensors", &repeated, StoredDtype::F32);
    let la = logits(&load(&a).unwrap());
    let lb = logits(&load(&b).unwrap());
    assert_eq!(la, lb);
    let original = logits(&load(&fixtures().join("chameleon/hf")).unwrap());
    assert!(max_abs(&la, &original) > 1e-3, "per-head norms must matter");
    std::fs::remove_dir_all(a).unwrap();
    std::fs::remove_dir_all(b).unwrap();
}

/// Headers that once could overflow or underflow the reader's arithmetic.
#[test]
fn hostile_safetensors_headers_are_corrupt_not_panics() {
    let dir = temp_dir("hostile");
    let path = dir.join("x.safetensors");
    let cases = [
        r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
        r#"{"a":{"dtype":"XYZ","shape":[2],"data_offsets":[16,0]}}"#,
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551615,18446744073709551615]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[],"data_offsets":[0]}}"#,
    ];
    for header in cases {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0u8; 16]);
        std::fs::write(&path, &bytes).unwrap();
        let e = Checkpoint::open(&path).unwrap_err();
        assert!(matches!(e, LoadError::Corrupt { .. }), "{header}: {e}");
    }
    // An unknown dtype with a consistent range opens, and reading it names the dtype.
    let header = r#"{"a":{"dtype":"XYZ","shape":[2],"data_offsets":[0,4]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 4]);
    std::fs::write(&path, &bytes).unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    assert!(matches!(
        ck.read_f32("a").unwrap_err(),
        LoadError::UnsupportedDtype { .. }
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn exported_backbones_load_back_in_every_layout() {
    use sjd2_models::llama::{Backbone, BackboneConfig, KeyNames, NormPlacement, RopeKind};
    use sjd2_models::weights::WeightLoader;
    let device = Device::flex();
    let config = BackboneConfig {
        hidden: 16,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        head_dim: 4,
        intermediate: 24,
        vocab: 11,
        output_vocab: 9,
        rms_eps: 1e-5,
        rope: RopeKind::Sequence { theta: 10000.0 },
        max_positions: 16,
        qk_norm_eps: Some(1e-5),
        norm: NormPlacement::Pre,
    };
    let dir = temp_dir("export");
    let ids = ids_tensor(&[1, 5, 7, 2, 9, 3], &device);
    for (tag, names, qk_norm) in [
        (
            "hf",
            KeyNames::hugging_face("model.", "lm_head.weight"),
            true,
        ),
        ("llamagen", KeyNames::llamagen(), false),
    ] {
        let config = BackboneConfig {
            qk_norm_eps: qk_norm.then_some(1e-5),
            ..config.clone()
        };
        device.seed(4);
        let a = Backbone::random(config.clone(), &device).unwrap();
        let tensors = a.export(&names).unwrap();
        if tag == "llamagen" {
            // One fused projection per layer, stored `[q; k; v]` rows by `in`.
            let (_, shape, _) = tensors
                .iter()
                .find(|(n, _, _)| n == "layers.0.attention.wqkv.weight")
                .unwrap();
            assert_eq!(shape, &vec![(4 + 2 + 2) * 4, 16]);
        }
        let refs: Vec<(&str, &[usize], &[f32])> = tensors
            .iter()
            .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
            .collect();
        let file = dir.join(format!("{tag}.safetensors"));
        write_safetensors(&file, &refs, StoredDtype::F32).unwrap();
        let mut loader = WeightLoader::new(Checkpoint::open(&file).unwrap(), &device);
        let b = Backbone::load(config, &names, &mut loader, &device).unwrap();
        loader.finish(|_| false).unwrap();
        let out = |m: &Backbone| host(m.logits(m.forward_sequence(m.embed(ids.clone())).unwrap()));
        assert_eq!(max_abs(&out(&a), &out(&b)), 0.0, "{tag}");
        if qk_norm {
            // Meta's layout holds one q/k norm affine for every head: per-head norms are an
            // error, not a mangled file.
            let e = a.export(&KeyNames::meta()).unwrap_err();
            assert!(e.to_string().contains("_normalization"), "{e}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn integer_weights_are_an_unsupported_dtype() {
    use safetensors::{Dtype, tensor::TensorView};
    let dir = temp_dir("int");
    let tensors = chameleon_tensors();
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| match n.as_str() {
            // The final norm as integers.
            "model.norm.weight" => (
                n.clone(),
                Dtype::I64,
                s.clone(),
                v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
            ),
            _ => (
                n.clone(),
                Dtype::F32,
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(n, d, s, b)| (n.as_str(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    std::fs::copy(
        fixtures().join("chameleon/hf/config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    match load(&dir) {
        Err(LoadError::UnsupportedDtype { name, dtype, .. }) => {
            assert_eq!(name, "model.norm.weight");
            assert!(dtype.contains("I64"), "{dtype}");
        }
        other => panic!("expected an unsupported dtype, got {other:?}"),
    }
    std::fs::remove_dir_all(dir).unwrap();
}
