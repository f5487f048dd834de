//! The loop.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use graft_backend::init::mix_seed;
use graft_backend::{AutodiffBackend, Backend, Ctx, Gradients, ModeTable, ParamKind, TensorData};
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_optim::Optimizer;
use graft_zoo::Model;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::loss::{Targets, cross_entropy};
use crate::metrics::{ClassMetrics, evaluate_with};
use crate::schedule::Schedule;

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

/// What the loader's batches hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inputs {
    /// Images: the whole model runs.
    #[default]
    Images,
    /// Pooled pre-logits features (a feature cache, samples `[dim, 1, 1]` or batches
    /// `[N, dim]`): only the classifier runs (`Model::forward_classifier`), so a head trains on
    /// cached features in seconds and stays in place on its trunk.
    Pooled,
    /// Token ids for a text encoder (graft-text's `TokenDataset`: samples `[1, 1, T]` holding
    /// the ids as exact small floats, padded with `pad_id` to the dataset's longest text). Each
    /// batch becomes `[N, L]` int64 ids, `L` its own longest text (columns that are padding in
    /// every row are cut), and the whole model runs.
    Tokens { pad_id: i64 },
}

impl Inputs {
    /// What batches for `arch` hold: `Images` means token ids for a text encoder (it takes
    /// nothing else), so a text model evaluates and extracts with the defaults.
    pub fn resolve(self, arch: &graft_zoo::Arch) -> Self {
        match (self, arch.pad_token_id()) {
            (Inputs::Images, Some(pad_id)) => Inputs::Tokens { pad_id },
            (s, _) => s,
        }
    }
    /// A loader batch as the host data the model takes, before it is uploaded: images and
    /// pooled features as they are, token batches as `[N, L]` int64 ids (see
    /// [`Inputs::Tokens`]).
    pub fn host_batch(self, arch: &graft_zoo::Arch, data: TensorData) -> Result<TensorData> {
        match self.resolve(arch) {
            Inputs::Tokens { pad_id } => token_ids(&data, pad_id),
            Inputs::Images | Inputs::Pooled => Ok(data),
        }
    }
    /// Logits of `model` on a batch of these inputs ([`Inputs::host_batch`], uploaded).
    pub fn logits<B: Backend>(
        self,
        model: &Model<B>,
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        match self.resolve(model.arch()) {
            Inputs::Images | Inputs::Tokens { .. } => model.forward(x, ctx),
            Inputs::Pooled => {
                let b = model.backend();
                let x = if b.shape(x).len() == 4 {
                    b.flatten(x, 1, 3)?
                } else {
                    x.clone()
                };
                model.forward_classifier(&x, ctx)
            }
        }
    }
}

/// `[N, 1, 1, T]` (or `[N, T]`) float ids → `[N, L]` int64, `L` the last column holding a
/// non-padding id in some row (at least 1).
fn token_ids(data: &TensorData, pad_id: i64) -> Result<TensorData> {
    let (n, t) = match data.shape() {
        [n, 1, 1, t] | [n, t] if *t > 0 => (*n, *t),
        shape => {
            return Err(Error::shape(
                "Inputs::Tokens",
                format!("token batches are [N, 1, 1, T] or [N, T] with T >= 1, got {shape:?}"),
            ));
        }
    };
    let ids: Vec<i64> = data.to_f32().iter().map(|f| f.round() as i64).collect();
    let used = ids
        .chunks(t)
        .filter_map(|row| row.iter().rposition(|&id| id != pad_id))
        .max()
        .map_or(1, |j| j + 1);
    let trimmed: Vec<i64> = ids
        .chunks(t)
        .flat_map(|r| r[..used].iter().copied())
        .collect();
    TensorData::i64(&[n, used], trimmed)
}

/// How to train.
#[derive(Debug, Clone, Serialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// What the batches hold (images, or cached pooled features).
    pub inputs: Inputs,
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
            inputs: Inputs::Images,
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

/// One optimizer step, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub epoch: usize,
    pub step: usize,
    pub loss: f64,
    /// The highest group LR (the head's, under a spread).
    pub lr: f64,
    pub grad_norm: Option<f64>,
    /// Wall-clock seconds since the process started this run (not reproducible).
    pub time_s: f64,
}

