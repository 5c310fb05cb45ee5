//! Checkpoints by Hugging Face repository id (`Alpha-VLLM/Lumina-mGPT-7B-768`): the files a
//! loader reads are taken from the local Hugging Face cache (`$HF_HOME/hub`, by default
//! `~/.cache/huggingface/hub`, the layout `huggingface_hub` and candle share) and downloaded into
//! it when missing, through the `hf-hub` crate. With `HF_HUB_OFFLINE=1` nothing is downloaded and a
//! missing file is an error naming it.
//!
//! [`resolve`] returns the snapshot directory that the loaders (`Chameleon::load`, `Emu3::load`,
//! `Janus::load`, `Checkpoint::open`) take like any local checkpoint directory.

use std::path::{Path, PathBuf};

pub use hf_hub::Cache;
use hf_hub::{Repo, RepoType};

use crate::error::{LoadError, Result};

/// Files fetched beside the weights when the repository has them.
const OPTIONAL: [&str; 6] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "preprocessor_config.json",
    "sjd2.json",
];

/// Whether `s` looks like a repository id (`owner/name`) rather than a local path.
pub fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// The local snapshot directory of model repository `repo` at `revision` (default `main`),
/// with its `config.json`, its weights (`model.safetensors`, or the index and every shard it
/// lists) and the tokenizer and generation files it has: from the cache in `HF_HOME`, downloading
/// what is missing unless `HF_HUB_OFFLINE` is set.
///
/// # Errors
/// [`LoadError::Hub`] naming the repository and the file that is neither cached nor
/// downloadable.
pub fn resolve(repo: &str, revision: Option<&str>) -> Result<PathBuf> {
    let offline = std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"));
    resolve_in(&Cache::from_env(), repo, revision, offline)
}

/// [`resolve`] with an explicit cache (its `hub` directory) and offline switch.
///
/// # Errors
/// As [`resolve`].
pub fn resolve_in(
    cache: &Cache,
    repo: &str,
    revision: Option<&str>,
    offline: bool,
) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main").to_string();
    let err = |detail: String| LoadError::Hub {
        repo: repo.to_string(),
        revision: revision.clone(),
        detail,
    };
    if !is_repo_id(repo) {
        return Err(err("is not a repository id of the form owner/name".into()));
    }
    let id = Repo::with_revision(repo.to_string(), RepoType::Model, revision.clone());
    let cached = cache.repo(id.clone());
    let api = if offline {
        None
    } else {
        Some(
            hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
                .with_progress(true)
                .build()
                .map_err(|e| err(format!("cannot start the download client: {e}")))?,
        )
    };
    // A file from the cache, else downloaded (`None`: absent, and `required` is false).
    let fetch = |file: &str, required: bool| -> Result<Option<PathBuf>> {
        if let Some(p) = cached.get(file) {
            return Ok(Some(p));
        }
        match &api {
            None if required => Err(err(format!(
                "{file} is not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set",
                cache.path().display()
            ))),
            None => Ok(None),
            Some(api) => match api.repo(id.clone()).get(file) {
                Ok(p) => Ok(Some(p)),
                Err(e) if required => Err(err(format!("cannot download {file}: {e}"))),
                Err(e) => {
                    tracing::debug!(file, error = %e, "optional file not fetched");
                    Ok(None)
                }
            },
        }
    };
    let config = fetch("config.json", true)?.ok_or_else(|| err("no config.json".into()))?;
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| err("the cache path has no parent".into()))?;
    match fetch("model.safetensors.index.json", false)? {
        Some(index) => {
            for shard in shards(&index)? {
                fetch(&shard, true)?;
            }
        }
        None => {
            fetch("model.safetensors", true)?;
        }
    }
    for file in OPTIONAL {
        fetch(file, false)?;
    }
    Ok(dir)
}

/// The shard files an index's `weight_map` lists, each once.
fn shards(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|source| LoadError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| LoadError::Corrupt {
        path: index.to_path_buf(),
        detail: format!("invalid index: {e}"),
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| LoadError::Corrupt {
            path: index.to_path_buf(),
            detail: "no `weight_map` object".into(),
        })?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::is_repo_id;

    #[test]
    fn repo_ids_and_paths_are_told_apart() {
        for id in [
            "Alpha-VLLM/Lumina-mGPT-7B-768",
            "BAAI/Emu3-Gen",
            "deepseek-ai/Janus-Pro-7B",
        ] {
            assert!(is_repo_id(id), "{id}");
        }
        for p in ["/abs/path", "dir", "a/b/c", "./x", "../x", "a/", "a b/c"] {
            assert!(!is_repo_id(p), "{p}");
        }
    }
}
