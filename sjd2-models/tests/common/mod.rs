//! Fixture access for the parity tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use burn::Tensor;
use burn::tensor::{Device, Int, TensorData};
use sjd2_models::weights::Checkpoint;

pub const TOL: f32 = 1e-4;

/// The reference fixtures, `tests/fixtures/reference-models` of this crate (or `$SJD2_FIXTURES`).
pub fn fixtures() -> PathBuf {
    let dir = std::env::var_os("SJD2_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-models")
        });
    assert!(
        dir.is_dir(),
        "reference fixtures not found at {} (set SJD2_FIXTURES)",
        dir.display()
    );
    dir
}

pub struct Reference(pub Checkpoint);

impl Reference {
    pub fn open(case: &str) -> Self {
        Self(Checkpoint::open(fixtures().join(case).join("reference.safetensors")).unwrap())
    }

    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        self.0.read_f32(name).unwrap()
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        self.0
            .read_i64(name)
            .unwrap()
            .1
            .into_iter()
            .map(|x| x as u32)
            .collect()
    }

    pub fn scalar(&self, name: &str) -> f32 {
        self.f32(name).1[0]
    }
}

pub fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&x| i64::from(x)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), device)
}

pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let e = max_abs(got, want);
    assert!(e <= TOL, "{what}: max abs error {e} > {TOL}");
    eprintln!("{what}: max abs error {e:.2e}");
}

/// The tiny LlamaGen fixtures' architecture (`meta.json` args).
pub fn llamagen_config(
    task: sjd2_models::llamagen::LlamaGenTask,
) -> sjd2_models::llamagen::LlamaGenConfig {
    sjd2_models::llamagen::LlamaGenConfig::tiny(task)
}

/// The Emu3 fixture's special token ids, from its config's `vocabulary_map` (checked against
/// `meta.json` by `emu3_tokens_come_from_the_vocabulary_map` in `families.rs`).
pub fn emu3_tokens() -> sjd2_models::emu3::Emu3Tokens {
    sjd2_models::emu3::Emu3Tokens::from_config(fixtures().join("emu3/hf/config.json"))
        .unwrap()
        .expect("the Emu3 fixture's config has a vocabulary_map")
}

/// The Emu3 fixture's 3×4 image with size tokens `[30, 31, 32]` and negative prompt `[1, 25, 26]`.
pub fn emu3_image() -> sjd2_models::emu3::Emu3Image {
    sjd2_models::emu3::Emu3Image {
        rows: 3,
        cols: 4,
        size_tokens: vec![30, 31, 32],
        negative: vec![1, 25, 26],
    }
}

/// The Janus fixture's pad and begin-of-image ids.
pub fn janus_tokens() -> sjd2_models::janus::JanusTokens {
    sjd2_models::janus::JanusTokens {
        pad: 3,
        begin_of_image: 10,
    }
}

/// The Chameleon fixtures' Lumina-style span: `<racm3:break>` and two size tokens, `rows` rows of
/// `cols` image tokens each ended by token 51, then `<eoss>`.
pub fn chameleon_image(rows: usize, cols: usize) -> sjd2_models::chameleon::ChameleonImage {
    sjd2_models::chameleon::ChameleonImage {
        rows,
        cols,
        prefix: vec![37, 52, 53],
        row_end: Some(51),
        end_tokens: vec![36],
        unconditional: sjd2_models::Unconditional::PrefixOnly,
    }
}

/// Feeds the same `tokens` as one window on both rows of a `[cond; uncond]` cache and checks the
/// logits against reference positions `from..from+n` of `cond` and `uncond`, and the guided
/// logits against `guided[guided_from..]`.
#[allow(clippy::too_many_arguments)]
pub fn check_window(
    what: &str,
    m: &sjd2_models::LlamaT2I,
    cache: &mut sjd2_core::KvCache,
    tokens: &[u32],
    cond: &[f32],
    uncond: &[f32],
    from: usize,
    guided: (&[f32], usize, f32),
) {
    use sjd2_core::JacobiDenoiser;
    let d = Device::flex();
    let (n, v) = (tokens.len(), m.vocab_size());
    let mut both = tokens.to_vec();
    both.extend_from_slice(tokens);
    let ids: Vec<i64> = both.iter().map(|&x| i64::from(x)).collect();
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, n]), &d);
    let logits = m.forward(cache, m.embed_tokens(ids).unwrap()).unwrap();
    let got = host(logits.clone());
    assert_close(
        &got[..n * v],
        &cond[from * v..(from + n) * v],
        &format!("{what} window cond"),
    );
    assert_close(
        &got[n * v..],
        &uncond[from * v..(from + n) * v],
        &format!("{what} window uncond"),
    );
    let (want, gfrom, scale) = guided;
    let g = sjd2_core::guide(
        logits.clone().narrow(0, 0, 1),
        logits.narrow(0, 1, 1),
        scale,
        m.guidance_style(),
    );
    assert_close(
        &host(g),
        &want[gfrom * v..(gfrom + n) * v],
        &format!("{what} guided window"),
    );
}

