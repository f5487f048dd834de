//! Weights files as graft reads them: a safetensors file validated on open (read into memory up
//! to [`READ_LIMIT`], memory-mapped past it), its header alone ([`WeightsFile::open_index`]), or
//! tensors a `torch.save` file decoded to; every size in a header is checked against the file
//! before anything is allocated, and every error names the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use graft_backend::TensorData;
use graft_backend::safetensors_io::decode_view;
use graft_core::{Error, Result};
use safetensors::SafeTensors;

/// A tensor's entry in a safetensors header.
#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// One tensor of a weights file, decoded on demand.
#[derive(Debug, Clone)]
pub struct FileTensor {
    pub shape: Vec<usize>,
    pub dtype: String,
}

enum Source {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
    Host(BTreeMap<String, TensorData>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
            Source::Read(m) => write!(f, "Read({} bytes)", m.len()),
            Source::Host(t) => write!(f, "Host({} tensors)", t.len()),
        }
    }
}

/// Files up to this size are read into memory; larger ones are memory-mapped. A read file cannot
/// change under the process: a mapped one truncated by another process while graft reads it
/// faults (SIGBUS) — graft's own writes are atomic renames, so only a foreign writer can do that.
pub const READ_LIMIT: u64 = 1 << 30;

/// A weights file: safetensors (read, or memory-mapped past [`READ_LIMIT`]), validated on open.
#[derive(Debug)]
pub struct WeightsFile {
    pub(crate) path: PathBuf,
    source: Source,
    pub(crate) index: BTreeMap<String, FileTensor>,
}

#[allow(unsafe_code)]
fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and private to this process. If another process truncates or
    // rewrites the file while it is mapped, reads may see the new bytes or fault; graft writes
    // weights atomically (temp file + rename), so its own files are never rewritten in place.
    unsafe { memmap2::Mmap::map(&f) }.map_err(|e| Error::io(path, e))
}

/// PyTorch's spelling of a safetensors dtype (`float32`, `bfloat16`, `int64`, ...).
fn safetensors_dtype(d: safetensors::Dtype) -> String {
    use safetensors::Dtype as D;
    match d {
        D::F64 => "float64",
        D::F32 => "float32",
        D::F16 => "float16",
        D::BF16 => "bfloat16",
        D::I64 => "int64",
        D::I32 => "int32",
        D::I16 => "int16",
        D::I8 => "int8",
        D::U8 => "uint8",
        D::BOOL => "bool",
        other => return format!("{other:?}").to_lowercase(),
    }
    .to_string()
}

