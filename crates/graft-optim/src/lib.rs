//! graft-optim: SGD and AdamW as in-place updates under no-grad, with explicit, mutable parameter
//! groups and a fully exportable state.
//!
//! Owns: the update rules (PyTorch's `torch.optim.SGD` / `AdamW` arithmetic, operation for
//! operation — except AdamW through a backend's in-place form, `adamw_in_place`, which regroups
//! the scalars to save memory passes: 2.2e-7 relative from torch.optim after 10 steps), parameter
//! groups (members and hyper-parameters readable and changeable at any step:
//! a replaced head, an unfrozen stage, a schedule moving LR or momentum), per-parameter state keyed
//! by the store's entry id (a replaced tensor starts with fresh moments), and state export / import
//! for checkpoints.
//!
//! Must not know: concrete backends, models, schedules, files (callers save the exported tensors
//! and metadata, e.g. with `graft_backend::safetensors_io`).
//!
//! Rules that differ from "zero the grad and step": a parameter with no gradient (frozen, or not in
//! the graph this step) is skipped entirely — no weight decay, no moment update, no step count; a
//! group with `lr == 0` is frozen the same way, not stepped with a zero LR.

use std::collections::{BTreeMap, HashMap, HashSet};

use graft_backend::{AdamWStep, AutodiffBackend, Gradients, Params, TensorData};
use graft_core::{Error, Result};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD`: momentum, dampening, nesterov, L2 weight decay added to the gradient.
    Sgd,
    /// `torch.optim.AdamW`: decoupled weight decay, bias-corrected moments.
    AdamW,
}

impl OptimizerKind {
    fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::AdamW => "adamw",
        }
    }
}

/// Hyper-parameters of one group (each optimizer reads the fields its rule uses).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub lr: f64,
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD dampening.
    pub dampening: f64,
    /// SGD Nesterov momentum.
    pub nesterov: bool,
    /// AdamW β₁, β₂.
    pub betas: (f64, f64),
    /// AdamW ε.
    pub eps: f64,
}

impl Hyper {
    /// PyTorch's SGD defaults with this LR (no momentum, no decay).
    pub fn sgd(lr: f64) -> Self {
        Self {
            lr,
            weight_decay: 0.0,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            betas: (0.9, 0.999),
            eps: 1e-8,
        }
    }
    /// PyTorch's AdamW defaults with this LR (β = (0.9, 0.999), ε = 1e-8, weight decay 0.01).
    pub fn adamw(lr: f64) -> Self {
        Self {
            lr,
            weight_decay: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            betas: (0.9, 0.999),
            eps: 1e-8,
        }
    }
    /// With this weight decay.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
    /// With this SGD momentum.
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
    /// With Nesterov momentum on or off.
    pub fn nesterov(mut self, on: bool) -> Self {
        self.nesterov = on;
        self
    }
    /// With these AdamW betas.
    pub fn betas(mut self, b1: f64, b2: f64) -> Self {
        self.betas = (b1, b2);
        self
    }
    /// With this LR.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }

    fn validate(&self, kind: OptimizerKind, group: &str) -> Result<()> {
        let bad = |m: String| Err(Error::Optimizer(format!("group {group:?}: {m}")));
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad(format!("lr {} must be finite and >= 0", self.lr));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad(format!(
                "weight_decay {} must be finite and >= 0",
                self.weight_decay
            ));
        }
        match kind {
            OptimizerKind::Sgd => {
                if !(0.0..1.0).contains(&self.momentum) && self.momentum != 0.0 {
                    return bad(format!("momentum {} must be in [0, 1)", self.momentum));
                }
                if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
                    return bad("nesterov needs momentum > 0 and zero dampening".into());
                }
            }
            OptimizerKind::AdamW => {
                let (b1, b2) = self.betas;
                if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
                    return bad(format!("betas ({b1}, {b2}) must be in [0, 1)"));
                }
                if self.eps <= 0.0 {
                    return bad(format!("eps {} must be > 0", self.eps));
                }
            }
        }
        Ok(())
    }
}

/// A named set of parameters sharing hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamGroup {
    pub name: String,
    pub params: Vec<String>,
    pub hyper: Hyper,
}

#[derive(Debug, Clone)]
struct ParamState<T> {
    /// Id of the store entry this state belongs to; another id means a replaced tensor.
    id: u64,
    step: u64,
    /// SGD momentum buffer / AdamW exp_avg.
    buf1: Option<T>,
    /// AdamW exp_avg_sq.
    buf2: Option<T>,
    /// Working memory of an in-place update (not state: never exported).
    scratch: Option<T>,
}

/// What one `step` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Parameters updated.
    pub updated: usize,
    /// Parameters skipped: no gradient, or their group's LR is 0.
    pub skipped: usize,
}

/// Optimizer state on the host: moment tensors and step counts (`state.<param>.<field>`) plus
/// string metadata (kind, groups, hyper-parameters written as exactly round-tripping decimals).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    pub tensors: BTreeMap<String, TensorData>,
    pub metadata: BTreeMap<String, String>,
}

/// SGD or AdamW over parameter groups of a [`Params`] store.
///
/// Not `Clone`: the in-place update writes into the moment tensors, which a shallow clone would
/// share with the original — [`Optimizer::fresh_copy`] gives an independent one without state.
#[derive(Debug)]
pub struct Optimizer<B: AutodiffBackend> {
    kind: OptimizerKind,
    groups: Vec<ParamGroup>,
    state: HashMap<String, ParamState<B::Tensor>>,
    /// Use the backend's in-place update where it has one (AdamW on graft-tch).
    in_place: bool,
}

impl<B: AutodiffBackend> Optimizer<B> {
    /// An optimizer with no groups yet.
    pub fn new(kind: OptimizerKind) -> Self {
        Self {
            kind,
            groups: Vec::new(),
            state: HashMap::new(),
            in_place: true,
        }
    }
    /// Whether updates run in place through the backend's fused form when it has one (default;
    /// a step then allocates nothing) or are composed from out-of-place ops (the portable path,
    /// kept for backends without one). Both compute PyTorch's update; the in-place form measured
    /// ~2x faster on ResNet-18 (docs/benchmarks.md).
    pub fn set_in_place(&mut self, on: bool) {
        self.in_place = on;
    }
    /// The same kind, groups and hyper-parameters with no state (no moments, step counts 0): what
    /// a sweep such as `lr_find` starts from without touching this optimizer's moments.
    pub fn fresh_copy(&self) -> Self {
        Self {
            kind: self.kind,
            groups: self.groups.clone(),
            state: HashMap::new(),
            in_place: self.in_place,
        }
    }
    /// SGD with no groups yet.
    pub fn sgd() -> Self {
        Self::new(OptimizerKind::Sgd)
    }
    /// AdamW with no groups yet.
    pub fn adamw() -> Self {
        Self::new(OptimizerKind::AdamW)
    }
    /// The rule.
    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }
    /// Adds a group; a parameter may belong to one group only, group names are unique.
    pub fn add_group(&mut self, name: &str, params: Vec<String>, hyper: Hyper) -> Result<()> {
        hyper.validate(self.kind, name)?;
        if self.groups.iter().any(|g| g.name == name) {
            return Err(Error::Optimizer(format!("group {name:?} already exists")));
        }
        let mut seen = HashSet::new();
        for p in &params {
            if !seen.insert(p.as_str()) {
                return Err(Error::Optimizer(format!(
                    "parameter {p:?} listed twice in group {name:?}"
                )));
            }
            if let Some(g) = self.group_of(p) {
                return Err(Error::Optimizer(format!(
                    "parameter {p:?} is already in group {g:?}"
                )));
            }
        }
        self.groups.push(ParamGroup {
            name: name.to_string(),
            params,
            hyper,
        });
        Ok(())
    }
    /// Removes a group and its parameters' state.
    pub fn remove_group(&mut self, name: &str) -> Result<ParamGroup> {
        let i = self.index(name)?;
        let g = self.groups.remove(i);
        for p in &g.params {
            self.state.remove(p);
        }
        Ok(g)
    }
    /// Adds parameters to an existing group (fresh state).
    pub fn add_params(&mut self, group: &str, params: &[String]) -> Result<()> {
        for p in params {
            if let Some(g) = self.group_of(p) {
                return Err(Error::Optimizer(format!(
                    "parameter {p:?} is already in group {g:?}"
                )));
            }
        }
        let i = self.index(group)?;
        self.groups[i].params.extend(params.iter().cloned());
        Ok(())
    }
    /// Moves parameters (from whatever group holds them) into `group`, keeping their state
    /// (moments, step counts): re-planning groups does not reset what was learned.
    pub fn move_params(&mut self, params: &[String], group: &str) -> Result<()> {
        let to = self.index(group)?;
        let moving: HashSet<&str> = params.iter().map(String::as_str).collect();
        for (i, g) in self.groups.iter_mut().enumerate() {
            if i != to {
                g.params.retain(|p| !moving.contains(p.as_str()));
            }
        }
        for p in params {
            if !self.groups[to].params.contains(p) {
                self.groups[to].params.push(p.clone());
            }
        }
        Ok(())
    }
    /// Removes parameters from whatever group holds them, with their state; returns how many.
    pub fn remove_params(&mut self, params: &[String]) -> usize {
        let drop: HashSet<&str> = params.iter().map(String::as_str).collect();
        let mut n = 0;
        for g in &mut self.groups {
            let before = g.params.len();
            g.params.retain(|p| !drop.contains(p.as_str()));
            n += before - g.params.len();
        }
        for p in params {
            self.state.remove(p);
        }
        n
    }
    /// The groups, in order.
    pub fn groups(&self) -> &[ParamGroup] {
        &self.groups
    }
    /// The named group.
    pub fn group(&self, name: &str) -> Result<&ParamGroup> {
        self.index(name).map(|i| &self.groups[i])
    }
    /// The group holding `param`, if any.
    pub fn group_of(&self, param: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.params.iter().any(|p| p == param))
            .map(|g| g.name.as_str())
    }
    /// Replaces a group's hyper-parameters (validated).
    pub fn set_hyper(&mut self, group: &str, hyper: Hyper) -> Result<()> {
        hyper.validate(self.kind, group)?;
        let i = self.index(group)?;
        self.groups[i].hyper = hyper;
        Ok(())
    }
    /// A group's LR.
    pub fn lr(&self, group: &str) -> Result<f64> {
        self.group(group).map(|g| g.hyper.lr)
    }
    /// Sets a group's LR.
    pub fn set_lr(&mut self, group: &str, lr: f64) -> Result<()> {
        let h = self.group(group)?.hyper.lr(lr);
        self.set_hyper(group, h)
    }
    /// Sets a group's momentum: SGD's momentum, AdamW's β₁ (one-cycle schedules move either).
    pub fn set_momentum(&mut self, group: &str, m: f64) -> Result<()> {
        let mut h = self.group(group)?.hyper;
        match self.kind {
            OptimizerKind::Sgd => h.momentum = m,
            OptimizerKind::AdamW => h.betas.0 = m,
        }
        self.set_hyper(group, h)
    }
    /// The step count of `param` (0 before its first update).
    pub fn param_step(&self, param: &str) -> u64 {
        self.state.get(param).map_or(0, |s| s.step)
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.groups
            .iter()
            .position(|g| g.name == name)
            .ok_or_else(|| Error::Optimizer(format!("no group named {name:?}")))
    }

    /// One update of every parameter in every group that has a gradient.
    pub fn step(&mut self, params: &Params<B>, grads: &Gradients<B>) -> Result<StepReport> {
        let b = params.backend().clone();
        let mut report = StepReport::default();
        for gi in 0..self.groups.len() {
            let hyper = self.groups[gi].hyper;
            for pi in 0..self.groups[gi].params.len() {
                let name = &self.groups[gi].params[pi];
                let entry = params.entry(name).map_err(|_| {
                    Error::Optimizer(format!(
                        "group {:?} holds {name:?}, which the model no longer has",
                        self.groups[gi].name
                    ))
                })?;
                let Some(g) = grads.get_for(name, entry.id()) else {
                    report.skipped += 1;
                    continue;
                };
                if hyper.lr == 0.0 {
                    report.skipped += 1;
                    continue;
                }
                let st = self.state.entry(name.clone()).or_insert(ParamState {
                    id: entry.id(),
                    step: 0,
                    buf1: None,
                    buf2: None,
                    scratch: None,
                });
                if st.id != entry.id() {
                    *st = ParamState {
                        id: entry.id(),
                        step: 0,
                        buf1: None,
                        buf2: None,
                        scratch: None,
                    };
                }
                let p = &entry.tensor;
                let in_place = self.in_place;
                b.no_grad(|| match self.kind {
                    OptimizerKind::Sgd => sgd_update(&b, p, g, st, &hyper),
                    OptimizerKind::AdamW => adamw_update(&b, p, g, st, &hyper, in_place),
                })?;
                report.updated += 1;
            }
        }
        Ok(report)
    }

    /// The full state on the host.
    pub fn export_state(&self, params: &Params<B>) -> Result<OptimizerState> {
        let b = params.backend();
        let mut out = OptimizerState::default();
        out.metadata
            .insert("optimizer".into(), self.kind.name().into());
        out.metadata
            .insert("groups".into(), self.groups.len().to_string());
        for (i, g) in self.groups.iter().enumerate() {
            let h = &g.hyper;
            let pre = format!("group.{i}");
            out.metadata.insert(format!("{pre}.name"), g.name.clone());
            out.metadata
                .insert(format!("{pre}.params"), g.params.join("\n"));
            out.metadata.insert(
                format!("{pre}.hyper"),
                format!(
                    "lr={} weight_decay={} momentum={} dampening={} nesterov={} beta1={} beta2={} eps={}",
                    h.lr, h.weight_decay, h.momentum, h.dampening, h.nesterov, h.betas.0, h.betas.1, h.eps
                ),
            );
        }
        let (f1, f2) = self.buffer_names();
        for (name, st) in &self.state {
            out.tensors.insert(
                format!("state.{name}.step"),
                TensorData::i64(&[], vec![st.step as i64])?,
            );
            if let Some(t) = &st.buf1 {
                out.tensors
                    .insert(format!("state.{name}.{f1}"), b.to_data(t)?);
            }
            if let Some(t) = &st.buf2 {
                out.tensors
                    .insert(format!("state.{name}.{f2}"), b.to_data(t)?);
            }
        }
        Ok(out)
    }

    fn buffer_names(&self) -> (&'static str, &'static str) {
        match self.kind {
            OptimizerKind::Sgd => ("momentum_buffer", "unused"),
            OptimizerKind::AdamW => ("exp_avg", "exp_avg_sq"),
        }
    }

    /// Rebuilds an optimizer from exported state, bound to the tensors of `params` (every group
    /// member must exist there with the state's shapes).
    pub fn import_state(state: &OptimizerState, params: &Params<B>) -> Result<Self> {
        let b = params.backend();
        let meta = |k: &str| {
            state
                .metadata
                .get(k)
                .ok_or_else(|| Error::Optimizer(format!("state has no metadata {k:?}")))
        };
        let kind = match meta("optimizer")?.as_str() {
            "sgd" => OptimizerKind::Sgd,
            "adamw" => OptimizerKind::AdamW,
            other => {
                return Err(Error::Optimizer(format!(
                    "unknown optimizer {other:?} in state"
                )));
            }
        };
        let n: usize = meta("groups")?
            .parse()
            .map_err(|e| Error::Optimizer(format!("groups: {e}")))?;
        let mut opt = Self::new(kind);
        for i in 0..n {
            let name = meta(&format!("group.{i}.name"))?.clone();
            let members = meta(&format!("group.{i}.params"))?;
            let members: Vec<String> = members
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            let hyper = parse_hyper(meta(&format!("group.{i}.hyper"))?, &name)?;
            opt.add_group(&name, members, hyper)?;
        }
        let (f1, f2) = opt.buffer_names();
        let all: Vec<String> = opt
            .groups
            .iter()
            .flat_map(|g| g.params.iter().cloned())
            .collect();
        for name in all {
            let Some(step) = state.tensors.get(&format!("state.{name}.step")) else {
                continue;
            };
            let step = *step.as_i64("optimizer state")?.iter().next().unwrap_or(&0) as u64;
            let entry = params.entry(&name).map_err(|_| {
                Error::Optimizer(format!("state for {name:?}, which the model does not have"))
            })?;
            let shape = b.shape(&entry.tensor);
            let load = |f: &str| -> Result<Option<B::Tensor>> {
                match state.tensors.get(&format!("state.{name}.{f}")) {
                    None => Ok(None),
                    Some(d) if d.shape() != shape.as_slice() => Err(Error::Optimizer(format!(
                        "state.{name}.{f} has shape {:?}, parameter has {shape:?}",
                        d.shape()
                    ))),
                    Some(d) => b.from_data(d).map(Some),
                }
            };
            let st = ParamState {
                id: entry.id(),
                step,
                buf1: load(f1)?,
                buf2: load(f2)?,
                scratch: None,
            };
            opt.state.insert(name, st);
        }
        Ok(opt)
    }
}

fn parse_hyper(s: &str, group: &str) -> Result<Hyper> {
    let mut h = Hyper::sgd(0.0);
    for kv in s.split_whitespace() {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Error::Optimizer(format!("group {group:?}: bad hyper {kv:?}")))?;
        let num = || {
            v.parse::<f64>()
                .map_err(|e| Error::Optimizer(format!("group {group:?}: {k}={v}: {e}")))
        };
        match k {
            "lr" => h.lr = num()?,
            "weight_decay" => h.weight_decay = num()?,
            "momentum" => h.momentum = num()?,
            "dampening" => h.dampening = num()?,
            "nesterov" => h.nesterov = v == "true",
            "beta1" => h.betas.0 = num()?,
            "beta2" => h.betas.1 = num()?,
            "eps" => h.eps = num()?,
            other => {
                return Err(Error::Optimizer(format!(
                    "group {group:?}: unknown hyper {other:?}"
                )));
            }
        }
    }
    Ok(h)
}

/// `torch.optim.SGD`'s single-tensor update.
fn sgd_update<B: AutodiffBackend>(
    b: &B,
    p: &B::Tensor,
    g: &B::Tensor,
    st: &mut ParamState<B::Tensor>,
    h: &Hyper,
) -> Result<()> {
    let mut d_p = if h.weight_decay != 0.0 {
        b.add(g, &b.mul_scalar(p, h.weight_decay)?)?
    } else {
        g.clone()
    };
    if h.momentum != 0.0 {
        let buf = match st.buf1.take() {
            None => b.detach(&d_p)?,
            Some(buf) => b.add(
                &b.mul_scalar(&buf, h.momentum)?,
                &b.mul_scalar(&d_p, 1.0 - h.dampening)?,
            )?,
        };
        d_p = if h.nesterov {
            b.add(&d_p, &b.mul_scalar(&buf, h.momentum)?)?
        } else {
            buf.clone()
        };
        st.buf1 = Some(buf);
    }
    st.step += 1;
    let new = b.sub(p, &b.mul_scalar(&d_p, h.lr)?)?;
    b.assign(p, &new)
}

/// `torch.optim.AdamW`'s single-tensor update (decoupled decay, then lerp / addcmul moments,
/// bias corrections, addcdiv).
fn adamw_update<B: AutodiffBackend>(
    b: &B,
    p: &B::Tensor,
    g: &B::Tensor,
    st: &mut ParamState<B::Tensor>,
    h: &Hyper,
    in_place: bool,
) -> Result<()> {
    let (b1, b2) = h.betas;
    st.step += 1;
    if st.buf1.is_none() {
        st.buf1 = Some(b.zeros(&b.shape(g), b.dtype(g))?);
    }
    if st.buf2.is_none() {
        st.buf2 = Some(b.zeros(&b.shape(g), b.dtype(g))?);
    }
    if let (true, Some(m), Some(v)) = (in_place, &st.buf1, &st.buf2) {
        let s = AdamWStep {
            lr: h.lr,
            beta1: b1,
            beta2: b2,
            weight_decay: h.weight_decay,
            eps: h.eps,
            step: st.step,
        };
        if b.adamw_in_place(p, g, m, v, &mut st.scratch, &s)? {
            return Ok(());
        }
    }
    let step = st.step as f64;
    let p_dec = if h.weight_decay != 0.0 {
        b.mul_scalar(p, 1.0 - h.lr * h.weight_decay)?
    } else {
        p.clone()
    };
    let m = match st.buf1.take() {
        None => b.zeros(&b.shape(g), b.dtype(g))?,
        Some(m) => m,
    };
    let v = match st.buf2.take() {
        None => b.zeros(&b.shape(g), b.dtype(g))?,
        Some(v) => v,
    };
    // exp_avg.lerp_(grad, 1 - beta1)  ==  m + (1 - b1) * (g - m)
    let m = b.add(&m, &b.mul_scalar(&b.sub(g, &m)?, 1.0 - b1)?)?;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value = 1 - beta2)
    let v = b.add(
        &b.mul_scalar(&v, b2)?,
        &b.mul(&b.mul_scalar(g, 1.0 - b2)?, g)?,
    )?;
    let bc1 = 1.0 - b1.powf(step);
    let bc2 = 1.0 - b2.powf(step);
    let step_size = h.lr / bc1;
    let denom = b.add_scalar(
        &b.div(&b.sqrt(&v)?, &b.scalar(bc2.sqrt(), b.dtype(&v))?)?,
        h.eps,
    )?;
    // param.addcdiv_(exp_avg, denom, value = -step_size)
    let new = b.sub(&p_dec, &b.div(&b.mul_scalar(&m, step_size)?, &denom)?)?;
    st.buf1 = Some(m);
    st.buf2 = Some(v);
    b.assign(p, &new)
}