/// One epoch, as logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub val: Option<ClassMetrics>,
    pub ema_val: Option<ClassMetrics>,
    /// Training images per second this epoch (wall clock).
    pub img_per_s: f64,
    pub time_s: f64,
}

/// What a callback wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Hooks a strategy plugs into the loop.
pub trait Callback {
    fn on_step(&mut self, _r: &StepRecord) -> Control {
        Control::Continue
    }
    fn on_epoch(&mut self, _r: &EpochRecord) -> Control {
        Control::Continue
    }
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub steps: Vec<StepRecord>,
    pub epochs: Vec<EpochRecord>,
    pub stopped_early: bool,
}

impl History {
    /// Reads a run's `metrics.jsonl` back (step and epoch lines; wall-clock fields included).
    pub fn from_metrics(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut h = History::default();
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::format(path, format!("line {}: {e}", i + 1)))?;
            let bad = |e: serde_json::Error| Error::format(path, format!("line {}: {e}", i + 1));
            match v.get("kind").and_then(|k| k.as_str()) {
                Some("step") => h.steps.push(serde_json::from_value(v).map_err(bad)?),
                Some("epoch") => h.epochs.push(serde_json::from_value(v).map_err(bad)?),
                _ => {
                    return Err(Error::format(
                        path,
                        format!("line {}: no kind step / epoch", i + 1),
                    ));
                }
            }
        }
        Ok(h)
    }
    /// Writes the history as a `metrics.jsonl` ([`History::from_metrics`] reads it back): step
    /// lines, then epoch lines, each with its `kind` (atomically).
    pub fn write_metrics(&self, path: &Path) -> Result<()> {
        fn line<T: Serialize>(kind: &str, r: &T) -> Result<String> {
            let mut v = serde_json::to_value(r).map_err(|e| Error::Training(e.to_string()))?;
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("kind".into(), serde_json::Value::String(kind.into()));
            }
            Ok(format!("{v}\n"))
        }
        let mut out = String::new();
        for s in &self.steps {
            out.push_str(&line("step", s)?);
        }
        for e in &self.epochs {
            out.push_str(&line("epoch", e)?);
        }
        graft_backend::safetensors_io::write_atomic(path, out.as_bytes())
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
}

