//! SJD2 fine-tuning of the fixture families end to end: `prepare` a folder of images, 50 LoRA
//! steps lower the held-out next-clean-token loss, `export` writes a checkpoint the family's
//! loader reads back in the source's layout, and greedy SJD2 on the exported model equals greedy
//! AR on it. Plus resume, bad inputs and interrupted checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use sjd2_core::{JacobiDenoiser, Prompt, Sampling};
use sjd2_models::LlamaT2I;
use sjd2_models::chameleon::{Chameleon, ChameleonImage};
use sjd2_models::emu3::{Emu3, Emu3Image, Emu3Tokens};
use sjd2_models::janus::{Janus, JanusTokens};
use sjd2_models::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use sjd2_models::t5::T5Encoder;
use sjd2_models::vq::{ImageEncoder, MovqConfig, MovqEncoder, VqConfig, VqLayout, VqModel};
use sjd2_models::weights::Checkpoint;
use sjd2_sampler::{DecoderConfig, Sjd2Decoder};
use sjd2_train::TrainError;
use sjd2_train::finetune::{
    DataSpec, Example, FinetuneOptions, Finetuner, LoraOptions, PrepareOptions, Sjd2Settings,
    export, load_prepared, prepare,
};
use sjd2_train::lm_train::NoiseOptions;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sjd2-models/tests/fixtures/reference-models")
}

fn train_device() -> Device {
    Device::flex().autodiff()
}

/// A fixture family: how to load it (from its source or an export), its VQ encoder, the
/// image size, and a stand-in caption tokenizer into the fixture's text ids.
struct Family {
    name: &'static str,
    source: PathBuf,
    load: fn(&Path, &Device) -> LlamaT2I,
    vq: fn() -> Box<dyn ImageEncoder>,
    grid: (usize, usize),
    downsample: usize,
    codebook: usize,
    caption: fn(&str) -> Vec<u32>,
}

fn word_ids(text: &str, base: u32, span: u32) -> Vec<u32> {
    text.split_whitespace()
        .map(|w| {
            base + w
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
                % span
        })
        .collect()
}

fn tiny_vq(mut c: VqConfig, codebook: usize, embed: usize, layout: VqLayout) -> VqConfig {
    c.ch = 32;
    c.z_channels = 32;
    c.codebook_size = codebook;
    c.embed_dim = embed;
    c.layout = layout;
    c
}

fn chameleon_image() -> ChameleonImage {
    ChameleonImage {
        rows: 4,
        cols: 4,
        prefix: vec![37, 52, 53],
        row_end: Some(51),
        end_tokens: vec![36],
        unconditional: sjd2_models::Unconditional::PrefixOnly,
    }
}

