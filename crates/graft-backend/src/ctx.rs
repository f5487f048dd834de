//! The forward context: the global train flag plus a per-path mode table.
//!
//! Every forward takes a [`Ctx`]. No model reads a bare `train: bool`: it asks the context what the
//! BatchNorm at `layer1.0.bn1` should do ([`Ctx::norm_mode`]) and whether the dropout at
//! `blocks.3.drop_path` is active ([`Ctx::dropout_active`]). Freezing, direct reuse (BatchNorm
//! re-estimation) and fine-tuning all act through the table, and since the table is separate from
//! the flag, a frozen part stays frozen across train / eval switches.

use crate::init::{mix_seed, stable_hash};
use crate::opts::BatchNormMode;
use graft_core::name::is_under;

/// What a BatchNorm does in a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormMode {
    /// Batch statistics; running statistics updated with the layer's momentum.
    Train,
    /// Running statistics; left unchanged (frozen BatchNorm).
    Eval,
    /// Batch statistics; running statistics accumulated as a cumulative average
    /// (momentum = 1 / num_batches_tracked): BatchNorm re-estimation on target data.
    Reestimate,
}

impl NormMode {
    /// The backend mode for a layer whose own momentum is `momentum`.
    pub fn batch_norm_mode(self, momentum: f64) -> BatchNormMode {
        match self {
            NormMode::Train => BatchNormMode::Train {
                momentum: Some(momentum),
            },
            NormMode::Eval => BatchNormMode::Eval,
            NormMode::Reestimate => BatchNormMode::Train { momentum: None },
        }
    }
}

/// An override for everything under one dotted prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModeRule {
    /// BatchNorm mode under the prefix (None: follow the train flag).
    pub norm: Option<NormMode>,
    /// Dropout / drop_path under the prefix is off even in training.
    pub dropout_off: bool,
}

/// Path → mode overrides. The longest matching prefix (on segment boundaries) decides; paths no
/// rule covers follow the train flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModeTable {
    rules: Vec<(String, ModeRule)>,
}

impl ModeTable {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets (or replaces) the rule for `prefix` (`""` is the whole model).
    pub fn set(&mut self, prefix: &str, rule: ModeRule) -> &mut Self {
        match self.rules.iter_mut().find(|(p, _)| p == prefix) {
            Some((_, r)) => *r = rule,
            None => self.rules.push((prefix.to_string(), rule)),
        }
        self
    }
    /// Removes the rule for `prefix`, if any.
    pub fn remove(&mut self, prefix: &str) -> &mut Self {
        self.rules.retain(|(p, _)| p != prefix);
        self
    }
    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }
    /// The rules, in insertion order.
    pub fn rules(&self) -> &[(String, ModeRule)] {
        &self.rules
    }
    /// The longest-prefix rule covering `path` that sets the field `pick` reads.
    fn lookup<T>(&self, path: &str, pick: impl Fn(&ModeRule) -> Option<T>) -> Option<T> {
        self.rules
            .iter()
            .filter(|(p, _)| is_under(path, p))
            .filter_map(|(p, r)| pick(r).map(|v| (p.len(), v)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, v)| v)
    }
}

static EMPTY: ModeTable = ModeTable { rules: Vec::new() };

/// The context of one forward pass.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// Global train flag.
    pub train: bool,
    /// Per-path overrides.
    pub modes: &'a ModeTable,
    /// Seed and step from which every dropout mask is derived (with the layer's path), so a run
    /// is reproducible and a resumed run draws the same masks.
    pub seed: u64,
    pub step: u64,
}

impl Ctx<'static> {
    /// Inference: BatchNorm uses running statistics, dropout off, no overrides.
    pub fn eval() -> Self {
        Ctx {
            train: false,
            modes: &EMPTY,
            seed: 0,
            step: 0,
        }
    }
}

impl<'a> Ctx<'a> {
    /// Training forward with the given overrides.
    pub fn train(modes: &'a ModeTable, seed: u64, step: u64) -> Self {
        Ctx {
            train: true,
            modes,
            seed,
            step,
        }
    }
    /// Inference forward that still honours the overrides (e.g. `Reestimate`).
    pub fn eval_with(modes: &'a ModeTable) -> Self {
        Ctx {
            train: false,
            modes,
            seed: 0,
            step: 0,
        }
    }
    /// What the BatchNorm at `path` does.
    pub fn norm_mode(&self, path: &str) -> NormMode {
        self.modes
            .lookup(path, |r| r.norm)
            .unwrap_or(if self.train {
                NormMode::Train
            } else {
                NormMode::Eval
            })
    }
    /// Whether the dropout / drop_path at `path` is applied.
    pub fn dropout_active(&self, path: &str) -> bool {
        self.train
            && self
                .modes
                .lookup(path, |r| r.dropout_off.then_some(()))
                .is_none()
    }
    /// The seed of the dropout mask at `path` for this step.
    pub fn dropout_seed(&self, path: &str) -> u64 {
        mix_seed(&[self.seed, self.step, stable_hash(path.as_bytes())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_decides_and_flag_is_the_fallback() {
        let mut t = ModeTable::new();
        t.set(
            "layer1",
            ModeRule {
                norm: Some(NormMode::Eval),
                dropout_off: true,
            },
        );
        t.set(
            "layer1.1",
            ModeRule {
                norm: Some(NormMode::Train),
                dropout_off: false,
            },
        );
        let c = Ctx::train(&t, 0, 0);
        assert_eq!(c.norm_mode("layer1.0.bn1"), NormMode::Eval);
        assert_eq!(c.norm_mode("layer1.1.bn1"), NormMode::Train);
        assert_eq!(c.norm_mode("layer10.bn1"), NormMode::Train);
        assert!(!c.dropout_active("layer1.0.drop"));
        // dropout_off = false does not re-enable what a shorter rule turned off
        assert!(!c.dropout_active("layer1.1.drop"));
        assert!(c.dropout_active("layer2.drop"));
        let e = Ctx::eval_with(&t);
        assert_eq!(e.norm_mode("layer2.bn"), NormMode::Eval);
        assert_eq!(e.norm_mode("layer1.1.bn"), NormMode::Train);
        assert!(!e.dropout_active("layer2.drop"));
        assert_ne!(c.dropout_seed("a"), c.dropout_seed("b"));
        assert_ne!(c.dropout_seed("a"), Ctx::train(&t, 0, 1).dropout_seed("a"));
    }
}
