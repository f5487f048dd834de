//! graft-surgery: freezing that really freezes, head replacement, layer groups and per-group
//! learning rates — planned first, shown as a table, then applied.
//!
//! Owns: the rules that turn a model's stages plus a [`FreezeConfig`] and an [`LrConfig`] into a
//! [`Plan`] (per parameter: trainable or frozen, group, LR, weight decay; per BatchNorm layer:
//! statistics kept or moving; per stage: dropout on or off), the forward-context rules that carry
//! it ([`Plan::modes`]), and applying / re-applying it to an optimizer (new head, unfrozen stages).
//!
//! Must not know: concrete backends, training loops, schedules, data, files, TOML.
//!
//! What "frozen" means here, all at once and for as long as the plan is in force:
//! - the parameter has `requires_grad = false`, so it gets **no gradient at all** (not a zeroed
//!   one) and the optimizer skips it — no weight decay, no moments, no step count; it also sits in
//!   a group with LR 0, and LR 0 is applied as frozen, never as a zero-size step;
//! - BatchNorm layers in a frozen part run in eval mode through the forward context, so their
//!   running mean / var and `num_batches_tracked` stay put while the rest of the model trains
//!   ([`BnPolicy`] chooses otherwise);
//! - dropout and stochastic depth under a stage whose parameters are all frozen are off;
//! - graft has no module-level `train()` that could undo any of this: train / eval is the
//!   context's flag, and the plan's rules apply under both.
//!
//! Optimizer moments when a part is unfrozen: a parameter that was frozen from the start was never
//! stepped, so it has no state; when unfrozen it starts with zero moments and step 0 (AdamW's bias
//! correction makes its first update full-size). Parameters that kept training keep their moments
//! and step counts. A parameter frozen again later keeps its moments (groups are re-planned with
//! [`graft_optim::Optimizer::move_params`], which keeps state) and resumes from them when unfrozen.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use graft_backend::{AutodiffBackend, Backend, ModeRule, ModeTable, NormMode, ParamKind};
use graft_core::selector::{Selector, StageTable};
use graft_core::{Error, Result};
use graft_optim::{Hyper, Optimizer, OptimizerKind};
use graft_zoo::{HeadSpec, Model};

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
    fn name(self) -> &'static str {
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

    fn stage_lrs(&self, n: usize) -> Result<Vec<f64>> {
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

/// One optimizer group of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanGroup {
    /// `stage`, `stage.no_decay`, `stage.frozen` or `stage.no_decay.frozen`.
    pub name: String,
    pub stage: String,
    pub params: Vec<String>,
    /// Elements in the group's tensors.
    pub numel: usize,
    pub trainable: bool,
    /// 0 for a frozen group.
    pub lr: f64,
    pub weight_decay: f64,
    /// Mode of the BatchNorm layers whose affine parameters are in this group (`eval`, `train`,
    /// `mixed`), `-` when there are none.
    pub batch_norm: &'static str,
    /// Dropout / drop-path under the stage: on or off.
    pub dropout_on: bool,
}

/// A dry run of a transfer setup: every parameter's group, LR and weight decay, every BatchNorm
/// layer's mode, every stage's dropout. [`Plan::apply`] carries it out; `Display` prints it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub model: String,
    pub freeze: FreezeConfig,
    pub lr: LrConfig,
    pub groups: Vec<PlanGroup>,
    /// BatchNorm layers that keep their statistics (run in eval inside a training forward).
    pub bn_eval: Vec<String>,
    /// BatchNorm layers whose statistics move in a training forward.
    pub bn_train: Vec<String>,
    /// Stage prefixes under which dropout / drop-path is off.
    pub dropout_off: Vec<String>,
    modes: ModeTable,
    stages: StageTable,
}

fn is_vector_like(shape: &[usize]) -> bool {
    shape.len() <= 1 || shape[1..].iter().all(|&d| d == 1)
}