fn families() -> Vec<Family> {
    vec![
        Family {
            name: "chameleon",
            source: fixtures().join("chameleon/hf"),
            load: |p, d| Chameleon::load(p, |_| Ok(chameleon_image()), d).unwrap().0,
            vq: || {
                Box::new(
                    VqModel::load(
                        fixtures().join("chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors"),
                        tiny_vq(
                            VqConfig::chameleon(),
                            32,
                            16,
                            VqLayout::Taming {
                                prefix: String::new(),
                            },
                        ),
                        &Device::flex(),
                    )
                    .unwrap(),
                )
            },
            grid: (4, 4),
            downsample: 16,
            codebook: 32,
            caption: |t| [vec![1], word_ids(t, 38, 12)].concat(),
        },
        Family {
            name: "janus",
            source: fixtures().join("janus/hf"),
            load: |p, d| {
                Janus::load(
                    p.join("config.json"),
                    p,
                    JanusTokens {
                        pad: 3,
                        begin_of_image: 10,
                    },
                    3,
                    d,
                )
                .unwrap()
            },
            vq: || {
                Box::new(
                    VqModel::load(
                        fixtures().join("janus/hf"),
                        tiny_vq(
                            VqConfig::vq16(),
                            64,
                            8,
                            VqLayout::Vq16Hf {
                                prefix: "model.vqmodel.".into(),
                            },
                        ),
                        &Device::flex(),
                    )
                    .unwrap(),
                )
            },
            grid: (3, 3),
            downsample: 16,
            codebook: 64,
            caption: |t| [vec![1], word_ids(t, 20, 10)].concat(),
        },
        Family {
            name: "emu3",
            source: fixtures().join("emu3/hf"),
            load: |p, d| Emu3::load(p, emu3_tokens(), emu3_image(), d).unwrap(),
            vq: || {
                let cfg = MovqConfig::in_checkpoint(fixtures().join("emu3/hf")).unwrap();
                let mut m =
                    MovqEncoder::load(fixtures().join("emu3/hf"), cfg, &Device::flex()).unwrap();
                // The random codebook is ~20× wider than the random encoder's latents, so every
                // image would be one repeated code; scaled down, the codes vary with the image.
                m.quantize.embedding.weight = m.quantize.embedding.weight.map(|w| w * 0.05);
                Box::new(m)
            },
            grid: (3, 4),
            downsample: 8,
            codebook: 64,
            caption: |t| [vec![1], word_ids(t, 20, 10)].concat(),
        },
        Family {
            name: "llamagen_c2i",
            source: fixtures().join("llamagen_c2i/weights.safetensors"),
            load: |p, d| {
                LlamaGen::load(
                    p,
                    LlamaGenConfig::tiny(LlamaGenTask::ClassToImage { num_classes: 10 }),
                    d,
                )
                .unwrap()
            },
            vq: llamagen_vq,
            grid: (4, 4),
            downsample: 16,
            codebook: 64,
            caption: |t| vec![word_ids(t, 0, 10)[0]],
        },
        Family {
            name: "llamagen_t2i",
            source: fixtures().join("llamagen_t2i/weights.safetensors"),
            load: |p, d| {
                LlamaGen::load(
                    p,
                    LlamaGenConfig::tiny(LlamaGenTask::TextToImage {
                        caption_dim: 32,
                        slots: 120,
                    }),
                    d,
                )
                .unwrap()
                .with_caption_encoder(
                    T5Encoder::load(fixtures().join("t5_encoder/hf"), 120, d).unwrap(),
                )
            },
            vq: llamagen_vq,
            grid: (4, 4),
            downsample: 16,
            codebook: 64,
            caption: |t| [word_ids(t, 5, 20), vec![1]].concat(),
        },
    ]
}

fn llamagen_vq() -> Box<dyn ImageEncoder> {
    Box::new(
        VqModel::load(
            fixtures().join("llamagen_vq/weights.safetensors"),
            tiny_vq(
                VqConfig::vq16(),
                64,
                8,
                VqLayout::Vq16 {
                    prefix: String::new(),
                },
            ),
            &Device::flex(),
        )
        .unwrap(),
    )
}

fn emu3_tokens() -> Emu3Tokens {
    Emu3Tokens::from_config(fixtures().join("emu3/hf/config.json"))
        .unwrap()
        .expect("the Emu3 fixture's config has a vocabulary_map")
}

fn emu3_image() -> Emu3Image {
    Emu3Image {
        rows: 3,
        cols: 4,
        size_tokens: vec![30, 31, 32],
        negative: vec![1, 25, 26],
    }
}

