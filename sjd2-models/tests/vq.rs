//! VQ tokenizers against the reference decoders and encoders (max abs error 1e-4), PNG output,
//! and bad inputs.
#![allow(clippy::unwrap_used)]

mod common;

use burn::tensor::{Device, TensorData};
use common::{Reference, assert_close, fixtures, host};
use sjd2_core::Error;
use sjd2_models::vq::{ImageDecoder, VqConfig, VqLayout, VqModel, save_png, to_rgb8};

fn tiny(mut c: VqConfig, codebook: usize, embed: usize, layout: VqLayout) -> VqConfig {
    c.ch = 32;
    c.z_channels = 32;
    c.codebook_size = codebook;
    c.embed_dim = embed;
    c.layout = layout;
    c
}

fn vq16_fixture() -> VqModel {
    let cfg = tiny(
        VqConfig::vq16(),
        64,
        8,
        VqLayout::Vq16 {
            prefix: String::new(),
        },
    );
    VqModel::load(
        fixtures().join("llamagen_vq/weights.safetensors"),
        cfg,
        &Device::flex(),
    )
    .unwrap()
}

fn chameleon_fixture() -> VqModel {
    let cfg = tiny(
        VqConfig::chameleon(),
        32,
        16,
        VqLayout::Taming {
            prefix: String::new(),
        },
    );
    VqModel::load(
        fixtures().join("chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors"),
        cfg,
        &Device::flex(),
    )
    .unwrap()
}

fn check_codec(case: &str, m: &VqModel) {
    let r = Reference::open(case);
    let hw = r.ids("latent_hw");
    let (rows, cols) = (hw[0] as usize, hw[1] as usize);
    let codes = r.ids("codes");
    let (_, want) = r.f32("decoded_image");
    assert_close(
        &host(m.decode(&codes, rows, cols).unwrap()),
        &want,
        &format!("{case} decoded_image"),
    );
    let (shape, input) = r.f32("encode_input");
    let image = burn::Tensor::<4>::from_data(
        TensorData::new(input, [shape[0], shape[1], shape[2], shape[3]]),
        &Device::flex(),
    );
    let (got, h, w) = m.encode(image).unwrap();
    assert_eq!((h, w), (rows, cols));
    assert_eq!(got, r.ids("encode_codes"), "{case} encode_codes");
}

#[test]
fn llamagen_vq16_parity() {
    check_codec("llamagen_vq", &vq16_fixture());
}

#[test]
fn chameleon_vqgan_parity() {
    let m = chameleon_fixture();
    check_codec("chameleon_vqgan", &m);
    let r = Reference::open("chameleon_vqgan");
    let (_, quant) = r.f32("quant");
    assert_close(
        &host(m.quantized(&r.ids("codes"), 2, 3).unwrap()),
        &quant,
        "chameleon quant",
    );
}

#[test]
fn janus_vq_parity_both_layouts() {
    let r = Reference::open("janus");
    let codes = r.ids("image_codes");
    let (_, want) = r.f32("decoded_image");
    for (file, layout) in [
        (
            fixtures().join("janus/hf/model.safetensors"),
            VqLayout::Vq16Hf {
                prefix: "model.vqmodel.".into(),
            },
        ),
        (
            common::janus_original_layout(),
            VqLayout::Vq16 {
                prefix: "gen_vision_model.".into(),
            },
        ),
    ] {
        let cfg = tiny(VqConfig::vq16(), 64, 8, layout);
        let m = VqModel::load(&file, cfg, &Device::flex()).unwrap();
        assert_close(
            &host(m.decode(&codes, 3, 3).unwrap()),
            &want,
            &format!("{} decoded_image", file.display()),
        );
    }
}