impl<B: AutodiffBackend> std::fmt::Debug for Trainer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("cfg", &self.cfg)
            .field("groups", &self.base_lrs)
            .finish()
    }
}

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
        }
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

    fn checkpoint_path(&self) -> Option<PathBuf> {
        self.cfg
            .run_dir
            .as_ref()
            .map(|d| d.join("checkpoint.safetensors"))
    }

    fn write_metrics(&self, st: &mut LoopState, kind: &str, record: &impl Serialize) -> Result<()> {
        let Some(dir) = &self.cfg.run_dir else {
            return Ok(());
        };
        let path = dir.join("metrics.jsonl");
        let mut v = serde_json::to_value(record).map_err(|e| Error::Training(e.to_string()))?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("kind".into(), serde_json::Value::String(kind.into()));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        writeln!(f, "{v}").map_err(|e| Error::io(&path, e))?;
        st.metrics_lines += 1;
        Ok(())
    }

    fn save_checkpoint(&self, model: &Model<B>, st: &LoopState) -> Result<()> {
        let Some(path) = self.checkpoint_path() else {
            return Ok(());
        };
        let b = model.backend();
        let ema = match &self.ema {
            Some(e) => Some(
                e.iter()
                    .map(|(k, t)| Ok((k.clone(), b.to_data(t)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?,
            ),
            None => None,
        };
        let tensors = model.params().to_data()?;
        if let Some((name, _)) = tensors
            .iter()
            .find(|(_, t)| t.dtype().is_float() && t.to_f64().iter().any(|v| !v.is_finite()))
        {
            return Err(Error::Training(format!(
                "{name} holds non-finite values at step {} (the loss was still finite): stopping; the last good checkpoint {} is kept untouched. Lower the learning rate or clip gradients",
                st.step,
                path.display()
            )));
        }
        let mut extra = BTreeMap::new();
        if let Some(best) = st.best {
            extra.insert("best".into(), format!("{best:e}"));
        }
        extra.insert("bad_epochs".into(), st.bad_epochs.to_string());
        extra.insert("epoch_loss_sum".into(), format!("{:e}", st.epoch_loss_sum));
        extra.insert("epoch_loss_n".into(), st.epoch_loss_n.to_string());
        Checkpoint {
            step: st.step,
            epoch: st.epoch,
            batch: st.batch,
            seed: self.cfg.seed,
            threads: b.num_threads(),
            metrics_lines: st.metrics_lines,
            model: tensors,
            optimizer: self.opt.export_state(model.params())?,
            ema,
            extra,
        }
        .save(&path)
    }

    fn resume(&mut self, model: &mut Model<B>, path: &Path) -> Result<LoopState> {
        let ck = Checkpoint::load(path)?;
        let b = model.backend().clone();
        if ck.threads != b.num_threads() {
            return Err(Error::Training(format!(
                "{} was written with {} threads and this process computes with {}: results depend on the thread count, so set it to {} to resume exactly",
                path.display(),
                ck.threads,
                b.num_threads(),
                ck.threads
            )));
        }
        if ck.seed != self.cfg.seed {
            return Err(Error::Training(format!(
                "{} is from a run with seed {}, this run has seed {}",
                path.display(),
                ck.seed,
                self.cfg.seed
            )));
        }
        assign_from_host(model, &ck.model, |name| {
            Error::format(path, format!("checkpoint lacks {name:?}"))
        })?;
        self.opt = Optimizer::import_state(&ck.optimizer, model.params())?;
        self.ema = match ck.ema {
            Some(e) => Some(
                e.iter()
                    .map(|(k, v)| Ok((k.clone(), b.from_data(v)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?,
            ),
            None => None,
        };
        if let Some(dir) = &self.cfg.run_dir {
            let mpath = dir.join("metrics.jsonl");
            if let Ok(text) = std::fs::read_to_string(&mpath) {
                let kept: Vec<&str> = text.lines().take(ck.metrics_lines).collect();
                let mut out = kept.join("\n");
                if !kept.is_empty() {
                    out.push('\n');
                }
                graft_backend::safetensors_io::write_atomic(&mpath, out.as_bytes())?;
            }
        }
        let parse = |k: &str| ck.extra.get(k).and_then(|v| v.parse::<f64>().ok());
        Ok(LoopState {
            step: ck.step,
            epoch: ck.epoch,
            batch: ck.batch,
            metrics_lines: ck.metrics_lines,
            best: parse("best"),
            bad_epochs: parse("bad_epochs").unwrap_or(0.0) as usize,
            epoch_loss_sum: parse("epoch_loss_sum").unwrap_or(0.0),
            epoch_loss_n: parse("epoch_loss_n").unwrap_or(0.0) as usize,
        })
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

    fn evaluate_ema(&self, model: &Model<B>, val: &Loader) -> Result<Option<ClassMetrics>> {
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
        let m = evaluate_with(model, val, &Ctx::eval(), self.cfg.inputs);
        for (name, t) in saved {
            let dst = model.params().get(&name)?;
            b.no_grad(|| b.assign(dst, &t))?;
        }
        m.map(Some)
    }

    /// Trains `model` on `train` for the configured epochs, evaluating on `val` after each epoch.
    pub fn fit(
        &mut self,
        model: &mut Model<B>,
        train: &Loader,
        val: Option<&Loader>,
    ) -> Result<History> {
        if self.cfg.mixup.is_some()
            && matches!(self.cfg.inputs.resolve(model.arch()), Inputs::Tokens { .. })
        {
            return Err(Error::invalid(
                "Trainer::fit",
                "mixup blends inputs: token ids cannot be blended (turn mixup off for text)",
            ));
        }
        let b = model.backend().clone();
        let acc = self.cfg.accumulate.max(1);
        let per_epoch = train.num_batches().div_ceil(acc);
        let total = per_epoch * self.cfg.epochs;
        let started = Instant::now();
        if let Some(dir) = &self.cfg.run_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            let groups: Vec<serde_json::Value> = self
                .opt
                .groups()
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "name": g.name,
                        "params": g.params.len(),
                        "base_lr": self.base_lrs.get(&g.name),
                        "weight_decay": g.hyper.weight_decay,
                    })
                })
                .collect();
            let resolved = serde_json::json!({
                "model": model.name(),
                "architecture": model.architecture(),
                "num_classes": model.num_classes(),
                "train": &self.cfg,
                "optimizer": format!("{:?}", self.opt.kind()),
                "groups": groups,
                "threads": b.num_threads(),
                "train_samples": train.dataset().len(),
                "batch_size": train.config().batch_size,
                "loader_seed": train.config().seed,
            });
            let text = serde_json::to_string_pretty(&resolved)
                .map_err(|e| Error::Training(e.to_string()))?;
            graft_backend::safetensors_io::write_atomic(&dir.join("config.json"), text.as_bytes())?;
        }
        let mut resumed = false;
        let mut st = match self.checkpoint_path() {
            Some(p) if self.cfg.resume && p.exists() => {
                resumed = true;
                self.resume(model, &p)?
            }
            _ => {
                if let Some(dir) = &self.cfg.run_dir {
                    let m = dir.join("metrics.jsonl");
                    if m.exists() {
                        std::fs::remove_file(&m).map_err(|e| Error::io(&m, e))?;
                    }
                }
                LoopState::default()
            }
        };
        let mut history = History::default();
        // a run that had stopped early stays stopped: resuming it trains nothing more
        if resumed
            && let Some(es) = self.cfg.early_stopping
            && st.bad_epochs >= es.patience
        {
            history.stopped_early = true;
        }
        let trainable: Vec<String> = model
            .params()
            .iter()
            .filter(|(_, e)| e.kind == ParamKind::Parameter && b.requires_grad(&e.tensor))
            .map(|(n, _)| n.to_string())
            .collect();
        if trainable.is_empty() {
            return Err(Error::Training(
                "no parameter requires grad: apply a surgery plan (or set_trainable) first".into(),
            ));
        }
        while !history.stopped_early && st.epoch < self.cfg.epochs {
            let epoch = st.epoch;
            let t_epoch = Instant::now();
            let mut images = 0usize;
            let mut pending: Option<Gradients<B>> = None;
            let mut pending_n = 0usize;
            let mut pending_loss = 0.0;
            let n_batches = train.num_batches();
            let mut stop = false;
            let bar = if self.cfg.progress {
                indicatif::ProgressBar::new((n_batches - st.batch.min(n_batches)) as u64)
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
            let first = st.batch;
            for (k, batch) in train.epoch_from(epoch as u64, first).enumerate() {
                let bi = first + k;
                let batch = batch?;
                images += batch.labels.len();
                let micro = (st.step * acc + pending_n) as u64;
                let (inputs, targets) = match &self.cfg.mixup {
                    Some(m) => {
                        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(
                            mix_seed(&[self.cfg.seed, 0x6d69_7875, micro]),
                        );
                        let (x, t, _) =
                            m.apply(&batch.inputs, &batch.labels, model.num_classes(), &mut rng)?;
                        (x, Targets::Soft(t))
                    }
                    None => (batch.inputs.clone(), Targets::Hard(batch.labels.clone())),
                };
                let x = b.from_data(&self.cfg.inputs.host_batch(model.arch(), inputs)?)?;
                let ctx = Ctx::train(&self.modes, self.cfg.seed, micro);
                let logits = self.cfg.inputs.logits(model, &x, &ctx)?;
                let loss = cross_entropy(&b, &logits, &targets, self.cfg.label_smoothing)?;
                let l = host_scalar(&b, &loss)?;
                if !l.is_finite() {
                    let lr = self
                        .opt
                        .groups()
                        .iter()
                        .map(|g| g.hyper.lr)
                        .fold(0.0, f64::max);
                    let ck = match self.checkpoint_path() {
                        Some(p) if p.exists() => format!(
                            "the last good checkpoint is {} (kept untouched)",
                            p.display()
                        ),
                        _ => "no checkpoint was written".into(),
                    };
                    return Err(Error::Training(format!(
                        "loss is {l} at epoch {epoch}, step {} (lr {lr:.3e}): stopping; {ck}. Lower the learning rate or clip gradients",
                        st.step
                    )));
                }
                let g = model.params().gradients(&loss)?;
                match &mut pending {
                    None => pending = Some(g),
                    Some(p) => p.accumulate(&b, g)?,
                }
                pending_n += 1;
                pending_loss += l;
                bar.inc(1);
                let last_of_epoch = bi + 1 == n_batches;
                if pending_n < acc && !last_of_epoch {
                    continue;
                }
                let mut grads = pending
                    .take()
                    .ok_or_else(|| Error::Training("no gradients".into()))?;
                if pending_n > 1 {
                    grads.scale(&b, 1.0 / pending_n as f64)?;
                }
                let grad_norm = self.clip(&b, &mut grads)?;
                let f = self.cfg.schedule.factor(st.step, total);
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
                let loss_mean = pending_loss / pending_n as f64;
                st.epoch_loss_sum += loss_mean;
                st.epoch_loss_n += 1;
                st.step += 1;
                st.batch = bi + 1;
                pending_n = 0;
                pending_loss = 0.0;
                let rec = StepRecord {
                    epoch,
                    step: st.step,
                    loss: loss_mean,
                    lr: self
                        .opt
                        .groups()
                        .iter()
                        .map(|g| g.hyper.lr)
                        .fold(0.0, f64::max),
                    grad_norm,
                    time_s: started.elapsed().as_secs_f64(),
                };
                bar.set_message(format!("loss {:.4}  lr {:.2e}", rec.loss, rec.lr));
                self.write_metrics(&mut st, "step", &rec)?;
                for c in &mut self.callbacks {
                    if c.on_step(&rec) == Control::Stop {
                        stop = true;
                    }
                }
                history.steps.push(rec);
                if let Some(every) = self.cfg.checkpoint_every
                    && st.step % every == 0
                    && !last_of_epoch
                {
                    self.save_checkpoint(model, &st)?;
                }
                if stop {
                    break;
                }
            }
            let val_m = match val {
                Some(v) => Some(evaluate_with(model, v, &Ctx::eval(), self.cfg.inputs)?),
                None => None,
            };
            match &val_m {
                Some(m) => bar.finish_with_message(format!(
                    "val loss {:.4}  top-1 {:.2} %",
                    m.loss,
                    100.0 * m.top1
                )),
                None => bar.finish(),
            }
            let ema_m = match val {
                Some(v) => self.evaluate_ema(model, v)?,
                None => None,
            };
            let secs = t_epoch.elapsed().as_secs_f64();
            let rec = EpochRecord {
                epoch,
                step: st.step,
                train_loss: st.epoch_loss_sum / st.epoch_loss_n.max(1) as f64,
                val: val_m.clone(),
                ema_val: ema_m,
                img_per_s: images as f64 / secs.max(1e-9),
                time_s: started.elapsed().as_secs_f64(),
            };
            self.write_metrics(&mut st, "epoch", &rec)?;
            for c in &mut self.callbacks {
                if c.on_epoch(&rec) == Control::Stop {
                    stop = true;
                }
            }
            history.epochs.push(rec);
            st.epoch += 1;
            st.batch = 0;
            st.epoch_loss_sum = 0.0;
            st.epoch_loss_n = 0;
            if let (Some(es), Some(m)) = (self.cfg.early_stopping, &val_m) {
                let (value, better) = match es.monitor {
                    Monitor::ValLoss => (m.loss, st.best.is_none_or(|b| m.loss < b - es.min_delta)),
                    Monitor::ValTop1 => (m.top1, st.best.is_none_or(|b| m.top1 > b + es.min_delta)),
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
            self.save_checkpoint(model, &st)?;
            if stop {
                break;
            }
        }
        if let Some(dir) = &self.cfg.run_dir {
            // The whole run's curves, resumed parts included: from metrics.jsonl.
            let whole = History::from_metrics(&dir.join("metrics.jsonl"));
            crate::plot::plot_history(whole.as_ref().unwrap_or(&history), &dir.join("curves.png"))?;
            if resumed {
                // a resumed run reports the whole run, as one never interrupted would
                let mut full = whole?;
                full.stopped_early = history.stopped_early;
                return Ok(full);
            }
        }
        Ok(history)
    }
}

/// Host copy of a model's tensors (for comparing runs).
pub fn snapshot<B: Backend>(model: &Model<B>) -> Result<BTreeMap<String, TensorData>> {
    model.params().to_data()
}
