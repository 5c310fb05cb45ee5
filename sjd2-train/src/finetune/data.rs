//! `finetune prepare`: captioned images to token shards.
//!
//! The input is a folder in the Hugging Face `imagefolder` convention (images plus a
//! `metadata.jsonl` whose lines hold `file_name` and `text`), or a `.jsonl` / `.csv` file of
//! `image,caption` pairs (paths relative to that file). Each image is resized to cover the
//! family's resolution and center-cropped ([`load_image`]), encoded by the family's VQ encoder,
//! and stored with its tokenized caption in safetensors shards beside a `manifest.json`.
//!
//! Shards hold the *prompt tokens* (the family's template applied, as the decoder receives them)
//! and the *VQ codes* in raster order. The family's sequence layout (image prefix, size tokens,
//! row ends, unconditional rows, code-to-token mapping) is applied at training time by
//! [`sjd2_models::LlamaT2I::training_batch`], the same code that lays out generation, so the
//! two can never disagree.
//!
//! Preparation writes one shard at a time (shard, then manifest, each through a temporary file
//! and a rename) and resumes after the last complete shard. Unreadable images, empty captions and
//! captions the tokenizer rejects are skipped, counted and named in the manifest; preparation
//! fails only when nothing is left.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, io};
use crate::run::images_tensor_hw;

/// Name of the manifest in a prepared folder.
pub const MANIFEST: &str = "manifest.json";

/// Version of the shard and manifest format.
pub const FORMAT: u32 = 1;

/// What the data was prepared for: training refuses data prepared for another model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSpec {
    /// Family name (for example `lumina-mgpt`).
    pub family: String,
    /// Image height in pixels.
    pub image_height: usize,
    /// Image width in pixels.
    pub image_width: usize,
    /// Code grid rows.
    pub grid_rows: usize,
    /// Code grid columns.
    pub grid_cols: usize,
    /// Codes of the VQ codebook.
    pub codebook_size: usize,
}

/// One shard file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// File name inside the prepared folder.
    pub file: String,
    /// Examples it holds.
    pub examples: usize,
}

/// An input the preparation skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// The image path or source line.
    pub item: String,
    /// Why it was skipped.
    pub reason: String,
}

/// `manifest.json` of a prepared folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// What the data is for.
    pub spec: DataSpec,
    /// The source it was prepared from.
    pub source: String,
    /// Entries in the source.
    pub entries: usize,
    /// Source entries handled so far (stored or skipped), in source order.
    pub processed: usize,
    /// Shards written.
    pub shards: Vec<ShardInfo>,
    /// Entries skipped.
    pub skipped: Vec<Skipped>,
}

impl Manifest {
    /// Examples stored in all shards.
    pub fn examples(&self) -> usize {
        self.shards.iter().map(|s| s.examples).sum()
    }

    /// Whether every source entry has been handled.
    pub fn complete(&self) -> bool {
        self.processed >= self.entries
    }

    /// Reads `dir/manifest.json`, if there is one.
    ///
    /// # Errors
    /// An unreadable or corrupt manifest.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let p = dir.join(MANIFEST);
        if !p.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        let m: Self = serde_json::from_str(&text).map_err(|e| TrainError::Data {
            path: p.display().to_string(),
            detail: format!("not a prepared-data manifest: {e}"),
        })?;
        if m.format != FORMAT {
            return Err(TrainError::Data {
                path: p.display().to_string(),
                detail: format!("format {} (this version reads {FORMAT})", m.format),
            });
        }
        Ok(Some(m))
    }

    fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| TrainError::Data {
            path: dir.join(MANIFEST).display().to_string(),
            detail: e.to_string(),
        })?;
        write_atomically(&dir.join(MANIFEST), text.as_bytes())
    }
}

/// A training example: prompt tokens and the image's codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Prompt tokens (the family's template applied; without the image prefix).
    pub prompt: Vec<u32>,
    /// VQ codes in raster order.
    pub codes: Vec<u32>,
}

