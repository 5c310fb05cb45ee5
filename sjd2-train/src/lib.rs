//! # sjd2-train
//!
//! Training support for sjd2. So far: [`shapes`], the deterministic generator of captioned
//! images for the project's own demo text-to-image model (1–3 coloured shapes on a 3×3 grid over
//! textured or gradient backgrounds, with varied natural-language captions), and [`vocab`], the
//! word-level `tokenizer.json` that covers their language.

pub mod shapes;
pub mod vocab;