impl WeightsFile {
    /// Maps and validates a safetensors file (header, offsets, sizes), or decodes a `torch.save`
    /// file (`.pth`, `.pt`, `.bin`, `.ckpt`: [`crate::torch_file`], no pickle code run); a
    /// truncated or corrupt file is an error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        if crate::pretrained::is_pickle(path) {
            // a torch.save file: decoded up front, without running its pickle
            return Ok(Self::from_tensors(path, crate::torch_file::read(path)?));
        }
        let len = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        let source = if len <= READ_LIMIT {
            Source::Read(std::fs::read(path).map_err(|e| Error::io(path, e))?)
        } else {
            Source::Mapped(map_file(path)?)
        };
        let bytes: &[u8] = match &source {
            Source::Mapped(m) => m,
            Source::Read(v) => v,
            Source::Host(_) => &[],
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
        let index = st
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    FileTensor {
                        shape: v.shape().to_vec(),
                        dtype: safetensors_dtype(v.dtype()),
                    },
                )
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            source,
            index,
        })
    }
    /// The tensors' names, shapes and dtypes of a weights file without reading their data: a
    /// safetensors file's header alone (its offsets checked against the file's length), or a
    /// `torch.save` file decoded. Reading a tensor from the result is an error.
    pub fn open_index(path: &Path) -> Result<Self> {
        use std::io::Read;
        if crate::pretrained::is_pickle(path) {
            return Self::open(path);
        }
        let bad = |m: String| Error::format(path, format!("not a valid safetensors file: {m}"));
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut n = [0u8; 8];
        f.read_exact(&mut n)
            .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
        let n = u64::from_le_bytes(n);
        if n > 100_000_000 || 8 + n > len {
            return Err(bad(format!("a header of {n} bytes in a file of {len}")));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
        let meta: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
        let data_len = len - 8 - n;
        let mut index = BTreeMap::new();
        for (name, v) in meta {
            if name == "__metadata__" {
                continue;
            }
            let info: HeaderEntry =
                serde_json::from_value(v).map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
            let [start, end] = info.data_offsets;
            if start > end || end > data_len {
                return Err(bad(format!(
                    "tensor {name:?}: offsets {start}..{end} past the {data_len} data bytes"
                )));
            }
            let dtype: safetensors::Dtype =
                serde_json::from_value(serde_json::Value::String(info.dtype.clone()))
                    .map_err(|_| bad(format!("tensor {name:?}: dtype {:?}", info.dtype)))?;
            let want = graft_core::limits::numel(&info.shape)
                .and_then(|e| e.checked_mul(dtype.bitsize() as u128 / 8));
            if want != Some(u128::from(end - start)) {
                return Err(bad(format!(
                    "tensor {name:?}: shape {:?} of {} does not fill {} bytes",
                    info.shape,
                    info.dtype,
                    end - start
                )));
            }
            index.insert(name, (info.shape, safetensors_dtype(dtype)));
        }
        Ok(Self::index_only(path, index))
    }
    /// Host tensors already in memory (a `.pth` read through graft-tch), named after `source`.
    pub fn from_tensors(source: &Path, tensors: BTreeMap<String, TensorData>) -> Self {
        let index = tensors
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    FileTensor {
                        shape: t.shape().to_vec(),
                        dtype: t.dtype().name().to_string(),
                    },
                )
            })
            .collect();
        Self {
            path: source.to_path_buf(),
            source: Source::Host(tensors),
            index,
        }
    }
    /// A file described by its tensors' names, shapes and dtypes alone (no data): enough for a
    /// dry match ([`crate::Registry::fit`]); reading a tensor from it is an error.
    pub fn index_only(source: &Path, index: BTreeMap<String, (Vec<usize>, String)>) -> Self {
        Self {
            path: source.to_path_buf(),
            source: Source::Host(BTreeMap::new()),
            index: index
                .into_iter()
                .map(|(n, (shape, dtype))| (n, FileTensor { shape, dtype }))
                .collect(),
        }
    }
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Tensor names, shapes and dtypes.
    pub fn index(&self) -> &BTreeMap<String, FileTensor> {
        &self.index
    }
    /// The class count of the file's head — `{classifier}.weight`, under any wrapper prefix —
    /// if it has one. A head that cannot be one (not 2-D, no elements, more classes than
    /// [`graft_core::limits::MAX_CLASSES`]) is an error naming the file and the key: its first
    /// dimension is a claim the model would otherwise allocate.
    pub fn head_classes(&self, classifier: &str) -> Result<Option<usize>> {
        let key = format!("{classifier}.weight");
        let suffix = format!(".{key}");
        let Some((k, t)) = self
            .index
            .iter()
            .find(|(k, _)| **k == key || k.ends_with(&suffix))
        else {
            return Ok(None);
        };
        let max = graft_core::limits::MAX_CLASSES;
        match t.shape.as_slice() {
            [c, w] if *c > 0 && *w > 0 && *c <= max => Ok(Some(*c)),
            s => Err(Error::format(
                &self.path,
                format!(
                    "{k} {s:?} is not a classifier's weight ([classes, features], 1 to {max} classes)"
                ),
            )),
        }
    }
    /// Total elements of the float tensors.
    pub fn num_float_elements(&self) -> usize {
        self.index
            .values()
            .filter(|t| t.dtype.starts_with("float") || t.dtype == "bfloat16")
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
    /// Decodes one tensor.
    pub fn read(&self, name: &str) -> Result<TensorData> {
        match &self.source {
            Source::Host(t) => t.get(name).cloned().ok_or_else(|| {
                let why = if self.index.contains_key(name) {
                    "its data was not read (the file was opened for its index only)"
                } else {
                    "no such tensor"
                };
                Error::format(&self.path, format!("tensor {name:?}: {why}"))
            }),
            Source::Mapped(_) | Source::Read(_) => {
                let bytes: &[u8] = match &self.source {
                    Source::Mapped(m) => m,
                    Source::Read(v) => v,
                    Source::Host(_) => &[],
                };
                let st = SafeTensors::deserialize(bytes).map_err(|e| {
                    Error::format(&self.path, format!("not a valid safetensors file: {e}"))
                })?;
                let v = st
                    .tensor(name)
                    .map_err(|e| Error::format(&self.path, format!("tensor {name:?}: {e}")))?;
                decode_view(&self.path, name, &v)
            }
        }
    }
}
