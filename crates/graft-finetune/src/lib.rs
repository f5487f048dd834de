//! graft-finetune: fine-tuning — copy every layer but the output layer, put a fresh head on, train
//! with a small learning rate for a few epochs with the bottom stages frozen.
//!
//! Three strategies, each a short sequence of surgery plans handed to graft-train's Trainer (the
//! fastai shape: freeze, fit, unfreeze, fit with a spread of LRs):
//!
//! - [`Recipe`] — the classic recipe (Stanford's *Practical Machine Learning*, 2021, lecture
//!   11.1; Yosinski et al. 2014: bottom layers transfer, top ones specialise): freeze the bottom
//!   `k` stages (`k` given, or chosen by the linear
//!   probe of graft-extract: the stages up to the best-probing one stay frozen), AdamW at 1e-3
//!   with a geometric spread toward the bottom (`slice(lr / lr_mult, lr)`), one-cycle, a few
//!   epochs with early stopping on the validation loss.
//! - [`LpFt`] — fastai's `fine_tune(epochs, base_lr=2e-3, freeze_epochs=1, lr_mult=100)`: a frozen
//!   phase (head only, BatchNorm trainable as fastai's `train_bn`) with one-cycle at pct_start
//!   0.99, then `base_lr / 2`, unfreeze, one-cycle over `slice(base_lr / 2 / lr_mult, base_lr / 2)`.
//! - [`Gradual`] — gradual unfreezing (ULMFiT): the head alone first, then one more stage from the
//!   top every epoch; optimizer state carries across (`Plan::update`).
//!
//! Owns: the strategies and their phase sequencing, merging the phases' histories. Must not know:
//! concrete backends, the loop's internals, TOML.

use std::fmt;
use std::path::{Path, PathBuf};

use graft_backend::{AutodiffBackend, Backend};
use graft_core::{Error, Result};
use graft_data::{Loader, LoaderConfig};
use graft_extract::{ProbeConfig, ProbeReport, probe};
use graft_surgery::{BnPolicy, FreezeConfig, LrConfig, Plan};
use graft_train::{EarlyStopping, EpochRecord, History, Monitor, Schedule, TrainConfig, Trainer};
use graft_zoo::{HeadSpec, Model};

/// How many bottom stages stay frozen.
#[derive(Debug, Clone, PartialEq)]
pub enum FreezeDepth {
    /// The first `k` stages of the model's stage table (stem = stage 0).
    Stages(usize),
    /// From the linear probe (needs a validation loader): the stages up to the best-probing one.
    Auto(ProbeConfig),
}

/// The classic fine-tuning recipe (Stanford's *Practical Machine Learning*, 2021, lecture
/// 11.1): the bottom `k` stages frozen, the rest trained at a small LR with a
/// spread toward the bottom (Yosinski et al. 2014, "How transferable are features in deep
/// neural networks?").
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub freeze: FreezeDepth,
    pub head: HeadSpec,
    /// The head's LR.
    pub lr: f64,
    /// The bottom stage's LR is `lr / lr_mult` (geometric in between; frozen stages at 0).
    pub lr_mult: f64,
    pub weight_decay: f64,
    pub epochs: usize,
    /// Early stopping on the validation loss after this many epochs without improvement.
    pub patience: Option<usize>,
    /// BatchNorm layers in the frozen stages.
    pub bn: BnPolicy,
}

impl Default for Recipe {
    fn default() -> Self {
        Self {
            freeze: FreezeDepth::Auto(ProbeConfig::default()),
            head: HeadSpec::Linear,
            lr: 1e-3,
            lr_mult: 10.0,
            weight_decay: 0.01,
            epochs: 5,
            patience: Some(2),
            bn: BnPolicy::Frozen,
        }
    }
}

/// fastai's `Learner.fine_tune`.
#[derive(Debug, Clone, PartialEq)]
pub struct LpFt {
    pub epochs: usize,
    pub base_lr: f64,
    pub freeze_epochs: usize,
    pub lr_mult: f64,
    pub pct_start: f64,
    pub div: f64,
    pub weight_decay: f64,
    pub head: HeadSpec,
}

impl Default for LpFt {
    fn default() -> Self {
        Self {
            epochs: 5,
            base_lr: 2e-3,
            freeze_epochs: 1,
            lr_mult: 100.0,
            pct_start: 0.3,
            div: 5.0,
            weight_decay: 0.01,
            head: HeadSpec::Linear,
        }
    }
}

/// Gradual unfreezing: epoch `e` trains the head and the top `e` trunk stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradual {
    pub epochs: usize,
    /// The head's LR (stages below get the slice).
    pub lr: f64,
    pub lr_mult: f64,
    pub weight_decay: f64,
    /// Stages that never unfreeze (the bottom ones).
    pub min_frozen: usize,
    pub head: HeadSpec,
}

