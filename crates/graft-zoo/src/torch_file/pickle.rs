//! The pickle machine behind [`super::read`]: a stack, a memo, the opcodes a state dict's
//! pickle uses, and the few callables it may name — anything else is refused, nothing runs.

use std::collections::HashMap;

use super::Kind;
/// A value on the pickle machine's stack.
#[derive(Debug, Clone)]
pub(super) enum V {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(String, String),
    /// A storage (legacy views: `base` elements into the root storage `key`).
    Storage {
        kind: Kind,
        key: String,
        base: usize,
    },
    /// An integer wider than 64 bits (the legacy format's magic number): compared, never used.
    BigInt(Vec<u8>),
    Tensor(TensorRef),
    Mark,
}

#[derive(Debug, Clone)]
pub(super) struct TensorRef {
    pub(super) kind: Kind,
    pub(super) key: String,
    pub(super) offset: usize,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// The pickle machine: a stack, a memo, and no way to call anything it does not know.
#[derive(Debug, Default)]
pub(super) struct Machine {
    stack: Vec<V>,
    memo: HashMap<u32, V>,
}

/// Upper bounds that keep a hostile pickle from exhausting memory.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;

impl Machine {
    fn pop(&mut self) -> std::result::Result<V, String> {
        self.stack
            .pop()
            .ok_or_else(|| "stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> std::result::Result<Vec<V>, String> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, V::Mark))
            .ok_or("no mark on the stack")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn push(&mut self, v: V) -> std::result::Result<(), String> {
        if self.stack.len() >= MAX_STACK {
            return Err("the stack grows past its limit".into());
        }
        self.stack.push(v);
        Ok(())
    }
    fn put(&mut self, k: u32) -> std::result::Result<(), String> {
        if self.memo.len() >= MAX_MEMO {
            return Err("the memo grows past its limit".into());
        }
        let top = self.stack.last().ok_or("memo of an empty stack")?.clone();
        self.memo.insert(k, top);
        Ok(())
    }
    fn get(&mut self, k: u32) -> std::result::Result<(), String> {
        let v = self
            .memo
            .get(&k)
            .ok_or_else(|| format!("memo {k} was never set"))?
            .clone();
        self.push(v)
    }

    pub(super) fn run(self, code: &[u8]) -> std::result::Result<V, String> {
        self.run_at(&mut Reader { b: code, i: 0 })
    }

    /// Runs one pickle from the reader's position to its STOP (a file may hold several).
    pub(super) fn run_at(mut self, r: &mut Reader<'_>) -> std::result::Result<V, String> {
        loop {
            let op = r.u8()?;
            match op {
                0x80 => {
                    let p = r.u8()?;
                    if p > 5 {
                        return Err(format!("pickle protocol {p}"));
                    }
                }
                0x95 => {
                    r.take(8)?; // FRAME: a length hint
                }
                b'.' => return self.pop(),
                b'c' => {
                    let module = r.line()?;
                    let name = r.line()?;
                    self.push(V::Global(module, name))?;
                }
                b'(' => self.push(V::Mark)?,
                b')' => self.push(V::Tuple(Vec::new()))?,
                b']' => self.push(V::List(Vec::new()))?,
                b'}' => self.push(V::Dict(Vec::new()))?,
                b'N' => self.push(V::None)?,
                0x88 => self.push(V::Bool(true))?,
                0x89 => self.push(V::Bool(false))?,
                b'K' => {
                    let v = r.u8()?;
                    self.push(V::Int(i64::from(v)))?;
                }
                b'M' => {
                    let b = r.take(2)?;
                    self.push(V::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))))?;
                }
                b'J' => {
                    let b = r.take(4)?;
                    self.push(V::Int(i64::from(i32::from_le_bytes([
                        b[0], b[1], b[2], b[3],
                    ]))))?;
                }
                0x8a => {
                    let n = usize::from(r.u8()?);
                    let b = r.take(n)?;
                    if n > 8 {
                        self.push(V::BigInt(b.to_vec()))?;
                        continue;
                    }
                    let mut v: i64 = 0;
                    for (k, byte) in b.iter().enumerate() {
                        v |= i64::from(*byte) << (8 * k);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(V::Int(v))?;
                }
                b'G' => {
                    r.take(8)?; // a float (a checkpoint's metadata): not needed
                    self.push(V::Float)?;
                }
                b'X' => {
                    let n = r.u32()? as usize;
                    let s = std::str::from_utf8(r.take(n)?)
                        .map_err(|_| "a string that is not UTF-8")?;
                    self.push(V::Str(s.to_string()))?;
                }
                0x8c => {
                    let n = usize::from(r.u8()?);
                    let s = std::str::from_utf8(r.take(n)?)
                        .map_err(|_| "a string that is not UTF-8")?;
                    self.push(V::Str(s.to_string()))?;
                }
                b'U' => {
                    let n = usize::from(r.u8()?);
                    self.push(V::Str(String::from_utf8_lossy(r.take(n)?).into_owned()))?;
                }
                b'T' => {
                    let n = r.u32()? as usize;
                    self.push(V::Str(String::from_utf8_lossy(r.take(n)?).into_owned()))?;
                }
                b'q' => {
                    let k = u32::from(r.u8()?);
                    self.put(k)?;
                }
                b'r' => {
                    let k = r.u32()?;
                    self.put(k)?;
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).map_err(|_| "memo overflow")?;
                    self.put(k)?;
                }
                b'h' => {
                    let k = u32::from(r.u8()?);
                    self.get(k)?;
                }
                b'j' => {
                    let k = r.u32()?;
                    self.get(k)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(V::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(V::Tuple(items))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(V::List(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let d = pairs(items)?;
                    self.push(V::Dict(d))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.stack.last_mut() {
                        Some(V::List(l)) => l.push(v),
                        _ => return Err("APPEND to a non-list".into()),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.stack.last_mut() {
                        Some(V::List(l)) => l.extend(items),
                        _ => return Err("APPENDS to a non-list".into()),
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.stack.last_mut() {
                        Some(V::Dict(d)) => d.push((k, v)),
                        _ => return Err("SETITEM on a non-dict".into()),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let p = pairs(items)?;
                    match self.stack.last_mut() {
                        Some(V::Dict(d)) => d.extend(p),
                        _ => return Err("SETITEMS on a non-dict".into()),
                    }
                }
                b'b' => {
                    // BUILD: object state (an OrderedDict's `_metadata`): not needed, dropped
                    let _state = self.pop()?;
                    if !matches!(self.stack.last(), Some(V::Dict(_))) {
                        return Err("BUILD on something other than a dict".into());
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = persistent(pid)?;
                    self.push(v)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let f = self.pop()?;
                    let v = reduce(f, args)?;
                    self.push(v)?;
                }
                other => {
                    return Err(format!(
                        "opcode 0x{other:02x} at byte {}: not one a state dict uses (graft runs no pickle code)",
                        r.i - 1
                    ));
                }
            }
        }
    }
}

fn pairs(items: Vec<V>) -> std::result::Result<Vec<(V, V)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("an odd number of dict items".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// `('storage', <torch.XStorage>, key, location, numel)`, or the legacy format's
/// `(..., numel, view)` where `view` is None or `(view key, offset, size)` into the root storage.
fn persistent(pid: V) -> std::result::Result<V, String> {
    let V::Tuple(t) = pid else {
        return Err("a persistent id that is not a tuple".into());
    };
    let (tag, module, name, key, view) = match t.as_slice() {
        [
            V::Str(tag),
            V::Global(m, n),
            V::Str(key),
            V::Str(_),
            V::Int(_),
        ] => (tag, m, n, key, None),
        [
            V::Str(tag),
            V::Global(m, n),
            V::Str(key),
            V::Str(_),
            V::Int(_),
            view,
        ] => (tag, m, n, key, Some(view)),
        _ => return Err("a persistent id that is not a torch storage".into()),
    };
    if tag != "storage" || module != "torch" {
        return Err("a persistent id that is not a torch storage".into());
    }
    let kind = Kind::from_storage(name).ok_or_else(|| format!("storage type torch.{name}"))?;
    let base = match view {
        None | Some(V::None) => 0,
        Some(V::Tuple(v)) => match v.as_slice() {
            [V::Str(_), V::Int(off), V::Int(_)] => {
                usize::try_from(*off).map_err(|_| "a negative view offset")?
            }
            _ => return Err("a storage view that is not (key, offset, size)".into()),
        },
        Some(_) => return Err("a storage view that is not (key, offset, size)".into()),
    };
    Ok(V::Storage {
        kind,
        key: key.clone(),
        base,
    })
}

fn usizes(v: &V, what: &str) -> std::result::Result<Vec<usize>, String> {
    match v {
        V::Tuple(t) => t
            .iter()
            .map(|x| match x {
                V::Int(i) if *i >= 0 => {
                    usize::try_from(*i).map_err(|_| format!("{what} too large"))
                }
                _ => Err(format!("{what} holds a non-size")),
            })
            .collect(),
        _ => Err(format!("{what} is not a tuple")),
    }
}

/// Applies one of the few callables a state dict uses; anything else is refused.
fn reduce(f: V, args: V) -> std::result::Result<V, String> {
    let V::Global(module, name) = f else {
        return Err("REDUCE of something that is not a global".into());
    };
    let V::Tuple(a) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    match (module.as_str(), name.as_str()) {
        ("collections", "OrderedDict") if a.is_empty() => Ok(V::Dict(Vec::new())),
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let (V::Storage { kind, key, base }, V::Int(offset)) =
                (a.first().ok_or("no storage")?, a.get(1).ok_or("no offset")?)
            else {
                return Err("_rebuild_tensor_v2 without a storage and an offset".into());
            };
            let shape = usizes(a.get(2).ok_or("no size")?, "size")?;
            let stride = usizes(a.get(3).ok_or("no stride")?, "stride")?;
            Ok(V::Tensor(TensorRef {
                kind: *kind,
                key: key.clone(),
                offset: usize::try_from(*offset)
                    .ok()
                    .and_then(|o| o.checked_add(*base))
                    .ok_or("a negative or overflowing offset")?,
                shape,
                stride,
            }))
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            match a.into_iter().next() {
                Some(V::Tensor(t)) => Ok(V::Tensor(t)),
                _ => Err("_rebuild_parameter without a tensor".into()),
            }
        }
        _ => Err(format!(
            "the pickle calls {module}.{name}: not part of a plain state dict, and graft runs no pickle code"
        )),
    }
}

pub(super) struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `b`.
    pub(super) fn new(b: &'a [u8]) -> Self {
        Self { b, i: 0 }
    }
    pub(super) fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .i
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("truncated pickle")?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> std::result::Result<String, String> {
        let rest = &self.b[self.i..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("truncated pickle")?;
        if n > 256 {
            return Err("a global name longer than 256 bytes".into());
        }
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.i += n + 1;
        Ok(s)
    }
}