#[test]
fn png_round_trip_has_the_right_size() {
    let m = vq16_fixture();
    let img = to_rgb8(m.decode(&[1, 2, 3, 4, 5, 6], 2, 3).unwrap()).unwrap();
    assert_eq!(
        (img.width, img.height, img.pixels.len()),
        (48, 32, 48 * 32 * 3)
    );
    let path = std::env::temp_dir().join(format!("sjd2-vq-{}.png", std::process::id()));
    save_png(&path, &img).unwrap();
    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!((back.width(), back.height()), (48, 32));
    assert_eq!(back.into_raw(), img.pixels);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn bad_codes_and_grids_are_errors() {
    let m = vq16_fixture();
    assert!(matches!(
        m.decode(&[1, 2, 64], 1, 3).unwrap_err(),
        Error::TokenOutOfRange { token: 64, .. }
    ));
    assert!(matches!(
        m.decode(&[1, 2, 3], 2, 3).unwrap_err(),
        Error::Shape { .. }
    ));
    assert!(matches!(
        m.decode(&[], 0, 0).unwrap_err(),
        Error::Shape { .. }
    ));
    let odd = burn::Tensor::<4>::zeros([1, 3, 20, 32], &Device::flex());
    assert!(matches!(m.encode(odd).unwrap_err(), Error::Shape { .. }));
}

#[test]
fn missing_vq_weights_are_named() {
    let mut tensors = common::all_tensors(&fixtures().join("llamagen_vq/weights.safetensors"));
    tensors.retain(|(n, _, _)| n != "decoder.conv_out.weight");
    let path = std::env::temp_dir().join(format!(
        "sjd2-vq-missing-{}.safetensors",
        std::process::id()
    ));
    common::write_tensors(&path, &tensors, Default::default());
    let cfg = tiny(
        VqConfig::vq16(),
        64,
        8,
        VqLayout::Vq16 {
            prefix: String::new(),
        },
    );
    let e = VqModel::load(&path, cfg, &Device::flex()).unwrap_err();
    assert!(e.to_string().contains("decoder.conv_out.weight"), "{e}");
    std::fs::remove_file(path).unwrap();
}

/// The Emu3 vision tokenizer fixture's files in both layouts, with their key prefixes and the
/// tiny sizes (ch 32, 64 codes).
fn emu3_movq_files() -> Vec<(
    std::path::PathBuf,
    &'static str,
    sjd2_models::vq::MovqConfig,
)> {
    use sjd2_models::vq::{MovqConfig, MovqLayout};
    [
        (fixtures().join("emu3/hf/model.safetensors"), "vqmodel."),
        (common::emu3_original_vq(), ""),
    ]
    .into_iter()
    .map(|(file, prefix)| {
        let layout = match prefix {
            "" => MovqLayout::Original {
                prefix: String::new(),
            },
            p => MovqLayout::HuggingFace { prefix: p.into() },
        };
        let cfg = MovqConfig {
            ch: 32,
            codebook_size: 64,
            layout,
            ..MovqConfig::emu3()
        };
        (file, prefix, cfg)
    })
    .collect()
}

/// The fixture's decoder in both layouts, with its file and key prefix.
fn emu3_movq_both_layouts() -> Vec<(
    std::path::PathBuf,
    &'static str,
    sjd2_models::vq::MovqDecoder,
)> {
    emu3_movq_files()
        .into_iter()
        .map(|(file, prefix, cfg)| {
            let m = sjd2_models::vq::MovqDecoder::load(&file, cfg, &Device::flex()).unwrap();
            (file, prefix, m)
        })
        .collect()
}

#[test]
fn emu3_movq_parity_both_layouts() {
    let r = Reference::open("emu3");
    let codes = r.ids("codes");
    let (_, want) = r.f32("decoded_image");
    for (file, _, m) in emu3_movq_both_layouts() {
        assert_close(
            &host(m.decode(&codes, 3, 4).unwrap()),
            &want,
            &format!("{} decoded_image", file.display()),
        );
    }
}

#[test]
fn emu3_movq_exports_the_checkpoint_it_loaded() {
    for (file, prefix, m) in emu3_movq_both_layouts() {
        let mut exported = m.export().unwrap();
        // What the decoder reads: everything under the prefix but the encoder side.
        let mut stored: Vec<_> = common::all_tensors(&file)
            .into_iter()
            .filter(|(n, _, _)| {
                n.strip_prefix(prefix)
                    .is_some_and(|n| !n.starts_with("encoder.") && !n.starts_with("quant_conv."))
            })
            .collect();
        exported.sort_by(|a, b| a.0.cmp(&b.0));
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(exported.len(), stored.len(), "{}", file.display());
        for (e, s) in exported.iter().zip(&stored) {
            assert_eq!((&e.0, &e.1), (&s.0, &s.1), "{}", file.display());
            assert_eq!(e.2, s.2, "{}", e.0);
        }
    }
}

/// The fixture's encoder in both layouts, with its file and key prefix.
fn emu3_encoder_both_layouts() -> Vec<(
    std::path::PathBuf,
    &'static str,
    sjd2_models::vq::MovqEncoder,
)> {
    emu3_movq_files()
        .into_iter()
        .map(|(file, prefix, cfg)| {
            let m = sjd2_models::vq::MovqEncoder::load(&file, cfg, &Device::flex()).unwrap();
            (file, prefix, m)
        })
        .collect()
}

/// `scripts/emu3_encoder_reference.py`: transformers' `Emu3VQVAE.encode` on two images.
fn emu3_encoder_reference() -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/emu3_encoder_reference.safetensors");
    let file = sjd2_models::weights::Checkpoint::open(&path).unwrap();
    let mut out = std::collections::HashMap::new();
    for name in ["images", "latents"] {
        out.insert(name.to_string(), file.read_f32(name).unwrap());
    }
    for name in ["codes", "codes_codebook_scaled_0_05"] {
        let (shape, ids) = file.read_i64(name).unwrap();
        out.insert(
            name.to_string(),
            (shape, ids.into_iter().map(|x| x as f32).collect()),
        );
    }
    out
}

