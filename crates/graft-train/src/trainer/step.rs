//! One batch and one optimizer step: the forward on a (mixed) batch, the loss and its guard,
//! gradient accumulation, clipping, the LR for the step, the update and the weights' EMA.

use std::collections::BTreeMap;
use std::time::Instant;

use graft_backend::init::mix_seed;
use graft_backend::{AutodiffBackend, Backend, Ctx, Gradients, TensorData};
use graft_core::{Error, Result};
use graft_data::Batch;
use graft_zoo::Model;

use super::{Control, LoopState, StepRecord, Trainer};
use crate::loss::{Targets, cross_entropy};

/// Gradients summed over the micro-batches of one optimizer step.
pub(super) struct Pending<B: AutodiffBackend> {
    pub grads: Gradients<B>,
    pub n: usize,
    pub loss_sum: f64,
}

/// The first value of `x` on the host (a loss, a squared norm).
pub(crate) fn host_scalar<B: Backend>(b: &B, x: &B::Tensor) -> Result<f64> {
    b.to_data(x)?
        .to_f64()
        .iter()
        .next()
        .copied()
        .ok_or_else(|| Error::Training("empty loss tensor".into()))
}

/// Writes host values into every parameter and buffer of `model` in place (entry ids, and so
/// optimizer state and requires_grad, are kept); `missing` makes the error for a name `data`
/// lacks.
pub(crate) fn assign_from_host<B: AutodiffBackend>(
    model: &Model<B>,
    data: &BTreeMap<String, TensorData>,
    missing: impl Fn(&str) -> Error,
) -> Result<()> {
    let b = model.backend();
    for (name, e) in model.params().iter() {
        let d = data.get(name).ok_or_else(|| missing(name))?;
        let src = b.from_data(&d.cast(b.dtype(&e.tensor)))?;
        b.no_grad(|| b.assign(&e.tensor, &src))?;
    }
    Ok(())
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Forward and backward of one batch (micro-batch `micro` of the run): mixup when set, the
    /// model fed through `Model::forward_batch` — or, for a multi-task run's batch of `task`,
    /// the trunk's pooled features through the task's head and its weighted loss — the loss
    /// shown to the callbacks, then its gradients and value. `None`: a callback stopped the run
    /// at this loss (nothing changed).
    pub(super) fn backward(
        &mut self,
        model: &Model<B>,
        task: Option<&crate::Task>,
        batch: &Batch,
        micro: u64,
        st: &mut LoopState,
    ) -> Result<Option<(Gradients<B>, f64)>> {
        let b = model.backend();
        if let Some(t) = task {
            let ctx = Ctx::train(&self.modes, self.cfg.seed, micro);
            let pooled = model.forward_pooled_batch(&batch.inputs, &ctx)?;
            let out = model.forward_task(t.name(), &pooled, &ctx)?;
            let raw = t.loss_of(b, &out, batch, self.cfg.label_smoothing, true)?;
            let lt = host_scalar(b, &raw)?;
            let loss = b.mul_scalar(&raw, t.weight())?;
            let Some(out) = self.guarded(model, loss, st)? else {
                return Ok(None);
            };
            let e = st.task_loss.entry(t.name().to_string()).or_default();
            e.0 += lt;
            e.1 += 1;
            return Ok(Some(out));
        }
        let (inputs, targets) = match &self.cfg.mixup {
            Some(m) => {
                let mut rng =
                    <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(mix_seed(&[
                        self.cfg.seed,
                        0x6d69_7875,
                        micro,
                    ]));
                let (x, t, _) =
                    m.apply_batch(&batch.inputs, &batch.labels, model.num_classes(), &mut rng)?;
                (x, Targets::Soft(t))
            }
            None => (batch.inputs.clone(), Targets::Hard(batch.labels.clone())),
        };
        let ctx = Ctx::train(&self.modes, self.cfg.seed, micro);
        let logits = model.forward_batch(&inputs, &ctx)?;
        let mut loss = cross_entropy(b, &logits, &targets, self.cfg.label_smoothing)?;
        if let Some(u) = &mut self.unlabeled {
            loss = b.add(&loss, &u.loss(model, &self.modes, self.cfg.seed, micro)?)?;
        }
        self.guarded(model, loss, st)
    }

    /// The loss shown to the callbacks and checked: finite, its gradients and value; `None`
    /// when a callback stops the run here.
    fn guarded(
        &mut self,
        model: &Model<B>,
        loss: B::Tensor,
        st: &LoopState,
    ) -> Result<Option<(Gradients<B>, f64)>> {
        let l = host_scalar(model.backend(), &loss)?;
        let mut stop = false;
        for c in &mut self.callbacks {
            stop |= c.on_loss(st.step, l) == Control::Stop;
        }
        if stop {
            return Ok(None);
        }
        if !l.is_finite() {
            let ck = match self.checkpoint_path() {
                Some(p) if p.exists() => format!(
                    "the last good checkpoint is {} (kept untouched)",
                    p.display()
                ),
                _ => "no checkpoint was written".into(),
            };
            return Err(Error::Training(format!(
                "loss is {l} at epoch {}, step {} (lr {:.3e}): stopping; {ck}. Lower the learning rate or clip gradients",
                st.epoch,
                st.step,
                self.top_lr()
            )));
        }
        Ok(Some((model.params().gradients(&loss)?, l)))
    }

    /// The highest group LR (the head's, under a spread).
    fn top_lr(&self) -> f64 {
        self.opt
            .groups()
            .iter()
            .map(|g| g.hyper.lr)
            .fold(0.0, f64::max)
    }

    /// One optimizer step on the accumulated gradients: averaged, clipped, the step's LR (a
    /// callback's, else the schedule's), the update, the EMA; the state advanced past batch
    /// `bi` and the step logged.
    pub(super) fn optimizer_step(
        &mut self,
        model: &Model<B>,
        p: Pending<B>,
        bi: usize,
        total: usize,
        started: Instant,
        st: &mut LoopState,
    ) -> Result<StepRecord> {
        let b = model.backend().clone();
        let mut grads = p.grads;
        if p.n > 1 {
            grads.scale(&b, 1.0 / p.n as f64)?;
        }
        let grad_norm = self.clip(&b, &mut grads)?;
        let from_callback = self.callbacks.iter_mut().find_map(|c| c.lr_factor(st.step));
        let f = from_callback.unwrap_or_else(|| self.cfg.schedule.factor(st.step, total));
        for (gname, base) in &self.base_lrs {
            if *base > 0.0 {
                self.opt.set_lr(gname, base * f)?;
                if let Some(m) = self.cfg.schedule.momentum(st.step, total) {
                    self.opt.set_momentum(gname, m)?;
                }
            }
        }
        self.opt.step(model.params(), &grads)?;
        self.update_ema(model)?;
        let loss_mean = p.loss_sum / p.n as f64;
        st.epoch_loss_sum += loss_mean;
        st.epoch_loss_n += 1;
        st.step += 1;
        st.batch = bi + 1;
        let rec = StepRecord {
            epoch: st.epoch,
            step: st.step,
            loss: loss_mean,
            lr: self.top_lr(),
            grad_norm,
            time_s: started.elapsed().as_secs_f64(),
        };
        self.write_metrics(st, "step", &rec)?;
        Ok(rec)
    }

    fn clip(&self, b: &B, grads: &mut Gradients<B>) -> Result<Option<f64>> {
        let Some(max) = self.cfg.clip_grad_norm else {
            return Ok(None);
        };
        let mut names: Vec<String> = grads.names().map(str::to_string).collect();
        names.sort();
        let mut total = 0.0;
        for n in &names {
            if let Some(g) = grads.get(n) {
                let sq = b.sum(&b.mul(g, g)?, &(0..b.rank(g)).collect::<Vec<_>>(), false)?;
                total += host_scalar(b, &sq)?;
            }
        }
        let norm = total.sqrt();
        let coef = max / (norm + 1e-6);
        if coef < 1.0 {
            grads.scale(b, coef)?;
        }
        Ok(Some(norm))
    }

    fn update_ema(&mut self, model: &Model<B>) -> Result<()> {
        let Some(decay) = self.cfg.ema_decay else {
            return Ok(());
        };
        let b = model.backend().clone();
        match &mut self.ema {
            None => {
                let mut e = BTreeMap::new();
                for (name, entry) in model.params().iter() {
                    e.insert(name.to_string(), b.from_data(&b.to_data(&entry.tensor)?)?);
                }
                self.ema = Some(e);
            }
            Some(e) => {
                for (name, entry) in model.params().iter() {
                    let Some(avg) = e.get(name) else { continue };
                    let cur = &entry.tensor;
                    let new = if b.dtype(cur).is_float() {
                        b.no_grad(|| -> Result<B::Tensor> {
                            let d = b.detach(cur)?;
                            b.add(&b.mul_scalar(avg, decay)?, &b.mul_scalar(&d, 1.0 - decay)?)
                        })?
                    } else {
                        b.detach(cur)?
                    };
                    e.insert(name.to_string(), new);
                }
            }
        }
        Ok(())
    }

    /// `f` run on the model with its EMA weights in place (then restored); `None` without EMA.
    pub(super) fn with_ema_weights<T>(
        &self,
        model: &Model<B>,
        f: impl FnOnce(&Model<B>) -> Result<T>,
    ) -> Result<Option<T>> {
        let Some(e) = &self.ema else {
            return Ok(None);
        };
        let b = model.backend();
        let mut saved = Vec::new();
        for (name, entry) in model.params().iter() {
            if let Some(avg) = e.get(name) {
                saved.push((name.to_string(), b.from_data(&b.to_data(&entry.tensor)?)?));
                b.no_grad(|| b.assign(&entry.tensor, avg))?;
            }
        }
        let m = f(model);
        for (name, t) in saved {
            let dst = model.params().get(&name)?;
            b.no_grad(|| b.assign(dst, &t))?;
        }
        m.map(Some)
    }
}
