//! PyTorch `.pth` / `.pt` files (`torch.save` of a state dict), read through libtorch's
//! unpickler. Opt-in: unpickling runs the archive's pickle program inside libtorch, so only load
//! files you trust; safetensors (graft-zoo's loader) is the default and safe format.

use std::collections::BTreeMap;
use std::path::Path;

use graft_backend::{Backend, TensorData};
use graft_core::{Error, Result};
use tch::{Kind, Tensor};

use crate::{Tch, TchTensor};

/// Reads every tensor of a `torch.save`d state dict (zip format, PyTorch ≥ 1.6) to host data:
/// float16 / float64 widen to float32, integer and bool kinds to int64.
pub fn read_pth(path: &Path) -> Result<BTreeMap<String, TensorData>> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let named = Tensor::loadz_multi(path).map_err(|e| {
        Error::format(
            path,
            format!("not a torch.save state dict libtorch can read: {e}"),
        )
    })?;
    let b = Tch::cpu();
    let mut out = BTreeMap::new();
    for (name, t) in named {
        let t = match t.kind() {
            Kind::Float | Kind::BFloat16 | Kind::Int64 => Ok(t),
            Kind::Half | Kind::Double => t.f_to_kind(Kind::Float),
            _ => t.f_to_kind(Kind::Int64),
        }
        .map_err(|e| Error::format(path, format!("tensor {name:?}: {e}")))?;
        let data = b
            .to_data(&TchTensor(t))
            .map_err(|e| Error::format(path, format!("tensor {name:?}: {e}")))?;
        out.insert(name, data);
    }
    if out.is_empty() {
        return Err(Error::format(path, "no tensors in the file"));
    }
    Ok(out)
}