/// One entry of the source: an image and its caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    /// Image file.
    pub image: PathBuf,
    /// Caption.
    pub caption: String,
}

fn data_error(path: &Path, detail: impl Into<String>) -> TrainError {
    TrainError::Data {
        path: path.display().to_string(),
        detail: detail.into(),
    }
}

/// Reads the source's entries in order: a folder with `metadata.jsonl`, a `.jsonl` file or a
/// `.csv` file (columns `image` or `file_name`, and `caption` or `text`). A line that cannot be
/// parsed is returned as an error item (`Err(reason)`) so that it is skipped and named, not
/// fatal.
///
/// # Errors
/// A missing source, a folder without `metadata.jsonl`, a CSV without the needed columns.
pub fn read_source(source: &Path) -> Result<Vec<std::result::Result<SourceItem, Skipped>>> {
    let (file, base) = if source.is_dir() {
        let m = source.join("metadata.jsonl");
        if !m.is_file() {
            return Err(data_error(
                source,
                "no metadata.jsonl in this folder (the imagefolder convention: one JSON object per line with `file_name` and `text`)",
            ));
        }
        (m, source.to_path_buf())
    } else {
        let base = source.parent().map(Path::to_path_buf).unwrap_or_default();
        (source.to_path_buf(), base)
    };
    let text = std::fs::read_to_string(&file).map_err(io(&file))?;
    let csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut items = Vec::new();
    if csv {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|e| data_error(&file, e.to_string()))?
            .clone();
        let col = |names: &[&str]| headers.iter().position(|h| names.contains(&h.trim()));
        let (Some(img), Some(cap)) = (col(&["image", "file_name"]), col(&["caption", "text"]))
        else {
            return Err(data_error(
                &file,
                format!(
                    "the header must name an `image` (or `file_name`) and a `caption` (or `text`) column; it has {:?}",
                    headers.iter().collect::<Vec<_>>()
                ),
            ));
        };
        for (i, rec) in reader.records().enumerate() {
            let line = i + 2;
            items.push(match rec {
                Ok(r) => match (r.get(img), r.get(cap)) {
                    (Some(p), Some(c)) => Ok(SourceItem {
                        image: base.join(p),
                        caption: c.to_string(),
                    }),
                    _ => Err(Skipped {
                        item: format!("{}:{line}", file.display()),
                        reason: "missing column".into(),
                    }),
                },
                Err(e) => Err(Skipped {
                    item: format!("{}:{line}", file.display()),
                    reason: e.to_string(),
                }),
            });
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", file.display(), i + 1);
            let parsed: std::result::Result<serde_json::Value, _> = serde_json::from_str(line);
            let field = |v: &serde_json::Value, names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| v.get(*n).and_then(|x| x.as_str()).map(str::to_string))
            };
            items.push(match parsed {
                Ok(v) => match (
                    field(&v, &["file_name", "image"]),
                    field(&v, &["text", "caption"]),
                ) {
                    (Some(p), Some(c)) => Ok(SourceItem {
                        image: base.join(p),
                        caption: c,
                    }),
                    _ => Err(Skipped {
                        item: at,
                        reason: "needs `file_name` (or `image`) and `text` (or `caption`) strings"
                            .into(),
                    }),
                },
                Err(e) => Err(Skipped {
                    item: at,
                    reason: format!("not JSON: {e}"),
                }),
            });
        }
    }
    Ok(items)
}

/// Reads an image, resizes it (Catmull-Rom) to cover `height × width` and crops the center:
/// row-major RGB bytes.
///
/// # Errors
/// A description of why the file cannot be read or decoded.
pub fn load_image(
    path: &Path,
    height: usize,
    width: usize,
) -> std::result::Result<Vec<u8>, String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())?;
    let img = img.resize_to_fill(
        width as u32,
        height as u32,
        image::imageops::FilterType::CatmullRom,
    );
    Ok(img.to_rgb8().into_raw())
}

