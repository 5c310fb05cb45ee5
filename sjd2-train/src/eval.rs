//! Caption faithfulness: find the objects in an image of the shapes world and compare them with
//! the objects a prompt asked for.
//!
//! Every object of the dataset sits at the centre of one cell of the 3×3 grid, so detection works
//! cell by cell: each pixel takes the nearest palette colour (or background when its brightest
//! channel is under [`MIN_BRIGHTNESS`] or no palette colour is within [`COLOUR_TOLERANCE`]); a cell holds an object when its dominant palette colour covers
//! at least [`MIN_AREA`] pixels (scaled from 64×64); the object's shape and size are those whose
//! template (drawn by the same geometry as the dataset) has the highest IoU with that colour's
//! mask in the cell.
//!
//! An image's score is `correct / (asked + extra)`: an asked object is correct when its cell holds
//! an object of the asked colour and shape (size is reported, not scored), and every detected
//! object in a cell the prompt did not mention counts as extra.
//!
//! # Example
//! ```
//! use sjd2_train::eval::score_image;
//! use sjd2_train::shapes::Sample;
//! let s = Sample::generate(2, 0, 64);
//! assert_eq!(score_image(&s.pixels, 64, &s.objects).score, 1.0);
//! ```

use crate::shapes::{Colour, Object, Shape, Size};

/// Largest RGB distance at which a pixel still counts as a palette colour.
pub const COLOUR_TOLERANCE: f32 = 100.0;

/// Pixels whose brightest channel is below this are background (the dataset's backgrounds stay
/// under 110; every palette colour has a channel of 150 or more).
pub const MIN_BRIGHTNESS: u8 = 125;

/// Fewest pixels (at 64×64) of one colour that make an object.
pub const MIN_AREA: usize = 10;

/// An object found in one cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `(row, col)`.
    pub cell: (usize, usize),
    /// Dominant palette colour.
    pub colour: Colour,
    /// Best-matching shape.
    pub shape: Shape,
    /// Best-matching size.
    pub size: Size,
    /// IoU with the best template.
    pub iou: f32,
    /// Pixels of the colour in the cell.
    pub area: usize,
}

/// How one asked object fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMatch {
    /// An object of the asked colour is in the asked cell.
    pub colour_and_cell: bool,
    /// ... and it has the asked shape.
    pub shape: bool,
    /// ... and the asked size.
    pub size: bool,
}

/// The score of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageScore {
    /// One entry per asked object.
    pub objects: Vec<ObjectMatch>,
    /// Detected objects in cells the prompt did not mention.
    pub extra: usize,
    /// `correct / (asked + extra)` in `[0, 1]`.
    pub score: f64,
}

fn nearest_colour(p: &[u8]) -> Option<Colour> {
    if p.iter().copied().max().unwrap_or(0) < MIN_BRIGHTNESS {
        return None;
    }
    let mut best = None;
    let mut best_d = COLOUR_TOLERANCE;
    for c in Colour::ALL {
        let rgb = c.rgb();
        let d = (0..3)
            .map(|i| (f32::from(p[i]) - f32::from(rgb[i])).powi(2))
            .sum::<f32>()
            .sqrt();
        if d < best_d {
            best_d = d;
            best = Some(c);
        }
    }
    best
}

/// Finds the object in every cell of a `size × size` RGB image.
pub fn detect(pixels: &[u8], size: usize) -> Vec<Detection> {
    let cell = size as f32 / 3.0;
    let labels: Vec<Option<Colour>> = pixels.chunks_exact(3).map(nearest_colour).collect();
    let min_area = (MIN_AREA * size * size).div_ceil(64 * 64).max(1);
    let mut out = Vec::new();
    for row in 0..3 {
        for col in 0..3 {
            let x0 = (col as f32 * cell).floor() as usize;
            let x1 = (((col + 1) as f32 * cell).ceil() as usize).min(size);
            let y0 = (row as f32 * cell).floor() as usize;
            let y1 = (((row + 1) as f32 * cell).ceil() as usize).min(size);
            let mut counts = [0usize; Colour::ALL.len()];
            for y in y0..y1 {
                for x in x0..x1 {
                    if let Some(c) = labels[y * size + x] {
                        counts[Colour::ALL.iter().position(|&k| k == c).unwrap_or(0)] += 1;
                    }
                }
            }
            let (ci, &area) = counts
                .iter()
                .enumerate()
                .max_by_key(|&(_, &n)| n)
                .unwrap_or((0, &0));
            if area < min_area {
                continue;
            }
            let colour = Colour::ALL[ci];
            let cx = (col as f32 + 0.5) * cell;
            let cy = (row as f32 + 0.5) * cell;
            let mut best = (Shape::Circle, Size::Small, -1.0f32);
            for shape in Shape::ALL {
                for sz in [Size::Small, Size::Large] {
                    let r = sz.radius() * cell;
                    let (mut inter, mut union) = (0usize, 0usize);
                    for y in y0..y1 {
                        for x in x0..x1 {
                            let m = labels[y * size + x] == Some(colour);
                            let t = shape.contains(x as f32 + 0.5 - cx, y as f32 + 0.5 - cy, r);
                            inter += usize::from(m && t);
                            union += usize::from(m || t);
                        }
                    }
                    let iou = inter as f32 / union.max(1) as f32;
                    if iou > best.2 {
                        best = (shape, sz, iou);
                    }
                }
            }
            out.push(Detection {
                cell: (row, col),
                colour,
                shape: best.0,
                size: best.1,
                iou: best.2,
                area,
            });
        }
    }
    out
}

