//! Semi-supervised training in the one loop: unlabelled batches beside the labelled ones, their
//! loss added to every step's.
//!
//! - **Pseudo-labelling** (Lee 2013): the model's own confident predictions on unlabelled data
//!   (max softmax ≥ τ) become hard targets for the same batch; optionally with Arazo et al.
//!   (2020, "Pseudo-Labeling and Confirmation Bias in Deep Semi-Supervised Learning")'s class
//!   balance term `Σ_c (1/C) log((1/C) / h̄_c)`, `h̄` the batch's mean prediction, which keeps the
//!   model from giving every unlabelled sample one class.
//! - **FixMatch** (Sohn et al. 2020): the prediction on a weakly augmented view, where confident,
//!   is the target of the strongly augmented view of the same image; the loss is averaged over
//!   all `μB` unlabelled samples (the unconfident ones count as zero), weighted by `λ_u`.
//!
//! The unlabelled set's labels are never read: only a batch's inputs. Which unlabelled batch goes
//! with a step is a function of the step alone (its micro-batch index, cycling through the
//! unlabelled loader's epochs), so a resumed run replays the same pairing.

use graft_backend::init::mix_seed;
use graft_backend::{AutodiffBackend, Ctx, DType, ModeTable, TensorData};
use graft_core::{Error, Result};
use graft_data::{Batch, EpochIter, Loader};
use graft_zoo::Model;
use serde::Serialize;

use crate::loss::{Targets, cross_entropy};

/// Which semi-supervised method.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum SemiMethod {
    /// Lee (2013); `class_balance`: the weight of Arazo et al.'s balance term.
    PseudoLabel { class_balance: Option<f64> },
    /// Sohn et al. (2020).
    FixMatch,
}

/// The settings a run records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SemiConfig {
    pub method: SemiMethod,
    /// Confidence a prediction needs to become a target (τ; FixMatch: 0.95).
    pub threshold: f64,
    /// Weight of the unlabelled loss (λ_u; FixMatch: 1).
    pub weight: f64,
}

/// Unlabelled data for [`crate::Trainer::with_unlabeled`]: a loader of weakly augmented batches
/// and, for FixMatch, a loader of strongly augmented ones over the same samples in the same
/// order (same dataset, seed and batch size: `μ` × the labelled batch size).
#[derive(Debug)]
pub struct Unlabeled {
    weak: Loader,
    strong: Option<Loader>,
    pub cfg: SemiConfig,
    stream: Option<Stream>,
}

impl Clone for Unlabeled {
    /// The same loaders and settings, read from the start again (each fine-tuning phase's
    /// trainer pairs its own steps with unlabelled batches).
    fn clone(&self) -> Self {
        Self {
            weak: self.weak.clone(),
            strong: self.strong.clone(),
            cfg: self.cfg,
            stream: None,
        }
    }
}

/// Where the unlabelled loaders are: the next batch `next` of epoch `epoch`.
struct Stream {
    epoch: u64,
    next: usize,
    weak: EpochIter,
    strong: Option<EpochIter>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream(epoch {}, batch {})", self.epoch, self.next)
    }
}

fn check_weight(what: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(Error::invalid(
            "semi-supervised",
            format!("{what} {v}: a finite value >= 0"),
        ));
    }
    Ok(())
}

impl Unlabeled {
    /// Pseudo-labelling on `weak`'s batches.
    pub fn pseudo_label(
        weak: Loader,
        threshold: f64,
        weight: f64,
        class_balance: Option<f64>,
    ) -> Result<Self> {
        if let Some(c) = class_balance {
            check_weight("class_balance", c)?;
        }
        Self::new(
            weak,
            None,
            SemiConfig {
                method: SemiMethod::PseudoLabel { class_balance },
                threshold,
                weight,
            },
        )
    }
    /// FixMatch: targets from `weak`'s batches, the loss on `strong`'s.
    pub fn fixmatch(weak: Loader, strong: Loader, threshold: f64, weight: f64) -> Result<Self> {
        let (a, b) = (weak.config(), strong.config());
        if !std::sync::Arc::ptr_eq(weak.dataset(), strong.dataset())
            || a.seed != b.seed
            || a.batch_size != b.batch_size
            || a.shuffle != b.shuffle
            || a.drop_last != b.drop_last
        {
            return Err(Error::invalid(
                "FixMatch",
                "the weak and strong loaders must read the same dataset with the same seed, batch size, shuffling and drop_last (two views of the same samples)",
            ));
        }
        Self::new(
            weak,
            Some(strong),
            SemiConfig {
                method: SemiMethod::FixMatch,
                threshold,
                weight,
            },
        )
    }
    fn new(weak: Loader, strong: Option<Loader>, cfg: SemiConfig) -> Result<Self> {
        if !(0.0..=1.0).contains(&cfg.threshold) {
            return Err(Error::invalid(
                "semi-supervised",
                format!("threshold {}: a confidence in [0, 1]", cfg.threshold),
            ));
        }
        check_weight("weight", cfg.weight)?;
        if weak.num_batches() == 0 {
            return Err(Error::invalid(
                "semi-supervised",
                "the unlabelled loader yields no batch",
            ));
        }
        Ok(Self {
            weak,
            strong,
            cfg,
            stream: None,
        })
    }