/// Progress of [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareProgress {
    /// Source entries handled.
    pub processed: usize,
    /// Source entries in all.
    pub entries: usize,
    /// Examples stored.
    pub stored: usize,
    /// Entries skipped.
    pub skipped: usize,
}

/// Settings of [`prepare`].
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// What the data is for.
    pub spec: DataSpec,
    /// Examples per shard (and per encoder batch group).
    pub shard_size: usize,
    /// Images per encoder call.
    pub encode_batch: usize,
}

/// Prepares `source` into `out` (see the module documentation). `caption` turns a caption into
/// prompt tokens (`Err(reason)` skips the entry); `encode` turns images `[n, 3, h, w]` in
/// `[-1, 1]` into `n` code lists of `grid_rows × grid_cols` codes. Resumes a folder prepared
/// from the same source for the same spec.
///
/// # Errors
/// A source or output problem, data prepared for another spec or source in `out`, an encoder
/// returning the wrong number of codes, or no usable entry at all.
pub fn prepare(
    source: &Path,
    out: &Path,
    opts: &PrepareOptions,
    mut caption: impl FnMut(&str) -> std::result::Result<Vec<u32>, String>,
    mut encode: impl FnMut(Tensor<4>) -> Result<Vec<Vec<u32>>>,
    device: &Device,
    mut progress: impl FnMut(&PrepareProgress),
) -> Result<Manifest> {
    if opts.shard_size == 0 || opts.encode_batch == 0 {
        return Err(TrainError::Config {
            field: "shard_size/encode_batch",
            reason: "must be >= 1".into(),
        });
    }
    let items = read_source(source)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let source_name = source.display().to_string();
    let mut manifest = match Manifest::read(out)? {
        Some(m) => {
            if m.spec != opts.spec {
                return Err(data_error(
                    out,
                    format!(
                        "this folder holds data prepared for {:?}, not {:?}; use another output folder",
                        m.spec, opts.spec
                    ),
                ));
            }
            if m.source != source_name || m.entries != items.len() {
                return Err(data_error(
                    out,
                    format!(
                        "this folder holds data prepared from {} ({} entries), not {source_name} ({} entries); use another output folder",
                        m.source,
                        m.entries,
                        items.len()
                    ),
                ));
            }
            m
        }
        None => Manifest {
            format: FORMAT,
            spec: opts.spec.clone(),
            source: source_name,
            entries: items.len(),
            processed: 0,
            shards: Vec::new(),
            skipped: Vec::new(),
        },
    };
    let (h, w) = (opts.spec.image_height, opts.spec.image_width);
    let cells = opts.spec.grid_rows * opts.spec.grid_cols;
    let report = |m: &Manifest, progress: &mut dyn FnMut(&PrepareProgress)| {
        progress(&PrepareProgress {
            processed: m.processed,
            entries: m.entries,
            stored: m.examples(),
            skipped: m.skipped.len(),
        })
    };
    report(&manifest, &mut progress);
    while manifest.processed < items.len() {
        let start = manifest.processed;
        let mut examples = Vec::new();
        let mut skipped = Vec::new();
        let mut end = start;
        // Gather entries until the shard is full (or the source ends).
        while end < items.len() && examples.len() < opts.shard_size {
            let mut batch: Vec<(Vec<u32>, Vec<u8>)> = Vec::new();
            while end < items.len()
                && batch.len() < opts.encode_batch
                && examples.len() + batch.len() < opts.shard_size
            {
                match &items[end] {
                    Err(s) => skipped.push(s.clone()),
                    Ok(item) => {
                        let what = item.image.display().to_string();
                        let tokens = if item.caption.trim().is_empty() {
                            Err("empty caption".to_string())
                        } else {
                            caption(&item.caption).and_then(|t| {
                                if t.is_empty() {
                                    Err("the caption has no token".into())
                                } else {
                                    Ok(t)
                                }
                            })
                        };
                        match tokens.and_then(|t| load_image(&item.image, h, w).map(|px| (t, px))) {
                            Ok(pair) => batch.push(pair),
                            Err(reason) => skipped.push(Skipped { item: what, reason }),
                        }
                    }
                }
                end += 1;
            }
            if batch.is_empty() {
                continue;
            }
            let pixels: Vec<&[u8]> = batch.iter().map(|(_, p)| p.as_slice()).collect();
            let codes = encode(images_tensor_hw(&pixels, h, w, device))?;
            if codes.len() != batch.len() || codes.iter().any(|c| c.len() != cells) {
                return Err(TrainError::Config {
                    field: "encoder",
                    reason: format!(
                        "returned {} code lists of lengths {:?} for {} images of a {}x{} grid",
                        codes.len(),
                        codes.iter().map(Vec::len).collect::<Vec<_>>(),
                        batch.len(),
                        opts.spec.grid_rows,
                        opts.spec.grid_cols
                    ),
                });
            }
            if let Some(bad) = codes
                .iter()
                .flatten()
                .find(|&&c| c as usize >= opts.spec.codebook_size)
            {
                return Err(TrainError::Config {
                    field: "encoder",
                    reason: format!(
                        "code {bad} is outside the codebook of {}",
                        opts.spec.codebook_size
                    ),
                });
            }
            examples.extend(
                batch
                    .into_iter()
                    .zip(codes)
                    .map(|((prompt, _), codes)| Example { prompt, codes }),
            );
        }
        if !examples.is_empty() {
            let file = format!("shard-{:05}.safetensors", manifest.shards.len());
            write_shard(&out.join(&file), &examples)?;
            manifest.shards.push(ShardInfo {
                file,
                examples: examples.len(),
            });
        }
        for s in &skipped {
            tracing::warn!(item = %s.item, reason = %s.reason, "skipped");
        }
        manifest.skipped.extend(skipped);
        manifest.processed = end;
        manifest.write(out)?;
        report(&manifest, &mut progress);
    }
    if manifest.examples() == 0 {
        // Nothing was stored: forget the skips, so that the same command starts over once the
        // inputs are fixed instead of resuming a run where everything was skipped.
        let path = out.join(MANIFEST);
        std::fs::remove_file(&path).map_err(io(&path))?;
        let first: Vec<String> = manifest
            .skipped
            .iter()
            .take(5)
            .map(|s| format!("{}: {}", s.item, s.reason))
            .collect();
        return Err(data_error(
            source,
            format!(
                "no usable entry ({} skipped; first: {})",
                manifest.skipped.len(),
                first.join("; ")
            ),
        ));
    }
    Ok(manifest)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn i64_bytes(v: impl Iterator<Item = i64>) -> Vec<u8> {
    v.flat_map(i64::to_le_bytes).collect()
}

/// Writes examples as a safetensors shard: `prompt_offsets` `[n + 1]`, `prompt_tokens` `[m]`
/// and `codes` `[n, cells]`, all I64.
///
/// # Errors
/// I/O errors; examples with different code counts.
pub fn write_shard(path: &Path, examples: &[Example]) -> Result<()> {
    let cells = examples.first().map_or(0, |e| e.codes.len());
    if examples.iter().any(|e| e.codes.len() != cells) {
        return Err(data_error(path, "examples with different numbers of codes"));
    }
    let mut offsets = vec![0i64];
    for e in examples {
        offsets.push(offsets.last().copied().unwrap_or(0) + e.prompt.len() as i64);
    }
    let tokens = i64_bytes(
        examples
            .iter()
            .flat_map(|e| e.prompt.iter().map(|&t| i64::from(t))),
    );
    let codes = i64_bytes(
        examples
            .iter()
            .flat_map(|e| e.codes.iter().map(|&t| i64::from(t))),
    );
    let offsets_bytes = i64_bytes(offsets.iter().copied());
    let n_tokens = tokens.len() / 8;
    let views = [
        ("prompt_offsets", vec![examples.len() + 1], offsets_bytes),
        ("prompt_tokens", vec![n_tokens], tokens),
        ("codes", vec![examples.len(), cells], codes),
    ];
    let tensors: Vec<(&str, safetensors::tensor::TensorView<'_>)> = views
        .iter()
        .map(|(n, shape, bytes)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::I64, shape.clone(), bytes)
                .map(|v| (*n, v))
                .map_err(|e| data_error(path, e.to_string()))
        })
        .collect::<Result<_>>()?;
    let bytes =
        safetensors::serialize(tensors, None).map_err(|e| data_error(path, e.to_string()))?;
    write_atomically(path, &bytes)
}

