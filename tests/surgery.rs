//! Surgery on graft-tch with real optimizer steps: frozen parameters and frozen BatchNorm
//! statistics stay bit-identical (with train/eval toggles, gradient accumulation and heavy
//! weight decay), the optimizer's groups hold the plan's numbers, a replaced head trains while
//! the trunk is untouched, BatchNorm policies, unfreezing, input adaptation after load.

mod common;

use std::collections::BTreeMap;

use graft::backend::Gradients;
use graft::backend::ParamKind;
use graft::optim::Optimizer;
use graft::surgery::{BnPolicy, FreezeConfig, LrConfig, Plan};
use graft::zoo::{HeadSpec, Model, ModelOptions, create_model};
use graft::{AutodiffBackend, Backend, Ctx, Tch, TensorData};

type M = Model<Tch>;

fn batch(
    b: &Tch,
    n: usize,
    size: usize,
    seed: u64,
) -> (graft::tch::TchTensor, graft::tch::TchTensor) {
    let vals: Vec<f32> = (0..n * 3 * size * size)
        .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let x = b
        .from_data(&TensorData::f32(&[n, 3, size, size], vals).expect("x"))
        .expect("x");
    let y: Vec<i64> = (0..n)
        .map(|i| ((i as u64 * 7 + seed) % 10) as i64)
        .collect();
    let y = b
        .from_data(&TensorData::i64(&[n, 1], y).expect("y"))
        .expect("y");
    (x, y)
}

/// Cross-entropy of logits `[N, C]` against class indices `[N, 1]`.
fn cross_entropy(
    b: &Tch,
    logits: &graft::tch::TchTensor,
    y: &graft::tch::TchTensor,
) -> graft::tch::TchTensor {
    let lsm = b.log_softmax(logits, 1).expect("log_softmax");
    let picked = b.gather(&lsm, 1, y).expect("gather");
    b.neg(&b.mean(&picked, &[0, 1], false).expect("mean"))
        .expect("neg")
}

fn snapshot(m: &M) -> BTreeMap<String, TensorData> {
    m.params().to_data().expect("snapshot")
}

fn resnet(num_classes: usize) -> M {
    create_model(
        &Tch::cpu(),
        "resnet18",
        &ModelOptions::default().num_classes(num_classes).seed(5),
    )
    .expect("build")
    .0
}

#[derive(Clone, Copy)]
enum Case {
    Plain,
    TrainEvalToggles,
    Accumulate2,
    HeavyDecay,
}

fn frozen_stays_frozen(case: Case) {
    let b = Tch::cpu();
    let m = resnet(10);
    let wd = if matches!(case, Case::HeavyDecay) {
        0.5
    } else {
        0.01
    };
    let plan = Plan::new(
        &m,
        &FreezeConfig::freeze_to(2),
        &LrConfig::adamw(1e-2).weight_decay(wd),
    )
    .expect("plan");
    let mut opt: Optimizer<Tch> = plan.apply(&m).expect("apply");
    let before = snapshot(&m);
    let mut last_grads: Option<Gradients<Tch>> = None;
    for step in 0..3u64 {
        let micro = if matches!(case, Case::Accumulate2) {
            2
        } else {
            1
        };
        let mut grads: Option<Gradients<Tch>> = None;
        for k in 0..micro {
            let (x, y) = batch(&b, 4, 32, step * 10 + k);
            let logits = m
                .forward(&x, &Ctx::train(plan.modes(), 1, step))
                .expect("forward");
            let loss = cross_entropy(&b, &logits, &y);
            let g = m.params().gradients(&loss).expect("grads");
            match &mut grads {
                None => grads = Some(g),
                Some(acc) => acc.accumulate(&b, g).expect("accumulate"),
            }
        }
        let mut grads = grads.expect("grads");
        if micro > 1 {
            grads.scale(&b, 1.0 / micro as f64).expect("scale");
        }
        let report = opt.step(m.params(), &grads).expect("step");
        assert!(report.updated > 0);
        if matches!(case, Case::TrainEvalToggles) {
            let (x, _) = batch(&b, 2, 32, 99);
            m.forward(&x, &Ctx::eval()).expect("eval forward");
            m.forward(&x, &Ctx::eval_with(plan.modes()))
                .expect("eval forward with rules");
        }
        last_grads = Some(grads);
    }
    let after = snapshot(&m);
    let grads = last_grads.expect("grads");
    let (mut frozen, mut trained) = (0, 0);
    for (name, e) in m.params().iter() {
        let (was, now) = (&before[name], &after[name]);
        let bn_layer = name
            .rsplit_once('.')
            .map(|(l, _)| l.to_string())
            .filter(|l| m.params().contains(&format!("{l}.running_mean")));
        let keeps = match e.kind {
            ParamKind::Parameter => !plan.is_trainable(name),
            ParamKind::Buffer => bn_layer.as_ref().is_some_and(|l| plan.bn_eval.contains(l)),
        };
        if keeps {
            assert_eq!(was, now, "{name} moved although frozen");
            if e.kind == ParamKind::Parameter {
                assert!(
                    grads.get(name).is_none(),
                    "{name} has a gradient although frozen"
                );
                assert!(
                    !b.requires_grad(&e.tensor),
                    "{name} requires grad although frozen"
                );
            }
            frozen += 1;
        } else {
            assert_ne!(was, now, "{name} did not change although trainable");
            trained += 1;
        }
    }
    // stem + layer1: 1 + 4 convs, 5 BN (weight, bias, 3 buffers each)
    assert_eq!(frozen, 5 + 5 * 5, "frozen entries");
    assert!(trained > 60);
    for l in ["bn1", "layer1.0.bn1", "layer1.1.bn2"] {
        assert!(plan.bn_eval.contains(&l.to_string()), "{l}");
    }
    assert!(plan.bn_train.contains(&"layer2.0.bn1".to_string()));
}

