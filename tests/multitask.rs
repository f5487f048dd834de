//! Multi-task training in the one Trainer: a classification task and a regression task on one
//! trunk (scikit-learn's digits: which digit, and how much ink and where — targets measured from
//! the images themselves). The regression losses equal PyTorch's (values and gradients); both
//! tasks learn together, each recorded (metrics, curves, config); a run stopped after an epoch
//! and resumed ends bit-identical; a frozen trunk stays put while the heads train, and the model
//! exports with every head and reloads on both backends; bad setups are refused by name.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use graft::backend::conformance::rnd;
use graft::backend::{ParamKind, Params, safetensors_io};
use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset, k_shot, stratified_split};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{
    EarlyStopping, Monitor, Sampling, Task, TaskLoss, TaskMetric, TaskSet, TrainConfig, Trainer,
    regression_loss, snapshot,
};
use graft::zoo::{HeadSpec, ModelOptions, Registry, TaskHead, create_model};
use graft::{AutodiffBackend, Backend, Ctx, NdArray, Tch};

#[test]
fn regression_losses_equal_pytorchs() {
    let dir = common::temp_dir("loss-reference");
    let mut input = BTreeMap::new();
    input.insert("pred".to_string(), rnd(&[16, 3], 11, -3.0, 3.0));
    input.insert("target".to_string(), rnd(&[16, 3], 12, -3.0, 3.0));
    safetensors_io::save(&dir.join("in.safetensors"), &input, None).expect("save");
    let out = dir.join("out.safetensors");
    common::run_python(
        "loss_reference.py",
        &[
            dir.join("in.safetensors").to_str().expect("utf-8"),
            out.to_str().expect("utf-8"),
        ],
    );
    let (want, _) = safetensors_io::load(&out).expect("torch's");
    let b = Tch::cpu();
    let cases = [
        ("mse", TaskLoss::Mse),
        ("smooth_l1_0.25", TaskLoss::SmoothL1 { beta: 0.25 }),
        ("smooth_l1_1.0", TaskLoss::SmoothL1 { beta: 1.0 }),
        ("smooth_l1_2.0", TaskLoss::SmoothL1 { beta: 2.0 }),
    ];
    for (name, loss) in cases {
        let pred = b.from_data(&input["pred"]).expect("pred");
        b.set_requires_grad(&pred, true).expect("grad");
        let mut p = Params::new(b);
        p.insert("pred", pred.clone(), ParamKind::Parameter)
            .expect("insert");
        let y = b.from_data(&input["target"]).expect("target");
        let l = regression_loss(&b, loss, &pred, &y).expect("loss");
        let value = b.to_data(&l).expect("value").to_f64();
        let grads = p.gradients(&l).expect("gradients");
        let grad = b
            .to_data(grads.get("pred").expect("pred's gradient"))
            .expect("grad")
            .to_f64();
        let (wv, wg) = (
            want[&format!("{name}.value")].to_f64(),
            want[&format!("{name}.grad")].to_f64(),
        );
        let v = value.iter().next().copied().expect("scalar");
        let w = wv.iter().next().copied().expect("scalar");
        assert!(
            (v - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{name}: {v} vs torch {w}"
        );
        assert_eq!(grad.shape(), wg.shape(), "{name}");
        for (g, w) in grad.iter().zip(wg.iter()) {
            assert!((g - w).abs() <= 1e-6, "{name}: gradient {g} vs torch {w}");
        }
    }
    // a shape mismatch is an error, not a broadcast
    let a = b.from_data(&rnd(&[4, 2], 1, 0.0, 1.0)).expect("a");
    let c = b.from_data(&rnd(&[4, 1], 2, 0.0, 1.0)).expect("c");
    let e = regression_loss(&b, TaskLoss::Mse, &a, &c).expect_err("shapes differ");
    assert!(e.to_string().contains("[4, 2]"), "{e}");
}

/// The regression targets of a digit image, measured from it (so a trunk can learn them): its
/// ink (mean pixel value) and its area (the share of pixels above half intensity), each
/// standardised with the mean and deviation of `reference`'s values.
fn ink_targets(ds: &dyn Dataset, reference: &dyn Dataset) -> Vec<f32> {
    let raw = |ds: &dyn Dataset| -> Vec<[f64; 2]> {
        (0..ds.len())
            .map(|i| {
                let graft::data::Sample::Image(im) = ds.get(i).expect("sample") else {
                    panic!("digits are images")
                };
                let n = im.data.len() as f64;
                let ink = im.data.iter().map(|&p| f64::from(p)).sum::<f64>() / n;
                let area = im.data.iter().filter(|&&p| p > 0.5).count() as f64 / n;
                [ink, area]
            })
            .collect()
    };
    let r = raw(reference);
    let stats: Vec<(f64, f64)> = (0..2)
        .map(|j| {
            let m = r.iter().map(|v| v[j]).sum::<f64>() / r.len() as f64;
            let var = r.iter().map(|v| (v[j] - m).powi(2)).sum::<f64>() / r.len() as f64;
            (m, var.sqrt())
        })
        .collect();
    raw(ds)
        .iter()
        .flat_map(|v| {
            (0..2)
                .map(|j| ((v[j] - stats[j].0) / stats[j].1) as f32)
                .collect::<Vec<_>>()
        })
        .collect()
}

struct Setup {
    digit_train: Loader,
    digit_val: Loader,
    ink_train: (Loader, Vec<f32>),
    ink_val: (Loader, Vec<f32>),
}

fn setup() -> Setup {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let halves = stratified_split(&digits.labels(), &[0.5, 0.5], 0).expect("split");
    let few = k_shot(&digits.labels(), &halves[0], 20, 0).expect("k-shot");
    let sub = |idx: &[usize]| -> Arc<dyn Dataset> {
        Arc::new(Subset::new(digits.clone(), idx.to_vec()).expect("subset"))
    };
    let (d_train, d_val) = (sub(&few), sub(&halves[1][..300]));
    let (i_train, i_val) = (sub(&halves[0][..400]), sub(&halves[1][300..600]));
    let (yt, yv) = (
        ink_targets(&*i_train, &*i_train),
        ink_targets(&*i_val, &*i_train),
    );
    Setup {
        digit_train: Loader::new(d_train, LoaderConfig::train(20).seed(1)).expect("l"),
        digit_val: Loader::new(d_val, LoaderConfig::eval(100)).expect("l"),
        ink_train: (
            Loader::new(i_train, LoaderConfig::train(20).seed(2)).expect("l"),
            yt,
        ),
        ink_val: (Loader::new(i_val, LoaderConfig::eval(100)).expect("l"), yv),
    }
}

fn task_set(s: &Setup, sampling: Sampling) -> TaskSet {
    let digit = Task::classification("digit", s.digit_train.clone(), Some(s.digit_val.clone()))
        .expect("digit");
    let ink = Task::regression(
        "ink",
        2,
        s.ink_train.0.clone(),
        s.ink_train.1.clone(),
        Some(s.ink_val.clone()),
    )
    .expect("ink")
    .with_loss(TaskLoss::SmoothL1 { beta: 0.5 })
    .expect("loss")
    .with_metric(TaskMetric::R2)
    .expect("metric")
    .with_weight(2.0)
    .expect("weight");
    TaskSet::new(vec![digit, ink], sampling, 7).expect("tasks")
}

/// resnet18_small on one channel, no classifier, a head a task.
fn two_headed<B: Backend>(b: &B) -> graft::zoo::Model<B> {
    let opts = ModelOptions::default().num_classes(0).in_chans(1).seed(0);
    let (mut m, _) = create_model(b, "resnet18_small", &opts).expect("model");
    m.add_task_head(
        TaskHead {
            name: "digit".into(),
            outputs: 10,
            head: HeadSpec::Linear,
            labels: None,
        },
        1,
    )
    .expect("digit head");
    m.add_task_head(
        TaskHead {
            name: "ink".into(),
            outputs: 2,
            head: HeadSpec::mlp(&[32], 0.0),
            labels: None,
        },
        2,
    )
    .expect("ink head");
    m
}

fn fit(
    model: &mut graft::zoo::Model<Tch>,
    tasks: &TaskSet,
    freeze: &FreezeConfig,
    epochs: usize,
    dir: Option<&std::path::Path>,
    stop_after: Option<usize>,
) -> graft::train::History {
    let plan = Plan::new(model, freeze, &LrConfig::adamw(3e-3)).expect("plan");
    let opt = plan.apply(model).expect("apply");
    let mut cfg = TrainConfig::new(epochs);
    cfg.progress = false;
    cfg.seed = 5;
    cfg.label_smoothing = 0.1;
    if let Some(d) = dir {
        cfg.run_dir = Some(d.to_path_buf());
        cfg.resume = true;
    }
    let mut t = Trainer::new(cfg, opt, plan.modes().clone());
    if let Some(n) = stop_after {
        t = t.with_callback(Box::new(common::StopAfter(n)));
    }
    t.fit_tasks(model, tasks).expect("fit_tasks")
}

#[test]
fn two_tasks_learn_together_and_each_is_recorded() {
    let s = setup();
    let tasks = task_set(&s, Sampling::RoundRobin);
    // round-robin: digit, ink, digit, ink, ...; an epoch is both tasks' batches (10 + 20)
    assert_eq!(tasks.steps_per_epoch(), 30);
    assert_eq!(
        (0..6).map(|m| tasks.task_of(m)).collect::<Vec<_>>(),
        [0, 1, 0, 1, 0, 1]
    );
    let b = Tch::cpu();
    let mut model = two_headed(&b);
    let dir = common::temp_dir("multitask-run");
    let h = fit(
        &mut model,
        &tasks,
        &FreezeConfig::none(),
        4,
        Some(&dir),
        None,
    );
    let last = h.epochs.last().expect("epochs");
    let digit = last.tasks["digit"].val.as_ref().expect("digit val");
    let ink = last.tasks["ink"].val.as_ref().expect("ink val");
    let top1 = digit.classification().expect("classification").top1;
    let r2 = ink.regression().expect("regression").r2;
    // 200 labelled digits, a random trunk, 4 epochs: far above chance (0.1); the ink regressor
    // explains most of its targets' variance
    assert!(top1 > 0.6, "digit top-1 {top1}");
    assert!(r2 > 0.5, "ink R² {r2}");
    assert_eq!(last.tasks["digit"].train_batches, 15);
    assert_eq!(last.tasks["ink"].train_batches, 15);
    assert!(
        last.val.is_none(),
        "a multi-task run has no single validation"
    );
    // on disk: every epoch's per-task lines, the tasks in config.json, the per-task curves
    let back = graft::train::History::from_metrics(&dir.join("metrics.jsonl")).expect("metrics");
    assert_eq!(back.epochs.len(), 4);
    assert_eq!(back.epochs[3].tasks, last.tasks);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("json");
    let names: Vec<&str> = cfg["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["digit", "ink"]);
    assert_eq!(cfg["tasks"][1]["loss"]["kind"], "smooth_l1");
    assert_eq!(cfg["tasks"][1]["weight"], 2.0);
    for f in ["curves.png", "task_losses.png", "task_metrics.png"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn resumed_multitask_run_is_bit_identical() {
    let s = setup();
    // proportional: the draws of epoch 2 depend on where epoch 1 left each task's loader
    let tasks = task_set(&s, Sampling::Proportional);
    let b = Tch::cpu();
    let mut whole = two_headed(&b);
    fit(&mut whole, &tasks, &FreezeConfig::none(), 2, None, None);
    let dir = common::temp_dir("multitask-resume");
    let mut first = two_headed(&b);
    let h1 = fit(
        &mut first,
        &tasks,
        &FreezeConfig::none(),
        2,
        Some(&dir),
        Some(1),
    );
    assert_eq!(h1.epochs.len(), 1, "stopped after its first epoch");
    let mut resumed = two_headed(&b);
    let h = fit(
        &mut resumed,
        &tasks,
        &FreezeConfig::none(),
        2,
        Some(&dir),
        None,
    );
    assert_eq!(h.epochs.len(), 2, "the resumed run reports the whole run");
    assert_eq!(
        snapshot(&resumed).expect("resumed"),
        snapshot(&whole).expect("whole"),
        "resumed != uninterrupted"
    );
}

#[test]
fn a_frozen_trunk_stays_and_the_model_exports_with_every_head() {
    let s = setup();
    let tasks = task_set(&s, Sampling::Temperature { t: 2.0 });
    let b = Tch::cpu();
    let mut model = two_headed(&b);
    let before = snapshot(&model).expect("before");
    let freeze = FreezeConfig::all_but_head();
    fit(&mut model, &tasks, &freeze, 1, None, None);
    let after = snapshot(&model).expect("after");
    for (name, t) in &after {
        let head = name.starts_with("tasks.");
        let moved = &before[name] != t;
        if head && name.ends_with("weight") {
            assert!(moved, "{name}: a task head did not train");
        }
        if !head && !name.contains("running_") && !name.ends_with("num_batches_tracked") {
            assert!(!moved, "{name}: the frozen trunk moved");
        }
    }
    // exported with both heads; registered again on either backend, each head gives what the
    // trained model gives
    let dir = common::temp_dir("multitask-export").join("two_headed");
    model.save_user_model(&dir).expect("save");
    let mut reg = Registry::builtin();
    let name = reg.register_dir(&dir, None).expect("register");
    let opts = ModelOptions::default().in_chans(1);
    let (tch_back, _) = reg.create(&b, &name, &opts).expect("tch reload");
    let (nd_back, _) = reg.create(&NdArray, &name, &opts).expect("ndarray reload");
    assert_eq!(tch_back.task_heads(), model.task_heads());
    let batch = s.digit_val.epoch(0).next().expect("batch").expect("batch");
    let ctx = Ctx::eval();
    for task in ["digit", "ink"] {
        let want = outputs(&model, task, &batch.inputs, &ctx);
        let got_tch = outputs(&tch_back, task, &batch.inputs, &ctx);
        let got_nd = outputs(&nd_back, task, &batch.inputs, &ctx);
        assert_eq!(got_tch, want, "{task}: graft-tch reload");
        let worst = got_nd
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "{task}: graft-ndarray reload differs by {worst}"
        );
    }
}

fn outputs<B: Backend>(
    m: &graft::zoo::Model<B>,
    task: &str,
    inputs: &graft::InputBatch,
    ctx: &Ctx<'_>,
) -> Vec<f32> {
    let b = m.backend();
    let pooled = m.forward_pooled_batch(inputs, ctx).expect("pooled");
    let out = m.forward_task(task, &pooled, ctx).expect("task");
    b.to_data(&out)
        .expect("host")
        .to_f32()
        .iter()
        .copied()
        .collect()
}

fn err_of<T: std::fmt::Debug>(r: graft::Result<T>) -> String {
    r.expect_err("must be refused").to_string()
}

#[test]
fn bad_multitask_setups_are_refused_by_name() {
    let s = setup();
    let train = s.ink_train.0.clone();
    // targets that do not fit the data, or are not finite
    let e = err_of(Task::regression(
        "ink",
        2,
        train.clone(),
        vec![0.0; 5],
        None,
    ));
    assert!(e.contains("\"ink\"") && e.contains("400 samples"), "{e}");
    let mut nan = s.ink_train.1.clone();
    nan[7] = f32::NAN;
    let e = err_of(Task::regression("ink", 2, train.clone(), nan, None));
    assert!(e.contains("sample 3") && e.contains("NaN"), "{e}");
    // a loss or metric of the other kind
    let digit = Task::classification("digit", s.digit_train.clone(), None).expect("digit");
    let e = err_of(digit.clone().with_loss(TaskLoss::Mse));
    assert!(e.contains("classification"), "{e}");
    let e = err_of(digit.clone().with_metric(TaskMetric::R2));
    assert!(e.contains("\"digit\""), "{e}");
    let e = err_of(digit.clone().with_weight(f64::NAN));
    assert!(e.contains("weight"), "{e}");
    // two tasks of one name; no task
    let e = err_of(TaskSet::new(
        vec![digit.clone(), digit.clone()],
        Sampling::RoundRobin,
        0,
    ));
    assert!(e.contains("two tasks are named \"digit\""), "{e}");
    assert!(err_of(TaskSet::new(vec![], Sampling::RoundRobin, 0)).contains("no task"));
    // a model without the task's head, or with a head of another width
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(0).in_chans(1);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let set = TaskSet::new(vec![digit], Sampling::RoundRobin, 0).expect("set");
    let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::adamw(1e-3)).expect("plan");
    let trainer = |cfg: TrainConfig, m: &graft::zoo::Model<Tch>| {
        Trainer::new(cfg, plan.apply(m).expect("apply"), plan.modes().clone())
    };
    let mut cfg = TrainConfig::new(1);
    cfg.progress = false;
    let e = err_of(trainer(cfg.clone(), &model).fit_tasks(&mut model, &set));
    assert!(e.contains("no task head \"digit\""), "{e}");
    model
        .add_task_head(
            TaskHead {
                name: "digit".into(),
                outputs: 9,
                head: HeadSpec::Linear,
                labels: None,
            },
            0,
        )
        .expect("head");
    let e = err_of(trainer(cfg.clone(), &model).fit_tasks(&mut model, &set));
    assert!(e.contains("10 outputs") && e.contains("has 9"), "{e}");
    // a second head of one name, a distilled task head, a bad task name
    let e = err_of(model.add_task_head(
        TaskHead {
            name: "digit".into(),
            outputs: 10,
            head: HeadSpec::Linear,
            labels: None,
        },
        0,
    ));
    assert!(e.contains("already has a task head"), "{e}");
    for (name, head) in [("x", HeadSpec::Distilled), ("a.b", HeadSpec::Linear)] {
        let e = err_of(model.add_task_head(
            TaskHead {
                name: name.into(),
                outputs: 3,
                head,
                labels: None,
            },
            0,
        ));
        assert!(e.contains(&format!("{name:?}")), "{e}");
    }
    // single-task settings: mixup, and early stopping on a top-1 no task reports
    model.remove_task_heads().expect("remove");
    model
        .add_task_head(
            TaskHead {
                name: "ink".into(),
                outputs: 2,
                head: HeadSpec::Linear,
                labels: None,
            },
            0,
        )
        .expect("head");
    let ink = Task::regression(
        "ink",
        2,
        train,
        s.ink_train.1.clone(),
        Some(s.ink_val.clone()),
    )
    .expect("ink");
    let set = TaskSet::new(vec![ink], Sampling::RoundRobin, 0).expect("set");
    let mut mix = cfg.clone();
    mix.mixup = Some(graft::data::Mixup::default());
    let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::adamw(1e-3)).expect("plan");
    let mk = |cfg: TrainConfig, m: &graft::zoo::Model<Tch>| {
        Trainer::new(cfg, plan.apply(m).expect("apply"), plan.modes().clone())
    };
    let e = err_of(mk(mix, &model).fit_tasks(&mut model, &set));
    assert!(e.contains("mixup"), "{e}");
    let mut es = cfg.clone();
    es.early_stopping = Some(EarlyStopping {
        monitor: Monitor::ValTop1,
        patience: 2,
        min_delta: 0.0,
    });
    let e = err_of(mk(es, &model).fit_tasks(&mut model, &set));
    assert!(
        e.contains("classification task with validation data"),
        "{e}"
    );
}

#[test]
fn sampling_policies_draw_as_stated() {
    let s = setup();
    // 200 digit samples, 400 ink samples
    let draws = |sampling| {
        let set = task_set(&s, sampling);
        let mut n = [0usize; 2];
        for m in 0..20_000 {
            n[set.task_of(m)] += 1;
        }
        // a function of the step: the same again
        let again: Vec<usize> = (0..50).map(|m| set.task_of(m)).collect();
        assert_eq!(again, (0..50).map(|m| set.task_of(m)).collect::<Vec<_>>());
        n[0] as f64 / 20_000.0
    };
    let p = draws(Sampling::Proportional);
    assert!((p - 1.0 / 3.0).abs() < 0.015, "proportional: {p}");
    // T = 2: 200^½ / (200^½ + 400^½) = 0.414
    let p = draws(Sampling::Temperature { t: 2.0 });
    assert!((p - 0.4142).abs() < 0.015, "temperature 2: {p}");
    let p = draws(Sampling::Temperature { t: 1e6 });
    assert!((p - 0.5).abs() < 0.015, "temperature → ∞: {p}");
    assert_eq!(draws(Sampling::RoundRobin), 0.5);
    let e = err_of(TaskSet::new(
        task_set(&s, Sampling::RoundRobin).tasks().to_vec(),
        Sampling::Temperature { t: 0.0 },
        0,
    ));
    assert!(e.contains("temperature 0"), "{e}");
}
