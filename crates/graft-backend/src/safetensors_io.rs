//! Named host tensors to and from safetensors files: the format of checkpoints, optimizer state
//! and (in graft-zoo) weights. Writes are atomic (temp file + rename), so a crash never leaves a
//! half-written file where a good one was.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::data::TensorData;
use crate::{Error, Result};

fn to_bytes(d: &TensorData) -> (Dtype, Vec<u8>) {
    let dtype = match d {
        TensorData::F32(_) => Dtype::F32,
        TensorData::BF16(_) => Dtype::BF16,
        TensorData::I64(_) => Dtype::I64,
    };
    (dtype, d.to_le_bytes())
}

/// Serialises named tensors (and optional string metadata) to safetensors bytes.
pub fn to_safetensors_bytes(
    tensors: &BTreeMap<String, TensorData>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d)| {
            let (dt, b) = to_bytes(d);
            (n.clone(), dt, d.shape().to_vec(), b)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, dt, shape, b)| {
            TensorView::new(*dt, shape.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::invalid("safetensors", format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, metadata)
        .map_err(|e| Error::invalid("safetensors", e.to_string()))
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| {
        Error::invalid(
            "write_atomic",
            format!("{} has no file name", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves named tensors to a safetensors file, atomically.
pub fn save(
    path: &Path,
    tensors: &BTreeMap<String, TensorData>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    write_atomic(path, &to_safetensors_bytes(tensors, metadata)?)
}

/// Decodes one safetensors view into host data (f16 / f64 / i32 / u8 / bool widen to f32 / i64);
/// errors name the file and the tensor.
pub fn decode_view(path: &Path, name: &str, v: &TensorView<'_>) -> Result<TensorData> {
    let shape = v.shape().to_vec();
    let raw = v.data();
    macro_rules! le {
        ($t:ty, $n:expr) => {
            raw.chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])))
        };
    }
    let bad = |e: crate::Error| Error::format(path, format!("tensor {name:?}: {e}"));
    match v.dtype() {
        Dtype::F32 => TensorData::f32(&shape, le!(f32, 4).collect()).map_err(bad),
        Dtype::F64 => TensorData::f32(&shape, le!(f64, 8).map(|x| x as f32).collect()).map_err(bad),
        Dtype::F16 => TensorData::f32(
            &shape,
            le!(u16, 2).map(|x| f16::from_bits(x).to_f32()).collect(),
        )
        .map_err(bad),
        Dtype::BF16 => {
            let vals: Vec<bf16> = le!(u16, 2).map(bf16::from_bits).collect();
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), vals)
                .map(TensorData::BF16)
                .map_err(|e| Error::format(path, format!("tensor {name:?}: {e}")))
        }
        Dtype::I64 => TensorData::i64(&shape, le!(i64, 8).collect()).map_err(bad),
        Dtype::I32 => TensorData::i64(&shape, le!(i32, 4).map(i64::from).collect()).map_err(bad),
        Dtype::U8 | Dtype::BOOL => {
            TensorData::i64(&shape, raw.iter().map(|&b| i64::from(b)).collect()).map_err(bad)
        }
        other => Err(Error::format(
            path,
            format!(
                "tensor {name:?} has dtype {other:?}, which graft does not read (float32, bfloat16, float16, float64, int64, int32, uint8, bool)"
            ),
        )),
    }
}

/// Named tensors and the file's optional string metadata.
pub type Loaded = (
    BTreeMap<String, TensorData>,
    Option<std::collections::HashMap<String, String>>,
);

/// Reads every tensor of a safetensors file (and its string metadata).
pub fn load(path: &Path) -> Result<Loaded> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        out.insert(name.to_string(), decode_view(path, name, &view)?);
    }
    Ok((out, meta.metadata().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_dtypes_and_clear_errors() {
        let dir = std::env::temp_dir().join(format!("graft-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("t.safetensors");
        let mut m = BTreeMap::new();
        m.insert(
            "a.weight".to_string(),
            TensorData::f32(&[2, 3], vec![1., 2., 3., 4., 5., -6.5]).expect("ok"),
        );
        m.insert(
            "a.n".to_string(),
            TensorData::i64(&[], vec![-7]).expect("ok"),
        );
        m.insert(
            "b".to_string(),
            TensorData::f32(&[3], vec![0.5, 1.25, -2.0])
                .expect("ok")
                .cast(crate::DType::BF16),
        );
        let mut meta = std::collections::HashMap::new();
        meta.insert("k".to_string(), "v".to_string());
        save(&path, &m, Some(meta.clone())).expect("save");
        let (back, meta_back) = load(&path).expect("load");
        assert_eq!(back, m);
        assert_eq!(meta_back, Some(meta));
        std::fs::write(&path, b"garbage!").expect("write");
        let err = load(&path).expect_err("garbage");
        assert!(err.to_string().contains("t.safetensors"), "{err}");
        let err = load(&dir.join("missing.safetensors")).expect_err("missing");
        assert!(err.to_string().contains("missing.safetensors"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
