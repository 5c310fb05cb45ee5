//! Per-sample decoding state: committed tokens, the window of slots and their refinement.

use rand::Rng;
use rayon::prelude::*;
use sjd2_core::verify::{CouplingUniforms, couple_with};
use sjd2_core::{Dist, Draft, ImageLayout, Proposal, Result, SampleRng, ScheduleTable};

use crate::config::{DraftInit, DraftUpdate, LevelPolicy};
use crate::output::{FinishReason, SlotKind, SlotView, Stats};
use crate::rows::Row;

/// The distribution a clean draft was drawn from.
#[derive(Debug, Clone)]
pub(crate) enum Q {
    OneHot,
    Row(Row),
}

impl Q {
    pub(crate) fn proposal(&self, offset: u32) -> Proposal<'_> {
        match self {
            Q::OneHot => Proposal::OneHot,
            Q::Row(p) => Proposal::Dist(Dist { offset, probs: p }),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Slot {
    Forced(u32),
    Clean {
        token: u32,
        q: Q,
    },
    Noisy {
        level: usize,
        prediction: Option<(u32, Q)>,
    },
}

impl Slot {
    /// The token fed for this slot, if it is fed as a token embedding.
    pub(crate) fn fed_token(&self) -> Option<u32> {
        match self {
            Slot::Forced(t) | Slot::Clean { token: t, .. } => Some(*t),
            Slot::Noisy { .. } => None,
        }
    }

    pub(crate) fn draft(&self, offset: u32, lossy: bool) -> Draft<'_> {
        match self {
            Slot::Forced(t) => Draft::Forced(*t),
            Slot::Clean { token, q } => Draft::Token {
                token: *token,
                q: q.proposal(offset),
            },
            Slot::Noisy {
                prediction: Some((token, q)),
                ..
            } if lossy => Draft::Token {
                token: *token,
                q: q.proposal(offset),
            },
            Slot::Noisy { .. } => Draft::Stop,
        }
    }

    fn view(&self, position: usize) -> SlotView {
        let kind = match self {
            Slot::Forced(t) => SlotKind::Forced(*t),
            Slot::Clean { token, .. } => SlotKind::Clean(*token),
            Slot::Noisy { level, prediction } => SlotKind::Noisy {
                level: *level,
                prediction: prediction.as_ref().map(|(t, _)| *t),
            },
        };
        SlotView { position, kind }
    }
}

/// How the device-side noisy-embedding buffer entry of a slot is formed for the next pass:
/// `c_e · source + c_x · normalize(E[x0_token])`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum BufferSource {
    /// Not a noisy slot.
    Unused,
    /// Index into the previous buffer.
    Old(usize),
    /// Index into this pass's fresh noise.
    Fresh(usize),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BufferOp {
    pub source: BufferSource,
    pub c_e: f32,
    pub c_x: f32,
    pub x0_token: u32,
}

impl BufferOp {
    pub(crate) const UNUSED: BufferOp = BufferOp {
        source: BufferSource::Unused,
        c_e: 0.0,
        c_x: 0.0,
        x0_token: 0,
    };
}

/// One refinement input for a surviving slot: the sample and distribution this pass gave its
/// position.
pub(crate) struct Prediction {
    pub token: u32,
    pub probs: Option<Row>,
}

pub(crate) struct SampleState {
    pub seed: u64,
    pub rng: SampleRng,
    pub tokens: Vec<u32>,
    /// Committed tokens at the end of `tokens` that are not yet in the cache.
    pub pending: usize,
    pub slots: Vec<Slot>,
    /// Passes each slot has been refined for (0 when it entered the window), in step with
    /// `slots`.
    pub ages: Vec<usize>,
    pub finished: Option<FinishReason>,
    pub stats: Stats,
    pub target_len: usize,
}

/// What one verified pass commits for a sample.
pub(crate) struct Commit {
    /// The accepted drafts and the token after them.
    pub tokens: Vec<u32>,
    /// Drafts accepted.
    pub accepted: usize,
    /// Age and rejection of each draft verification judged (forced tokens left out): the
    /// accepted ones, then the rejected one.
    pub verified: Vec<(usize, bool)>,
    /// How many of the pass's cache entries for this sample stay: the pending tokens and the
    /// accepted slots that were fed as token embeddings.
    pub cached: usize,
}

/// The window-shaping settings shared by all samples.
pub(crate) struct WindowRules<'a> {
    pub layout: &'a ImageLayout,
    pub window_len: usize,
    pub plain_prefix: usize,
    pub plain_suffix: usize,
    pub draft_init: DraftInit,
    pub draft_update: DraftUpdate,
    /// `Some` in SJD2 mode.
    pub noise: Option<(&'a ScheduleTable, LevelPolicy)>,
}

impl WindowRules<'_> {
    /// Slots the next pass of a sample with `generated` tokens (of `target`) may draft.
    pub(crate) fn width(&self, generated: usize, target: usize) -> usize {
        if self.window_len == 0 || generated < self.plain_prefix || generated + 1 >= target {
            return 0;
        }
        let by_end = target - 1 - generated;
        let by_suffix = target
            .saturating_sub(self.plain_suffix)
            .saturating_sub(generated);
        self.window_len.min(by_end).min(by_suffix)
    }