/// Every tensor of a checkpoint as `f32`, by name (BatchNorm's integer `num_batches_tracked`
/// counters, which no model reads, left out).
pub fn all_tensors(path: &std::path::Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let ck = Checkpoint::open(path).unwrap();
    ck.names()
        .filter(|n| !n.ends_with(".num_batches_tracked"))
        .map(|n| {
            let (s, d) = ck.read_f32(n).unwrap();
            (n.to_string(), s, d)
        })
        .collect()
}

/// Writes `tensors` as a safetensors file in `dtype`.
pub fn write_tensors(
    path: &std::path::Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: sjd2_models::weights::StoredDtype,
) {
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice()))
        .collect();
    sjd2_models::weights::write_safetensors(path, &refs, dtype).unwrap();
}

/// The key-renaming rules `[pattern, replacement]` a fixture's `meta.json` lists under `key`
/// (written by the reference generator from the upstream conversion scripts).
fn meta_rules(case: &str, key: &str) -> Vec<(regex::Regex, String)> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join(case).join("meta.json")).unwrap())
            .unwrap();
    meta[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            // Python's `\1` group references as the regex crate's `${1}`.
            let to = regex::Regex::new(r"\\(\d)")
                .unwrap()
                .replace_all(r[1].as_str().unwrap(), "$${$1}")
                .into_owned();
            (regex::Regex::new(r[0].as_str().unwrap()).unwrap(), to)
        })
        .collect()
}

fn rename(rules: &[(regex::Regex, String)], name: &str) -> String {
    rules.iter().fold(name.to_string(), |n, (from, to)| {
        from.replace_all(&n, to.as_str()).into_owned()
    })
}

/// A checkpoint derived from the fixtures, written once per test process into Cargo's
/// temporary directory for integration tests (the content is deterministic, so processes that
/// race write the same bytes and the rename into place is atomic).
fn derived(file: &str, make: impl FnOnce() -> Vec<(String, Vec<usize>, Vec<f32>)>) -> PathBuf {
    static WRITTEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut written = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("derived-fixtures");
    let path = dir.join(file);
    if !written.iter().any(|f| f == file) {
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("{file}.{}.partial", std::process::id()));
        write_tensors(&tmp, &make(), sjd2_models::weights::StoredDtype::F32);
        std::fs::rename(&tmp, &path).unwrap();
        written.push(file.to_string());
    }
    path
}

/// The Janus fixture in the original Janus layout (generation path only: `language_model.*`,
/// `gen_vision_model.*`, `gen_embed`, `gen_aligner`, `gen_head`), written from the transformers
/// checkpoint with the fixture's own `hf_to_orig_key_regexes`; tensors those rules leave under
/// `model.` (the understanding path) are dropped. The values are the same f32 values.
pub fn janus_original_layout() -> PathBuf {
    derived("janus-original.safetensors", || {
        let rules = meta_rules("janus", "hf_to_orig_key_regexes");
        all_tensors(&fixtures().join("janus/hf/model.safetensors"))
            .into_iter()
            .map(|(n, s, d)| (rename(&rules, &n), s, d))
            .filter(|(n, _, _)| !n.starts_with("model."))
            .collect()
    })
}

