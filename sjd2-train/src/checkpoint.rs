//! Training checkpoints: every float parameter of a burn module saved under its module path
//! (`encoder.down.0.block.0.conv1.weight`) in a safetensors file, and loaded back by path.
//!
//! These files hold the trainer's own parameter layout (burn's `Linear` stores `[in, out]`);
//! the shipped inference weights are written separately, in the layout `sjd2-models` reads.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use sjd2_models::weights::{Checkpoint, StoredDtype, write_safetensors};

use crate::error::{Result, TrainError};

/// A tensor by name: `(name, shape, row-major values)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Writes named tensors as a safetensors file in `dtype`.
///
/// # Errors
/// I/O errors and tensors whose values do not fill their shape.
pub fn write_named(path: &Path, tensors: &[NamedTensor], dtype: StoredDtype) -> Result<()> {
    let refs: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    write_safetensors(path, &refs, dtype)?;
    Ok(())
}

#[derive(Default)]
struct Collect {
    stack: Vec<String>,
    tensors: Vec<NamedTensor>,
    failed: Option<String>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.stack.join(".");
        let tensor = param.val();
        match tensor.to_data().convert::<f32>().try_into_vec::<f32>() {
            Ok(v) => self.tensors.push((name, tensor.dims().to_vec(), v)),
            Err(e) => self.failed = Some(format!("{name}: {e:?}")),
        }
    }
}

/// Every float parameter of `module` as `(path, shape, values)`.
///
/// # Errors
/// [`TrainError::Tensor`] when a parameter cannot be read back.
pub fn named_parameters<M: Module>(module: &M) -> Result<Vec<NamedTensor>> {
    let mut c = Collect::default();
    module.visit(&mut c);
    if let Some(e) = c.failed {
        return Err(TrainError::Tensor(e));
    }
    Ok(c.tensors)
}

/// Saves every float parameter of `module` by path (f32).
///
/// # Errors
/// I/O errors and unreadable parameters.
pub fn save_module<M: Module>(module: &M, path: &Path) -> Result<()> {
    write_named(path, &named_parameters(module)?, StoredDtype::F32)
}

struct Assign {
    stack: Vec<String>,
    values: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    used: Vec<String>,
    errors: Vec<String>,
}

impl ModuleMapper for Assign {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.stack.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.stack.join(".");
        let Some((shape, values)) = self.values.get(&name) else {
            self.errors.push(format!("missing `{name}`"));
            return param;
        };
        let expected = param.val().dims().to_vec();
        if *shape != expected {
            self.errors
                .push(format!("`{name}`: shape {shape:?}, expected {expected:?}"));
            return param;
        }
        self.used.push(name);
        let data = TensorData::new(values.clone(), shape.clone());
        param.map(|old| {
            let grad = old.is_require_grad();
            let t = Tensor::<D>::from_data(data, &old.device());
            if grad { t.require_grad() } else { t }
        })
    }
}

/// Loads every float parameter of `module` from a file written by [`save_module`]: all names
/// must be present with the right shapes, and the file may hold no others.
///
/// # Errors
/// [`TrainError::Checkpoint`] listing missing, mis-shaped or unexpected tensors.
pub fn load_module<M: Module>(module: M, path: &Path) -> Result<M> {
    let values = read_named(path)?
        .into_iter()
        .map(|(n, s, v)| (n, (s, v)))
        .collect();
    assign_named(module, values, &path.display().to_string())
}

/// Every tensor of a weights file (any stored dtype) as f32.
///
/// # Errors
/// Unreadable or corrupt files.
pub fn read_named(path: &Path) -> Result<Vec<NamedTensor>> {
    let ckpt = Checkpoint::open(path)?;
    let names: Vec<String> = ckpt.names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|n| {
            let (shape, v) = ckpt.read_f32(&n)?;
            Ok((n, shape, v))
        })
        .collect()
}

/// Sets every float parameter of `module` from `values` keyed by parameter path (all must be
/// present with the right shapes, and no others); `origin` names the source in errors.
///
/// # Errors
/// [`TrainError::Checkpoint`] listing missing, mis-shaped or unexpected tensors.
pub fn assign_named<M: Module>(
    module: M,
    values: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    origin: &str,
) -> Result<M> {
    let path = origin;
    let mut a = Assign {
        stack: Vec::new(),
        values,
        used: Vec::new(),
        errors: Vec::new(),
    };
    let module = module.map(&mut a);
    for name in a.values.keys() {
        if !a.used.contains(name) && !a.errors.iter().any(|e| e.contains(name.as_str())) {
            a.errors.push(format!("unexpected `{name}`"));
        }
    }
    if a.errors.is_empty() {
        Ok(module)
    } else {
        Err(TrainError::Checkpoint {
            path: path.to_string(),
            detail: a.errors.join("; "),
        })
    }
}