impl Default for Gradual {
    fn default() -> Self {
        Self {
            epochs: 5,
            lr: 1e-3,
            lr_mult: 10.0,
            weight_decay: 0.01,
            min_frozen: 0,
            head: HeadSpec::Linear,
        }
    }
}

/// A fine-tuning strategy.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Recipe(Recipe),
    LpFt(LpFt),
    Gradual(Gradual),
}

/// One phase as run.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: String,
    /// The surgery plan's table.
    pub plan: String,
    pub history: History,
    /// The phase as planned ([`PhaseSpec::describe`] heads its plan).
    pub spec: PhaseSpec,
}

/// What fine-tuning did.
#[derive(Debug, Clone)]
pub struct FineTuneReport {
    pub phases: Vec<Phase>,
    /// The phases' epochs end to end (epochs and steps renumbered).
    pub history: History,
    /// The probe behind an automatic freeze depth.
    pub probe: Option<ProbeReport>,
    /// Trunk stages frozen in the first phase (the recipe's depth).
    pub frozen_stages: usize,
}

impl fmt::Display for FineTuneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.phases {
            writeln!(f, "{}\n{}", p.spec.describe(), p.plan)?;
        }
        Ok(())
    }
}

/// Loop settings shared by every phase (mixup, clipping, smoothing, progress, run directory).
/// Epochs, schedule and early stopping come from the strategy; `run_dir`, when set, gets one
/// sub-directory per phase.
#[derive(Debug, Clone)]
pub struct FineTuneOptions {
    pub base: TrainConfig,
    /// Where the probe caches features (default: `run_dir/feature-cache`, else the temp dir).
    pub cache_dir: Option<PathBuf>,
    pub seed: u64,
    /// Semi-supervised: every phase trains with these unlabelled batches beside the labelled
    /// ones (pseudo-labelling or FixMatch; `Trainer::with_unlabeled`).
    pub unlabeled: Option<graft_train::Unlabeled>,
}

impl Default for FineTuneOptions {
    fn default() -> Self {
        Self {
            base: TrainConfig::new(1),
            cache_dir: None,
            seed: 0,
            unlabeled: None,
        }
    }
}

fn fastai_adam(lr: f64, wd: f64) -> LrConfig {
    // fastai's Adam: β = (0.9, 0.99), ε = 1e-5, decoupled weight decay 0.01
    let mut c = LrConfig::adamw(lr).weight_decay(wd);
    c.base.betas = (0.9, 0.99);
    c.base.eps = 1e-5;
    c
}

fn one_cycle(pct_start: f64, div: f64) -> Schedule {
    Schedule::OneCycle {
        pct_start,
        div,
        final_div: 1e5,
        momentum: Some((0.85, 0.95)),
    }
}

impl PhaseSpec {
    /// `phase NAME (EPOCHS epochs, SCHEDULE):`, the line that heads the phase's plan.
    pub fn describe(&self) -> String {
        format!(
            "phase {} ({} epochs, {:?}):",
            self.name, self.epochs, self.schedule
        )
    }
}

/// One phase of a strategy: its freezing, optimizer layout, length and schedule.
#[derive(Debug, Clone)]
pub struct PhaseSpec {
    pub name: String,
    pub freeze: FreezeConfig,
    pub lr: LrConfig,
    pub epochs: usize,
    pub schedule: Schedule,
    pub early_stopping: Option<EarlyStopping>,
    /// Carry the previous phase's optimizer (and its state) into this one.
    pub carry_optimizer: bool,
    /// Trunk stages frozen from the bottom in this phase.
    pub frozen_stages: usize,
}

