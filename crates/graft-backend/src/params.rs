//! The parameter store: tensors by dotted name, exactly the PyTorch `state_dict` keys.
//!
//! [`ParamBuilder`] creates parameters through a prefix path (`root.sub("layer1").sub("0")`), so a
//! model's construction code spells the same names as its PyTorch counterpart. A name defined twice
//! is an error (tch's `Path::add` silently renames to `w__1`); dotted segments in `sub` are allowed
//! and validated (tch's `Path::sub` panics on a '.'). Buffers — BatchNorm running statistics,
//! `num_batches_tracked` — are stored beside parameters but marked [`ParamKind::Buffer`]: they are
//! never trained and never handed to an optimizer.
//!
//! Every entry has a process-unique id, renewed when its tensor is replaced; optimizers key their
//! state by it, so a replaced head never inherits its predecessor's moments.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use graft_core::name::{is_under, join, validate_name};

use crate::backend::{AutodiffBackend, Backend};
use crate::data::{DType, TensorData};
use crate::init::Init;
use crate::{Error, Result};

/// Trainable parameter or state buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamKind {
    Parameter,
    Buffer,
}

/// One stored tensor.
#[derive(Debug, Clone)]
pub struct Entry<T> {
    pub tensor: T,
    pub kind: ParamKind,
    id: u64,
}

impl<T> Entry<T> {
    /// Process-unique id of this tensor (renewed on replacement).
    pub fn id(&self) -> u64 {
        self.id
    }
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Named tensors of one model, in definition order.
#[derive(Debug, Clone)]
pub struct Params<B: Backend> {
    backend: B,
    names: Vec<String>,
    entries: HashMap<String, Entry<B::Tensor>>,
    /// BatchNorm paths whose affine transform was folded into the preceding conv (an
    /// inference-only copy of a model): [`crate::nn::batch_norm`] is the identity there in eval
    /// mode and an error in any mode that needs batch statistics.
    folded: BTreeSet<String>,
}

impl<B: Backend> Params<B> {
    /// An empty store on `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            names: Vec::new(),
            entries: HashMap::new(),
            folded: BTreeSet::new(),
        }
    }
    /// The backend the tensors live on.
    pub fn backend(&self) -> &B {
        &self.backend
    }
    /// Number of entries (parameters and buffers).
    pub fn len(&self) -> usize {
        self.names.len()
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// The same named tensors on another backend (values copied through the host, kinds and
    /// folded BatchNorms kept; entries get new ids).
    pub fn to_backend<B2: Backend>(&self, backend: &B2) -> Result<Params<B2>> {
        let mut out = Params::new(backend.clone());
        for name in &self.names {
            let e = &self.entries[name];
            let t = backend.from_data(&self.backend.to_data(&e.tensor)?)?;
            out.insert(name, t, e.kind)?;
        }
        out.folded = self.folded.clone();
        Ok(out)
    }
    /// Adds a tensor under a new name; an existing name is a [`Error::NameCollision`].
    pub fn insert(&mut self, name: &str, tensor: B::Tensor, kind: ParamKind) -> Result<()> {
        validate_name(name)?;
        if self.entries.contains_key(name) {
            return Err(Error::NameCollision(name.to_string()));
        }
        self.names.push(name.to_string());
        self.entries.insert(
            name.to_string(),
            Entry {
                tensor,
                kind,
                id: next_id(),
            },
        );
        Ok(())
    }
    /// Replaces the tensor of an existing entry (new id: optimizer state does not carry over).
    pub fn replace(&mut self, name: &str, tensor: B::Tensor) -> Result<()> {
        let e = self
            .entries
            .get_mut(name)
            .ok_or_else(|| Error::MissingParam(name.to_string()))?;
        e.tensor = tensor;
        e.id = next_id();
        Ok(())
    }
    /// Removes every entry under `prefix`; returns the removed names.
    pub fn remove_prefix(&mut self, prefix: &str) -> Vec<String> {
        let (gone, kept): (Vec<String>, Vec<String>) = std::mem::take(&mut self.names)
            .into_iter()
            .partition(|n| is_under(n, prefix));
        self.names = kept;
        for n in &gone {
            self.entries.remove(n);
        }
        gone
    }
    /// Marks the BatchNorm at `path` as folded into its conv and removes its entries (weight,
    /// bias, running statistics): the layer is the identity from now on, in eval mode only.
    pub fn fold_norm(&mut self, path: &str) -> Vec<String> {
        let gone = self.remove_prefix(path);
        self.folded.insert(path.to_string());
        gone
    }
    /// True if the BatchNorm at `path` was folded away ([`Params::fold_norm`]).
    pub fn is_folded(&self, path: &str) -> bool {
        self.folded.contains(path)
    }
    /// The folded BatchNorm paths (empty for a trainable model).
    pub fn folded(&self) -> impl Iterator<Item = &str> {
        self.folded.iter().map(String::as_str)
    }
    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Result<&Entry<B::Tensor>> {
        self.entries
            .get(name)
            .ok_or_else(|| Error::MissingParam(name.to_string()))
    }
    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Result<&B::Tensor> {
        self.entry(name).map(|e| &e.tensor)
    }
    /// The tensor named `name`, if present.
    pub fn try_get(&self, name: &str) -> Option<&B::Tensor> {
        self.entries.get(name).map(|e| &e.tensor)
    }
    /// True if `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }
    /// All names, in definition order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }
    /// `(name, entry)` pairs in definition order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Entry<B::Tensor>)> {
        self.names
            .iter()
            .filter_map(|n| self.entries.get(n).map(|e| (n.as_str(), e)))
    }
    /// Names of trainable-kind entries (parameters, not buffers), in order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.iter()
            .filter(|(_, e)| e.kind == ParamKind::Parameter)
            .map(|(n, _)| n)
    }
    /// Every entry's value on the host (a `state_dict`).
    pub fn to_data(&self) -> Result<BTreeMap<String, TensorData>> {
        self.iter()
            .map(|(n, e)| Ok((n.to_string(), self.backend.to_data(&e.tensor)?)))
            .collect()
    }
    /// Total number of elements of the parameters (not buffers).
    pub fn num_parameters(&self) -> usize {
        self.iter()
            .filter(|(_, e)| e.kind == ParamKind::Parameter)
            .map(|(_, e)| self.backend.numel(&e.tensor))
            .sum()
    }
}

