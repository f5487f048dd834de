//! fastai's learning-rate finder: an exponential sweep of the LR over mini-batches, the loss
//! smoothed, stopped when it diverges; the model and optimizer are left as they were.

use graft_backend::{AutodiffBackend, Ctx, ModeTable};
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_optim::Optimizer;
use graft_zoo::Model;

use crate::loss::{Targets, cross_entropy};
use crate::trainer::{assign_from_host, host_scalar};

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
    let b = model.backend().clone();
    let saved = model.params().to_data()?;
    // fresh moments: the sweep must not write into the caller's optimizer state
    let mut opt = opt.fresh_copy();
    let top = opt.groups().iter().map(|g| g.hyper.lr).fold(0.0, f64::max);
    if top <= 0.0 {
        return Err(Error::invalid(
            "lr_find",
            "every group has LR 0: nothing trains",
        ));
    }
    let ratios: Vec<(String, f64)> = opt
        .groups()
        .iter()
        .map(|g| (g.name.clone(), g.hyper.lr / top))
        .collect();
    let (mut avg, mut best) = (0.0, f64::INFINITY);
    let mut out = LrFinderResult {
        lrs: Vec::new(),
        losses: Vec::new(),
        diverged: false,
        steepest: None,
        min_div_10: None,
    };
    let mut step = 0usize;
    let mut epoch = 0u64;
    let result = (|| -> Result<()> {
        'sweep: loop {
            for batch in loader.epoch(epoch) {
                if step == cfg.steps {
                    break 'sweep;
                }
                let batch = batch?;
                let lr = cfg.start_lr
                    * (cfg.end_lr / cfg.start_lr).powf(step as f64 / (cfg.steps - 1) as f64);
                for (g, r) in &ratios {
                    if *r > 0.0 {
                        opt.set_lr(g, lr * r)?;
                    }
                }
                let x = b.from_data(&batch.inputs)?;
                let logits = model.forward(&x, &Ctx::train(modes, cfg.seed, step as u64))?;
                let loss = cross_entropy(&b, &logits, &Targets::Hard(batch.labels.clone()), 0.0)?;
                let l = host_scalar(&b, &loss)?;
                avg = cfg.beta * avg + (1.0 - cfg.beta) * l;
                let smooth = avg / (1.0 - cfg.beta.powi(step as i32 + 1));
                if !smooth.is_finite() || smooth > cfg.diverge * best {
                    out.diverged = true;
                    break 'sweep;
                }
                best = best.min(smooth);
                out.lrs.push(lr);
                out.losses.push(smooth);
                let g = model.params().gradients(&loss)?;
                opt.step(model.params(), &g)?;
                step += 1;
            }
            epoch += 1;
        }
        Ok(())
    })();
    assign_from_host(model, &saved, |name| {
        Error::invalid("lr_find", format!("{name} vanished during the sweep"))
    })?;
    result?;
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