/// The phases `strategy` runs on a model with `n_stages` stages (the head included), `probed`
/// the probe's freeze depth under `freeze = auto`, `has_val` whether early stopping can watch a
/// validation set. `graft plan` shows these without training.
pub fn phases(
    strategy: &Strategy,
    n_stages: usize,
    probed: Option<usize>,
    has_val: bool,
) -> Result<Vec<PhaseSpec>> {
    let trunk = n_stages.saturating_sub(1);
    Ok(match strategy {
        Strategy::Recipe(r) => {
            let k = match &r.freeze {
                FreezeDepth::Stages(k) => *k,
                FreezeDepth::Auto(_) => probed.ok_or_else(|| {
                    Error::invalid("fine_tune", "freeze = auto: the probe has not run")
                })?,
            };
            if k >= n_stages {
                return Err(Error::invalid(
                    "fine_tune",
                    format!(
                        "freezing {k} stages leaves nothing to train: the model has {n_stages} (the head included)"
                    ),
                ));
            }
            vec![PhaseSpec {
                name: format!("freeze{k}"),
                freeze: FreezeConfig::freeze_to(k).bn(r.bn),
                lr: LrConfig::adamw(r.lr)
                    .weight_decay(r.weight_decay)
                    .slice(r.lr / r.lr_mult, r.lr),
                epochs: r.epochs,
                schedule: Schedule::one_cycle(),
                early_stopping: r.patience.filter(|_| has_val).map(|p| EarlyStopping {
                    monitor: Monitor::ValLoss,
                    patience: p,
                    min_delta: 0.0,
                }),
                carry_optimizer: false,
                frozen_stages: k,
            }]
        }
        Strategy::LpFt(l) => {
            let lr = l.base_lr / 2.0;
            vec![
                PhaseSpec {
                    name: "frozen".into(),
                    freeze: FreezeConfig::all_but_head().bn(BnPolicy::Train),
                    lr: fastai_adam(l.base_lr, l.weight_decay),
                    epochs: l.freeze_epochs,
                    schedule: one_cycle(0.99, 25.0),
                    early_stopping: None,
                    carry_optimizer: false,
                    frozen_stages: trunk,
                },
                PhaseSpec {
                    name: "unfrozen".into(),
                    freeze: FreezeConfig::none(),
                    lr: fastai_adam(lr, l.weight_decay).slice(lr / l.lr_mult, lr),
                    epochs: l.epochs,
                    schedule: one_cycle(l.pct_start, l.div),
                    early_stopping: None,
                    carry_optimizer: true,
                    frozen_stages: 0,
                },
            ]
        }
        Strategy::Gradual(g) => (0..g.epochs)
            .map(|e| {
                let k = trunk.saturating_sub(e).max(g.min_frozen.min(trunk));
                PhaseSpec {
                    name: format!("freeze{k}"),
                    freeze: FreezeConfig::freeze_to(k),
                    lr: LrConfig::adamw(g.lr)
                        .weight_decay(g.weight_decay)
                        .slice(g.lr / g.lr_mult, g.lr),
                    epochs: 1,
                    schedule: Schedule::Constant,
                    early_stopping: None,
                    carry_optimizer: e > 0,
                    frozen_stages: k,
                }
            })
            .collect(),
    })
}

struct Runner<'a, B: AutodiffBackend> {
    model: &'a mut Model<B>,
    train: &'a Loader,
    val: Option<&'a Loader>,
    opts: &'a FineTuneOptions,
    phases: Vec<Phase>,
}

impl<B: AutodiffBackend> Runner<'_, B> {
    /// Runs one phase (`opt` carried from the previous phase when given).
    fn phase(
        &mut self,
        spec: &PhaseSpec,
        opt: Option<graft_optim::Optimizer<B>>,
    ) -> Result<graft_optim::Optimizer<B>> {
        let plan = Plan::new(self.model, &spec.freeze, &spec.lr)?;
        let opt = match opt {
            Some(mut o) => {
                plan.update(self.model, &mut o)?;
                o
            }
            None => plan.apply(self.model)?,
        };
        let mut cfg = self.opts.base.clone();
        cfg.epochs = spec.epochs;
        cfg.schedule = spec.schedule.clone();
        cfg.early_stopping = spec.early_stopping;
        cfg.seed = self.opts.seed;
        cfg.run_dir = self
            .opts
            .base
            .run_dir
            .as_ref()
            .map(|d| d.join(format!("phase{}-{}", self.phases.len() + 1, spec.name)));
        let mut t = Trainer::new(cfg, opt, plan.modes().clone());
        if let Some(u) = &self.opts.unlabeled {
            t = t.with_unlabeled(u.clone());
        }
        let history = t.fit(self.model, self.train, self.val)?;
        self.phases.push(Phase {
            spec: spec.clone(),
            name: spec.name.clone(),
            plan: plan.to_string(),
            history,
        });
        Ok(t.into_optimizer())
    }
}

fn merge(phases: &[Phase]) -> History {
    let mut h = History::default();
    let (mut e0, mut s0) = (0, 0);
    for p in phases {
        for s in &p.history.steps {
            let mut s = s.clone();
            s.epoch += e0;
            s.step += s0;
            h.steps.push(s);
        }
        for e in &p.history.epochs {
            h.epochs.push(EpochRecord {
                epoch: e.epoch + e0,
                step: e.step + s0,
                ..e.clone()
            });
        }
        e0 += p.history.epochs.len();
        s0 += p.history.epochs.last().map_or(0, |e| e.step);
        h.stopped_early |= p.history.stopped_early;
    }
    h
}