/// Scores a `size × size` RGB image against the objects a prompt asked for.
pub fn score_image(pixels: &[u8], size: usize, asked: &[Object]) -> ImageScore {
    let found = detect(pixels, size);
    let objects: Vec<ObjectMatch> = asked
        .iter()
        .map(|o| {
            let d = found
                .iter()
                .find(|d| d.cell == o.cell && d.colour == o.colour);
            ObjectMatch {
                colour_and_cell: d.is_some(),
                shape: d.is_some_and(|d| d.shape == o.shape),
                size: d.is_some_and(|d| d.shape == o.shape && d.size == o.size),
            }
        })
        .collect();
    let extra = found
        .iter()
        .filter(|d| !asked.iter().any(|o| o.cell == d.cell))
        .count();
    let correct = objects.iter().filter(|m| m.shape).count();
    let score = correct as f64 / (asked.len() + extra).max(1) as f64;
    ImageScore {
        objects,
        extra,
        score,
    }
}

/// Totals over many images, in percent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faithfulness {
    /// Images scored.
    pub images: usize,
    /// Mean image score × 100 (the headline number).
    pub score: f64,
    /// Asked objects whose colour is in the asked cell, %.
    pub colour_and_cell: f64,
    /// Asked objects fully right (colour, cell, shape), %.
    pub shape: f64,
    /// ... and the right size, %.
    pub size: f64,
    /// Extra objects per image.
    pub extra_per_image: f64,
}

impl Faithfulness {
    /// Aggregates image scores.
    pub fn from_scores(scores: &[ImageScore]) -> Self {
        let n = scores.len().max(1) as f64;
        let objs: Vec<&ObjectMatch> = scores.iter().flat_map(|s| &s.objects).collect();
        let m = objs.len().max(1) as f64;
        let pct = |f: &dyn Fn(&ObjectMatch) -> bool| {
            100.0 * objs.iter().filter(|o| f(o)).count() as f64 / m
        };
        Self {
            images: scores.len(),
            score: 100.0 * scores.iter().map(|s| s.score).sum::<f64>() / n,
            colour_and_cell: pct(&|o| o.colour_and_cell),
            shape: pct(&|o| o.shape),
            size: pct(&|o| o.size),
            extra_per_image: scores.iter().map(|s| s.extra).sum::<usize>() as f64 / n,
        }
    }
}

/// The first `n` held-out samples (seed [`HELDOUT_SEED`](crate::run::HELDOUT_SEED)) and their
/// captions as prompts in the demo model's `<s>{caption}` template, prompt `i` with sampling
/// seed `i`: the evaluation set of `demo_report` and `bench`.
///
/// # Errors
/// A caption the tokenizer cannot encode (unknown word).
pub fn held_out(
    tokenizer: &sjd2_models::prompt::PromptTokenizer,
    n: usize,
    image_size: usize,
) -> crate::Result<(Vec<crate::shapes::Sample>, Vec<sjd2_core::Prompt>)> {
    let samples: Vec<_> = crate::run::samples(crate::run::HELDOUT_SEED, 0, n, image_size);
    let prompts = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(tokenizer
                .encode(&s.caption, &sjd2_models::prompt::Template::Chameleon)?
                .with_seed(i as u64))
        })
        .collect::<crate::Result<Vec<_>>>()?;
    Ok((samples, prompts))
}