#[test]
fn freeze_to_2_keeps_params_and_bn_statistics_bit_identical() {
    frozen_stays_frozen(Case::Plain);
}

#[test]
fn frozen_survives_train_eval_toggles() {
    frozen_stays_frozen(Case::TrainEvalToggles);
}

#[test]
fn frozen_survives_gradient_accumulation() {
    frozen_stays_frozen(Case::Accumulate2);
}

#[test]
fn frozen_survives_heavy_weight_decay() {
    frozen_stays_frozen(Case::HeavyDecay);
}

#[test]
fn optimizer_groups_hold_the_plans_numbers() {
    let m = resnet(10);
    // slice(1e-5, 1e-3) over stem, layer1..4, head: geometric
    let cfg = LrConfig::adamw(1e-3).slice(1e-5, 1e-3).weight_decay(0.05);
    let plan = Plan::new(&m, &FreezeConfig::freeze_to(1), &cfg).expect("plan");
    let opt: Optimizer<Tch> = plan.apply(&m).expect("apply");
    let stages = ["stem", "layer1", "layer2", "layer3", "layer4", "head"];
    for g in opt.groups() {
        let pg = plan
            .groups
            .iter()
            .find(|p| p.name == g.name)
            .expect("plan group");
        assert_eq!(g.hyper.lr, pg.lr, "{}", g.name);
        assert_eq!(g.hyper.weight_decay, pg.weight_decay, "{}", g.name);
        assert_eq!(g.params, pg.params);
        let i = stages.iter().position(|s| *s == pg.stage).expect("stage");
        let want = if pg.stage == "stem" {
            0.0
        } else {
            1e-5 * 100f64.powf(i as f64 / 5.0)
        };
        assert!(
            (g.hyper.lr - want).abs() <= 1e-12 * want.max(1e-12),
            "{}: {} vs {want}",
            g.name,
            g.hyper.lr
        );
        let decays = !g.name.contains("no_decay") && pg.trainable;
        assert_eq!(
            g.hyper.weight_decay,
            if decays { 0.05 } else { 0.0 },
            "{}",
            g.name
        );
    }
    assert!(opt.group("head").is_ok() && opt.group("head.no_decay").is_ok());
    assert_eq!(
        opt.group("head.no_decay").expect("g").params,
        vec!["fc.bias".to_string()]
    );
    assert_eq!(opt.lr("stem.frozen").expect("lr"), 0.0);

    // layer decay on ViT-Tiny: embed, 12 blocks, head; head × 10
    let (v, _) = create_model(
        &Tch::cpu(),
        "vit_tiny_patch16_224",
        &ModelOptions::default().num_classes(3),
    )
    .expect("vit");
    let cfg = LrConfig::adamw(1e-3).layer_decay(0.75).head_lr_mult(10.0);
    let plan = Plan::new(&v, &FreezeConfig::none(), &cfg).expect("plan");
    let opt: Optimizer<Tch> = plan.apply(&v).expect("apply");
    for g in opt.groups() {
        let pg = plan
            .groups
            .iter()
            .find(|p| p.name == g.name)
            .expect("plan group");
        assert_eq!(g.hyper.lr, pg.lr);
        let depth = match pg.stage.as_str() {
            "embed" => 13,
            "head" => 0,
            s => {
                12 - s
                    .trim_start_matches("blocks.")
                    .parse::<i32>()
                    .expect("block index")
            }
        };
        let want = 1e-3 * 0.75f64.powi(depth) * if pg.stage == "head" { 10.0 } else { 1.0 };
        assert!(
            (g.hyper.lr - want).abs() <= 1e-12,
            "{}: {} vs {want}",
            g.name,
            g.hyper.lr
        );
    }
    assert!(
        plan.group_of("pos_embed")
            .expect("g")
            .name
            .ends_with("no_decay")
    );
    assert!(
        plan.group_of("blocks.3.attn.qkv.weight")
            .expect("g")
            .weight_decay
            > 0.0
    );
}