impl Plan {
    /// Plans `model` under `freeze` and `lr`. Unknown stages in a selector are errors naming the
    /// model's stages; a parameter outside every stage is an error.
    pub fn new<B: Backend>(model: &Model<B>, freeze: &FreezeConfig, lr: &LrConfig) -> Result<Self> {
        let stages = model.stages();
        freeze.frozen.validate(&stages)?;
        freeze.keep_trainable.validate(&stages)?;
        let n = stages.stages().len();
        let lrs = lr.stage_lrs(n)?;
        let b = model.backend();
        let no_wd: BTreeSet<String> = model.no_weight_decay().into_iter().collect();
        let bn_layers = model.batch_norm_layers();
        // affine parameter name -> its BatchNorm layer
        let bn_affine: BTreeMap<String, &String> = bn_layers
            .iter()
            .flat_map(|l| [(format!("{l}.weight"), l), (format!("{l}.bias"), l)])
            .collect();
        let bn_of = |name: &str| -> Option<&String> { bn_affine.get(name).copied() };
        // Which BatchNorm layers sit in a frozen part: their weight (or running mean) is frozen
        // by the selector or by a zero stage LR.
        let selector_frozen = |name: &str| {
            freeze.frozen.matches(name, &stages) && !freeze.keep_trainable.matches(name, &stages)
        };
        let stage_of = |name: &str| -> Result<usize> {
            stages.stage_of(name).ok_or_else(|| Error::Selector {
                selector: format!("stages of {}", model.name()),
                msg: format!("parameter {name:?} belongs to no stage"),
            })
        };
        let mut bn_eval = Vec::new();
        let mut bn_train = Vec::new();
        let mut bn_frozen_part: BTreeSet<String> = BTreeSet::new();
        for l in &bn_layers {
            let probe = if model.params().contains(&format!("{l}.weight")) {
                format!("{l}.weight")
            } else {
                format!("{l}.running_mean")
            };
            let s = stage_of(&probe)?;
            let in_frozen = lrs[s] == 0.0 || freeze.frozen.matches(&probe, &stages);
            if in_frozen {
                bn_frozen_part.insert(l.clone());
            }
            if in_frozen && freeze.bn != BnPolicy::Train {
                bn_eval.push(l.clone());
            } else {
                bn_train.push(l.clone());
            }
        }
        // group key -> group
        let mut groups: BTreeMap<(usize, bool, bool), PlanGroup> = BTreeMap::new();
        let mut stage_all_frozen = vec![true; n];
        for (name, e) in model.params().iter() {
            if e.kind != ParamKind::Parameter {
                continue;
            }
            let s = stage_of(name)?;
            let shape = b.shape(&e.tensor);
            let bn_affine_kept = bn_of(name).is_some_and(|l| bn_frozen_part.contains(l))
                && freeze.bn != BnPolicy::Frozen
                && lrs[s] > 0.0;
            let frozen = (lrs[s] == 0.0 || selector_frozen(name)) && !bn_affine_kept;
            let frozen = frozen && !(lrs[s] > 0.0 && freeze.keep_trainable.matches(name, &stages));
            if !frozen {
                stage_all_frozen[s] = false;
            }
            let no_decay =
                lr.no_decay_norm_bias && (is_vector_like(&shape) || no_wd.contains(name));
            let stage_name = &stages.stages()[s].name;
            let g = groups
                .entry((s, no_decay, frozen))
                .or_insert_with(|| PlanGroup {
                    name: format!(
                        "{stage_name}{}{}",
                        if no_decay { ".no_decay" } else { "" },
                        if frozen { ".frozen" } else { "" }
                    ),
                    stage: stage_name.clone(),
                    params: Vec::new(),
                    numel: 0,
                    trainable: !frozen,
                    lr: if frozen { 0.0 } else { lrs[s] },
                    weight_decay: if frozen || no_decay {
                        0.0
                    } else {
                        lr.base.weight_decay
                    },
                    batch_norm: "-",
                    dropout_on: true,
                });
            g.params.push(name.to_string());
            g.numel += shape.iter().product::<usize>();
            if let Some(l) = bn_of(name) {
                let mode = if bn_eval.contains(l) { "eval" } else { "train" };
                g.batch_norm = match g.batch_norm {
                    "-" => mode,
                    m if m == mode => m,
                    _ => "mixed",
                };
            }
        }
        let mut dropout_off = Vec::new();
        for (s, st) in stages.stages().iter().enumerate() {
            if stage_all_frozen[s] {
                dropout_off.extend(st.prefixes.iter().cloned());
            }
        }
        let mut groups: Vec<PlanGroup> = groups.into_values().collect();
        for g in &mut groups {
            let s = stages.index_of(&g.stage).unwrap_or(0);
            g.dropout_on = !stage_all_frozen[s];
        }
        let mut modes = ModeTable::new();
        for l in &bn_eval {
            modes.set(
                l,
                ModeRule {
                    norm: Some(NormMode::Eval),
                    dropout_off: false,
                },
            );
        }
        for p in &dropout_off {
            let norm = modes
                .rules()
                .iter()
                .find(|(q, _)| q == p)
                .and_then(|(_, r)| r.norm);
            modes.set(
                p,
                ModeRule {
                    norm,
                    dropout_off: true,
                },
            );
        }
        Ok(Self {
            model: model.name().to_string(),
            freeze: freeze.clone(),
            lr: lr.clone(),
            groups,
            bn_eval,
            bn_train,
            dropout_off,
            modes,
            stages,
        })
    }

