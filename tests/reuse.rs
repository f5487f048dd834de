//! Direct reuse on graft-tch: a digits model applied to contrast-scaled or blurred digits loses
//! accuracy; re-estimating BatchNorm statistics on the (unlabelled) shifted images recovers it
//! without touching a parameter. Label maps by name and many-to-one. (The full table, with noise
//! and inversion, is `cargo run --example direct_reuse`.)

use std::sync::Arc;

use graft::data::{
    ArrayDataset, Dataset, Loader, LoaderConfig, Sample, Shift, Subset, stratified_split,
};
use graft::reuse::{LabelMap, batch_norm_stats, evaluate_reuse, reestimate_batch_norm};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{TrainConfig, Trainer};
use graft::zoo::{ModelOptions, create_model};
use graft::{ModeTable, Tch};

#[test]
fn batch_norm_reestimation_recovers_accuracy_under_a_contrast_shift() {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let parts = stratified_split(&digits.labels(), &[0.5, 0.5], 2).expect("split");
    let train = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[0].clone()).expect("s")),
        LoaderConfig::train(32).seed(3),
    )
    .expect("l");
    let test_ds: Arc<dyn Dataset> =
        Arc::new(Subset::new(digits.clone(), parts[1].clone()).expect("s"));
    let clean = Loader::new(test_ds.clone(), LoaderConfig::eval(128)).expect("l");
    let shifted = Loader::new(test_ds, LoaderConfig::eval(128))
        .expect("l")
        .with_transform(Arc::new(Shift::Contrast(0.25)));
    let b = Tch::cpu();
    let (mut model, _) = create_model(
        &b,
        "resnet18_small",
        &ModelOptions::default().num_classes(10).in_chans(1),
    )
    .expect("model");
    let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::adamw(2e-3)).expect("plan");
    let mut t = Trainer::new(
        TrainConfig::new(2),
        plan.apply(&model).expect("apply"),
        plan.modes().clone(),
    );
    t.fit(&mut model, &train, None).expect("fit");
    // "precise BN": the running statistics of a short run lag its weights (the clean accuracy
    // then swings between CPUs and epochs); estimate them once on the clean training images, so
    // "before" and "after" below differ by the shift alone
    let train_eval = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[0].clone()).expect("s")),
        LoaderConfig::eval(128),
    )
    .expect("l");
    reestimate_batch_norm(&model, &train_eval, None).expect("precise BN on clean data");

    let map = LabelMap::by_names(
        digits.classes(),
        model.cfg().labels.as_deref().unwrap_or(digits.classes()),
    )
    .expect("identity map");
    let none = ModeTable::new();
    let base = evaluate_reuse(&model, &clean, &map, &none).expect("clean");
    let before = evaluate_reuse(&model, &shifted, &map, &none).expect("shifted");
    let params_before = model.params().to_data().expect("params");
    let stats_before = batch_norm_stats(&model).expect("stats");
    let used = reestimate_batch_norm(&model, &shifted, None).expect("re-estimate");
    let after = evaluate_reuse(&model, &shifted, &map, &none).expect("after");
    eprintln!(
        "clean {:.2} %, contrast x0.25: {:.2} % -> {:.2} % after BN re-estimation on {used} batches",
        100.0 * base.accuracy,
        100.0 * before.accuracy,
        100.0 * after.accuracy
    );
    assert!(
        base.accuracy > 0.9,
        "the source model works: {}",
        base.accuracy
    );
    assert!(
        after.accuracy >= before.accuracy + 0.05,
        "re-estimation should recover: {} -> {}",
        before.accuracy,
        after.accuracy
    );
    assert!(
        after.accuracy >= base.accuracy - 0.05,
        "{} vs clean {}",
        after.accuracy,
        base.accuracy
    );
    assert_ne!(
        batch_norm_stats(&model).expect("stats"),
        stats_before,
        "statistics re-estimated"
    );
    let params_after = model.params().to_data().expect("params");
    for (name, e) in model.params().iter() {
        if e.kind == graft::backend::ParamKind::Parameter {
            assert_eq!(params_after[name], params_before[name], "{name} changed");
        }
    }
    assert_eq!(after.samples, parts[1].len());
    assert_eq!(
        after.confusion.iter().flatten().sum::<usize>(),
        parts[1].len()
    );

    // many-to-one: even / odd digits from the 10-way model
    let parity = LabelMap::new(
        vec!["even".into(), "odd".into()],
        vec![vec![0, 2, 4, 6, 8], vec![1, 3, 5, 7, 9]],
        10,
    )
    .expect("map");
    let parity_ds: Arc<dyn Dataset> = Arc::new(ParityLabels(digits.clone()));
    let parity_loader = Loader::new(
        Arc::new(Subset::new(parity_ds, parts[1].clone()).expect("s")),
        LoaderConfig::eval(128),
    )
    .expect("l")
    .with_transform(Arc::new(Shift::Contrast(0.25)));
    let r = evaluate_reuse(&model, &parity_loader, &parity, &none).expect("parity");
    assert!(
        r.accuracy >= 0.9,
        "even / odd from summed digit probabilities: {}",
        r.accuracy
    );
    assert_eq!(r.confusion.len(), 2);
    assert!(
        LabelMap::by_names(&["cat".to_string()], digits_names().as_slice())
            .expect_err("unknown")
            .to_string()
            .contains("cat")
    );
    assert!(LabelMap::new(vec!["x".into()], vec![vec![12]], 10).is_err());

    // blur: the statistics re-estimated for blurred images recover most of the accuracy too
    let blurred = Loader::new(
        Arc::new(Subset::new(digits.clone(), parts[1].clone()).expect("s")),
        LoaderConfig::eval(128),
    )
    .expect("l")
    .with_transform(Arc::new(Shift::Blur(1.0)));
    reestimate_batch_norm(&model, &clean, None).expect("back to clean statistics");
    let b0 = evaluate_reuse(&model, &blurred, &map, &none).expect("blurred");
    reestimate_batch_norm(&model, &blurred, None).expect("re-estimate");
    let b1 = evaluate_reuse(&model, &blurred, &map, &none).expect("blurred");
    eprintln!(
        "blur sigma 1 px: {:.2} % -> {:.2} %",
        100.0 * b0.accuracy,
        100.0 * b1.accuracy
    );
    assert!(
        b1.accuracy >= b0.accuracy + 0.05,
        "{} -> {}",
        b0.accuracy,
        b1.accuracy
    );
}

fn digits_names() -> Vec<String> {
    (0..10).map(|d| d.to_string()).collect()
}

/// Digits relabelled even (0) / odd (1).
#[derive(Debug)]
struct ParityLabels(Arc<dyn Dataset>);
impl Dataset for ParityLabels {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn label(&self, i: usize) -> usize {
        self.0.label(i) % 2
    }
    fn get(&self, i: usize) -> graft::Result<Sample> {
        let s = self.0.get(i)?;
        let odd = s.label() % 2;
        Ok(s.with_label(odd))
    }
    fn classes(&self) -> &[String] {
        static C: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        C.get_or_init(|| vec!["even".into(), "odd".into()])
    }
}