impl<B: AutodiffBackend> Params<B> {
    /// Turns gradient tracking on or off for every parameter (not buffer) whose name `pick`
    /// accepts; returns how many were set. Buffers never require grad.
    pub fn set_trainable(&self, pick: impl Fn(&str) -> bool, on: bool) -> Result<usize> {
        let mut n = 0;
        for (name, e) in self.iter() {
            if e.kind == ParamKind::Parameter && pick(name) {
                self.backend.set_requires_grad(&e.tensor, on)?;
                n += 1;
            }
        }
        Ok(n)
    }
    /// Gradients of `loss` for every parameter that requires grad. Parameters the loss does not
    /// depend on, and frozen ones, get no entry.
    pub fn gradients(&self, loss: &B::Tensor) -> Result<Gradients<B>> {
        let b = &self.backend;
        let live: Vec<(&str, &Entry<B::Tensor>)> = self
            .iter()
            .filter(|(_, e)| e.kind == ParamKind::Parameter && b.requires_grad(&e.tensor))
            .collect();
        let wrt: Vec<&B::Tensor> = live.iter().map(|(_, e)| &e.tensor).collect();
        let grads = b.backward(loss, &wrt)?;
        let mut map = HashMap::new();
        for ((name, e), g) in live.into_iter().zip(grads) {
            if let Some(g) = g {
                map.insert(name.to_string(), (e.id, g));
            }
        }
        Ok(Gradients { map })
    }
}

/// Gradients by parameter name, tagged with the id of the tensor they were computed for.
#[derive(Debug, Clone)]
pub struct Gradients<B: Backend> {
    map: HashMap<String, (u64, B::Tensor)>,
}

impl<B: Backend> Default for Gradients<B> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
        }
    }
}

impl<B: Backend> Gradients<B> {
    /// The gradient of `name`, if it has one for the tensor with id `id`.
    pub fn get_for(&self, name: &str, id: u64) -> Option<&B::Tensor> {
        self.map
            .get(name)
            .filter(|(gid, _)| *gid == id)
            .map(|(_, g)| g)
    }
    /// The gradient of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&B::Tensor> {
        self.map.get(name).map(|(_, g)| g)
    }
    /// Sets a gradient by hand (e.g. accumulated or clipped) for the entry `name` of `params`.
    pub fn set(&mut self, params: &Params<B>, name: &str, g: B::Tensor) -> Result<()> {
        let id = params.entry(name)?.id;
        self.map.insert(name.to_string(), (id, g));
        Ok(())
    }
    /// Adds `other`'s gradients into these (accumulation over micro-batches); a name present in
    /// only one side keeps that side's gradient. Gradients of one name computed for different
    /// tensors (the parameter was replaced in between) are an error.
    pub fn accumulate(&mut self, backend: &B, other: Gradients<B>) -> Result<()> {
        for (name, (id, g)) in other.map {
            match self.map.get_mut(&name) {
                Some((id0, g0)) if *id0 == id => *g0 = backend.add(g0, &g)?,
                Some(_) => {
                    return Err(Error::invalid(
                        "Gradients::accumulate",
                        format!(
                            "{name}: gradients for two different tensors (replaced between micro-batches?)"
                        ),
                    ));
                }
                None => {
                    self.map.insert(name, (id, g));
                }
            }
        }
        Ok(())
    }
    /// Multiplies every gradient by `factor` (averaging accumulated micro-batches).
    pub fn scale(&mut self, backend: &B, factor: f64) -> Result<()> {
        for (_, g) in self.map.values_mut() {
            *g = backend.mul_scalar(g, factor)?;
        }
        Ok(())
    }
    /// Names that have a gradient.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
    /// Number of gradients.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Builds a [`Params`] store: creates tensors by dotted name with a seeded initialiser.
