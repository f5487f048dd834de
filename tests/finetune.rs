//! The fine-tuning route on real digits (graft-tch): a source trained on digits 0–4, fine-tuned on
//! 20 labelled images per class of digits 5–9 by the classic recipe (fixed and probe-chosen freeze
//! depth), fastai's fine_tune (LP-FT) and gradual unfreezing. Frozen stages stay bit-identical,
//! the phases run as documented, and every strategy learns the target.

use std::sync::Arc;

use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset, k_shot, stratified_split};
use graft::finetune::{FineTuneOptions, FreezeDepth, Gradual, LpFt, Recipe, Strategy, fine_tune};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{TrainConfig, Trainer, evaluate, snapshot};
use graft::zoo::{Model, ModelOptions, create_model};
use graft::{Ctx, Tch};

fn source(train: &Loader) -> Model<Tch> {
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(5).in_chans(1).seed(0);
    let (mut m, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let plan = Plan::new(&m, &FreezeConfig::none(), &LrConfig::adamw(2e-3)).expect("plan");
    let mut cfg = TrainConfig::new(3);
    cfg.progress = false;
    Trainer::new(cfg, plan.apply(&m).expect("apply"), plan.modes().clone())
        .fit(&mut m, train, None)
        .expect("fit source");
    m
}

fn copy(m: &Model<Tch>) -> Model<Tch> {
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(5).in_chans(1).seed(0);
    let (mut c, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let data = m.params().to_data().expect("data");
    c.load_tensors(
        std::path::Path::new("source"),
        &data,
        &graft::zoo::LoadOptions::default(),
    )
    .expect("copy");
    c
}

#[test]
fn fine_tuning_strategies_on_digits() {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let parts = stratified_split(&digits.labels(), &[0.5, 0.5], 0).expect("split");
    let src_train = Loader::new(
        Arc::new(
            Subset::with_classes(digits.clone(), parts[0].clone(), &[0, 1, 2, 3, 4]).expect("s"),
        ),
        LoaderConfig::train(32).seed(1),
    )
    .expect("l");
    let src = source(&src_train);
    let target = [5, 6, 7, 8, 9];
    let pool: Arc<dyn Dataset> =
        Arc::new(Subset::with_classes(digits.clone(), parts[0].clone(), &target).expect("s"));
    let few = k_shot(&pool.labels(), &(0..pool.len()).collect::<Vec<_>>(), 20, 3).expect("k-shot");
    let train = Loader::new(
        Arc::new(Subset::new(pool, few).expect("s")),
        LoaderConfig::train(10).seed(2),
    )
    .expect("l");
    let test = Loader::new(
        Arc::new(Subset::with_classes(digits, parts[1].clone(), &target).expect("s")),
        LoaderConfig::eval(256),
    )
    .expect("l");
    let dir = std::env::temp_dir().join(format!("graft-finetune-{}", std::process::id()));
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    opts.cache_dir = Some(dir.join("cache"));

    // the recipe at a fixed depth: the frozen stages do not move, the rest does
    let mut m = copy(&src);
    let before = snapshot(&m).expect("snapshot");
    let recipe = Recipe {
        freeze: FreezeDepth::Stages(3),
        epochs: 10,
        ..Recipe::default()
    };
    let r = fine_tune(
        &mut m,
        5,
        &train,
        Some(&test),
        &Strategy::Recipe(recipe.clone()),
        &opts,
    )
    .expect("recipe");
    let after = snapshot(&m).expect("snapshot");
    let stages = m.stages();
    for (name, e) in m.params().iter() {
        if e.kind != graft::backend::ParamKind::Parameter || m.is_classifier(name) {
            continue;
        }
        let s = stages.stage_of(name).expect("staged");
        if s < 3 {
            assert_eq!(after[name], before[name], "{name} is in a frozen stage");
        } else if name.ends_with("conv1.weight") {
            assert_ne!(after[name], before[name], "{name} trains");
        }
    }
    let acc_recipe = evaluate(&m, &test, &Ctx::eval()).expect("eval").top1;
    assert_eq!(r.frozen_stages, 3);
    assert!(
        r.phases[0].plan.contains("layer2.frozen") && !r.phases[0].plan.contains("layer3.frozen")
    );

    // the recipe with the probe choosing the depth
    let mut m = copy(&src);
    let auto = Recipe {
        epochs: 10,
        ..Recipe::default()
    };
    let r = fine_tune(
        &mut m,
        5,
        &train,
        Some(&test),
        &Strategy::Recipe(auto.clone()),
        &opts,
    )
    .expect("auto");
    let p = r.probe.as_ref().expect("probe ran");
    eprintln!("{p}");
    assert_eq!(r.frozen_stages, p.freeze_stages);
    let acc_auto = evaluate(&m, &test, &Ctx::eval()).expect("eval").top1;
    assert!(
        fine_tune(
            &mut copy(&src),
            5,
            &train,
            None,
            &Strategy::Recipe(auto),
            &opts
        )
        .is_err(),
        "auto needs a validation set"
    );

    // fastai's fine_tune: 1 frozen epoch (head only at base_lr), then 8 unfrozen at base_lr / 2
    let mut m = copy(&src);
    let lpft = LpFt {
        epochs: 8,
        ..LpFt::default()
    };
    let r = fine_tune(
        &mut m,
        5,
        &train,
        Some(&test),
        &Strategy::LpFt(lpft.clone()),
        &opts,
    )
    .expect("lpft");
    assert_eq!(r.phases.len(), 2);
    assert_eq!(r.history.epochs.len(), 9);
    let peak = |h: &graft::train::History| h.steps.iter().map(|s| s.lr).fold(0.0, f64::max);
    let (p1, p2) = (peak(&r.phases[0].history), peak(&r.phases[1].history));
    // pct_start 0.99 over 10 steps: the warm-up never quite reaches base_lr (fastai's too)
    assert!(
        p1 <= lpft.base_lr && p1 > 0.8 * lpft.base_lr,
        "frozen peak {p1}"
    );
    assert!(
        (p2 - lpft.base_lr / 2.0).abs() / lpft.base_lr < 0.05,
        "unfrozen peak {p2}"
    );
    assert!(r.phases[0].plan.contains("layer4.frozen") && !r.phases[1].plan.contains(".frozen"));
    let acc_lpft = evaluate(&m, &test, &Ctx::eval()).expect("eval").top1;

    // gradual unfreezing: head, then one more stage per epoch
    let mut m = copy(&src);
    let r = fine_tune(
        &mut m,
        5,
        &train,
        Some(&test),
        &Strategy::Gradual(Gradual {
            epochs: 6,
            ..Gradual::default()
        }),
        &opts,
    )
    .expect("gradual");
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "freeze5", "freeze4", "freeze3", "freeze2", "freeze1", "freeze0"
        ]
    );
    let acc_gradual = evaluate(&m, &test, &Ctx::eval()).expect("eval").top1;

    eprintln!(
        "digits 0-4 -> 5-9, 20 shots per class: recipe (freeze 3) {:.2} %, recipe (auto, freeze {}) {:.2} %, LP-FT {:.2} %, gradual {:.2} %",
        100.0 * acc_recipe,
        p.freeze_stages,
        100.0 * acc_auto,
        100.0 * acc_lpft,
        100.0 * acc_gradual
    );
    for (what, a) in [
        ("recipe", acc_recipe),
        ("auto", acc_auto),
        ("lpft", acc_lpft),
        ("gradual", acc_gradual),
    ] {
        assert!(a > 0.7, "{what}: {a} (chance is 0.2)");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 18: `graft plan` and `graft finetune` come from one function. For every strategy and
/// head kind, the phases `prepare` plans (names and surgery plans, on the model after its head
/// replacement) are the phases `fine_tune` runs.
#[test]
fn the_plan_is_what_fine_tune_runs() {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let few: Vec<usize> = (0..60).collect();
    let ds: Arc<dyn Dataset> =
        Arc::new(Subset::with_classes(digits, few, &[0, 1, 2]).expect("subset"));
    let train = Loader::new(ds.clone(), LoaderConfig::train(20).seed(1)).expect("l");
    let val = Loader::new(ds, LoaderConfig::eval(64)).expect("l");
    let dir = std::env::temp_dir().join(format!("graft-plan-run-{}", std::process::id()));
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    opts.cache_dir = Some(dir.join("cache"));
    opts.seed = 4;
    let heads = [
        graft::zoo::HeadSpec::Linear,
        graft::zoo::HeadSpec::mlp(&[16], 0.1),
    ];
    for head in heads {
        let strategies = [
            Strategy::Recipe(Recipe {
                freeze: FreezeDepth::Stages(2),
                epochs: 1,
                head: head.clone(),
                ..Recipe::default()
            }),
            Strategy::Recipe(Recipe {
                freeze: FreezeDepth::Auto(graft::extract::ProbeConfig::default()),
                epochs: 1,
                head: head.clone(),
                ..Recipe::default()
            }),
            Strategy::LpFt(LpFt {
                freeze_epochs: 1,
                epochs: 1,
                head: head.clone(),
                ..LpFt::default()
            }),
            Strategy::Gradual(Gradual {
                epochs: 2,
                head: head.clone(),
                ..Gradual::default()
            }),
        ];
        for s in &strategies {
            let model = || {
                let opts = ModelOptions::default().num_classes(5).in_chans(1).seed(0);
                create_model(&Tch::cpu(), "resnet18_small", &opts)
                    .expect("model")
                    .0
            };
            let mut planned = model();
            let plan = graft::finetune::prepare(&mut planned, 3, &train, Some(&val), s, &opts)
                .expect("prepare");
            let mut run = model();
            let r = fine_tune(&mut run, 3, &train, Some(&val), s, &opts).expect("fine_tune");
            let want: Vec<(String, String)> = plan
                .phases
                .iter()
                .map(|p| {
                    let text = Plan::new(&planned, &p.freeze, &p.lr)
                        .expect("plan")
                        .to_string();
                    (p.name.clone(), text)
                })
                .collect();
            let got: Vec<(String, String)> = r
                .phases
                .iter()
                .map(|p| (p.name.clone(), p.plan.clone()))
                .collect();
            assert_eq!(got, want, "{s:?}");
            assert!(
                plan.describe(&planned)
                    .expect("describe")
                    .contains(&format!("phase {}", want[0].0))
            );
            assert_eq!(planned.head(), run.head(), "the same head: {s:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
