//! Test support (feature `testing`): a toy model, exact enumeration of its sequence
//! distribution, and a chi-square goodness-of-fit test.

mod stats;
mod toy;

pub use stats::{GoodnessOfFit, chi_square_sf, goodness_of_fit};
pub use toy::{ToyConfig, ToyModel};

use std::collections::HashMap;

use crate::denoiser::{JacobiDenoiser, Prompt, PromptRow};
use crate::error::{Result, tensor_to_vec};
use crate::guidance::guide_branches;
use crate::sampling::Sampling;

/// The exact probability of every complete generated sequence under plain autoregressive
/// sampling from the toy `model` (guidance, structural forcing and `sampling` applied exactly as the
/// decoder applies them), computed by enumerating every prefix with fresh prefill passes.
///
/// `guidance_scale == 1.0` disables guidance; `image_guidance_scale` turns on three-way guidance
/// ([`guide_instruct`](crate::guide_instruct)) when the prompt has an
/// [`image_condition`](Prompt::image_condition). Sequences of probability zero are omitted.
///
/// # Errors
/// Model failures and non-finite logits.
pub fn exact_sequence_distribution(
    model: &ToyModel,
    prompt: &Prompt,
    sampling: &Sampling,
    guidance_scale: f32,
    image_guidance_scale: Option<f32>,
) -> Result<HashMap<Vec<u32>, f64>> {
    let instruct = image_guidance_scale.filter(|_| prompt.image_condition.is_some());
    let branches = if instruct.is_some() {
        3
    } else if guidance_scale != 1.0 {
        2
    } else {
        1
    };
    let layout = model.layout().clone();
    let range = layout.image_token_range();
    let mut prefixes: Vec<(Vec<u32>, f64)> = vec![(vec![], 1.0)];
    for pos in 0..layout.len() {
        if let Some(t) = layout.forced_token(pos) {
            prefixes.iter_mut().for_each(|(p, _)| p.push(t));
            continue;
        }
        let mut prompts = Vec::new();
        for (p, _) in &prefixes {
            let mut cond = prompt.tokens.clone();
            cond.extend_from_slice(p);
            let mut neg = prompt
                .negative
                .clone()
                .unwrap_or_else(|| vec![model.config().null_token()]);
            neg.extend_from_slice(p);
            let mut full = Prompt::new(cond).with_negative(neg);
            if let Some(image) = &prompt.image_condition {
                let mut image = image.clone();
                image.extend_from_slice(p);
                full = full.with_image_condition(image);
            }
            prompts.push(full);
        }
        let rows = PromptRow::grouped(&prompts, branches);
        let max_len = rows
            .iter()
            .map(|r| model.prompt_len(r))
            .collect::<Result<Vec<_>>>()?;
        let mut cache = model.new_cache(rows.len(), max_len.into_iter().max().unwrap_or(1))?;
        let logits = model.prefill(&mut cache, &rows)?.unsqueeze_dim::<3>(1);
        let n = prefixes.len();
        let logits = guide_branches(logits, n, guidance_scale, instruct, model.guidance_style());
        let v = logits.dims()[2];
        let logits = logits.narrow(2, range.start as usize, range.len());
        let host = tensor_to_vec(logits, "enumeration logits")?;
        let _ = v;
        let mut next = Vec::with_capacity(n * range.len());
        for (i, (p, mass)) in prefixes.iter().enumerate() {
            let mut row = host[i * range.len()..(i + 1) * range.len()].to_vec();
            sampling.process_in_place(&mut row, &|| format!("enumeration row {i}"))?;
            for (j, &q) in row.iter().enumerate() {
                if q > 0.0 {
                    let mut s = p.clone();
                    s.push(range.start + j as u32);
                    next.push((s, mass * f64::from(q)));
                }
            }
        }
        prefixes = next;
    }
    Ok(prefixes.into_iter().collect())
}