/// Emu3's vision tokenizer in BAAI's original layout, written from the transformers checkpoint's
/// `vqmodel.*`: names mapped back by hand (checked against the fixture's
/// `orig_to_hf_vq_key_regexes`, which must map each one back to its transformers name) and the
/// `Linear` attention projections stored as 1×1 convolutions `[c, c, 1, 1]`, as BAAI stores them.
pub fn emu3_original_vq() -> PathBuf {
    derived("emu3-vq-original.safetensors", || {
        let forward = meta_rules("emu3", "orig_to_hf_vq_key_regexes");
        let re = |p: &str| regex::Regex::new(p).unwrap();
        let back = [
            (
                re(r"^(encoder|decoder)\.middle_block\.attn_norm\."),
                "${1}.mid.attn_1.norm.",
            ),
            (re(r"^(encoder|decoder)\.middle_block\."), "${1}.mid."),
            (
                re(r"^(encoder\.down|decoder\.up)_block\.(?:down|up)\.(\d+)\.attn_norms\.(\d+)\."),
                "${1}.${2}.attn.${3}.norm.",
            ),
            (
                re(r"^(encoder\.down|decoder\.up)_block\.(?:down|up)\."),
                "${1}.",
            ),
            (re(r"\.q_proj\."), ".q."),
            (re(r"\.k_proj\."), ".k."),
            (re(r"\.v_proj\."), ".v."),
            (re(r"\.out_proj\."), ".proj_out."),
        ];
        let back: Vec<(regex::Regex, String)> =
            back.into_iter().map(|(r, t)| (r, t.to_string())).collect();
        all_tensors(&fixtures().join("emu3/hf/model.safetensors"))
            .into_iter()
            .filter_map(|(n, mut s, d)| {
                let hf = n.strip_prefix("vqmodel.")?.to_string();
                let original = rename(&back, &hf);
                assert_eq!(rename(&forward, &original), hf, "{original}");
                let projection = [".q.", ".k.", ".v.", ".proj_out."]
                    .iter()
                    .any(|p| original.contains(p));
                if projection && s.len() == 2 {
                    s.extend([1, 1]);
                }
                Some((original, s, d))
            })
            .collect()
    })
}

/// Meta's release layout as Chameleon-7B and GAIR's Anole-7b-v0.1 ship it: `models/7b/`
/// (`consolidated.pth`, `params.json`, `consolidate_params.json`) and `tokenizer/`
/// (`text_tokenizer.json`, whose vocabulary calls `<image>` `<reserved08707>`), against the
/// references transformers computed on the converted weights (`original/reference.safetensors`:
/// one q/k LayerNorm affine shared by every head, as Meta's format stores it). `words` take ids
/// 60… (reserved tokens of the tiny vocabulary) for prompts.
pub fn meta_release(case: &str, words: &[&str]) -> tempfile::TempDir {
    let src = fixtures().join(case).join("original");
    let root = tempfile::tempdir().unwrap();
    let models = root.path().join("models/7b");
    std::fs::create_dir_all(&models).unwrap();
    for f in ["consolidated.pth", "params.json", "consolidate_params.json"] {
        std::fs::copy(src.join(f), models.join(f)).unwrap();
    }
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join(case).join("hf/config.json")).unwrap(),
    )
    .unwrap();
    let mut vocab = config["vocabulary_map"].as_object().unwrap().clone();
    let image = vocab.remove("<image>").unwrap();
    vocab.insert("<reserved08707>".into(), image);
    // Prompt words take ids 60… (reserved tokens of the tiny vocabulary), and the template's
    // end of turn `<reserved08706>` id 38.
    if !words.is_empty() {
        vocab.remove("<reserved00038>");
        vocab.insert("<reserved08706>".into(), 38.into());
    }
    for (i, w) in words.iter().enumerate() {
        vocab.insert((*w).into(), (60 + i).into());
    }
    let tokenizer = word_level_tokenizer(&vocab, "<unk>", serde_json::json!([]));
    std::fs::create_dir_all(root.path().join("tokenizer")).unwrap();
    std::fs::write(
        root.path().join("tokenizer/text_tokenizer.json"),
        tokenizer.to_string(),
    )
    .unwrap();
    root
}

/// A `tokenizer.json` with a word-level model over `vocab` (split on whitespace and
/// punctuation), `unk` for unknown words and `added` tokens: the fixtures' stand-in for a
/// family's tokenizer at the fixture's own ids.
pub fn word_level_tokenizer(
    vocab: &serde_json::Map<String, serde_json::Value>,
    unk: &str,
    added: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk}
    })
}
