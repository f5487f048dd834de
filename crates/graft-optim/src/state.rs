//! Optimizer state on the host and back: moments and step counts as tensors, groups and
//! hyper-parameters as exactly round-tripping strings (a checkpoint's optimizer part).

use graft_backend::{AutodiffBackend, Params, TensorData};
use graft_core::{Error, Result};

use crate::*;

impl<B: AutodiffBackend> Optimizer<B> {
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