/// `n` examples of `fam` prepared from a folder of shape images by the family's encoder (with a
/// missing image, a corrupt one and an empty caption that must be skipped).
fn examples(fam: &Family, work: &Path, n: u64) -> Vec<Example> {
    let (rows, cols) = fam.grid;
    let vq = (fam.vq)();
    let images = work.join("images");
    let (h, w) = (rows * fam.downsample, cols * fam.downsample);
    sjd2_train::shapes::write_imagefolder(&images, 1, 0, n, h.max(w)).unwrap();
    // Bad entries: a missing file, a file that is not an image, an empty caption.
    std::fs::write(images.join("broken.png"), b"not a png").unwrap();
    let mut meta = std::fs::read_to_string(images.join("metadata.jsonl")).unwrap();
    meta.push_str("{\"file_name\": \"missing.png\", \"text\": \"a red circle\"}\n");
    meta.push_str("{\"file_name\": \"broken.png\", \"text\": \"a red circle\"}\n");
    meta.push_str("{\"file_name\": \"0000000.png\", \"text\": \"  \"}\n");
    meta.push_str("not json\n");
    std::fs::write(images.join("metadata.jsonl"), meta).unwrap();
    let spec = DataSpec {
        family: fam.name.into(),
        image_height: h,
        image_width: w,
        grid_rows: rows,
        grid_cols: cols,
        codebook_size: fam.codebook,
    };
    let opts = PrepareOptions {
        spec: spec.clone(),
        shard_size: 7,
        encode_batch: 3,
    };
    let out = work.join("prepared");
    let encode =
        |img: burn::Tensor<4>| -> sjd2_train::Result<Vec<Vec<u32>>> { Ok(vq.encode_batch(img)?) };
    let mut seen = Vec::new();
    let m = prepare(
        &images,
        &out,
        &opts,
        |t| Ok((fam.caption)(t)),
        encode,
        &Device::flex(),
        |p| seen.push(*p),
    )
    .unwrap();
    assert_eq!(m.examples(), n as usize, "{}", fam.name);
    assert_eq!(m.skipped.len(), 4, "{}: {:?}", fam.name, m.skipped);
    assert!(m.skipped.iter().any(|s| s.item.ends_with("missing.png")));
    assert!(m.skipped.iter().any(|s| s.reason == "empty caption"));
    assert!(seen.last().is_some_and(|p| p.processed == p.entries));
    // Preparing again resumes a complete folder: nothing is redone.
    let again = prepare(
        &images,
        &out,
        &opts,
        |_| panic!("re-encoded"),
        |_| panic!("re-encoded"),
        &Device::flex(),
        |_| {},
    )
    .unwrap();
    assert_eq!(again, m);
    // A folder prepared for another spec is refused.
    let other = PrepareOptions {
        spec: DataSpec {
            family: "another".into(),
            ..spec
        },
        ..opts
    };
    let err = prepare(
        &images,
        &out,
        &other,
        |t| Ok((fam.caption)(t)),
        encode,
        &Device::flex(),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("prepared for"), "{err}");
    // Captions that all fail: an error, and no manifest is kept, so the same command starts over
    // once the inputs are fixed (instead of resuming a run in which everything was skipped).
    let none = work.join("none");
    let err = prepare(
        &images,
        &none,
        &opts,
        |_| Err("no known word".to_string()),
        encode,
        &Device::flex(),
        |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("no usable entry"), "{err}");
    assert!(!none.join("manifest.json").exists());
    let fixed = prepare(
        &images,
        &none,
        &opts,
        |t| Ok((fam.caption)(t)),
        encode,
        &Device::flex(),
        |_| {},
    )
    .unwrap();
    assert_eq!(fixed.examples(), n as usize);
    let (_, ex) = load_prepared(&out).unwrap();
    ex
}

fn options(steps: usize) -> FinetuneOptions {
    FinetuneOptions {
        lora: Some(LoraOptions::new(8)),
        steps,
        batch: 4,
        grad_accum: 1,
        lr: 3e-3,
        warmup: 5,
        held_out: 4,
        checkpoint_every: 25,
        noise: NoiseOptions {
            levels: 4,
            segment_len: (2, 8),
            ..NoiseOptions::default()
        },
        ..FinetuneOptions::default()
    }
}

fn greedy(model: &LlamaT2I, config: DecoderConfig, prompt: &Prompt) -> Vec<u32> {
    let cfg = DecoderConfig {
        sampling: Sampling::Greedy,
        guidance_scale: 2.0,
        ..config
    };
    Sjd2Decoder::new(model.clone(), cfg)
        .unwrap()
        .generate(prompt)
        .unwrap()
        .tokens
}

