//! Memory stays bounded over many generations: caches and window buffers are sized per
//! generation and released with it (resident set size read from /proc, Linux only).
#![allow(clippy::unwrap_used)]

mod common;

use common::{medium_toy, prompt};
use sjd2_sampler::{DecoderConfig, Sjd2Decoder};

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn rss_does_not_grow_over_100_generations() {
    let Some(_) = rss_kib() else {
        eprintln!("no /proc/self/status on this platform; nothing to measure");
        return;
    };
    let model = medium_toy(4);
    let p = prompt(&model, &[1, 2]);
    let cfg = DecoderConfig {
        window_len: sjd2_sampler::Window::Fixed(8),
        guidance_scale: 2.0,
        ..DecoderConfig::sjd2()
    };
    let d = Sjd2Decoder::new(model, cfg).unwrap();
    let batch: Vec<_> = (0..4).map(|i| p.clone().with_seed(i)).collect();
    for _ in 0..20 {
        d.generate_batch(&batch).unwrap();
    }
    let before = rss_kib().unwrap();
    for _ in 0..100 {
        d.generate_batch(&batch).unwrap();
    }
    let after = rss_kib().unwrap();
    let growth = after.saturating_sub(before);
    eprintln!("RSS {before} KiB -> {after} KiB after 100 batched generations (+{growth} KiB)");
    // One generation allocates well under 1 MiB; a leak of a cache per generation would add more
    // than 100 × that.
    assert!(
        growth < 8 * 1024,
        "resident memory grew by {growth} KiB over 100 generations"
    );
}
