//! The loop: [`Trainer::fit`] as named steps — start (fresh or resumed), then per epoch the
//! training pass (batches → [`Trainer::backward`] → accumulated → [`Trainer::optimizer_step`])
//! and the epoch's end (evaluation, EMA evaluation, the epoch record, callbacks, early stopping,
//! the checkpoint), then the run's end (curves; a resumed run's whole history).
//!
//! `records.rs`: what is logged and the callback hooks; `step.rs`: one batch and one optimizer
//! step; `run_dir.rs`: config, metrics, checkpoints and resuming.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use graft_backend::{AutodiffBackend, Backend, ModeTable, ParamKind, TensorData};
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_optim::Optimizer;
use graft_zoo::Model;
use serde::Serialize;

use crate::metrics::evaluate;
use crate::schedule::Schedule;

mod records;
mod run_dir;
mod step;
mod work;

pub use records::{Callback, Control, EpochRecord, History, StepRecord};
use step::Pending;
pub(crate) use step::{assign_from_host, host_scalar};
use work::Work;

/// The validation metric early stopping watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Monitor {
    ValLoss,
    ValTop1,
}

/// Stop when the monitored metric has not improved by `min_delta` for `patience` epochs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EarlyStopping {
    pub monitor: Monitor,
    pub patience: usize,
    pub min_delta: f64,
}

/// How to train.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Seeds dropout / drop-path masks (with the step) — the loader has its own seed.
    pub seed: u64,
    /// Loader batches per optimizer step (gradients averaged over them).
    pub accumulate: usize,
    /// Clip the global gradient norm to this.
    pub clip_grad_norm: Option<f64>,
    pub label_smoothing: f64,
    pub schedule: Schedule,
    pub early_stopping: Option<EarlyStopping>,
    /// Keep an exponential moving average of the weights with this decay (timm's ModelEma).
    pub ema_decay: Option<f64>,
    /// Checkpoint every N optimizer steps (and at the end of every epoch) into `run_dir`.
    pub checkpoint_every: Option<usize>,
    /// Where `checkpoint.safetensors` and `metrics.jsonl` go; `None` keeps nothing on disk.
    pub run_dir: Option<PathBuf>,
    /// Continue from `run_dir/checkpoint.safetensors` when it exists.
    pub resume: bool,
    /// Mixup / CutMix on every training batch (seeded from (seed, step)).
    pub mixup: Option<graft_data::Mixup>,
    /// A progress bar on stderr (loss, LR, throughput, ETA); hidden when stderr is not a
    /// terminal.
    pub progress: bool,
}

impl TrainConfig {
    /// `epochs` epochs, seed 0, no accumulation, clipping, smoothing, EMA or early stopping.
    pub fn new(epochs: usize) -> Self {
        Self {
            epochs,
            seed: 0,
            accumulate: 1,
            clip_grad_norm: None,
            label_smoothing: 0.0,
            schedule: Schedule::Constant,
            early_stopping: None,
            ema_decay: None,
            checkpoint_every: None,
            run_dir: None,
            resume: false,
            mixup: None,
            progress: true,
        }
    }
}

/// The training loop over a model, an optimizer (from a surgery plan, say) and the mode table
/// that goes with it.
pub struct Trainer<B: AutodiffBackend> {
    cfg: TrainConfig,
    opt: Optimizer<B>,
    modes: ModeTable,
    base_lrs: BTreeMap<String, f64>,
    callbacks: Vec<Box<dyn Callback>>,
    ema: Option<BTreeMap<String, B::Tensor>>,
    /// Semi-supervised: unlabelled batches whose loss joins every step's.
    unlabeled: Option<crate::semi::Unlabeled>,
}

