//! fastai's learning-rate finder (`LRFinder`): an exponential sweep of the LR over mini-batches,
//! the loss smoothed, stopped when it diverges; the model and optimizer are left as they were.
//! The sweep is a [`Callback`] on the one training loop — it sets each step's LR and stops the
//! run — not a loop of its own.

use std::cell::RefCell;
use std::rc::Rc;

use graft_backend::{AutodiffBackend, ModeTable};
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_optim::Optimizer;
use graft_zoo::Model;

use crate::trainer::{Callback, Control, StepRecord, TrainConfig, Trainer, assign_from_host};

/// Sweep settings (fastai's defaults: 1e-7 → 10 over 100 steps).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrFinder {
    pub start_lr: f64,
    pub end_lr: f64,
    pub steps: usize,
    /// Exponential smoothing of the loss.
    pub beta: f64,
    /// Stop when the smoothed loss exceeds this many times its minimum.
    pub diverge: f64,
    pub seed: u64,
}

impl Default for LrFinder {
    fn default() -> Self {
        Self {
            start_lr: 1e-7,
            end_lr: 10.0,
            steps: 100,
            beta: 0.98,
            diverge: 4.0,
            seed: 0,
        }
    }
}

/// What the sweep found.
#[derive(Debug, Clone, PartialEq)]
pub struct LrFinderResult {
    /// The top group's LR at each step (other groups keep their ratio to it).
    pub lrs: Vec<f64>,
    /// Bias-corrected smoothed loss at each step.
    pub losses: Vec<f64>,
    /// True when the sweep stopped on divergence before `end_lr`.
    pub diverged: bool,
    /// The LR of steepest descent of the smoothed loss (per log-LR).
    pub steepest: Option<f64>,
    /// A tenth of the LR at the minimum smoothed loss (fastai's `lr_min`).
    pub min_div_10: Option<f64>,
}

/// The sweep as a callback: the LR of step `i` is `start · (end / start)^(i / (steps − 1))`
/// for the top group (the others keep their ratio to it, through the loop's factor on each
/// group's base LR); each loss is smoothed and bias-corrected, and the run stops after `steps`
/// steps or when the smoothed loss diverges (before that batch changes anything).
#[derive(Debug)]
struct Sweep {
    cfg: LrFinder,
    /// The top group's base LR (the factor's denominator).
    top: f64,
    avg: f64,
    best: f64,
    out: LrFinderResult,
}

impl Sweep {
    fn lr(&self, step: usize) -> f64 {
        let c = &self.cfg;
        c.start_lr * (c.end_lr / c.start_lr).powf(step as f64 / (c.steps - 1) as f64)
    }
}

/// The shared sweep (the Trainer owns its callbacks; `lr_find` reads the result back).
#[derive(Debug)]
struct SweepCallback(Rc<RefCell<Sweep>>);

impl Callback for SweepCallback {
    fn on_loss(&mut self, step: usize, loss: f64) -> Control {
        let mut s = self.0.borrow_mut();
        let beta = s.cfg.beta;
        s.avg = beta * s.avg + (1.0 - beta) * loss;
        let smooth = s.avg / (1.0 - beta.powi(step as i32 + 1));
        if !smooth.is_finite() || smooth > s.cfg.diverge * s.best {
            s.out.diverged = true;
            return Control::Stop;
        }
        s.best = s.best.min(smooth);
        let lr = s.lr(step);
        s.out.lrs.push(lr);
        s.out.losses.push(smooth);
        Control::Continue
    }
    fn lr_factor(&mut self, step: usize) -> Option<f64> {
        let s = self.0.borrow();
        Some(s.lr(step) / s.top)
    }
    fn on_step(&mut self, r: &StepRecord) -> Control {
        if r.step >= self.0.borrow().cfg.steps {
            Control::Stop
        } else {
            Control::Continue
        }
    }
}

/// Runs the sweep on `model` with a fresh copy of `opt` (its groups and ratios, no moments), then
/// restores the model's parameters and buffers.
pub fn lr_find<B: AutodiffBackend>(
    model: &mut Model<B>,
    opt: &Optimizer<B>,
    modes: &ModeTable,
    loader: &Loader,
    cfg: &LrFinder,
) -> Result<LrFinderResult> {
    if !(cfg.start_lr > 0.0 && cfg.end_lr > cfg.start_lr && cfg.steps >= 2) {
        return Err(Error::invalid(
            "lr_find",
            format!("need 0 < start_lr < end_lr and steps >= 2, got {cfg:?}"),
        ));
    }
    // fresh moments: the sweep must not write into the caller's optimizer state
    let opt = opt.fresh_copy();
    let top = opt.groups().iter().map(|g| g.hyper.lr).fold(0.0, f64::max);
    if top <= 0.0 {
        return Err(Error::invalid(
            "lr_find",
            "every group has LR 0: nothing trains",
        ));
    }
    let sweep = Rc::new(RefCell::new(Sweep {
        cfg: *cfg,
        top,
        avg: 0.0,
        best: f64::INFINITY,
        out: LrFinderResult {
            lrs: Vec::new(),
            losses: Vec::new(),
            diverged: false,
            steepest: None,
            min_div_10: None,
        },
    }));
    // as many passes over the loader as the steps need; the sweep stops the run after them
    let mut train = TrainConfig::new(cfg.steps.div_ceil(loader.num_batches().max(1)));
    train.seed = cfg.seed;
    train.progress = false;
    let saved = model.params().to_data()?;
    let result = Trainer::new(train, opt, modes.clone())
        .with_callback(Box::new(SweepCallback(sweep.clone())))
        .fit(model, loader, None);
    assign_from_host(model, &saved, |name| {
        Error::invalid("lr_find", format!("{name} vanished during the sweep"))
    })?;
    result?;
    let mut out = sweep.borrow().out.clone();
    if let Some((i, _)) = out
        .losses
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
    {
        out.min_div_10 = Some(out.lrs[i] / 10.0);
    }
    let slopes: Vec<(usize, f64)> = (1..out.losses.len())
        .map(|i| {
            (
                i,
                (out.losses[i] - out.losses[i - 1]) / (out.lrs[i] / out.lrs[i - 1]).ln(),
            )
        })
        .collect();
    out.steepest = slopes
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|&(i, _)| out.lrs[i]);
    Ok(out)
}
