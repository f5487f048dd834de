//! Heads on host features: multinomial logistic regression (linfa, L-BFGS), prototype and kNN,
//! and a Linear / MLP head trained with the Trainer on cached features.

use std::sync::Arc;

use graft_backend::{AutodiffBackend, Backend, TensorData};
use graft_core::{Error, Result};
use graft_data::{Loader, LoaderConfig};
use graft_surgery::{FreezeConfig, LrConfig, Plan};
use graft_train::{History, TrainConfig, Trainer};
use graft_zoo::{HeadSpec, Model};
use linfa::traits::Fit;

use crate::{FeatureSpec, Features};

fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
        .max(1e-12) as f32;
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Nearest class mean by cosine similarity (prototypes of L2-normalised features).
#[derive(Debug, Clone, PartialEq)]
pub struct PrototypeHead {
    pub prototypes: Vec<Vec<f32>>,
}

impl PrototypeHead {
    /// Class means of the normalised features of `train` (`classes` classes; a class without
    /// samples is an error naming it).
    pub fn fit(train: &Features, classes: usize) -> Result<Self> {
        let mut sums = vec![vec![0f32; train.dim]; classes];
        let mut counts = vec![0usize; classes];
        for i in 0..train.n {
            let c = train.labels[i];
            if c >= classes {
                return Err(Error::invalid(
                    "PrototypeHead",
                    format!("label {c} for {classes} classes"),
                ));
            }
            for (s, v) in sums[c].iter_mut().zip(normalized(train.row(i))) {
                *s += v;
            }
            counts[c] += 1;
        }
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            return Err(Error::invalid(
                "PrototypeHead",
                format!("class {c} has no training sample"),
            ));
        }
        Ok(Self {
            prototypes: sums.iter().map(|s| normalized(s)).collect(),
        })
    }
    /// The predicted class of every row.
    pub fn predict(&self, f: &Features) -> Vec<usize> {
        (0..f.n)
            .map(|i| {
                let q = normalized(f.row(i));
                self.prototypes
                    .iter()
                    .enumerate()
                    .max_by(|a, b| dot(&q, a.1).total_cmp(&dot(&q, b.1)))
                    .map_or(0, |(k, _)| k)
            })
            .collect()
    }
}

/// k nearest neighbours by cosine similarity; votes weighted by similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnHead {
    pub k: usize,
    train: Features,
    classes: usize,
}

impl KnnHead {
    /// Keeps the (normalised) training features.
    pub fn fit(train: &Features, classes: usize, k: usize) -> Result<Self> {
        if k == 0 || train.n == 0 {
            return Err(Error::invalid(
                "KnnHead",
                format!("k = {k} with {} training samples", train.n),
            ));
        }
        let data = (0..train.n)
            .flat_map(|i| normalized(train.row(i)))
            .collect();
        Ok(Self {
            k: k.min(train.n),
            train: Features {
                data,
                ..train.clone()
            },
            classes,
        })
    }
    /// The predicted class of every row.
    pub fn predict(&self, f: &Features) -> Vec<usize> {
        (0..f.n)
            .map(|i| {
                let q = normalized(f.row(i));
                let mut sims: Vec<(f32, usize)> = (0..self.train.n)
                    .map(|j| (dot(&q, self.train.row(j)), self.train.labels[j]))
                    .collect();
                sims.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut votes = vec![0f32; self.classes];
                for (s, l) in sims.iter().take(self.k) {
                    if *l < self.classes {
                        votes[*l] += 1.0 + s;
                    }
                }
                votes
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(c, _)| c)
            })
            .collect()
    }
}

/// Fraction of `pred` equal to `f`'s labels.
pub fn accuracy(pred: &[usize], f: &Features) -> f64 {
    let ok = pred.iter().zip(&f.labels).filter(|(p, y)| p == y).count();
    ok as f64 / f.n.max(1) as f64
}

/// Every label below `classes` (and at least one class); the first one past names its sample.
pub(crate) fn check_label_range(
    what: &'static str,
    labels: &[usize],
    classes: usize,
) -> Result<()> {
    if classes == 0 {
        return Err(Error::invalid(what, "no class"));
    }
    match labels.iter().position(|&l| l >= classes) {
        Some(i) => Err(Error::invalid(
            what,
            format!("sample {i} has label {} for {classes} classes", labels[i]),
        )),
        None => Ok(()),
    }
}

/// Training samples, labels in range, and every one of `classes` classes with a sample (a class
/// without one is named).
pub(crate) fn check_labels(what: &'static str, f: &Features, classes: usize) -> Result<()> {
    if f.n == 0 {
        return Err(Error::invalid(what, "no training samples"));
    }
    check_label_range(what, &f.labels, classes)?;
    let mut seen = vec![false; classes];
    for &c in &f.labels {
        seen[c] = true;
    }
    if let Some(c) = seen.iter().position(|s| !s) {
        let name = f
            .classes
            .get(c)
            .map_or(String::new(), |n| format!(" ({n:?})"));
        return Err(Error::invalid(
            what,
            format!("class {c}{name} has no training sample"),
        ));
    }
    Ok(())
}

