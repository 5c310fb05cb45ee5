//! Half-precision computation on the CPU backend. burn fixes a device's default dtype once per
//! process, so the f32 reference runs in a child process of this test binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::{DType, Device};
use sjd2_core::testing::{ToyConfig, ToyModel};
use sjd2_core::{Precision, configure_precision};

fn toy(device: &Device) -> ToyModel {
    ToyModel::new(
        ToyConfig {
            image_vocab: 16,
            text_vocab: 4,
            hidden: 32,
            heads: 4,
            rows: 4,
            cols: 4,
            seed: 3,
            ..ToyConfig::default()
        },
        device,
    )
    .unwrap()
}

fn logits(precision: Precision) -> Vec<f32> {
    let mut device = Device::flex();
    configure_precision(&mut device, precision).unwrap();
    let m = toy(&device);
    m.full_pass(&[8, 9, 1, 2, 3, 4, 5]).unwrap()
}

/// Prints the f32 logits when run as the child (`SJD2_PRECISION_CHILD=1`).
#[test]
fn child_f32_logits() {
    if std::env::var_os("SJD2_PRECISION_CHILD").is_none() {
        return;
    }
    let l = logits(Precision::F32);
    println!(
        "LOGITS {}",
        l.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
}

#[test]
fn f16_logits_track_f32_and_bf16_is_refused_after_tensors_exist() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_f32_logits",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("SJD2_PRECISION_CHILD", "1")
        .output()
        .unwrap();
    // libtest may route the child's output to either stream.
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.split_once("LOGITS ").map(|(_, v)| v))
        .unwrap_or_else(|| panic!("child printed no logits: {text}"));
    let f32_logits: Vec<f32> = line.split(',').map(|x| x.parse().unwrap()).collect();

    let mut device = Device::flex();
    configure_precision(&mut device, Precision::F16).unwrap();
    let m = toy(&device);
    let probe = burn::Tensor::<1>::zeros([2], &device);
    assert_eq!(probe.dtype(), DType::F16, "the device computes in f16");
    let half = m.full_pass(&[8, 9, 1, 2, 3, 4, 5]).unwrap();
    let err = half
        .iter()
        .zip(&f32_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 0.05, "f16 logits differ from f32 by {err}");
    assert!(err > 0.0, "f16 should not be bit-identical to f32");
    // The device's defaults are now fixed: switching again is a clear error, not a panic.
    assert!(configure_precision(&mut device, Precision::BF16).is_err());
}
