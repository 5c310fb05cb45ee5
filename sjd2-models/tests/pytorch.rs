//! PyTorch `.pt` checkpoints (as LlamaGen ships them: the state dict under `model`, with an
//! extra `freqs_cis`) load like their safetensors twin. The `.pt` file is written here, in the
//! `torch.save` zip layout, with a small pickle writer.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;

use burn::tensor::Device;
use common::{fixtures, host, ids_tensor};
use sjd2_core::JacobiDenoiser;
use sjd2_models::llamagen::{LlamaGen, LlamaGenConfig, LlamaGenTask};
use sjd2_models::weights::Checkpoint;
use sjd2_models::{LlamaT2I, LoadError};

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn int(out: &mut Vec<u8>, v: usize) {
    out.push(b'J');
    out.extend((v as i32).to_le_bytes());
}

/// `torch.save({"model": state_dict, "steps": 7}, path)` for f32 tensors.
fn save_pt(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut p = vec![0x80, 2, b'}'];
    unicode(&mut p, "model");
    p.extend([b'}', b'(']);
    for (i, (name, shape, data)) in tensors.iter().enumerate() {
        unicode(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        unicode(&mut p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        unicode(&mut p, &i.to_string());
        unicode(&mut p, "cpu");
        int(&mut p, data.len());
        p.extend([b't', b'Q']);
        int(&mut p, 0);
        p.push(b'(');
        for &d in shape {
            int(&mut p, d);
        }
        p.push(b't');
        p.push(b'(');
        let mut stride = 1;
        let mut strides = vec![0; shape.len()];
        for (k, &d) in shape.iter().enumerate().rev() {
            strides[k] = stride;
            stride *= d;
        }
        for s in strides {
            int(&mut p, s);
        }
        p.push(b't');
        p.push(0x89);
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend([b't', b'R']);
    }
    p.extend([b'u', b's']);
    unicode(&mut p, "steps");
    int(&mut p, 7);
    p.extend([b's', b'.']);

    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(&p).unwrap();
    zip.start_file("archive/byteorder", opts).unwrap();
    zip.write_all(b"little").unwrap();
    for (i, (_, _, data)) in tensors.iter().enumerate() {
        zip.start_file(format!("archive/data/{i}"), opts).unwrap();
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        zip.write_all(&bytes).unwrap();
    }
    zip.start_file("archive/version", opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}

fn config() -> LlamaGenConfig {
    common::llamagen_config(LlamaGenTask::ClassToImage { num_classes: 10 })
}

fn logits(m: &LlamaT2I) -> Vec<f32> {
    let mut cache = m.new_cache(1, 8).unwrap();
    host(
        m.forward_tokens(&mut cache, ids_tensor(&[3, 5, 7, 9], &Device::flex()))
            .unwrap(),
    )
}

#[test]
fn llamagen_pt_checkpoint_loads_like_safetensors() {
    let st = fixtures().join("llamagen_c2i/weights.safetensors");
    let ck = Checkpoint::open(&st).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = ck
        .names()
        .map(|n| {
            let (s, d) = ck.read_f32(n).unwrap();
            (n.to_string(), s, d)
        })
        .collect();
    tensors.push(("freqs_cis".into(), vec![17, 8, 2], vec![0.5; 17 * 16]));
    let dir = std::env::temp_dir().join(format!("sjd2-pt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pt = dir.join("c2i.pt");
    save_pt(&pt, &tensors);
    let from_pt = LlamaGen::load(&pt, config(), &Device::flex()).unwrap();
    let from_st = LlamaGen::load(&st, config(), &Device::flex()).unwrap();
    assert_eq!(logits(&from_pt), logits(&from_st));

    // A truncated pickle checkpoint is a clear error.
    let bytes = std::fs::read(&pt).unwrap();
    std::fs::write(&pt, &bytes[..bytes.len() / 2]).unwrap();
    let e = LlamaGen::load(&pt, config(), &Device::flex()).unwrap_err();
    assert!(
        matches!(e, LoadError::Corrupt { .. } | LoadError::Io { .. }),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sharded_pytorch_bin_checkpoints_load() {
    let st = fixtures().join("llamagen_c2i/weights.safetensors");
    let ck = Checkpoint::open(&st).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = ck
        .names()
        .map(|n| {
            let (s, d) = ck.read_f32(n).unwrap();
            (n.to_string(), s, d)
        })
        .collect();
    let dir = std::env::temp_dir().join(format!("sjd2-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b) = tensors.split_at(tensors.len() / 2);
    save_pt(&dir.join("pytorch_model-00001-of-00002.bin"), a);
    save_pt(&dir.join("pytorch_model-00002-of-00002.bin"), b);
    let mut map = serde_json::Map::new();
    for (n, _, _) in a {
        map.insert(n.clone(), "pytorch_model-00001-of-00002.bin".into());
    }
    for (n, _, _) in b {
        map.insert(n.clone(), "pytorch_model-00002-of-00002.bin".into());
    }
    std::fs::write(
        dir.join("pytorch_model.bin.index.json"),
        serde_json::json!({ "weight_map": map }).to_string(),
    )
    .unwrap();
    let sharded = Checkpoint::open(&dir).unwrap();
    assert_eq!(sharded.names().count(), tensors.len());
    let from_bin = LlamaGen::load(
        dir.join("pytorch_model.bin.index.json"),
        config(),
        &Device::flex(),
    )
    .unwrap();
    let from_st = LlamaGen::load(&st, config(), &Device::flex()).unwrap();
    assert_eq!(logits(&from_bin), logits(&from_st));
    std::fs::remove_dir_all(dir).unwrap();
}