    /// The forward-context rules that carry the plan: pass them to `Ctx::train` (and
    /// `Ctx::eval_with`) for every forward while the plan is in force.
    pub fn modes(&self) -> &ModeTable {
        &self.modes
    }
    /// The model's stage table the plan was made with.
    pub fn stages(&self) -> &StageTable {
        &self.stages
    }
    /// The group holding `param`.
    pub fn group_of(&self, param: &str) -> Option<&PlanGroup> {
        self.groups
            .iter()
            .find(|g| g.params.iter().any(|p| p == param))
    }
    /// True when `param` trains under this plan.
    pub fn is_trainable(&self, param: &str) -> bool {
        self.group_of(param).is_some_and(|g| g.trainable)
    }
    /// Trainable and total parameter elements.
    pub fn counts(&self) -> (usize, usize) {
        let t = self
            .groups
            .iter()
            .filter(|g| g.trainable)
            .map(|g| g.numel)
            .sum();
        (t, self.groups.iter().map(|g| g.numel).sum())
    }

    fn hyper(&self, g: &PlanGroup) -> Hyper {
        self.lr.base.lr(g.lr).weight_decay(g.weight_decay)
    }

    fn set_requires_grad<B: AutodiffBackend>(&self, model: &Model<B>) -> Result<()> {
        let trainable: BTreeSet<&str> = self
            .groups
            .iter()
            .filter(|g| g.trainable)
            .flat_map(|g| g.params.iter().map(String::as_str))
            .collect();
        model
            .params()
            .set_trainable(|n| !trainable.contains(n), false)?;
        model
            .params()
            .set_trainable(|n| trainable.contains(n), true)?;
        Ok(())
    }

    /// Carries the plan out on `model` (requires_grad per parameter) and returns an optimizer with
    /// one group per plan group, holding the plan's LR and weight decay.
    pub fn apply<B: AutodiffBackend>(&self, model: &Model<B>) -> Result<Optimizer<B>> {
        self.check_model(model)?;
        self.set_requires_grad(model)?;
        let mut opt = Optimizer::new(self.lr.optimizer);
        for g in &self.groups {
            opt.add_group(&g.name, g.params.clone(), self.hyper(g))?;
        }
        Ok(opt)
    }

