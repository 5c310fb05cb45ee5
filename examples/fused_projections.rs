//! Separate against fused projections on the CPU, at the demo model's width: three `[192, 192]`
//! q/k/v matmuls against one `[192, 576]`, and gate + up `[192, 512]` against one `[192, 1024]`,
//! on inputs `[2, L, 192]` (both CFG rows) for window lengths `L`. Each figure is the best of 5
//! runs of 50 calls after 20 warm-up calls, in microseconds per call.
//!
//! ```text
//! cargo run --release --example fused_projections
//! ```

use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Distribution, Tensor};
use sjd2::Device;
use std::time::Instant;

fn micros(mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..50 {
                f();
            }
            t.elapsed().as_secs_f64() / 50.0
        })
        .fold(f64::INFINITY, f64::min)
        * 1e6
}

fn main() {
    let device = Device::flex();
    let d = 192;
    let linear =
        |out: usize| -> Linear { LinearConfig::new(d, out).with_bias(false).init(&device) };
    let (q, k, v, qkv) = (linear(d), linear(d), linear(d), linear(3 * d));
    let (gate, up, gate_up) = (linear(512), linear(512), linear(1024));
    println!("| L | q, k, v µs | fused qkv µs | gate + up µs | fused gate/up µs |");
    println!("|---|---|---|---|---|");
    for len in [1usize, 2, 5, 17, 33, 65] {
        let x = Tensor::<3>::random([2, len, d], Distribution::Default, &device);
        let separate = micros(|| {
            let _ = (
                q.forward(x.clone()),
                k.forward(x.clone()),
                v.forward(x.clone()),
            );
        });
        let fused = micros(|| {
            let _ = qkv.forward(x.clone());
        });
        let mlp = micros(|| {
            let _ = (gate.forward(x.clone()), up.forward(x.clone()));
        });
        let mlp_fused = micros(|| {
            let _ = gate_up.forward(x.clone());
        });
        println!("| {len} | {separate:.1} | {fused:.1} | {mlp:.1} | {mlp_fused:.1} |");
    }
}