#[test]
fn replace_head_on_a_loaded_model_keeps_the_trunk_and_trains_the_new_head() {
    let b = Tch::cpu();
    let dir = common::zoo_fixture("resnet18");
    let opts = ModelOptions::default().weights(dir.join("weights.safetensors"));
    let (mut m, _) = create_model(&b, "resnet18", &opts).expect("load");
    let plan = Plan::new(&m, &FreezeConfig::all_but_head(), &LrConfig::adamw(1e-3)).expect("plan");
    let mut opt = plan.apply(&m).expect("apply");
    let (x, _) = batch(&b, 3, 64, 1);
    let feats_before = b
        .to_data(&m.forward_features(&x, &Ctx::eval()).expect("f"))
        .expect("d");
    let (plan, removed) = plan
        .replace_head(&mut m, &mut opt, 7, HeadSpec::Linear, 3)
        .expect("replace");
    assert_eq!(
        removed,
        vec!["fc.weight".to_string(), "fc.bias".to_string()]
    );
    assert_eq!(
        b.to_data(&m.forward_features(&x, &Ctx::eval()).expect("f"))
            .expect("d"),
        feats_before
    );
    let logits = m
        .forward(&x, &Ctx::train(plan.modes(), 0, 0))
        .expect("logits");
    assert_eq!(b.shape(&logits), vec![3, 7]);
    assert_eq!(
        opt.param_step("fc.weight"),
        0,
        "the old head's state is gone"
    );
    let head_before = b
        .to_data(m.params().get("fc.weight").expect("fc"))
        .expect("d");
    let y = b
        .from_data(&TensorData::i64(&[3, 1], vec![0, 3, 6]).expect("y"))
        .expect("y");
    let grads = m
        .params()
        .gradients(&cross_entropy(&b, &logits, &y))
        .expect("grads");
    assert_eq!(grads.len(), 2, "only the new head has gradients");
    opt.step(m.params(), &grads).expect("step");
    assert_ne!(
        b.to_data(m.params().get("fc.weight").expect("fc"))
            .expect("d"),
        head_before
    );
    assert_eq!(opt.param_step("fc.weight"), 1);
    assert_eq!(
        b.to_data(&m.forward_features(&x, &Ctx::eval()).expect("f"))
            .expect("d"),
        feats_before
    );
    // an MLP head: hidden layers + output, all in the head's groups
    let (plan, removed) = plan
        .replace_head(&mut m, &mut opt, 4, HeadSpec::mlp(&[32], 0.1), 4)
        .expect("mlp");
    assert_eq!(removed.len(), 2);
    let y = m.forward(&x, &Ctx::eval()).expect("fwd");
    assert_eq!(b.shape(&y), vec![3, 4]);
    for n in [
        "fc.hidden0.weight",
        "fc.hidden0.bias",
        "fc.out.weight",
        "fc.out.bias",
    ] {
        assert!(plan.is_trainable(n), "{n}");
        assert!(
            opt.group_of(n).is_some_and(|g| g.starts_with("head")),
            "{n}"
        );
    }
}