    /// Re-applies a (new) plan to a model and the optimizer already training it: requires_grad,
    /// groups' LR and weight decay, membership. Parameters that moved between groups keep their
    /// optimizer state; parameters the model no longer has lose theirs; new ones start fresh.
    pub fn update<B: AutodiffBackend>(
        &self,
        model: &Model<B>,
        opt: &mut Optimizer<B>,
    ) -> Result<()> {
        self.check_model(model)?;
        if opt.kind() != self.lr.optimizer {
            return Err(Error::Optimizer(format!(
                "the plan wants {:?}, the optimizer is {:?}",
                self.lr.optimizer,
                opt.kind()
            )));
        }
        self.set_requires_grad(model)?;
        let gone: Vec<String> = opt
            .groups()
            .iter()
            .flat_map(|g| g.params.iter())
            .filter(|p| !model.params().contains(p))
            .cloned()
            .collect();
        opt.remove_params(&gone);
        for g in &self.groups {
            if opt.group(&g.name).is_ok() {
                opt.set_hyper(&g.name, self.hyper(g))?;
            } else {
                opt.add_group(&g.name, Vec::new(), self.hyper(g))?;
            }
            let (known, new): (Vec<String>, Vec<String>) = g
                .params
                .iter()
                .cloned()
                .partition(|p| opt.group_of(p).is_some());
            opt.move_params(&known, &g.name)?;
            opt.add_params(&g.name, &new)?;
        }
        let stale: Vec<String> = opt
            .groups()
            .iter()
            .filter(|og| og.params.is_empty() && !self.groups.iter().any(|g| g.name == og.name))
            .map(|og| og.name.clone())
            .collect();
        for s in stale {
            opt.remove_group(&s)?;
        }
        Ok(())
    }