/// Mean negative log-likelihood (nats per image token) of image tokens under `model` without
/// guidance: each item is a prompt (`<s> words… <boi>`, as the decoder feeds it) and the tokens
/// that follow it (image codes with row ends and end tokens); only image-code targets are scored.
/// Items are run `batch` at a time, right-padded with `pad`.
///
/// # Errors
/// Model errors, an empty item, or a sequence longer than the model's context.
pub fn image_token_nll(
    model: &sjd2_models::LlamaT2I,
    items: &[(Vec<u32>, Vec<u32>)],
    pad: u32,
    batch: usize,
) -> crate::Result<f64> {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, Tensor, TensorData};
    use sjd2_core::JacobiDenoiser;

    let device = model.device();
    let range = model.layout().image_token_range();
    let (mut total, mut count) = (0.0f64, 0usize);
    for chunk in items.chunks(batch.max(1)) {
        let seqs: Vec<Vec<u32>> = chunk
            .iter()
            .map(|(p, g)| p.iter().chain(g).copied().collect())
            .collect();
        let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
        if l < 2 {
            return Err(crate::TrainError::Config {
                field: "items",
                reason: "a sequence needs a prompt and at least one token".into(),
            });
        }
        let b = seqs.len();
        let mut ids = vec![i64::from(pad); b * l];
        let mut targets = vec![0i64; b * l];
        let mut mask = vec![0f32; b * l];
        for (r, s) in seqs.iter().enumerate() {
            for (j, &t) in s.iter().enumerate() {
                ids[r * l + j] = i64::from(t);
                if j > 0 && range.contains(&t) && j >= chunk[r].0.len() {
                    targets[r * l + j - 1] = i64::from(t);
                    mask[r * l + j - 1] = 1.0;
                }
            }
        }
        let mut cache = model.new_cache(b, l)?;
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), &device);
        let logits = model.forward_tokens(&mut cache, ids)?;
        let lp = log_softmax(logits, 2);
        let tg = Tensor::<2, Int>::from_data(TensorData::new(targets, [b, l]), &device);
        let nll = lp.gather(2, tg.reshape([b, l, 1])).reshape([b, l]).neg();
        let m = Tensor::<2>::from_data(TensorData::new(mask.clone(), [b, l]), &device);
        total += f64::from(crate::run::scalar((nll * m).sum(), "image-token NLL")?);
        count += mask.iter().filter(|&&v| v > 0.0).count();
    }
    Ok(total / count.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::Sample;

    #[test]
    fn ground_truth_images_score_full_marks() {
        let scores: Vec<ImageScore> = (0..300)
            .map(|i| {
                let s = Sample::generate(11, i, 64);
                score_image(&s.pixels, 64, &s.objects)
            })
            .collect();
        let f = Faithfulness::from_scores(&scores);
        assert!(f.score > 99.0, "{f:?}");
        assert!(f.size > 97.0, "{f:?}");
        assert_eq!(f.extra_per_image, 0.0);
    }

    #[test]
    fn wrong_prompts_score_low() {
        // Each image judged against the next image's objects.
        let samples: Vec<Sample> = (0..200).map(|i| Sample::generate(12, i, 64)).collect();
        let scores: Vec<ImageScore> = samples
            .iter()
            .zip(samples.iter().cycle().skip(1))
            .map(|(img, other)| score_image(&img.pixels, 64, &other.objects))
            .collect();
        let f = Faithfulness::from_scores(&scores);
        assert!(f.score < 10.0, "{f:?}");
    }

    #[test]
    fn a_changed_shape_or_colour_is_caught() {
        let s = Sample::generate(13, 3, 64);
        let mut wrong = s.objects.clone();
        wrong[0].shape = Shape::ALL
            .into_iter()
            .find(|&x| x != wrong[0].shape)
            .unwrap_or(Shape::Circle);
        let sc = score_image(&s.pixels, 64, &wrong);
        assert!(!sc.objects[0].shape && sc.objects[0].colour_and_cell);
        let mut wrong = s.objects.clone();
        wrong[0].colour = Colour::ALL
            .into_iter()
            .find(|&x| x != wrong[0].colour)
            .unwrap_or(Colour::Red);
        assert!(!score_image(&s.pixels, 64, &wrong).objects[0].colour_and_cell);
        let blank = vec![20u8; 64 * 64 * 3];
        assert_eq!(score_image(&blank, 64, &s.objects).score, 0.0);
    }
}