#[derive(Debug)]
pub struct ParamBuilder<B: Backend> {
    store: RefCell<Params<B>>,
    seed: u64,
    dtype: DType,
    /// Shapes-only mode: record names and shapes, allocate 0-element placeholders.
    dry: bool,
    shapes: RefCell<Vec<(String, Vec<usize>, ParamKind)>>,
}

impl<B: Backend> ParamBuilder<B> {
    /// A builder whose random initialisers derive from `seed` (and each parameter's name).
    pub fn new(backend: B, seed: u64) -> Self {
        Self {
            store: RefCell::new(Params::new(backend)),
            seed,
            dtype: DType::F32,
            dry: false,
            shapes: RefCell::new(Vec::new()),
        }
    }
    /// A builder that only records names, shapes and kinds (0-element placeholder tensors), to
    /// count a model's parameters without allocating or initialising them.
    pub fn dry(backend: B) -> Self {
        let mut b = Self::new(backend, 0);
        b.dry = true;
        b
    }
    /// Every created name with its shape and kind, in creation order.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>, ParamKind)> {
        self.shapes.borrow().clone()
    }
    /// Float dtype for new parameters (default f32).
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }
    /// The root path (empty prefix).
    pub fn root(&self) -> ParamPath<'_, B> {
        ParamPath {
            builder: self,
            prefix: String::new(),
        }
    }
    /// The finished store.
    pub fn finish(self) -> Params<B> {
        self.store.into_inner()
    }
}

/// A prefix inside a [`ParamBuilder`]: `root.sub("layer1").sub("0").param("weight", ..)` creates
/// `layer1.0.weight`.
#[derive(Debug, Clone)]
pub struct ParamPath<'a, B: Backend> {
    builder: &'a ParamBuilder<B>,
    prefix: String,
}

impl<'a, B: Backend> ParamPath<'a, B> {
    /// A sub-path; `name` may itself be dotted (`"layer1.0"`), each segment validated.
    pub fn sub(&self, name: impl AsRef<str>) -> Result<ParamPath<'a, B>> {
        let prefix = join(&self.prefix, name.as_ref());
        validate_name(&prefix)?;
        Ok(ParamPath {
            builder: self.builder,
            prefix,
        })
    }
    /// This path's dotted prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    /// The full name of `name` under this path.
    pub fn name(&self, name: &str) -> String {
        join(&self.prefix, name)
    }
    /// The backend.
    pub fn backend(&self) -> B {
        self.builder.store.borrow().backend().clone()
    }
    fn create(
        &self,
        name: &str,
        shape: &[usize],
        init: Init,
        kind: ParamKind,
        dtype: DType,
    ) -> Result<B::Tensor> {
        let full = self.name(name);
        validate_name(&full)?;
        if self.builder.store.borrow().contains(&full) {
            return Err(Error::NameCollision(full));
        }
        self.builder
            .shapes
            .borrow_mut()
            .push((full.clone(), shape.to_vec(), kind));
        if self.builder.dry {
            let mut store = self.builder.store.borrow_mut();
            let t = store.backend().zeros(&[0], dtype)?;
            store.insert(&full, t.clone(), kind)?;
            return Ok(t);
        }
        let data = match dtype {
            DType::I64 => {
                let n: usize = shape.iter().product();
                let v = match init {
                    Init::Zeros => 0,
                    Init::Ones => 1,
                    Init::Constant(c) => c as i64,
                    other => {
                        return Err(Error::invalid(
                            "ParamPath",
                            format!("{full}: int64 tensors take a constant init, not {other:?}"),
                        ));
                    }
                };
                TensorData::i64(shape, vec![v; n])?
            }
            d => init.sample(shape, d, &full, self.builder.seed)?,
        };
        let mut store = self.builder.store.borrow_mut();
        let t = store.backend().from_data(&data)?;
        store.insert(&full, t.clone(), kind)?;
        Ok(t)
    }
    /// A trainable parameter in the builder's float dtype.
    pub fn param(&self, name: &str, shape: &[usize], init: Init) -> Result<B::Tensor> {
        self.create(name, shape, init, ParamKind::Parameter, self.builder.dtype)
    }
    /// A float buffer (running statistics).
    pub fn buffer(&self, name: &str, shape: &[usize], init: Init) -> Result<B::Tensor> {
        self.create(name, shape, init, ParamKind::Buffer, self.builder.dtype)
    }
    /// A buffer of a given dtype (`num_batches_tracked` is an i64 scalar).
    pub fn buffer_typed(
        &self,
        name: &str,
        shape: &[usize],
        init: Init,
        dtype: DType,
    ) -> Result<B::Tensor> {
        self.create(name, shape, init, ParamKind::Buffer, dtype)
    }
}