#[test]
fn emu3_movq_encoder_parity_both_layouts() {
    use sjd2_models::vq::ImageEncoder;
    let r = emu3_encoder_reference();
    let device = Device::flex();
    let (shape, pixels) = r["images"].clone();
    let images = || {
        burn::Tensor::<4>::from_data(
            TensorData::new(pixels.clone(), [shape[0], shape[1], shape[2], shape[3]]),
            &device,
        )
    };
    let ids = |name: &str| -> Vec<Vec<u32>> {
        r[name]
            .1
            .chunks(12)
            .map(|c| c.iter().map(|&x| x as u32).collect())
            .collect()
    };
    for (file, _, m) in emu3_encoder_both_layouts() {
        let what = file.display().to_string();
        assert_eq!(m.latents(images()).dims(), [2, 4, 3, 4]);
        assert_close(
            &host(m.latents(images())),
            &r["latents"].1,
            &format!("{what} latents"),
        );
        assert_eq!(
            m.encode_batch(images()).unwrap(),
            ids("codes"),
            "{what} codes"
        );
        // The random codebook is much wider than the latents (every code is the same); scaled by
        // 0.05 as in the script, the nearest codes vary and must still agree.
        let mut scaled = m.clone();
        scaled.quantize.embedding.weight = scaled.quantize.embedding.weight.map(|w| w * 0.05);
        let got = scaled.encode_batch(images()).unwrap();
        assert_eq!(
            got,
            ids("codes_codebook_scaled_0_05"),
            "{what} scaled codes"
        );
        assert!(
            got.iter()
                .flatten()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 2
        );
    }
}

#[test]
fn emu3_movq_encoder_checks_images_and_exports_what_it_loaded() {
    use sjd2_models::vq::ImageEncoder;
    for (file, prefix, m) in emu3_encoder_both_layouts() {
        for bad in [[1, 3, 20, 32], [1, 1, 24, 32], [0, 3, 24, 32]] {
            let img = burn::Tensor::<4>::zeros(bad, &Device::flex());
            assert!(
                matches!(m.encode_batch(img).unwrap_err(), Error::Shape { .. }),
                "{bad:?}"
            );
        }
        let mut exported = m.export().unwrap();
        let mut stored: Vec<_> = common::all_tensors(&file)
            .into_iter()
            .filter(|(n, _, _)| {
                n.strip_prefix(prefix).is_some_and(|n| {
                    (n.starts_with("encoder.")
                        || n.starts_with("quant_conv.")
                        || n.starts_with("quantize."))
                        && !n.ends_with("num_batches_tracked")
                })
            })
            .collect();
        exported.sort_by(|a, b| a.0.cmp(&b.0));
        stored.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(exported.len(), stored.len(), "{}", file.display());
        for (e, s) in exported.iter().zip(&stored) {
            assert_eq!((&e.0, &e.1), (&s.0, &s.1), "{}", file.display());
            assert_eq!(e.2, s.2, "{}", e.0);
        }
    }
}

#[test]
fn training_loss_tensors_in_a_vqgan_ckpt_are_ignored_and_other_extras_named() {
    let src = fixtures().join("chameleon_vqgan/weights_vqgan_ckpt_layout.safetensors");
    let mut tensors = common::all_tensors(&src);
    // What taming's training checkpoints add beside the model: the loss module.
    tensors.push((
        "loss.discriminator.main.0.weight".into(),
        vec![4, 3, 4, 4],
        vec![0.5; 192],
    ));
    tensors.push((
        "loss.perceptual_loss.lin0.model.1.weight".into(),
        vec![1, 4, 1, 1],
        vec![1.0; 4],
    ));
    let path = std::env::temp_dir().join(format!(
        "sjd2-vqgan-ckpt-{}.safetensors",
        std::process::id()
    ));
    common::write_tensors(&path, &tensors, Default::default());
    let cfg = || {
        tiny(
            VqConfig::chameleon(),
            32,
            16,
            VqLayout::Taming {
                prefix: String::new(),
            },
        )
    };
    let with_loss = VqModel::load(&path, cfg(), &Device::flex()).unwrap();
    let plain = chameleon_fixture();
    assert_eq!(
        host(with_loss.decode(&[1, 2, 3, 4], 2, 2).unwrap()),
        host(plain.decode(&[1, 2, 3, 4], 2, 2).unwrap())
    );
    tensors.push(("decoder.extra.weight".into(), vec![2], vec![0.0; 2]));
    common::write_tensors(&path, &tensors, Default::default());
    let e = VqModel::load(&path, cfg(), &Device::flex()).unwrap_err();
    assert!(e.to_string().contains("decoder.extra.weight"), "{e}");
    assert!(!e.to_string().contains("loss."), "{e}");
    std::fs::remove_file(path).unwrap();
}