    fn target_level(&self, current: usize, index: usize) -> usize {
        let Some((table, policy)) = self.noise else {
            return 0;
        };
        let step = current.saturating_sub(1);
        match policy {
            LevelPolicy::OnePerIteration => step,
            LevelPolicy::ByDistance => {
                let by_distance = table.steps() * index / self.window_len.max(1);
                step.min(by_distance)
            }
        }
    }
}

impl SampleState {
    pub(crate) fn new(seed: u64, target_len: usize) -> Self {
        use rand::SeedableRng;
        Self {
            seed,
            rng: SampleRng::seed_from_u64(seed),
            tokens: Vec::with_capacity(target_len),
            pending: 0,
            slots: Vec::new(),
            ages: Vec::new(),
            finished: None,
            stats: Stats::default(),
            target_len,
        }
    }

    /// A sample that only exists to time passes: one pending `token` and `slots` slots, noisy
    /// or clean drafts of `token`, with a random stream of its own.
    pub(crate) fn stand_in(token: u32, slots: usize, noisy: bool) -> Self {
        // Room to commit the whole window and still refill it, as a sample mid-image does.
        let mut s = Self::new(0, 2 * slots + 4);
        s.tokens.push(token);
        s.pending = 1;
        s.ages = vec![0; slots];
        s.slots = (0..slots)
            .map(|_| match noisy {
                true => Slot::Noisy {
                    level: 1,
                    prediction: None,
                },
                false => Slot::Clean {
                    token,
                    q: Q::OneHot,
                },
            })
            .collect();
        s
    }

    pub(crate) fn active(&self) -> bool {
        self.finished.is_none()
    }

    /// Records the prefill's token (not yet in the cache).
    pub(crate) fn begin(&mut self) {
        self.pending = 1;
        self.stats.forward_passes = 1;
        self.stats.tokens_per_pass.push(1);
        self.stats.windows.push(0);
    }

    /// Marks the sample finished once it holds its target length (`Complete` when that is the
    /// whole layout of `layout_len` positions).
    pub(crate) fn finish_if_done(&mut self, layout_len: usize) {
        if self.tokens.len() >= self.target_len {
            self.finished = Some(if self.tokens.len() >= layout_len {
                FinishReason::Complete
            } else {
                FinishReason::MaxNewTokens
            });
        }
    }

