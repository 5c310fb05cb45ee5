//! Arbitrary decoder configurations and prompts on the toy model: validate, then generate.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sjd2_core::testing::{ToyConfig, ToyModel};
use sjd2_core::{Device, NoiseSchedule, Prompt, Sampling};
use sjd2_sampler::{Acceptance, DecoderConfig, DraftInit, DraftUpdate, JacobiSpan, LevelConditioning, LevelPolicy, Mode, Sjd2Decoder, Verification};

fn model() -> &'static ToyModel {
    static M: OnceLock<ToyModel> = OnceLock::new();
    M.get_or_init(|| ToyModel::new(ToyConfig { rows: 3, cols: 3, end_of_image: true, ..ToyConfig::default() }, &Device::flex()).expect("toy model"))
}

fn f(b: &[u8], i: usize) -> f32 {
    let x = b.get(i..i + 4).map_or(0.0, |s| f32::from_le_bytes([s[0], s[1], s[2], s[3]]));
    x
}

fuzz_target!(|b: &[u8]| {
    if b.len() < 40 {
        return;
    }
    let byte = |i: usize| b[i] as usize;
    let sampling = match b[0] % 3 {
        0 => Sampling::Greedy,
        1 => Sampling::Multinomial { temperature: f(b, 1), top_k: (b[5] % 2 == 0).then_some(byte(6)), top_p: (b[7] % 2 == 0).then_some(f(b, 8)) },
        _ => Sampling::top_k(byte(12), f(b, 13)),
    };
    let mut cfg = DecoderConfig {
        mode: [Mode::Autoregressive, Mode::Sjd, Mode::Sjd2][byte(17) % 3],
        window_len: sjd2_sampler::Window::Fixed(byte(18) % 40),
        draft_init: [DraftInit::Random, DraftInit::HorizontalRepeat, DraftInit::VerticalRepeat][byte(19) % 3],
        draft_update: [DraftUpdate::Independent, DraftUpdate::Coupled][byte(19) / 3 % 2],
        verification: [Verification::Probabilistic, Verification::Jacobi][byte(20) % 2],
        jacobi_span: JacobiSpan { plain_prefix: byte(21) % 12, plain_suffix: byte(22) % 12 },
        max_new_tokens: (b[23] % 2 == 0).then_some(byte(24) % 20),
        sampling,
        guidance_scale: f(b, 25),
        seed: u64::from(b[29]),
        ..DecoderConfig::sjd2()
    };
    cfg.sjd2.denoising_steps = byte(30) % 30;
    cfg.sjd2.schedule = match b[31] % 3 {
        0 => NoiseSchedule::Linear,
        1 => NoiseSchedule::Cosine,
        _ => NoiseSchedule::Karras { sigma_min: f64::from(f(b, 32)), sigma_max: f64::from(f(b, 36)), rho: 7.0 },
    };
    cfg.sjd2.level_policy = [LevelPolicy::ByDistance, LevelPolicy::OnePerIteration][byte(31) / 3 % 2];
    cfg.sjd2.level_conditioning = [LevelConditioning::None, LevelConditioning::Sinusoidal, LevelConditioning::Learned][byte(30) / 30 % 3];
    cfg.sjd2.acceptance = [Acceptance::CleanPrefix, Acceptance::Lossy][byte(29) % 2];
    let Ok(decoder) = Sjd2Decoder::new(model().clone(), cfg) else {
        return;
    };
    let prompt: Vec<u32> = b[40..].iter().take(8).map(|&x| u32::from(x % 16)).collect();
    let prompts = [Prompt::new(prompt.clone()), Prompt::new(prompt).with_negative(vec![u32::from(b[39] % 12)])];
    let _ = decoder.generate_batch(&prompts);
});