#[test]
fn every_fixture_family_prepares_trains_and_exports() {
    for fam in families() {
        let work = tempfile::tempdir().unwrap();
        let data = examples(&fam, work.path(), 24);
        let model = (fam.load)(&fam.source, &train_device());
        let run = work.path().join("run");
        let mut tuner = Finetuner::new(model, data.clone(), options(50), &run).unwrap();
        let before = tuner.held_out_loss().unwrap();
        tuner.run(|_| {}, |_| Ok(())).unwrap();
        let after = tuner.held_out_loss().unwrap();
        assert!(
            after < before - 0.05,
            "{}: held-out loss {before} -> {after}",
            fam.name
        );
        assert!(run.join("checkpoint-0000050/trainable.bpk").is_file());
        // The quick evaluation: SJD2 on two held-out prompts, logged.
        let quick = DecoderConfig {
            window_len: 6.into(),
            guidance_scale: 2.0,
            ..DecoderConfig::sjd2()
        };
        let e = tuner.quick_eval(2, &Device::flex(), quick).unwrap();
        let len = tuner.model().unwrap().layout().len() as f64;
        assert_eq!((e.step, e.images, e.tokens_per_image), (50, 2, len));
        assert!(
            (1.0..=len).contains(&e.passes_per_image),
            "{}: {e:?}",
            fam.name
        );
        let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
        assert!(log.contains("\"eval_passes_per_image\""));
        assert!(
            tuner
                .quick_eval(2, &Device::flex(), DecoderConfig::autoregressive())
                .is_err()
        );

        let out = work.path().join("export");
        let settings = tuner.settings();
        assert!(settings.sinusoidal_levels().unwrap());
        let model = tuner.into_model().unwrap();
        let report = export(&model, &fam.source, &out, &settings).unwrap();
        assert!(
            report.trained > 0 && report.copied > 0,
            "{}: {report:?}",
            fam.name
        );
        assert_eq!(Sjd2Settings::find(&out).unwrap(), Some(settings.clone()));
        // Every source tensor is there, in its dtype; the backbone changed, the rest did not.
        let (src, dst) = (
            Checkpoint::open(&fam.source).unwrap(),
            Checkpoint::open(&out).unwrap(),
        );
        let names: Vec<&str> = src.names().collect();
        assert_eq!(names, dst.names().collect::<Vec<_>>(), "{}", fam.name);
        let mut changed = 0;
        for n in names {
            assert_eq!(
                src.stored_dtype(n),
                dst.stored_dtype(n),
                "{}: {n}",
                fam.name
            );
            if src.read_raw(n).unwrap() != dst.read_raw(n).unwrap() {
                changed += 1;
            }
        }
        assert!(
            changed > 0 && changed <= report.trained,
            "{}: {changed} changed",
            fam.name
        );

        // The family's loader reads the export; greedy SJD2 equals greedy AR on it.
        let exported = (fam.load)(&out, &Device::flex());
        let prompt = Prompt::new(data[0].prompt.clone());
        let ar = greedy(&exported, DecoderConfig::autoregressive(), &prompt);
        assert_eq!(ar.len(), exported.layout().len());
        let mut sjd2 = DecoderConfig {
            window_len: 6.into(),
            ..DecoderConfig::sjd2()
        };
        sjd2.sjd2.denoising_steps = settings.denoising_steps;
        sjd2.sjd2.schedule = settings.noise_schedule().unwrap();
        sjd2.sjd2.level_conditioning = sjd2_sampler::LevelConditioning::Sinusoidal;
        assert_eq!(greedy(&exported, sjd2, &prompt), ar, "{}", fam.name);
    }
}

