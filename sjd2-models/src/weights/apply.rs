//! Name tables: applying a checkpoint to a module through burn-store, and writing a module back.

use std::collections::BTreeMap;

use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{ApplyError, ModuleSnapshot, bridge};

use super::{NamedTensor, RowView, WeightLoader};
use crate::error::LoadError;

/// A module parameter to load through burn-store: its module path, the stored tensor it comes
/// from, and which part of that tensor, in which layout.
pub(crate) struct Wanted {
    /// Module path (`layers.0.self_attn.q_proj.weight`).
    pub path: String,
    /// Checkpoint name.
    pub name: String,
    /// Rows, row order and transpose (a `Linear` weight: stored `[out, in]`, held `[in, out]`).
    pub view: RowView,
}

impl Wanted {
    /// The whole tensor `name` into parameter `path`, transposed for a `Linear` weight.
    pub(crate) fn new(path: String, name: String, linear: bool) -> Self {
        let view = RowView {
            transpose: linear,
            ..RowView::default()
        };
        Self { path, name, view }
    }
}

impl WeightLoader {
    /// Loads `wanted` into `module` through burn-store's applier (which matches tensors to
    /// parameters by path, checks shapes and kinds, and reports what is missing or unused):
    /// every tensor is read when it is applied, one at a time, straight into its final buffer in
    /// [`WeightLoader::dtype`] (converted element by element only where the stored dtype
    /// differs), with `Linear` weights transposed on the way. Problems are recorded under the checkpoint's names (shapes in
    /// the checkpoint's layout) for [`WeightLoader::finish`]; parameters left unloaded keep their
    /// lazy initialization.
    pub(crate) fn apply<M: ModuleSnapshot>(&mut self, module: &mut M, wanted: Vec<Wanted>) {
        // Module path → what it was read from, to report problems under the checkpoint's names.
        let mut origin: BTreeMap<String, (String, bool)> = BTreeMap::new();
        let mut tensors = Vec::with_capacity(wanted.len());
        for w in wanted {
            origin.insert(w.path.clone(), (w.name.clone(), w.view.transpose));
            match self
                .checkpoint
                .deferred(&w.name, w.path, w.view, self.dtype())
            {
                Some(Ok(t)) => {
                    self.used.insert(w.name);
                    tensors.push(t);
                }
                Some(Err(e)) => {
                    self.fatal.get_or_insert(e);
                }
                None => {}
            }
        }
        let result = module.apply(tensors, None, None, false);
        for (path, _) in &result.missing {
            let name = origin.get(path).map_or(path, |(n, _)| n).clone();
            if !self.missing.contains(&name) && self.checkpoint.shape(&name).is_none() {
                self.missing.push(name);
            }
        }
        for error in result.errors {
            match error {
                ApplyError::ShapeMismatch {
                    path,
                    expected,
                    found,
                } => {
                    let (name, linear) = origin.get(&path).cloned().unwrap_or((path, false));
                    let (mut expected, mut found) = (expected.to_vec(), found.to_vec());
                    if linear {
                        // Report in the checkpoint's `[out, in]` layout.
                        expected.reverse();
                        found.reverse();
                    }
                    self.mis_shaped.push((name, expected, found));
                }
                other => {
                    self.fatal.get_or_insert(LoadError::Corrupt {
                        path: self.checkpoint.origin().into(),
                        detail: other.to_string(),
                    });
                }
            }
        }
    }
}

/// Row blocks of one stored tensor by first row.
type RowBlocks = BTreeMap<usize, Vec<f32>>;

/// Every parameter of `module` that `table` names, under its checkpoint name and in the
/// checkpoint's layout (row blocks of one stored tensor joined, row orders undone, `Linear`
/// weights transposed back), as `f32` host values: what [`WeightLoader::apply`] reads back.
///
/// # Errors
/// [`sjd2_core::Error::TensorData`] when a parameter cannot be read back.
pub(crate) fn export_table<M: ModuleSnapshot>(
    module: &M,
    table: Vec<Wanted>,
) -> std::result::Result<Vec<NamedTensor>, sjd2_core::Error> {
    let mut by_path: BTreeMap<String, PackTensor> = module
        .collect(None, None, false)
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    // Checkpoint name → (shape after the first dimension, row blocks by first row).
    let mut order: Vec<String> = Vec::new();
    let mut blocks: BTreeMap<String, (Vec<usize>, RowBlocks)> = BTreeMap::new();
    for w in table {
        let Some(t) = by_path.remove(&w.path) else {
            continue;
        };
        let bad = |detail: String| sjd2_core::Error::TensorData {
            what: w.path.clone(),
            detail,
        };
        let data = bridge::into_data(t).map_err(|e| bad(e.to_string()))?;
        let mut shape = data.shape().to_vec();
        let mut values = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| bad(format!("{e:?}")))?;
        if let (true, [r, c]) = (w.view.transpose, shape.as_slice()) {
            let (r, c) = (*r, *c);
            values = (0..c * r).map(|k| values[(k % r) * c + k / r]).collect();
            shape = vec![c, r];
        }
        if w.view.conv1x1 {
            shape.extend([1, 1]);
        }
        if w.view.flat && shape.len() == 2 && shape[0] == 1 {
            shape = vec![shape[1]];
        }
        let row: usize = shape.iter().skip(1).product();
        if let Some(o) = &w.view.order
            && o.len() * row != values.len()
        {
            // Per-head q/k norms cannot be written as Meta's one shared affine, for example.
            return Err(bad(format!(
                "{shape:?} does not fit `{}`'s layout of {} rows",
                w.name,
                o.len()
            )));
        }
        if let Some(o) = &w.view.order {
            let mut undone = vec![0.0; values.len()];
            for (i, &src) in o.iter().enumerate() {
                undone[src * row..(src + 1) * row].copy_from_slice(&values[i * row..(i + 1) * row]);
            }
            values = undone;
        }
        let first = w.view.rows.map_or(0, |r| r.start);
        if !blocks.contains_key(&w.name) {
            order.push(w.name.clone());
        }
        let entry = blocks
            .entry(w.name)
            .or_insert_with(|| (shape[1..].to_vec(), BTreeMap::new()));
        entry.1.insert(first, values);
    }
    Ok(order
        .into_iter()
        .filter_map(|name| {
            let (rest, parts) = blocks.remove(&name)?;
            let values: Vec<f32> = parts.into_values().flatten().collect();
            let row: usize = rest.iter().product::<usize>().max(1);
            let mut shape = vec![values.len() / row];
            shape.extend(rest);
            Some((name, shape, values))
        })
        .collect())
}

/// The path of every float parameter of `module` (`decoder.up.3.attn.0.q.weight`), in visiting
/// order, without initializing lazy parameters.
pub fn param_paths<M: burn::module::Module>(module: &M) -> Vec<String> {
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        found: Vec<String>,
    }
    impl burn::module::ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, _param: &burn::module::Param<burn::Tensor<D>>) {
            self.found.push(self.stack.join("."));
        }
    }
    let mut paths = Paths::default();
    module.visit(&mut paths);
    paths.found
}
