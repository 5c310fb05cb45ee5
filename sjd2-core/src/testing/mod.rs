//! Test support (feature `testing`): a toy model, exact enumeration of its sequence
//! distribution, and a chi-square goodness-of-fit test.

mod stats;
mod toy;

pub use stats::{GoodnessOfFit, chi_square_sf, goodness_of_fit};
pub use toy::{ToyConfig, ToyModel};

use std::collections::HashMap;

use crate::denoiser::{JacobiDenoiser, Prompt, PromptRow, Role};
use crate::error::{Result, tensor_to_vec};
use crate::guidance::guide;
use crate::sampling::Sampling;

/// The exact probability of every complete generated sequence under plain autoregressive
/// sampling from the toy `model` (guidance, structural forcing and `sampling` applied exactly as the
/// decoder applies them), computed by enumerating every prefix with fresh prefill passes.
///
/// `guidance_scale == 1.0` disables guidance. Sequences of probability zero are omitted.
///
/// # Errors
/// Model failures and non-finite logits.
pub fn exact_sequence_distribution(
    model: &ToyModel,
    prompt: &Prompt,
    sampling: &Sampling,
    guidance_scale: f32,
) -> Result<HashMap<Vec<u32>, f64>> {
    let layout = model.layout().clone();
    let range = layout.image_token_range();
    let mut prefixes: Vec<(Vec<u32>, f64)> = vec![(vec![], 1.0)];
    for pos in 0..layout.len() {
        if let Some(t) = layout.forced_token(pos) {
            prefixes.iter_mut().for_each(|(p, _)| p.push(t));
            continue;
        }
        let cfg = guidance_scale != 1.0;
        let mut prompts = Vec::new();
        for (p, _) in &prefixes {
            let mut cond = prompt.tokens.clone();
            cond.extend_from_slice(p);
            let mut neg = prompt
                .negative
                .clone()
                .unwrap_or_else(|| vec![model.config().null_token()]);
            neg.extend_from_slice(p);
            prompts.push(Prompt::new(cond).with_negative(neg));
        }
        let mut rows: Vec<PromptRow> = prompts
            .iter()
            .map(|p| PromptRow {
                prompt: p,
                role: Role::Conditional,
            })
            .collect();
        if cfg {
            rows.extend(prompts.iter().map(|p| PromptRow {
                prompt: p,
                role: Role::Unconditional,
            }));
        }
        let max_len = rows
            .iter()
            .map(|r| model.prompt_len(r))
            .collect::<Result<Vec<_>>>()?;
        let mut cache = model.new_cache(rows.len(), max_len.into_iter().max().unwrap_or(1))?;
        let logits = model.prefill(&mut cache, &rows)?.unsqueeze_dim::<3>(1);
        let n = prefixes.len();
        let logits = if cfg {
            let c = logits.clone().narrow(0, 0, n);
            let u = logits.narrow(0, n, n);
            guide(c, u, guidance_scale, model.guidance_style())
        } else {
            logits
        };
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
