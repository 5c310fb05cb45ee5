//! Training stages run, checkpoint and resume.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use burn::tensor::Device;
use sjd2_models::vq::VqConfig;
use sjd2_train::run::RunDir;
use sjd2_train::vq::demo_vq;
use sjd2_train::vq_train::{VqTrainOptions, train_vq};

fn tiny() -> VqTrainOptions {
    VqTrainOptions {
        model: VqConfig {
            ch: 4,
            ch_mult: vec![1, 2],
            num_res_blocks: 1,
            z_channels: 4,
            embed_dim: 4,
            codebook_size: 16,
            ..demo_vq()
        },
        image_size: 16,
        steps: 3,
        batch: 2,
        lr: 1e-3,
        checkpoint_every: 2,
        restart_every: 2,
        seed: 0,
    }
}

#[test]
fn vq_stage_checkpoints_and_resumes() {
    let dir = std::env::temp_dir().join(format!("sjd2-stage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = RunDir::open(&dir).unwrap();
    let device = Device::flex().autodiff();
    let mut opts = tiny();
    let mut seen = Vec::new();
    train_vq(&opts, &run, &device, |s| seen.push(s.step)).unwrap();
    assert_eq!(seen, vec![0, 1, 2]);
    assert!(run.file("vq.safetensors").exists());
    assert_eq!(run.state().unwrap().unwrap()["step"], 3);
    // Asking for more steps continues from the checkpoint instead of starting over.
    opts.steps = 5;
    seen.clear();
    let eval = train_vq(&opts, &run, &device, |s| seen.push(s.step)).unwrap();
    assert_eq!(seen, vec![3, 4]);
    assert!(eval.mse.is_finite() && eval.codes_used >= 1);
    let log = std::fs::read_to_string(run.file("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 5);
    // A zero-step request is a clear error.
    opts.steps = 0;
    let err = train_vq(&opts, &run, &device, |_| {}).unwrap_err();
    assert!(err.to_string().contains("steps"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