/// Reads a shard written by [`write_shard`].
///
/// # Errors
/// I/O errors, a file that is not a shard, inconsistent offsets.
pub fn read_shard(path: &Path) -> Result<Vec<Example>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| data_error(path, format!("not a shard: {e}")))?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<i64>)> {
        let t = st
            .tensor(name)
            .map_err(|_| data_error(path, format!("no `{name}` tensor: not a shard")))?;
        if t.dtype() != safetensors::Dtype::I64 {
            return Err(data_error(
                path,
                format!("`{name}` is {:?}, not I64", t.dtype()),
            ));
        }
        let v = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok((t.shape().to_vec(), v))
    };
    let (_, offsets) = get("prompt_offsets")?;
    let (_, tokens) = get("prompt_tokens")?;
    let (cshape, codes) = get("codes")?;
    let n = offsets.len().saturating_sub(1);
    let [rows, cells] = cshape.as_slice() else {
        return Err(data_error(path, "`codes` is not 2-D"));
    };
    let ok_offsets = offsets.first() == Some(&0)
        && offsets.windows(2).all(|w| w[0] <= w[1])
        && offsets.last().is_some_and(|&l| l as usize == tokens.len());
    if *rows != n
        || !ok_offsets
        || tokens
            .iter()
            .chain(&codes)
            .any(|&t| t < 0 || t > i64::from(u32::MAX))
    {
        return Err(data_error(path, "inconsistent offsets, counts or values"));
    }
    Ok((0..n)
        .map(|i| Example {
            prompt: tokens[offsets[i] as usize..offsets[i + 1] as usize]
                .iter()
                .map(|&t| t as u32)
                .collect(),
            codes: codes[i * cells..(i + 1) * cells]
                .iter()
                .map(|&c| c as u32)
                .collect(),
        })
        .collect())
}

/// Reads a prepared folder: its manifest and every example, in order.
///
/// # Errors
/// A missing or incomplete manifest, unreadable shards.
pub fn load_prepared(dir: &Path) -> Result<(Manifest, Vec<Example>)> {
    let m = Manifest::read(dir)?.ok_or_else(|| {
        data_error(
            dir,
            "no manifest.json: prepare the data first (finetune prepare)",
        )
    })?;
    if m.complete() && m.examples() == 0 {
        return Err(data_error(
            dir,
            format!(
                "no usable example: all {} entries were skipped (see `skipped` in manifest.json)",
                m.skipped.len()
            ),
        ));
    }
    if !m.complete() {
        return Err(data_error(
            dir,
            format!(
                "preparation stopped after {} of {} entries: run prepare again to finish it",
                m.processed, m.entries
            ),
        ));
    }
    let mut all = Vec::with_capacity(m.examples());
    for s in &m.shards {
        let ex = read_shard(&dir.join(&s.file))?;
        if ex.len() != s.examples {
            return Err(data_error(
                &dir.join(&s.file),
                format!("{} examples, the manifest says {}", ex.len(), s.examples),
            ));
        }
        all.extend(ex);
    }
    Ok((m, all))
}