    /// Commits a verified pass: the first `accepted` slots (a noisy slot, accepted only in
    /// lossy mode, as its latest prediction, or `fallback` without one) and `next`. Updates
    /// the pending count and the statistics; the slots themselves are refilled by
    /// [`SampleState::advance`]. `verifiable` is the number of leading slots verification could
    /// judge.
    pub(crate) fn commit(
        &mut self,
        accepted: usize,
        next: u32,
        fallback: u32,
        verifiable: usize,
    ) -> Commit {
        let width = self.slots.len();
        let accepted = accepted.min(width);
        let judged = accepted.min(verifiable);
        let verified = (0..verifiable.min(judged + 1))
            .filter(|&k| !matches!(self.slots[k], Slot::Forced(_)))
            .map(|k| (self.ages.get(k).copied().unwrap_or(0), k == judged))
            .collect();
        let accepted_slots = &self.slots[..accepted];
        let mut tokens: Vec<u32> = accepted_slots
            .iter()
            .map(|slot| match slot {
                Slot::Forced(t) | Slot::Clean { token: t, .. } => *t,
                Slot::Noisy { prediction, .. } => prediction.as_ref().map_or(fallback, |p| p.0),
            })
            .collect();
        tokens.push(next);
        tokens.truncate(self.target_len.saturating_sub(self.tokens.len()));
        let fed = accepted_slots
            .iter()
            .take_while(|x| x.fed_token().is_some())
            .count();
        let cached = self.pending + fed;
        self.pending = tokens.len().saturating_sub(fed);
        self.stats.forward_passes += 1;
        self.stats.tokens_per_pass.push(tokens.len());
        self.stats.accepted_drafts += accepted;
        self.stats.windows.push(width);
        Commit {
            tokens,
            accepted,
            verified,
            cached,
        }
    }