    fn check_model<B: Backend>(&self, model: &Model<B>) -> Result<()> {
        for g in &self.groups {
            for p in &g.params {
                if !model.params().contains(p) {
                    return Err(Error::Optimizer(format!(
                        "the plan was made for another model: {} has no {p:?} (re-plan after replacing a head)",
                        model.name()
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Plan {
    /// Replaces the head of a model that is already training under this plan: a fresh `head`
    /// for `num_classes` ([`Model::replace_head`]), the old head's parameters and optimizer
    /// state gone, the new ones in the head's groups (trainable, fresh state). Returns the
    /// re-made plan and the removed names.
    pub fn replace_head<B: AutodiffBackend>(
        &self,
        model: &mut Model<B>,
        opt: &mut Optimizer<B>,
        num_classes: usize,
        head: HeadSpec,
        seed: u64,
    ) -> Result<(Plan, Vec<String>)> {
        let removed = model.replace_head(num_classes, head, seed)?;
        let plan = Plan::new(model, &self.freeze, &self.lr)?;
        plan.update(model, opt)?;
        Ok((plan, removed))
    }
}

fn fmt_count(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}K", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "group",
            "tensors",
            "params",
            "train",
            "lr",
            "wd",
            "batchnorm",
            "dropout",
        ];
        let rows: Vec<[String; 8]> = self
            .groups
            .iter()
            .map(|g| {
                [
                    g.name.clone(),
                    g.params.len().to_string(),
                    fmt_count(g.numel),
                    if g.trainable {
                        "yes".into()
                    } else {
                        "frozen".into()
                    },
                    if g.trainable {
                        format!("{:.3e}", g.lr)
                    } else {
                        "0".into()
                    },
                    if g.weight_decay > 0.0 {
                        format!("{}", g.weight_decay)
                    } else {
                        "0".into()
                    },
                    g.batch_norm.to_string(),
                    if g.dropout_on {
                        "on".into()
                    } else {
                        "off".into()
                    },
                ]
            })
            .collect();
        let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let (t, total) = self.counts();
        writeln!(
            f,
            "plan for {}: {:?}, freeze {:?} (keep {:?}), BatchNorm policy {}",
            self.model,
            self.lr.optimizer,
            self.freeze.frozen,
            self.freeze.keep_trainable,
            self.freeze.bn.name()
        )?;
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<width$}", width = w[i])
                    } else {
                        format!("{c:>width$}", width = w[i])
                    }
                })
                .collect();
            writeln!(f, "{}", parts.join("  "))
        };
        line(f, &header.map(String::from))?;
        line(f, &w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>())?;
        for r in &rows {
            line(f, r)?;
        }
        writeln!(
            f,
            "trainable {} of {} parameters ({:.1} %); BatchNorm layers: {} keep statistics, {} update them; dropout off under {} prefixes",
            fmt_count(t),
            fmt_count(total),
            if total > 0 {
                100.0 * t as f64 / total as f64
            } else {
                0.0
            },
            self.bn_eval.len(),
            self.bn_train.len(),
            self.dropout_off.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graft_ndarray::NdArray;
    use graft_zoo::{ModelOptions, create_model};

    fn resnet() -> Model<NdArray> {
        create_model(
            &NdArray,
            "resnet18",
            &ModelOptions::default().num_classes(4),
        )
        .expect("build")
        .0
    }

    #[test]
    fn regex_freeze_with_bias_exclusion() {
        let m = resnet();
        let sel = Selector::regex(r"^layer[12]\.").expect("regex");
        let plan = Plan::new(
            &m,
            &FreezeConfig::selected(sel).keep(biases()),
            &LrConfig::sgd(0.1),
        )
        .expect("plan");
        assert!(!plan.is_trainable("layer1.0.conv1.weight"));
        assert!(!plan.is_trainable("layer2.1.bn2.weight"));
        assert!(
            plan.is_trainable("layer2.1.bn2.bias"),
            "kept by the exclusion"
        );
        assert!(plan.is_trainable("conv1.weight") && plan.is_trainable("layer3.0.conv1.weight"));
        assert!(plan.bn_eval.contains(&"layer2.1.bn2".to_string()));
        assert!(plan.bn_train.contains(&"bn1".to_string()));
        // layer1 and layer2 are not all frozen (their BN biases train): dropout stays on
        assert!(plan.dropout_off.is_empty());
    }

    #[test]
    fn zero_stage_lr_freezes_and_bn_policy_keeps_affine() {
        let m = resnet();
        let lr = LrConfig {
            spread: LrSpread::PerStage(vec![0.0, 0.0, 1e-3, 1e-3, 1e-3, 1e-2]),
            ..LrConfig::adamw(1e-3)
        };
        let plan = Plan::new(&m, &FreezeConfig::none(), &lr).expect("plan");
        assert!(!plan.is_trainable("layer1.0.conv1.weight"));
        assert!(!plan.is_trainable("layer1.0.bn1.weight"));
        assert!(plan.group_of("fc.weight").is_some_and(|g| g.lr == 1e-2));
        assert_eq!(plan.dropout_off, vec!["conv1", "bn1", "layer1"]);
        let plan = Plan::new(
            &m,
            &FreezeConfig::freeze_to(2).bn(BnPolicy::TrainAffineOnly),
            &LrConfig::adamw(1e-3),
        )
        .expect("plan");
        assert!(plan.is_trainable("layer1.0.bn1.weight"));
        assert!(!plan.is_trainable("layer1.0.conv1.weight"));
        assert!(plan.bn_eval.contains(&"layer1.0.bn1".to_string()));
        let bad = LrConfig {
            spread: LrSpread::PerStage(vec![1e-3; 3]),
            ..LrConfig::adamw(1e-3)
        };
        let err = Plan::new(&m, &FreezeConfig::none(), &bad).expect_err("wrong length");
        assert!(err.to_string().contains("6 stages"), "{err}");
    }
}
