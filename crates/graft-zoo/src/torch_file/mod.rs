//! PyTorch's `torch.save` files (`.pth`, `.pt`, `pytorch_model.bin`: torchvision's weights, the
//! Hub's older repos) read without running them. Since PyTorch 1.6 the file is a zip archive:
//! `data.pkl` (a pickle program that rebuilds the state dict) and `data/<key>` (each storage's
//! raw little-endian bytes); the legacy format before it is a row of pickles followed by the
//! storages' bytes ([`read`] takes both). graft interprets the pickle with a small machine
//! (`pickle.rs`) that knows only the opcodes and the handful of callables a state dict uses — `collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, the `torch.*Storage` types — and
//! refuses anything else: no code in the file ever runs. Every size, offset and stride is checked
//! against the storage's bytes before anything is copied.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use graft_backend::TensorData;
use graft_core::{Error, Result};
use half::{bf16, f16};

mod pickle;

use pickle::{Machine, Reader, TensorRef, V};

/// Element kinds of torch storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Kind {
    pub(super) fn from_storage(name: &str) -> Option<Self> {
        Some(match name {
            "FloatStorage" => Kind::F32,
            "DoubleStorage" => Kind::F64,
            "HalfStorage" => Kind::F16,
            "BFloat16Storage" => Kind::BF16,
            "LongStorage" => Kind::I64,
            "IntStorage" => Kind::I32,
            "ShortStorage" => Kind::I16,
            "CharStorage" => Kind::I8,
            "ByteStorage" => Kind::U8,
            "BoolStorage" => Kind::Bool,
            _ => return None,
        })
    }
    pub(super) fn size(self) -> usize {
        match self {
            Kind::F64 | Kind::I64 => 8,
            Kind::F32 | Kind::I32 => 4,
            Kind::F16 | Kind::BF16 | Kind::I16 => 2,
            Kind::I8 | Kind::U8 | Kind::Bool => 1,
        }
    }
}

/// True when the bytes start like a zip archive (what `torch.save` writes since PyTorch 1.6).
fn is_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// Reads a `torch.save`d state dict: every tensor, floats as f32 (bf16 kept), integers and
/// booleans as i64. Anything but a (possibly nested) dict of tensors is an error naming the file.
pub fn read(path: &Path) -> Result<BTreeMap<String, TensorData>> {
    let bad = |msg: String| Error::format(path, msg);
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; 4];
    let n = (&file).read(&mut head).map_err(|e| Error::io(path, e))?;
    if !is_zip(&head[..n]) {
        return read_legacy(path);
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| bad("no <archive>/data.pkl: not a torch.save file".into()))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    if let Ok(mut bo) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut s = String::new();
        bo.read_to_string(&mut s)
            .map_err(|e| bad(format!("byteorder: {e}")))?;
        if s.trim() != "little" {
            return Err(bad(format!(
                "byte order {:?}: graft reads little-endian files",
                s.trim()
            )));
        }
    }
    let pkl = read_entry(&mut zip, &pkl_name, 256 << 20, path)?;
    let root = Machine::default()
        .run(&pkl)
        .map_err(|m| bad(format!("data.pkl: {m}")))?;
    let flat = tensors_of(root).map_err(|m| bad(format!("data.pkl: {m}")))?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for (name, t) in &flat {
        if storages.contains_key(&t.key) {
            continue;
        }
        if t.key.is_empty()
            || !t
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(bad(format!(
                "{name}: storage key {:?} is not a plain name",
                t.key
            )));
        }
        let bytes = read_entry(&mut zip, &format!("{prefix}data/{}", t.key), u64::MAX, path)?;
        storages.insert(t.key.clone(), bytes);
    }
    assemble(flat, &storages, path)
}

/// Copies every tensor out of its storage (both formats end here).
fn assemble(
    flat: Vec<(String, TensorRef)>,
    storages: &HashMap<String, Vec<u8>>,
    path: &Path,
) -> Result<BTreeMap<String, TensorData>> {
    let bad = |msg: String| Error::format(path, msg);
    let mut out = BTreeMap::new();
    for (name, t) in flat {
        let st = storages.get(&t.key).ok_or_else(|| {
            bad(format!(
                "tensor {name:?}: storage {:?} is not in the file",
                t.key
            ))
        })?;
        let data = tensor(&t, st).map_err(|m| bad(format!("tensor {name:?}: {m}")))?;
        if out.insert(name.clone(), data).is_some() {
            return Err(bad(format!("tensor {name:?} appears twice")));
        }
    }
    Ok(out)
}

