//! Loading a [`Backbone`] through burn-store: the backbone's name table (module path ↔ checkpoint
//! name, with LlamaGen's fused `[q; k; v]` as three row blocks of one stored tensor and the
//! interleaved-to-rotate-half q/k reordering as a row order) is applied by
//! [`WeightLoader::apply`], and the same table writes the backbone back ([`Backbone::export`]).

use burn::tensor::Device;
use sjd2_core::Error;

use super::{Backbone, BackboneConfig, Init, KeyNames, rope};
use crate::weights::{RowView, Wanted, WeightLoader};

impl Backbone {
    /// Loads the weights named by `names` onto `device` in the device's float dtype (problems are
    /// collected by `loader`, which reports them all at [`WeightLoader::finish`]). On an
    /// autodiff device the result is trainable.
    ///
    /// Every tensor is read once, streamed from the file into its parameter's buffer: a bf16
    /// checkpoint loaded onto a bf16 device is never expanded to f32, and one stored in another
    /// dtype is converted element by element as it is read. Per-head q/k norms may be stored
    /// `[heads, head_dim]` (Hugging Face) or `[1, head_dim]` (Lumina-mGPT's fork, shared by every
    /// head). A fused `[q; k; v]` projection is split and interleaved-pair RoPE features are
    /// reordered to the rotate-half layout.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for inconsistent sizes.
    pub fn load(
        config: BackboneConfig,
        names: &KeyNames,
        loader: &mut WeightLoader,
        device: &Device,
    ) -> Result<Self, Error> {
        config.validate()?;
        let c = config.clone();
        let (d, hd) = (c.hidden, c.head_dim);
        let (qn, kvn) = (c.heads * hd, c.kv_heads * hd);
        let head_rows = |layer: usize, query: bool| {
            let heads = if query { c.heads } else { c.kv_heads };
            let prefix = KeyNames::layer(if query { &names.q_norm } else { &names.k_norm }, layer);
            match loader.checkpoint().shape(&format!("{prefix}.weight")) {
                Some([1, x] | [x]) if *x == hd && heads != 1 => 1,
                _ => heads,
            }
        };
        let mut backbone = Self::initialized(config, Init::Zeros, &head_rows, device)?;
        let mut wanted = name_table(&c, names);
        if let Some(fused) = &names.fused_qkv {
            // The three row blocks of a mis-shaped fused projection would be misread: report the
            // stored tensor once instead.
            let expected = vec![qn + 2 * kvn, d];
            for i in 0..c.layers {
                let name = KeyNames::layer(fused, i);
                if let Some(found) = loader.checkpoint().shape(&name)
                    && found != expected.as_slice()
                {
                    let found = found.to_vec();
                    wanted.retain(|w| w.name != name);
                    loader.record_mis_shaped(name, expected.clone(), found);
                }
            }
        }
        loader.apply(&mut backbone, wanted);
        backbone.source_names = Some(names.clone());
        Ok(backbone)
    }
}

/// Module path ↔ checkpoint name of every parameter of a backbone of `c` in the layout `names`,
/// with the row blocks of a fused projection and the RoPE row orders: what loading reads and
/// [`Backbone::export`] writes back.
pub(super) fn name_table(c: &BackboneConfig, names: &KeyNames) -> Vec<Wanted> {
    let hd = c.head_dim;
    let (qn, kvn) = (c.heads * hd, c.kv_heads * hd);
    let mut w = vec![Wanted::new(
        "embed_tokens.weight".into(),
        names.embed.clone(),
        false,
    )];
    let order = |heads: usize| {
        names
            .interleaved_rope
            .then(|| rope::to_rotate_half(heads, hd))
    };
    for i in 0..c.layers {
        let n = |p: &str| KeyNames::layer(p, i);
        let at = |p: &str| format!("layers.{i}.{p}");
        w.push(Wanted::new(
            at("input_layernorm.gamma"),
            n(&names.attn_norm),
            false,
        ));
        let blocks = match &names.fused_qkv {
            Some(fused) => [
                ("q_proj", n(fused), Some(0..qn), order(c.heads)),
                ("k_proj", n(fused), Some(qn..qn + kvn), order(c.kv_heads)),
                ("v_proj", n(fused), Some(qn + kvn..qn + 2 * kvn), None),
            ],
            None => [
                ("q_proj", n(&names.q), None, order(c.heads)),
                ("k_proj", n(&names.k), None, order(c.kv_heads)),
                ("v_proj", n(&names.v), None, None),
            ],
        };
        for (proj, name, rows, order) in blocks {
            let path = at(&format!("self_attn.{proj}.weight"));
            let view = RowView {
                rows,
                order,
                transpose: true,
                ..RowView::default()
            };
            w.push(Wanted { path, name, view });
        }
        w.push(Wanted::new(
            at("self_attn.o_proj.weight"),
            n(&names.o),
            true,
        ));
        if c.qk_norm_eps.is_some() {
            // Meta's layout stores one `[head_dim]` affine for every head, its features in the
            // same interleaved order as the q/k rows.
            let view = RowView {
                order: order(1),
                flat: names.interleaved_rope,
                ..RowView::default()
            };
            for (norm, prefix) in [("q_norm", &names.q_norm), ("k_norm", &names.k_norm)] {
                for p in ["weight", "bias"] {
                    let path = at(&format!("self_attn.{norm}.{p}"));
                    let name = format!("{}.{p}", n(prefix));
                    let view = view.clone();
                    w.push(Wanted { path, name, view });
                }
            }
        }
        let mlp_norm = at("post_attention_layernorm.gamma");
        w.push(Wanted::new(mlp_norm, n(&names.mlp_norm), false));
        for (proj, name) in [
            ("gate_proj", &names.gate),
            ("up_proj", &names.up),
            ("down_proj", &names.down),
        ] {
            w.push(Wanted::new(
                at(&format!("mlp.{proj}.weight")),
                n(name),
                true,
            ));
        }
    }
    w.push(Wanted::new(
        "norm.gamma".into(),
        names.final_norm.clone(),
        false,
    ));
    w.push(Wanted::new(
        "lm_head.weight".into(),
        names.head.clone(),
        true,
    ));
    w
}
