//! What a transfer setup asks for: which parts freeze ([`FreezeConfig`], [`BnPolicy`]) and the
//! learning rates and weight decay per part ([`LrConfig`], [`LrSpread`]).

use graft_backend::Backend;
use graft_core::selector::Selector;
use graft_core::{Error, Result};
use graft_optim::{Hyper, OptimizerKind};
use graft_zoo::Model;

/// What happens to the BatchNorm layers inside a frozen part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BnPolicy {
    /// Eval mode (running statistics used and kept), affine parameters frozen — Keras's and
    /// timm's meaning of a frozen BatchNorm.
    #[default]
    Frozen,
    /// Eval mode (statistics kept), affine weight and bias trainable at the stage's LR.
    TrainAffineOnly,
    /// fastai's `train_bn=True`: affine parameters trainable and statistics moving with the
    /// batch, even though the convolutions around them are frozen. Useful when the target's
    /// input statistics differ from the source's; it also means a "frozen" trunk's outputs change.
    Train,
}

impl BnPolicy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            BnPolicy::Frozen => "frozen",
            BnPolicy::TrainAffineOnly => "train_affine_only",
            BnPolicy::Train => "train",
        }
    }
}

/// Which parameters are frozen.
#[derive(Debug, Clone)]
pub struct FreezeConfig {
    /// Parameters to freeze.
    pub frozen: Selector,
    /// Exclusions: parameters kept trainable even though `frozen` picks them (biases, say).
    pub keep_trainable: Selector,
    /// BatchNorm layers inside frozen parts.
    pub bn: BnPolicy,
}

impl Default for FreezeConfig {
    fn default() -> Self {
        Self::none()
    }
}

impl FreezeConfig {
    /// Nothing frozen.
    pub fn none() -> Self {
        Self {
            frozen: Selector::Nothing,
            keep_trainable: Selector::Nothing,
            bn: BnPolicy::Frozen,
        }
    }
    /// The first `n` stages frozen (fastai's `freeze_to(n)`).
    pub fn freeze_to(n: usize) -> Self {
        Self {
            frozen: Selector::FirstStages(n),
            ..Self::none()
        }
    }
    /// Everything but the `head` stage frozen (a linear probe / fastai's `freeze()`).
    pub fn all_but_head() -> Self {
        Self {
            frozen: Selector::All.except(Selector::Stage("head".into())),
            ..Self::none()
        }
    }
    /// Freezes what `sel` picks.
    pub fn selected(sel: Selector) -> Self {
        Self {
            frozen: sel,
            ..Self::none()
        }
    }
    /// Keeps what `sel` picks trainable.
    pub fn keep(mut self, sel: Selector) -> Self {
        self.keep_trainable = sel;
        self
    }
    /// Sets the BatchNorm policy.
    pub fn bn(mut self, policy: BnPolicy) -> Self {
        self.bn = policy;
        self
    }
}

/// Selects every bias (`*.bias`).
pub fn biases() -> Selector {
    Selector::regex(r"\.bias$").unwrap_or(Selector::Nothing)
}

/// Selects the affine weight and bias of every BatchNorm layer of `model`.
pub fn batch_norm_params<B: Backend>(model: &Model<B>) -> Selector {
    Selector::Any(
        model
            .batch_norm_layers()
            .into_iter()
            .flat_map(|l| {
                [
                    Selector::Exact(format!("{l}.weight")),
                    Selector::Exact(format!("{l}.bias")),
                ]
            })
            .collect(),
    )
}

/// How learning rates spread over the stages (bottom → `head`).
#[derive(Debug, Clone, PartialEq)]
pub enum LrSpread {
    /// Every stage at the base LR.
    Constant,
    /// fastai's `slice(lo, hi)`: geometric from `lo` (bottom stage) to the base LR (head).
    Slice { lo: f64 },
    /// timm's `layer_decay`: `lr × decay^(depth from the top)` — the head at the base LR, the
    /// stage below at `lr × decay`, and so on.
    LayerDecay { decay: f64 },
    /// One LR per stage, bottom to top (0 freezes the stage).
    PerStage(Vec<f64>),
}

