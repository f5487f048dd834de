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

mod config;
mod plan;
mod table;

pub use config::{BnPolicy, FreezeConfig, LrConfig, LrSpread, batch_norm_params, biases};
pub use plan::{Plan, PlanGroup};

#[cfg(test)]
mod tests {
    use super::*;
    use graft_core::selector::Selector;
    use graft_ndarray::NdArray;
    use graft_zoo::Model;
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