fn read_entry(
    zip: &mut zip::ZipArchive<std::fs::File>,
    name: &str,
    limit: u64,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut e = zip
        .by_name(name)
        .map_err(|err| Error::format(path, format!("{name}: {err}")))?;
    let size = e.size();
    if size > limit {
        return Err(Error::format(
            path,
            format!("{name}: {size} bytes is past the limit {limit}"),
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 30));
    e.read_to_end(&mut buf)
        .map_err(|err| Error::format(path, format!("{name}: {err}")))?;
    Ok(buf)
}

fn tensors_of(root: V) -> std::result::Result<Vec<(String, TensorRef)>, String> {
    let mut flat = Vec::new();
    flatten("", root, &mut flat)?;
    if flat.is_empty() {
        return Err("the file holds no tensors".into());
    }
    Ok(flat)
}

/// The legacy `torch.save` format (before PyTorch 1.6, still in older Hub repos): five pickles
/// in a row — the magic number, the protocol version (1001), system info, the object, the list
/// of storage keys — then each storage as its element count (i64) and its bytes, in that order.
fn read_legacy(path: &Path) -> Result<BTreeMap<String, TensorData>> {
    let bad = |msg: String| Error::format(path, msg);
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let not = || {
        bad("neither a zip-format nor a legacy torch.save file; convert it to safetensors".into())
    };
    let mut r = Reader::new(&bytes);
    const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    match Machine::default().run_at(&mut r) {
        Ok(V::BigInt(b)) if b == MAGIC => {}
        _ => return Err(not()),
    }
    match Machine::default().run_at(&mut r) {
        Ok(V::Int(1001)) => {}
        Ok(_) => return Err(bad("a legacy torch.save protocol other than 1001".into())),
        Err(m) => return Err(bad(format!("legacy header: {m}"))),
    }
    let info = Machine::default()
        .run_at(&mut r)
        .map_err(|m| bad(format!("legacy system info: {m}")))?;
    let little = match &info {
        V::Dict(items) => items
            .iter()
            .any(|(k, v)| matches!((k, v), (V::Str(k), V::Bool(true)) if k == "little_endian")),
        _ => false,
    };
    if !little {
        return Err(bad("legacy system info without little_endian".into()));
    }
    let root = Machine::default()
        .run_at(&mut r)
        .map_err(|m| bad(format!("legacy object: {m}")))?;
    let flat = tensors_of(root).map_err(|m| bad(format!("legacy object: {m}")))?;
    let keys = match Machine::default().run_at(&mut r) {
        Ok(V::List(k)) => k,
        Ok(_) | Err(_) => return Err(bad("legacy storage key list missing".into())),
    };
    let kinds: HashMap<&str, Kind> = flat.iter().map(|(_, t)| (t.key.as_str(), t.kind)).collect();
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for k in keys {
        let V::Str(k) = k else {
            return Err(bad("a legacy storage key that is not a string".into()));
        };
        let kind = *kinds
            .get(k.as_str())
            .ok_or_else(|| bad(format!("storage {k:?} is used by no tensor")))?;
        let n = r.take(8).map_err(|m| bad(format!("storage {k:?}: {m}")))?;
        let numel = u64::from_le_bytes(n.try_into().unwrap_or([0; 8]));
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(kind.size()))
            .ok_or_else(|| bad(format!("storage {k:?}: {numel} elements overflow")))?;
        let data = r.take(len).map_err(|_| {
            bad(format!(
                "storage {k:?}: {len} bytes past the end of the file"
            ))
        })?;
        storages.insert(k, data.to_vec());
    }
    assemble(flat, &storages, path)
}