#[test]
fn batch_norm_policies_in_frozen_parts() {
    let b = Tch::cpu();
    for (policy, affine_moves, stats_move) in [
        (BnPolicy::Frozen, false, false),
        (BnPolicy::TrainAffineOnly, true, false),
        (BnPolicy::Train, true, true),
    ] {
        let m = resnet(10);
        let plan = Plan::new(
            &m,
            &FreezeConfig::freeze_to(2).bn(policy),
            &LrConfig::sgd(0.1),
        )
        .expect("plan");
        let mut opt = plan.apply(&m).expect("apply");
        let before = snapshot(&m);
        let (x, y) = batch(&b, 4, 32, 3);
        let logits = m.forward(&x, &Ctx::train(plan.modes(), 0, 0)).expect("fwd");
        let g = m
            .params()
            .gradients(&cross_entropy(&b, &logits, &y))
            .expect("grads");
        opt.step(m.params(), &g).expect("step");
        let after = snapshot(&m);
        let moved = |n: &str| before[n] != after[n];
        assert_eq!(
            moved("layer1.0.bn1.weight"),
            affine_moves,
            "{policy:?} affine"
        );
        assert_eq!(
            moved("layer1.0.bn1.running_mean"),
            stats_move,
            "{policy:?} stats"
        );
        assert_eq!(
            moved("layer1.0.bn1.num_batches_tracked"),
            stats_move,
            "{policy:?} count"
        );
        assert!(
            !moved("layer1.0.conv1.weight"),
            "{policy:?}: conv stays frozen"
        );
        assert!(moved("layer2.0.conv1.weight") && moved("layer2.0.bn1.running_var"));
    }
}

#[test]
fn unfreezing_keeps_trained_moments_and_starts_the_rest_fresh() {
    let b = Tch::cpu();
    let m = resnet(10);
    let plan = Plan::new(&m, &FreezeConfig::freeze_to(4), &LrConfig::adamw(1e-3)).expect("plan");
    let mut opt = plan.apply(&m).expect("apply");
    let step = |opt: &mut Optimizer<Tch>, plan: &Plan, s: u64| {
        let (x, y) = batch(&b, 4, 32, s);
        let logits = m.forward(&x, &Ctx::train(plan.modes(), 0, s)).expect("fwd");
        let g = m
            .params()
            .gradients(&cross_entropy(&b, &logits, &y))
            .expect("grads");
        opt.step(m.params(), &g).expect("step");
    };
    for s in 0..2 {
        step(&mut opt, &plan, s);
    }
    assert_eq!(opt.param_step("layer4.0.conv1.weight"), 2);
    assert_eq!(opt.param_step("layer1.0.conv1.weight"), 0);
    let unfrozen = Plan::new(
        &m,
        &FreezeConfig::none(),
        &LrConfig::adamw(1e-3).slice(1e-5, 1e-3),
    )
    .expect("plan");
    unfrozen.update(&m, &mut opt).expect("update");
    let before = snapshot(&m);
    step(&mut opt, &unfrozen, 2);
    assert_eq!(
        opt.param_step("layer4.0.conv1.weight"),
        3,
        "moments carried over"
    );
    assert_eq!(opt.param_step("layer1.0.conv1.weight"), 1, "fresh state");
    assert_ne!(
        before["layer1.0.conv1.weight"],
        snapshot(&m)["layer1.0.conv1.weight"]
    );
    assert!(
        opt.groups().iter().all(|g| !g.name.ends_with(".frozen")),
        "frozen groups gone"
    );
    assert!(unfrozen.modes().rules().is_empty());
}

#[test]
fn input_channels_adapt_after_load_and_bad_selectors_are_errors() {
    let b = Tch::cpu();
    let mut m = resnet(10);
    m.adapt_input(1).expect("adapt");
    let x = b
        .from_data(&TensorData::f32(&[2, 1, 32, 32], vec![0.3; 2048]).expect("x"))
        .expect("x");
    assert_eq!(
        b.shape(&m.forward(&x, &Ctx::eval()).expect("fwd")),
        vec![2, 10]
    );
    let plan = Plan::new(&m, &FreezeConfig::freeze_to(1), &LrConfig::adamw(1e-3)).expect("plan");
    plan.apply(&m).expect("apply");
    let err = Plan::new(
        &m,
        &FreezeConfig::selected(graft::core::selector::Selector::Stage("layer9".into())),
        &LrConfig::adamw(1e-3),
    )
    .expect_err("unknown stage");
    assert!(err.to_string().contains("layer4"), "{err}");
    let err = Plan::new(
        &m,
        &FreezeConfig::none(),
        &LrConfig::adamw(1e-3).slice(0.0, 1e-3),
    )
    .expect_err("bad slice");
    assert!(err.to_string().contains("slice"), "{err}");
}

#[test]
fn plan_tables_print() {
    let m = resnet(10);
    let plan = Plan::new(
        &m,
        &FreezeConfig::freeze_to(2),
        &LrConfig::adamw(1e-3).slice(1e-5, 1e-3).weight_decay(0.05),
    )
    .expect("plan");
    let text = plan.to_string();
    eprintln!("{text}");
    for want in [
        "stem.frozen",
        "layer1.no_decay.frozen",
        "layer2",
        "head.no_decay",
        "eval",
        "train",
        "trainable",
    ] {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
}