impl<B: AutodiffBackend> std::fmt::Debug for Trainer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("cfg", &self.cfg)
            .field("groups", &self.base_lrs)
            .finish()
    }
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A trainer; the optimizer's current group LRs are the schedule's base LRs.
    pub fn new(cfg: TrainConfig, opt: Optimizer<B>, modes: ModeTable) -> Self {
        let base_lrs = opt
            .groups()
            .iter()
            .map(|g| (g.name.clone(), g.hyper.lr))
            .collect();
        Self {
            cfg,
            opt,
            modes,
            base_lrs,
            callbacks: Vec::new(),
            ema: None,
            unlabeled: None,
        }
    }
    /// Trains semi-supervised: every step's loss gains the unlabelled loss of `u`
    /// (pseudo-labelling or FixMatch), its batches paired with steps by the step index.
    pub fn with_unlabeled(mut self, u: crate::semi::Unlabeled) -> Self {
        self.unlabeled = Some(u);
        self
    }
    /// Gives the optimizer back (with its state), to carry into the next phase of a multi-phase
    /// strategy (re-planned with `Plan::update`).
    pub fn into_optimizer(self) -> Optimizer<B> {
        self.opt
    }
    /// Adds a callback.
    pub fn with_callback(mut self, c: Box<dyn Callback>) -> Self {
        self.callbacks.push(c);
        self
    }
    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer<B> {
        &self.opt
    }
    /// The EMA weights, when kept.
    pub fn ema(&self) -> Option<&BTreeMap<String, B::Tensor>> {
        self.ema.as_ref()
    }

    /// Trains `model` on `train` for the configured epochs, evaluating on `val` after each epoch.
    pub fn fit(
        &mut self,
        model: &mut Model<B>,
        train: &Loader,
        val: Option<&Loader>,
    ) -> Result<History> {
        self.run(model, Work::One { train, val })
    }

    /// Trains `model`'s trunk and task heads on several tasks at once
    /// ([`crate::multitask`]): every micro-batch one task's, drawn by the set's policy, its loss
    /// times the task's weight; after each epoch every task's validation metrics (the epoch
    /// record's `tasks`). Early stopping watches the tasks' weighted mean validation loss, or
    /// the mean top-1 of the classification tasks. Mixup and semi-supervised training are
    /// single-task settings and are refused here.
    pub fn fit_tasks(&mut self, model: &mut Model<B>, tasks: &crate::TaskSet) -> Result<History> {
        if self.cfg.mixup.is_some() {
            return Err(Error::invalid(
                "fit_tasks",
                "mixup mixes one task's labels: it does not apply to multi-task training",
            ));
        }
        if self.unlabeled.is_some() {
            return Err(Error::invalid(
                "fit_tasks",
                "semi-supervised training pseudo-labels the model's own classifier: it does not apply to multi-task training",
            ));
        }
        tasks.check_model(model)?;
        if let Some(es) = self.cfg.early_stopping {
            let val_of = |classification: bool| {
                tasks
                    .tasks()
                    .iter()
                    .any(|t| t.val().is_some() && (!classification || t.kind() == "classification"))
            };
            if !val_of(es.monitor == Monitor::ValTop1) {
                return Err(Error::invalid(
                    "fit_tasks",
                    format!(
                        "early stopping on {:?} needs a {}task with validation data",
                        es.monitor,
                        if es.monitor == Monitor::ValTop1 {
                            "classification "
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        self.run(model, Work::Tasks(tasks))
    }

    fn run(&mut self, model: &mut Model<B>, work: Work<'_>) -> Result<History> {
        let started = Instant::now();
        self.write_config(model, work)?;
        let (mut st, resumed) = self.start(model)?;
        let mut history = History::default();
        // a run that had stopped early stays stopped: resuming it trains nothing more
        if resumed
            && let Some(es) = self.cfg.early_stopping
            && st.bad_epochs >= es.patience
        {
            history.stopped_early = true;
        }
        check_trainable(model)?;
        let total = work.num_batches().div_ceil(self.cfg.accumulate.max(1)) * self.cfg.epochs;
        while !history.stopped_early && st.epoch < self.cfg.epochs {
            let pass = self.train_epoch(model, work, total, started, &mut st, &mut history)?;
            if self.end_epoch(model, work, pass, started, &mut st, &mut history)? == Control::Stop {
                break;
            }
        }
        self.finish(history, resumed, work)
    }

    /// The progress bar of an epoch (hidden unless asked for and stderr is a terminal).
    fn progress_bar(&self, batches: usize, epoch: usize) -> indicatif::ProgressBar {
        let bar = if self.cfg.progress {
            indicatif::ProgressBar::new(batches as u64)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} batches  {msg}  {per_sec}  eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, self.cfg.epochs));
        bar
    }

    /// The training batches of the current epoch (from the resumed batch on): each one's
    /// gradients, an optimizer step every `accumulate` batches (and at the epoch's last), the
    /// step callbacks, the periodic checkpoint.
    fn train_epoch(
        &mut self,
        model: &Model<B>,
        work: Work<'_>,
        total: usize,
        started: Instant,
        st: &mut LoopState,
        history: &mut History,
    ) -> Result<EpochPass> {
        let acc = self.cfg.accumulate.max(1);
        let n_batches = work.num_batches();
        let first = st.batch;
        let mut pass = EpochPass {
            images: 0,
            stop: false,
            bar: self.progress_bar(n_batches - first.min(n_batches), st.epoch),
            started: Instant::now(),
        };
        let mut pending: Option<Pending<B>> = None;
        for (k, item) in work.epoch_from(st.epoch as u64, first).enumerate() {
            let bi = first + k;
            let (task, batch) = item?;
            pass.images += batch.labels.len();
            let pending_n = pending.as_ref().map_or(0, |p| p.n);
            let micro = (st.step * acc + pending_n) as u64;
            let Some((g, l)) = self.backward(model, task, &batch, micro, st)? else {
                pass.stop = true;
                break;
            };
            match &mut pending {
                None => {
                    pending = Some(Pending {
                        grads: g,
                        n: 1,
                        loss_sum: l,
                    })
                }
                Some(p) => {
                    p.grads.accumulate(model.backend(), g)?;
                    p.n += 1;
                    p.loss_sum += l;
                }
            }
            pass.bar.inc(1);
            let last_of_epoch = bi + 1 == n_batches;
            if pending_n + 1 < acc && !last_of_epoch {
                continue;
            }
            let p = pending
                .take()
                .ok_or_else(|| Error::Training("no gradients".into()))?;
            let rec = self.optimizer_step(model, p, bi, total, started, st)?;
            pass.bar
                .set_message(format!("loss {:.4}  lr {:.2e}", rec.loss, rec.lr));
            for c in &mut self.callbacks {
                pass.stop |= c.on_step(&rec) == Control::Stop;
            }
            history.steps.push(rec);
            if let Some(every) = self.cfg.checkpoint_every
                && st.step.is_multiple_of(every)
                && !last_of_epoch
            {
                self.save_checkpoint(model, st)?;
            }
            if pass.stop {
                break;
            }
        }
        Ok(pass)
    }

    /// The end of an epoch: validation (and the EMA weights' validation), the epoch record and
    /// its callbacks, early stopping, the checkpoint. `Stop` ends the run.
    fn end_epoch(
        &mut self,
        model: &Model<B>,
        work: Work<'_>,
        pass: EpochPass,
        started: Instant,
        st: &mut LoopState,
        history: &mut History,
    ) -> Result<Control> {
        let mut stop = pass.stop;
        let val = work.val();
        let val_m = match val {
            Some(v) => Some(evaluate(model, v, &graft_backend::Ctx::eval())?),
            None => None,
        };
        let ema_m = match val {
            Some(v) => {
                self.with_ema_weights(model, |m| evaluate(m, v, &graft_backend::Ctx::eval()))?
            }
            None => None,
        };
        let tasks = self.task_records(model, work, st)?;
        let secs = pass.started.elapsed().as_secs_f64();
        let rec = EpochRecord {
            epoch: st.epoch,
            step: st.step,
            train_loss: st.epoch_loss_sum / st.epoch_loss_n.max(1) as f64,
            val: val_m.clone(),
            ema_val: ema_m,
            img_per_s: pass.images as f64 / secs.max(1e-9),
            time_s: started.elapsed().as_secs_f64(),
            tasks,
        };
        let monitored = work.monitored(&rec, self.cfg.early_stopping.map(|e| e.monitor));
        match (&rec.val, monitored) {
            (Some(m), _) => pass.bar.finish_with_message(format!(
                "val loss {:.4}  top-1 {:.2} %",
                m.loss,
                100.0 * m.top1
            )),
            (None, Some(v)) if !rec.tasks.is_empty() => {
                pass.bar.finish_with_message(format!("tasks' val {v:.4}"))
            }
            _ => pass.bar.finish(),
        }
        self.write_metrics(st, "epoch", &rec)?;
        for c in &mut self.callbacks {
            stop |= c.on_epoch(&rec) == Control::Stop;
        }
        history.epochs.push(rec);
        st.epoch += 1;
        st.batch = 0;
        st.epoch_loss_sum = 0.0;
        st.epoch_loss_n = 0;
        st.task_loss.clear();
        if let (Some(es), Some(value)) = (self.cfg.early_stopping, monitored) {
            let better = match es.monitor {
                Monitor::ValLoss => st.best.is_none_or(|b| value < b - es.min_delta),
                Monitor::ValTop1 => st.best.is_none_or(|b| value > b + es.min_delta),
            };
            if better {
                st.best = Some(value);
                st.bad_epochs = 0;
            } else {
                st.bad_epochs += 1;
                if st.bad_epochs >= es.patience {
                    history.stopped_early = true;
                    stop = true;
                }
            }
        }
        self.save_checkpoint(model, st)?;
        Ok(if stop {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}

/// An epoch's training pass, as it went.
struct EpochPass {
    images: usize,
    /// A callback asked to stop.
    stop: bool,
    bar: indicatif::ProgressBar,
    started: Instant,
}

/// The loop state a checkpoint carries (and a resumed run starts from).
#[derive(Debug, Default, Clone)]
struct LoopState {
    step: usize,
    epoch: usize,
    batch: usize,
    metrics_lines: usize,
    best: Option<f64>,
    bad_epochs: usize,
    epoch_loss_sum: f64,
    epoch_loss_n: usize,
    /// Multi-task: each task's training loss sum and batch count this epoch.
    task_loss: BTreeMap<String, (f64, usize)>,
}

fn check_trainable<B: AutodiffBackend>(model: &Model<B>) -> Result<()> {
    let b = model.backend();
    let any = model
        .params()
        .iter()
        .any(|(_, e)| e.kind == ParamKind::Parameter && b.requires_grad(&e.tensor));
    if !any {
        return Err(Error::Training(
            "no parameter requires grad: apply a surgery plan (or set_trainable) first".into(),
        ));
    }
    Ok(())
}

/// Host copy of a model's tensors (for comparing runs).
pub fn snapshot<B: Backend>(model: &Model<B>) -> Result<BTreeMap<String, TensorData>> {
    model.params().to_data()
}
