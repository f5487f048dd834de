//! The plan: every parameter's group, LR and weight decay, every BatchNorm layer's mode, every
//! stage's dropout, from a model's stages and the config; applying and re-applying it to an
//! optimizer (a new head, unfrozen stages).

use std::collections::{BTreeMap, BTreeSet};

use graft_backend::{AutodiffBackend, Backend, ModeRule, ModeTable, NormMode, ParamKind};
use graft_core::selector::StageTable;
use graft_core::{Error, Result};
use graft_optim::{Hyper, Optimizer};
use graft_zoo::{HeadSpec, Model};

use crate::config::{BnPolicy, FreezeConfig, LrConfig};

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