/// The optimizer and how its learning rates and weight decay are laid out.
#[derive(Debug, Clone)]
pub struct LrConfig {
    pub optimizer: OptimizerKind,
    /// Hyper-parameters of the top (head) group before the head multiplier: LR, weight decay,
    /// momentum / betas.
    pub base: Hyper,
    pub spread: LrSpread,
    /// Multiplies the head stage's LR.
    pub head_lr_mult: f64,
    /// No weight decay on biases, norm weights, per-channel scales and the model's
    /// `no_weight_decay` tensors (ViT's `pos_embed`, `cls_token`); on by default.
    pub no_decay_norm_bias: bool,
}

impl LrConfig {
    /// AdamW at `lr` for every stage, weight decay 0.01 (`torch.optim.AdamW`'s default).
    pub fn adamw(lr: f64) -> Self {
        Self {
            optimizer: OptimizerKind::AdamW,
            base: Hyper::adamw(lr),
            spread: LrSpread::Constant,
            head_lr_mult: 1.0,
            no_decay_norm_bias: true,
        }
    }
    /// SGD with momentum 0.9 at `lr` for every stage.
    pub fn sgd(lr: f64) -> Self {
        Self {
            optimizer: OptimizerKind::Sgd,
            base: Hyper::sgd(lr).momentum(0.9),
            spread: LrSpread::Constant,
            head_lr_mult: 1.0,
            no_decay_norm_bias: true,
        }
    }
    /// fastai's `slice(lo, hi)`: `hi` becomes the base LR.
    pub fn slice(mut self, lo: f64, hi: f64) -> Self {
        self.base = self.base.lr(hi);
        self.spread = LrSpread::Slice { lo };
        self
    }
    /// timm's layer-wise decay.
    pub fn layer_decay(mut self, decay: f64) -> Self {
        self.spread = LrSpread::LayerDecay { decay };
        self
    }
    /// Weight decay of the decaying groups.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.base = self.base.weight_decay(wd);
        self
    }
    /// Head LR multiplier.
    pub fn head_lr_mult(mut self, m: f64) -> Self {
        self.head_lr_mult = m;
        self
    }

    pub(crate) fn stage_lrs(&self, n: usize) -> Result<Vec<f64>> {
        let hi = self.base.lr;
        let mut v: Vec<f64> = match &self.spread {
            LrSpread::Constant => vec![hi; n],
            LrSpread::Slice { lo } => {
                if !(*lo > 0.0 && hi > 0.0) {
                    return Err(Error::Optimizer(format!(
                        "slice({lo}, {hi}): both ends must be positive"
                    )));
                }
                (0..n)
                    .map(|i| {
                        if n == 1 {
                            hi
                        } else {
                            lo * (hi / lo).powf(i as f64 / (n - 1) as f64)
                        }
                    })
                    .collect()
            }
            LrSpread::LayerDecay { decay } => {
                if !(*decay > 0.0 && *decay <= 1.0) {
                    return Err(Error::Optimizer(format!(
                        "layer_decay {decay} must be in (0, 1]"
                    )));
                }
                (0..n)
                    .map(|i| hi * decay.powi((n - 1 - i) as i32))
                    .collect()
            }
            LrSpread::PerStage(v) => {
                if v.len() != n {
                    return Err(Error::Optimizer(format!(
                        "{} per-stage learning rates for a model with {n} stages",
                        v.len()
                    )));
                }
                v.clone()
            }
        };
        if let Some(last) = v.last_mut() {
            *last *= self.head_lr_mult;
        }
        if let Some(bad) = v.iter().find(|l| !l.is_finite() || **l < 0.0) {
            return Err(Error::Optimizer(format!("learning rate {bad} is not >= 0")));
        }
        Ok(v)
    }
}