/// Multinomial logistic regression settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticConfig {
    /// L2 penalty on the summed loss (scikit-learn's `1 / C`): `Σ CE + α/2 ‖W‖²`.
    pub alpha: f64,
    /// L-BFGS iterations at most (scikit-learn's default, 100).
    pub max_iterations: u64,
    /// Standardise every feature (mean 0, std 1 on the training set) before fitting; the
    /// scaling is folded back into the weights, so the head applies to raw features. Off by
    /// default (scikit-learn's default too): on pooled ReLU features it inflates near-dead
    /// channels — 82.6 % vs 93.5 % raw on the digits 0–4 → 5–9 transfer of `tests/extract.rs`.
    pub standardize: bool,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            max_iterations: 100,
            standardize: false,
        }
    }
}

/// A linear classifier on features: `logits = W x + b`, `W` `[classes, dim]` row-major (the
/// layout of a PyTorch Linear, so it installs as a model's classifier).
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticHead {
    pub classes: usize,
    pub dim: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LogisticHead {
    /// Fits multinomial logistic regression (linfa-logistic's L-BFGS with a Moré–Thuente line
    /// search, in f32 — the features' precision, twice the GEMM speed of f64) on `train`; every
    /// one of `classes` classes needs a sample.
    pub fn fit(train: &Features, classes: usize, cfg: &LogisticConfig) -> Result<Self> {
        check_labels("LogisticHead", train, classes)?;
        if classes < 2 {
            return Err(Error::invalid(
                "LogisticHead",
                format!("{classes} class: a classifier needs two or more"),
            ));
        }
        let (n, d) = (train.n, train.dim);
        let mut mean = vec![0f64; d];
        let mut scale = vec![1f64; d];
        if cfg.standardize {
            for i in 0..n {
                for (m, &v) in mean.iter_mut().zip(train.row(i)) {
                    *m += f64::from(v);
                }
            }
            mean.iter_mut().for_each(|m| *m /= n as f64);
            let mut var = vec![0f64; d];
            for i in 0..n {
                for ((s, &v), m) in var.iter_mut().zip(train.row(i)).zip(&mean) {
                    *s += (f64::from(v) - m).powi(2);
                }
            }
            for (s, v) in scale.iter_mut().zip(var) {
                let sd = (v / n as f64).sqrt();
                // a constant feature carries nothing: leave it unscaled (it standardises to 0)
                *s = if sd > 1e-8 { sd } else { 1.0 };
            }
        }
        let x = ndarray::Array2::from_shape_fn((n, d), |(i, j)| {
            ((f64::from(train.data[i * d + j]) - mean[j]) / scale[j]) as f32
        });
        let y = ndarray::Array1::from_vec(train.labels.clone());
        let ds = linfa::Dataset::new(x, y);
        let fitted = linfa_logistic::MultiLogisticRegression::<f32>::default()
            .alpha(cfg.alpha as f32)
            .max_iterations(cfg.max_iterations)
            .fit(&ds)
            .map_err(|e| Error::Training(format!("logistic regression: {e}")))?;
        let p = fitted.params(); // [dim, k] over fitted.classes()
        let icpt = fitted.intercept();
        let mut weight = vec![0f32; classes * d];
        let mut bias = vec![0f32; classes];
        for (j, &c) in fitted.classes().iter().enumerate() {
            let mut b = f64::from(icpt[j]);
            for k in 0..d {
                let w = f64::from(p[[k, j]]) / scale[k];
                weight[c * d + k] = w as f32;
                b -= w * mean[k];
            }
            bias[c] = b as f32;
        }
        Ok(Self {
            classes,
            dim: d,
            weight,
            bias,
        })
    }
    /// Logits `[n, classes]` row-major.
    pub fn logits(&self, f: &Features) -> Result<Vec<f32>> {
        if f.dim != self.dim {
            return Err(Error::shape(
                "LogisticHead",
                format!("fitted on {}-d features, given {}-d", self.dim, f.dim),
            ));
        }
        let mut out = Vec::with_capacity(f.n * self.classes);
        for i in 0..f.n {
            let x = f.row(i);
            for c in 0..self.classes {
                let w = &self.weight[c * self.dim..(c + 1) * self.dim];
                let s: f64 = w
                    .iter()
                    .zip(x)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                out.push((s + f64::from(self.bias[c])) as f32);
            }
        }
        Ok(out)
    }
    /// The predicted class of every row.
    pub fn predict(&self, f: &Features) -> Result<Vec<usize>> {
        let l = self.logits(f)?;
        Ok(l.chunks(self.classes)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(k, _)| k)
            })
            .collect())
    }
    /// Installs the head as `model`'s classifier (a Linear for `classes` classes with these
    /// weights, class names from `labels`), so trunk + head save as one user model
    /// ([`Model::save_user_model`]). The head must have been fitted on the model's own pooled
    /// features.
    pub fn install<B: Backend>(&self, model: &mut Model<B>, labels: &[String]) -> Result<()> {
        if self.dim != model.num_features() {
            return Err(Error::shape(
                "LogisticHead::install",
                format!(
                    "the head takes {}-d features, {} pools to {}",
                    self.dim,
                    model.name(),
                    model.num_features()
                ),
            ));
        }
        if !labels.is_empty() && labels.len() != self.classes {
            return Err(Error::invalid(
                "LogisticHead::install",
                format!("{} label names for {} classes", labels.len(), self.classes),
            ));
        }
        model.replace_head(self.classes, HeadSpec::Linear, 0)?;
        let prefix = model.arch().classifier_prefix();
        let b = model.backend().clone();
        let dtype = model.dtype();
        for (name, t) in [
            (
                format!("{prefix}.weight"),
                TensorData::f32(&[self.classes, self.dim], self.weight.clone())?,
            ),
            (
                format!("{prefix}.bias"),
                TensorData::f32(&[self.classes], self.bias.clone())?,
            ),
        ] {
            let t = b.cast(&b.from_data(&t)?, dtype)?;
            model.params_mut().replace(&name, t)?;
        }
        if !labels.is_empty() {
            model.cfg_mut().labels = Some(labels.to_vec());
        }
        Ok(())
    }
}