/// Walks the unpickled value down to its tensors (`a.b.c` for nested dicts).
fn flatten(
    prefix: &str,
    v: V,
    out: &mut Vec<(String, TensorRef)>,
) -> std::result::Result<(), String> {
    match v {
        V::Dict(items) => {
            for (k, val) in items {
                let V::Str(k) = k else {
                    return Err("a dict key that is not a string".into());
                };
                let name = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}.{k}")
                };
                match val {
                    V::Tensor(t) => out.push((name, t)),
                    V::Dict(_) => flatten(&name, val, out)?,
                    // numbers, strings, None beside the tensors (a checkpoint's epoch, say)
                    V::None | V::Bool(_) | V::Int(_) | V::Float | V::Str(_) | V::BigInt(_) => {}
                    other => {
                        return Err(format!(
                            "{name}: a {} where a tensor or dict was expected",
                            kind_name(&other)
                        ));
                    }
                }
            }
            Ok(())
        }
        other => Err(format!(
            "the file holds a {}, not a state dict",
            kind_name(&other)
        )),
    }
}

fn kind_name(v: &V) -> &'static str {
    match v {
        V::None => "None",
        V::Bool(_) => "bool",
        V::Int(_) => "int",
        V::Float => "float",
        V::Str(_) => "string",
        V::Tuple(_) => "tuple",
        V::List(_) => "list",
        V::Dict(_) => "dict",
        V::Global(..) => "global",
        V::Storage { .. } => "storage",
        V::BigInt(_) => "int",
        V::Tensor(_) => "tensor",
        V::Mark => "mark",
    }
}

/// Copies a strided view out of its storage, checking every index first.
fn tensor(t: &TensorRef, storage: &[u8]) -> std::result::Result<TensorData, String> {
    let es = t.kind.size();
    let elems = storage.len() / es;
    if t.shape.len() != t.stride.len() {
        return Err(format!(
            "shape {:?} and stride {:?} differ in rank",
            t.shape, t.stride
        ));
    }
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("the shape overflows")?;
    if numel > elems {
        return Err(format!("{numel} elements from a storage of {elems}"));
    }
    if numel > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&d, &s)| {
                a.checked_add((d - 1).checked_mul(s)?)
            })
            .ok_or("the view overflows")?;
        if last >= elems {
            return Err(format!(
                "the view (offset {}, shape {:?}, stride {:?}) reaches element {last} of a storage of {elems}",
                t.offset, t.shape, t.stride
            ));
        }
    }
    let mut idx = Vec::with_capacity(numel);
    let mut pos = vec![0usize; t.shape.len()];
    for _ in 0..numel {
        idx.push(t.offset + pos.iter().zip(&t.stride).map(|(p, s)| p * s).sum::<usize>());
        for d in (0..pos.len()).rev() {
            pos[d] += 1;
            if pos[d] < t.shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    let at = |i: usize| &storage[i * es..(i + 1) * es];
    let le2 = |b: &[u8]| u16::from_le_bytes([b[0], b[1]]);
    let shape = &t.shape;
    let r = match t.kind {
        Kind::F32 => TensorData::f32(
            shape,
            idx.iter()
                .map(|&i| f32::from_le_bytes(at(i).try_into().unwrap_or([0; 4])))
                .collect(),
        ),
        Kind::F64 => TensorData::f32(
            shape,
            idx.iter()
                .map(|&i| f64::from_le_bytes(at(i).try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        ),
        Kind::F16 => TensorData::f32(
            shape,
            idx.iter()
                .map(|&i| f16::from_bits(le2(at(i))).to_f32())
                .collect(),
        ),
        Kind::BF16 => {
            let v: Vec<bf16> = idx.iter().map(|&i| bf16::from_bits(le2(at(i)))).collect();
            ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), v)
                .map(TensorData::BF16)
                .map_err(|e| Error::shape("torch_file", e.to_string()))
        }
        Kind::I64 => TensorData::i64(
            shape,
            idx.iter()
                .map(|&i| i64::from_le_bytes(at(i).try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        Kind::I32 => TensorData::i64(
            shape,
            idx.iter()
                .map(|&i| i64::from(i32::from_le_bytes(at(i).try_into().unwrap_or([0; 4]))))
                .collect(),
        ),
        Kind::I16 => TensorData::i64(
            shape,
            idx.iter().map(|&i| i64::from(le2(at(i)) as i16)).collect(),
        ),
        Kind::I8 => TensorData::i64(
            shape,
            idx.iter().map(|&i| i64::from(at(i)[0] as i8)).collect(),
        ),
        Kind::U8 | Kind::Bool => {
            TensorData::i64(shape, idx.iter().map(|&i| i64::from(at(i)[0])).collect())
        }
    };
    r.map_err(|e| e.to_string())
}