#[test]
fn an_interrupted_run_resumes_mid_epoch_to_the_same_result() {
    let fam = &families()[0];
    let work = tempfile::tempdir().unwrap();
    let data = examples(fam, work.path(), 12);
    let mut opts = options(6);
    opts.checkpoint_every = 3;
    opts.held_out = 2;
    // 10 training examples, batch 4: step 3 starts in the middle of the second epoch.
    let straight = work.path().join("straight");
    let mut a = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data.clone(),
        opts.clone(),
        &straight,
    )
    .unwrap();
    a.run(|_| {}, |_| Ok(())).unwrap();
    let split = work.path().join("split");
    let mut b = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data.clone(),
        opts.clone(),
        &split,
    )
    .unwrap();
    for _ in 0..3 {
        b.train_step().unwrap();
    }
    b.save_checkpoint().unwrap();
    b.train_step().unwrap(); // lost: never checkpointed
    drop(b);
    let mut b = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data.clone(),
        opts.clone(),
        &split,
    )
    .unwrap();
    assert_eq!(b.step(), 3);
    b.run(|_| {}, |_| Ok(())).unwrap();
    let (la, lb) = (a.held_out_loss().unwrap(), b.held_out_loss().unwrap());
    assert!((la - lb).abs() < 1e-5, "straight {la} vs resumed {lb}");
    let log = |d: &Path| {
        std::fs::read_to_string(d.join("log.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["step"] == 5 && v.get("loss").is_some())
            .map(|v| v["loss"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    let (sa, sb) = (log(&straight), log(&split));
    assert!(
        (sa[0] - sb.last().copied().unwrap()).abs() < 1e-5,
        "{sa:?} vs {sb:?}"
    );
}

#[test]
fn bad_runs_are_refused_and_lose_nothing() {
    let fam = &families()[0];
    let work = tempfile::tempdir().unwrap();
    let data = examples(fam, work.path(), 10);
    let mut opts = options(4);
    opts.held_out = 2;
    let dir = work.path().join("run");
    let mut t = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data.clone(),
        opts.clone(),
        &dir,
    )
    .unwrap();
    t.train_step().unwrap();
    t.save_checkpoint().unwrap();
    // A failing checkpoint write (here: a file where its folder must go, as a full disk would
    // fail it) is an error, and the previous checkpoint stays in force.
    t.train_step().unwrap();
    std::fs::write(dir.join("checkpoint-0000002.partial"), b"in the way").unwrap();
    assert!(t.save_checkpoint().is_err());
    drop(t);
    let resumed = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data.clone(),
        opts.clone(),
        &dir,
    )
    .unwrap();
    assert_eq!(resumed.step(), 1);
    drop(resumed);
    // Other settings in the same directory: refused, naming the setting.
    let mut other = opts.clone();
    other.lr = 1e-3;
    let err = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data.clone(),
        other,
        &dir,
    )
    .unwrap_err();
    assert!(err.to_string().contains("lr"), "{err}");
    // Other data: refused.
    let err = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data[..9].to_vec(),
        opts.clone(),
        &dir,
    )
    .unwrap_err();
    assert!(err.to_string().contains("examples"), "{err}");
    // A LoRA target that matches nothing, too little data, zero steps.
    let mut bad = opts.clone();
    bad.lora = Some(LoraOptions {
        targets: vec!["no_such_weight$".into()],
        ..LoraOptions::new(4)
    });
    let fresh = work.path().join("fresh");
    let err = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data.clone(),
        bad,
        &fresh,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Config {
                field: "lora.targets",
                ..
            }
        ),
        "{err}"
    );
    let err = Finetuner::new(
        (fam.load)(&fam.source, &train_device()),
        data[..2].to_vec(),
        opts.clone(),
        &fresh,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::Config {
                field: "held_out",
                ..
            }
        ),
        "{err}"
    );
    // Export never overwrites.
    let model = (fam.load)(&fam.source, &Device::flex());
    let settings = Sjd2Settings::new(opts.noise.schedule, 4, true, opts.normalization);
    let err = export(&model, &fam.source, work.path(), &settings).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    // A prepared folder that is incomplete or missing is named.
    let err = load_prepared(&work.path().join("nowhere")).unwrap_err();
    assert!(err.to_string().contains("manifest.json"), "{err}");
}

#[test]
fn two_devices_train_as_one_with_the_same_global_batch() {
    // Flex is one CPU device: the two "devices" are two full replicas on it, each computing the
    // gradients of its micro-batches in its own thread, summed by burn's MultiGradientsParams.
    let fam = &families()[1];
    let work = tempfile::tempdir().unwrap();
    let data = examples(fam, work.path(), 14);
    let mut opts = options(4);
    opts.grad_accum = 2;
    opts.batch = 3;
    opts.held_out = 2;
    let run = |dir: &str, devices: usize| {
        let d = train_device();
        let mut t = Finetuner::new(
            (fam.load)(&fam.source, &d),
            data.clone(),
            opts.clone(),
            &work.path().join(dir),
        )
        .unwrap()
        .with_devices(vec![d; devices]);
        let losses: Vec<f32> = (0..4).map(|_| t.train_step().unwrap().loss).collect();
        (losses, t.held_out_loss().unwrap())
    };
    let (one, held_one) = run("one", 1);
    let (two, held_two) = run("two", 2);
    for (a, b) in one.iter().zip(&two) {
        assert!((a - b).abs() < 1e-4, "step losses {one:?} vs {two:?}");
    }
    assert!(
        (held_one - held_two).abs() < 1e-4,
        "held-out {held_one} vs {held_two}"
    );
    assert!(one[3] < one[0], "{one:?}");
}