    pub(crate) fn window_view(&self) -> Vec<SlotView> {
        let g = self.tokens.len();
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| s.view(g + i))
            .collect()
    }

    fn token_at(&self, pos: usize) -> Option<u32> {
        match pos.checked_sub(self.tokens.len()) {
            None => Some(self.tokens[pos]),
            Some(i) => self.slots.get(i).and_then(Slot::fed_token),
        }
    }

    fn init_draft(&mut self, rules: &WindowRules<'_>, pos: usize) -> u32 {
        let layout = rules.layout;
        let left = |s: &Self| match layout.grid_cell(pos) {
            Some((r, c)) if c > 0 => s.token_at(layout.position(r, c - 1)),
            _ => None,
        };
        let above = |s: &Self| match layout.grid_cell(pos) {
            Some((r, c)) if r > 0 => s.token_at(layout.position(r - 1, c)),
            _ => None,
        };
        let repeated = match rules.draft_init {
            DraftInit::Random => None,
            DraftInit::HorizontalRepeat => left(self),
            DraftInit::VerticalRepeat => above(self).or_else(|| left(self)),
        };
        repeated.unwrap_or_else(|| self.rng.random_range(layout.image_token_range()))
    }

    /// Commits the outcome of a pass, refines the surviving slots with this pass's predictions
    /// (`predictions[i]` belongs to old slot `i`), refills the window and returns the device
    /// buffer plan of the new window (SJD2 only; empty otherwise).
    ///
    /// `fresh_noise` receives, for each fresh noisy slot, the index of the noise vector to draw.
    pub(crate) fn advance(
        &mut self,
        rules: &WindowRules<'_>,
        committed: &[u32],
        predictions: Vec<Prediction>,
        fresh_count: &mut usize,
    ) -> Result<Vec<BufferOp>> {
        let consumed = committed.len().min(self.slots.len() + 1);
        let old_slots = std::mem::take(&mut self.slots);
        let old_ages = std::mem::take(&mut self.ages);
        self.tokens.extend_from_slice(committed);
        let g = self.tokens.len();
        let width = rules.width(g, self.target_len);
        let mut ops = Vec::with_capacity(width);
        let mut predictions = predictions;
        if rules.draft_update == DraftUpdate::Coupled {
            self.couple_survivors(rules, &old_slots, &mut predictions, consumed, width)?;
        }
        let mut survivors = old_slots
            .into_iter()
            .zip(predictions)
            .enumerate()
            .skip(consumed);
        for j in 0..width {
            let pos = g + j;
            let survivor = survivors.next();
            if let Some(t) = rules.layout.forced_token(pos) {
                self.slots.push(Slot::Forced(t));
                self.ages.push(0);
                ops.push(BufferOp::UNUSED);
                continue;
            }
            let (slot, op, age) = match survivor {
                Some((old_index, (slot, pred))) => {
                    let (slot, op) = self.refine(rules, slot, pred, old_index, j)?;
                    (slot, op, old_ages.get(old_index).map_or(0, |a| a + 1))
                }
                None => {
                    let (slot, op) = self.fresh(rules, pos, fresh_count);
                    (slot, op, 0)
                }
            };
            self.slots.push(slot);
            self.ages.push(age);
            ops.push(op);
        }
        Ok(ops)
    }

    fn refine(
        &mut self,
        rules: &WindowRules<'_>,
        slot: Slot,
        pred: Prediction,
        old_index: usize,
        new_index: usize,
    ) -> Result<(Slot, BufferOp)> {
        let q = pred.probs.map_or(Q::OneHot, Q::Row);
        Ok(match slot {
            Slot::Noisy { level, .. } => {
                let to = rules.target_level(level, new_index);
                if to == 0 {
                    return Ok((
                        Slot::Clean {
                            token: pred.token,
                            q,
                        },
                        BufferOp::UNUSED,
                    ));
                }
                let (c_e, c_x) = rules
                    .noise
                    .map_or((0.0, 1.0), |(t, _)| t.ddim_coefficients(level, to));
                let op = BufferOp {
                    source: BufferSource::Old(old_index),
                    c_e: c_e as f32,
                    c_x: c_x as f32,
                    x0_token: pred.token,
                };
                (
                    Slot::Noisy {
                        level: to,
                        prediction: Some((pred.token, q)),
                    },
                    op,
                )
            }
            Slot::Clean { .. } | Slot::Forced(_) => (
                Slot::Clean {
                    token: pred.token,
                    q,
                },
                BufferOp::UNUSED,
            ),
        })
    }

    /// With [`DraftUpdate::Coupled`], replaces each surviving draft's new sample by the old
    /// draft coupled to its new distribution (maximal coupling, [`couple_with`]); survivors are
    /// `old_slots[consumed..]`, the slot at `consumed + j` moving to window index `j < width`
    /// (none at a forced position). The uniforms are drawn in window order, three per draft, and
    /// the couplings, each over the whole image vocabulary, run on several threads where they are
    /// long enough to pay; the result does not depend on the number of threads.
    fn couple_survivors(
        &mut self,
        rules: &WindowRules<'_>,
        old_slots: &[Slot],
        predictions: &mut [Prediction],
        consumed: usize,
        width: usize,
    ) -> Result<()> {
        let offset = rules.layout.image_token_range().start;
        let g = self.tokens.len();
        let mut jobs = Vec::new();
        let survivors = old_slots.iter().zip(predictions.iter_mut()).skip(consumed);
        for (j, (slot, pred)) in survivors.enumerate().take(width) {
            if rules.layout.forced_token(g + j).is_some() {
                continue;
            }
            let old = match slot {
                Slot::Clean { token, q } => (*token, q),
                Slot::Noisy {
                    prediction: Some((token, q)),
                    ..
                } => (*token, q),
                _ => continue,
            };
            let Some(p) = pred.probs.as_deref() else {
                continue;
            };
            let u = CouplingUniforms::draw(&mut self.rng);
            jobs.push((old, p, &mut pred.token, u));
        }
        jobs.par_iter_mut()
            .with_min_len(crate::decoder::rows_per_task(rules.layout.image_vocab()))
            .try_for_each(|((old, q_old), p, token, u)| {
                let p_new = Dist { offset, probs: p };
                **token = couple_with(p_new, q_old.proposal(offset), *old, *u)?;
                Ok(())
            })
    }

    fn fresh(
        &mut self,
        rules: &WindowRules<'_>,
        pos: usize,
        fresh_count: &mut usize,
    ) -> (Slot, BufferOp) {
        match rules.noise {
            Some((table, _)) => {
                let k = table.steps();
                let op = BufferOp {
                    source: BufferSource::Fresh(*fresh_count),
                    c_e: table.sigma(k) as f32,
                    c_x: 0.0,
                    x0_token: 0,
                };
                *fresh_count += 1;
                (
                    Slot::Noisy {
                        level: k,
                        prediction: None,
                    },
                    op,
                )
            }
            None => {
                let token = self.init_draft(rules, pos);
                (
                    Slot::Clean {
                        token,
                        q: Q::OneHot,
                    },
                    BufferOp::UNUSED,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sjd2_core::NoiseSchedule;

    fn layout() -> ImageLayout {
        ImageLayout::new(0..4, 3, 3, Some(9), vec![]).unwrap()
    }

    fn rules(l: &ImageLayout, w: usize) -> WindowRules<'_> {
        WindowRules {
            layout: l,
            window_len: w,
            plain_prefix: 0,
            plain_suffix: 0,
            draft_init: DraftInit::HorizontalRepeat,
            draft_update: DraftUpdate::Independent,
            noise: None,
        }
    }

    #[test]
    fn width_respects_end_and_span() {
        let l = layout();
        let mut r = rules(&l, 4);
        assert_eq!(r.width(1, 12), 4);
        assert_eq!(r.width(9, 12), 2);
        assert_eq!(r.width(11, 12), 0);
        r.plain_prefix = 2;
        r.plain_suffix = 3;
        assert_eq!(r.width(1, 12), 0);
        assert_eq!(r.width(2, 12), 4);
        assert_eq!(r.width(7, 12), 2);
        assert_eq!(r.width(9, 12), 0);
    }

    #[test]
    fn horizontal_repeat_and_forced_slots() {
        let l = layout();
        let r = rules(&l, 4);
        let mut s = SampleState::new(0, l.len());
        let mut fresh = 0;
        s.advance(&r, &[2], vec![], &mut fresh).unwrap();
        let v: Vec<SlotKind> = s.window_view().iter().map(|v| v.kind).collect();
        assert_eq!(
            &v[..3],
            &[SlotKind::Clean(2), SlotKind::Clean(2), SlotKind::Forced(9)]
        );
        assert!(matches!(v[3], SlotKind::Clean(_)), "column 0 is random");
    }

    #[test]
    fn noisy_slots_by_distance_become_clean_at_the_front() {
        let l = ImageLayout::new(0..4, 1, 12, None, vec![]).unwrap();
        let table = NoiseSchedule::Linear.table(4).unwrap();
        let mut r = rules(&l, 8);
        r.noise = Some((&table, LevelPolicy::ByDistance));
        let mut s = SampleState::new(0, l.len());
        let mut fresh = 0;
        let ops = s.advance(&r, &[1], vec![], &mut fresh).unwrap();
        assert_eq!(fresh, 8);
        assert!(
            ops.iter()
                .all(|o| matches!(o.source, BufferSource::Fresh(_)))
        );
        // One token committed (slot 0 consumed); slots 1.. survive with predictions.
        let preds = (0..8)
            .map(|i| Prediction {
                token: i % 4,
                probs: None,
            })
            .collect();
        let mut fresh = 0;
        let ops = s.advance(&r, &[3], preds, &mut fresh).unwrap();
        let levels: Vec<usize> = s
            .slots
            .iter()
            .map(|x| match x {
                Slot::Noisy { level, .. } => *level,
                _ => 0,
            })
            .collect();
        assert_eq!(levels, vec![0, 0, 1, 1, 2, 2, 3, 4]);
        assert_eq!(fresh, 1);
        assert_eq!(ops[2].source, BufferSource::Old(3));
        assert!(matches!(s.slots[0], Slot::Clean { token: 1, .. }));
    }
}