/// The probe's loaders: the training and validation datasets in order, under the validation
/// transform (no augmentation).
fn probe_for<B: Backend>(
    model: &Model<B>,
    train: &Loader,
    val: &Loader,
    cfg: &ProbeConfig,
    cache: &Path,
) -> Result<ProbeReport> {
    let bs = val.config().batch_size;
    let mut tr = Loader::new(train.dataset().clone(), LoaderConfig::eval(bs))?;
    if let Some(t) = val.transform() {
        tr = tr.with_transform(t.clone());
    }
    let mut va = Loader::new(val.dataset().clone(), LoaderConfig::eval(bs))?;
    if let Some(t) = val.transform() {
        va = va.with_transform(t.clone());
    }
    probe(model, &tr, &va, cache, cfg)
}

/// What [`fine_tune`] will run, decided before any training: the probe behind `freeze = auto`,
/// the phases, and each phase's surgery plan as the model stands after the head replacement.
/// `graft plan` prints this; `fine_tune` runs exactly it.
#[derive(Debug, Clone)]
pub struct FineTunePlan {
    pub probe: Option<ProbeReport>,
    pub phases: Vec<PhaseSpec>,
}

impl FineTunePlan {
    /// Each phase's surgery plan (frozen tensors, groups and learning rates) on `model`, as
    /// `phase NAME (EPOCHS epochs, SCHEDULE):` blocks.
    pub fn describe<B: Backend>(&self, model: &Model<B>) -> Result<String> {
        let mut text = String::new();
        for s in &self.phases {
            let plan = Plan::new(model, &s.freeze, &s.lr)?;
            text.push_str(&format!("{}\n{plan}\n", s.describe()));
        }
        Ok(text)
    }
}

/// The first part of [`fine_tune`], on any backend: the linear probe on the pretrained trunk
/// (under `freeze = auto`), the head replaced by the strategy's fresh one (seeded by
/// `opts.seed`, the training classes' names as labels), and the phases the strategy runs.
pub fn prepare<B: Backend>(
    model: &mut Model<B>,
    num_classes: usize,
    train: &Loader,
    val: Option<&Loader>,
    strategy: &Strategy,
    opts: &FineTuneOptions,
) -> Result<FineTunePlan> {
    let n_stages = model.stages().stages().len();
    let mut probe_report = None;
    let cache = opts.cache_dir.clone().unwrap_or_else(|| {
        opts.base.run_dir.as_ref().map_or_else(
            || std::env::temp_dir().join("graft-feature-cache"),
            |d| d.join("feature-cache"),
        )
    });
    // the probe runs on the pretrained trunk, before the head is replaced
    if let Strategy::Recipe(Recipe {
        freeze: FreezeDepth::Auto(pc),
        ..
    }) = strategy
    {
        let val = val.ok_or_else(|| {
            Error::invalid(
                "fine_tune",
                "freeze = auto needs a validation set for the linear probe",
            )
        })?;
        probe_report = Some(probe_for(model, train, val, pc, &cache)?);
    }
    let head = match strategy {
        Strategy::Recipe(r) => r.head.clone(),
        Strategy::LpFt(l) => l.head.clone(),
        Strategy::Gradual(g) => g.head.clone(),
    };
    model.replace_head(num_classes, head, opts.seed)?;
    if train.dataset().classes().len() == num_classes {
        model.cfg_mut().labels = Some(train.dataset().classes().to_vec());
    }
    let phases = phases(
        strategy,
        n_stages,
        probe_report.as_ref().map(|p| p.freeze_stages),
        val.is_some(),
    )?;
    Ok(FineTunePlan {
        probe: probe_report,
        phases,
    })
}

/// Fine-tunes `model` (pretrained trunk) for `num_classes` target classes with `strategy`: the
/// head is replaced by a fresh one, then the strategy's phases run on `train` (evaluated on `val`)
/// — exactly the [`FineTunePlan`] that [`prepare`] returns.
pub fn fine_tune<B: AutodiffBackend>(
    model: &mut Model<B>,
    num_classes: usize,
    train: &Loader,
    val: Option<&Loader>,
    strategy: &Strategy,
    opts: &FineTuneOptions,
) -> Result<FineTuneReport> {
    let FineTunePlan {
        probe: probe_report,
        phases: specs,
    } = prepare(model, num_classes, train, val, strategy, opts)?;
    let mut run = Runner {
        model,
        train,
        val,
        opts,
        phases: Vec::new(),
    };
    let frozen_stages = specs.first().map_or(0, |s| s.frozen_stages);
    let mut opt = None;
    for spec in &specs {
        let carried = if spec.carry_optimizer {
            opt.take()
        } else {
            None
        };
        opt = Some(run.phase(spec, carried)?);
    }
    let history = merge(&run.phases);
    Ok(FineTuneReport {
        phases: run.phases,
        history,
        probe: probe_report,
        frozen_stages,
    })
}