/// How [`train_head`] trains: the head's structure, the optimizer, the loop (its `inputs` are
/// set to `Pooled`), the batch size and the seed of the head's init and of the shuffling.
#[derive(Debug, Clone)]
pub struct HeadTraining {
    pub head: HeadSpec,
    pub lr: LrConfig,
    pub train: TrainConfig,
    pub batch_size: usize,
    pub seed: u64,
}

impl HeadTraining {
    /// A Linear head, AdamW at 4e-2, one-cycle over `epochs`, batches of 256: cached features
    /// cost nothing to batch, so larger batches mean fewer optimizer steps, and on an eager
    /// backend a small head's time is the per-step dispatch (`benches/compare`, the head case); the LR
    /// follows the linear scaling rule from 1e-2 at 64.
    pub fn linear(epochs: usize) -> Self {
        let mut train = TrainConfig::new(epochs);
        train.schedule = graft_train::Schedule::one_cycle();
        Self {
            head: HeadSpec::Linear,
            lr: LrConfig::adamw(4e-2),
            train,
            batch_size: 256,
            seed: 0,
        }
    }
}

/// Trains a fresh head for `train`'s classes on `model`'s cached pooled features with the
/// Trainer (its batches are `[N, D]` features, so only the classifier runs; everything but the
/// head is frozen by a surgery plan). The head stays in place, so the model then saves as one user model.
pub fn train_head<B: AutodiffBackend>(
    model: &mut Model<B>,
    train: &Features,
    val: Option<&Features>,
    how: &HeadTraining,
) -> Result<History> {
    for f in std::iter::once(train).chain(val) {
        if f.spec != FeatureSpec::Pooled || f.dim != model.num_features() {
            return Err(Error::invalid(
                "train_head",
                format!(
                    "a head on {} trains on its pooled {}-d features, given {} {}-d",
                    model.name(),
                    model.num_features(),
                    f.spec,
                    f.dim
                ),
            ));
        }
    }
    let classes = train
        .classes
        .len()
        .max(1 + train.labels.iter().copied().max().unwrap_or(0));
    check_labels("train_head", train, classes)?;
    model.replace_head(classes, how.head.clone(), how.seed)?;
    if train.classes.len() == classes {
        model.cfg_mut().labels = Some(train.classes.clone());
    }
    let plan = Plan::new(model, &FreezeConfig::all_but_head(), &how.lr)?;
    let opt = plan.apply(model)?;
    let cfg = how.train.clone();
    let train_loader = Loader::new(
        Arc::new(train.to_dataset()?),
        LoaderConfig::train(how.batch_size.max(1)).seed(how.seed),
    )?;
    let val_loader = val
        .map(|v| Loader::new(Arc::new(v.to_dataset()?), LoaderConfig::eval(1024)))
        .transpose()?;
    let mut trainer = Trainer::new(cfg, opt, plan.modes().clone());
    trainer.fit(model, &train_loader, val_loader.as_ref())
}