    /// Unlabelled samples.
    pub fn samples(&self) -> usize {
        self.weak.dataset().len()
    }
    /// Unlabelled samples a step (`μB`).
    pub fn batch_size(&self) -> usize {
        self.weak.config().batch_size
    }

    /// The unlabelled batch(es) of micro-batch `micro`: batch `micro mod n` of epoch
    /// `micro div n` of the unlabelled loaders.
    fn batches(&mut self, micro: u64) -> Result<(Batch, Option<Batch>)> {
        let n = self.weak.num_batches() as u64;
        let (epoch, bi) = (micro / n, (micro % n) as usize);
        let fresh = !matches!(&self.stream, Some(s) if s.epoch == epoch && s.next == bi);
        if fresh {
            self.stream = Some(Stream {
                epoch,
                next: bi,
                weak: self.weak.epoch_from(epoch, bi),
                strong: self.strong.as_ref().map(|s| s.epoch_from(epoch, bi)),
            });
        }
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| Error::Training("unlabelled stream".into()))?;
        let missing = || Error::Training(format!("unlabelled batch {bi} of epoch {epoch} missing"));
        let weak = s.weak.next().ok_or_else(missing)??;
        let strong = match &mut s.strong {
            Some(it) => {
                let b = it.next().ok_or_else(missing)??;
                if b.indices != weak.indices {
                    return Err(Error::Training(
                        "the weak and strong views hold different samples (a sample skipped in one view only?)".into(),
                    ));
                }
                Some(b)
            }
            None => None,
        };
        s.next += 1;
        if s.next as u64 == n {
            s.epoch += 1;
            s.next = 0;
            s.weak = self.weak.epoch(s.epoch);
            s.strong = self.strong.as_ref().map(|l| l.epoch(s.epoch));
        }
        Ok((weak, strong))
    }

    /// The weighted unlabelled loss of micro-batch `micro` (a scalar tensor with autograd).
    pub(crate) fn loss<B: AutodiffBackend>(
        &mut self,
        model: &Model<B>,
        modes: &ModeTable,
        seed: u64,
        micro: u64,
    ) -> Result<B::Tensor> {
        let b = model.backend();
        let (weak, strong) = self.batches(micro)?;
        let ctx_w = Ctx::train(modes, mix_seed(&[seed, 0x7765_616b]), micro);
        let (logits, targets_from) = match (&self.cfg.method, &strong) {
            (SemiMethod::FixMatch, Some(s)) => {
                let w = b.no_grad(|| model.forward_batch(&weak.inputs, &ctx_w))?;
                let ctx_s = Ctx::train(modes, mix_seed(&[seed, 0x7374_726f]), micro);
                (model.forward_batch(&s.inputs, &ctx_s)?, b.detach(&w)?)
            }
            (SemiMethod::PseudoLabel { .. }, None) => {
                let w = model.forward_batch(&weak.inputs, &ctx_w)?;
                let d = b.detach(&w)?;
                (w, d)
            }
            _ => return Err(Error::Training("semi-supervised views mismatched".into())),
        };
        let probs = b
            .to_data(&b.cast(&b.softmax(&targets_from, 1)?, DType::F32)?)?
            .to_f32();
        let (n, c) = (probs.shape()[0], probs.shape()[1]);
        let mut q = vec![0f32; n * c];
        for i in 0..n {
            let (arg, max) = (0..c).fold((0, f32::NEG_INFINITY), |best, k| {
                if probs[[i, k]] > best.1 {
                    (k, probs[[i, k]])
                } else {
                    best
                }
            });
            if f64::from(max) >= self.cfg.threshold {
                q[i * c + arg] = 1.0;
            }
        }
        let q = TensorData::f32(&[n, c], q)?;
        let mut loss = b.mul_scalar(
            &cross_entropy(b, &logits, &Targets::Soft(q), 0.0)?,
            self.cfg.weight,
        )?;
        if let SemiMethod::PseudoLabel {
            class_balance: Some(w),
        } = self.cfg.method
        {
            // Σ_c (1/C) log((1/C) / h̄_c) = -log C - (1/C) Σ_c log h̄_c
            let h = b.mean(&b.softmax(&logits, 1)?, &[0], false)?;
            let sum_log = b.sum(&b.log(&h)?, &[0], false)?;
            let r = b.add_scalar(&b.mul_scalar(&sum_log, -1.0 / c as f64)?, -(c as f64).ln())?;
            loss = b.add(&loss, &b.mul_scalar(&r, w)?)?;
        }
        Ok(loss)
    }
}
