//! The feature-extraction route end to end on real digits: a source model trained on digits 0–4
//! (graft-tch), its frozen trunk reused for digits 5–9.
//!
//! - the logistic head gives the same accuracy (±1 %) with the trunk on graft-tch or graft-ndarray;
//! - a logistic head installed on the trunk, and a Linear head trained with the Trainer on cached
//!   features, each save as one user model that the registry loads and that classifies images as
//!   the head classified the features;
//! - the per-stage probe picks a low stage when the top of the trunk carries no information.

mod common;

use std::sync::Arc;

use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset, stratified_split};
use graft::extract::{
    FeatureSpec, HeadTraining, LogisticConfig, LogisticHead, ProbeConfig, accuracy, extract, probe,
    train_head,
};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{TrainConfig, Trainer, evaluate};
use graft::zoo::{ModelOptions, Registry, create_model};
use graft::{AutodiffBackend, Backend, Ctx, NdArray, Tch};

fn subset(d: &Arc<dyn Dataset>, idx: &[usize], classes: &[usize]) -> Arc<dyn Dataset> {
    Arc::new(Subset::with_classes(d.clone(), idx.to_vec(), classes).expect("subset"))
}

#[test]
fn feature_extraction_route_on_digits() {
    let dir = common::temp_dir("extract");
    let cache = dir.join("cache");
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let parts = stratified_split(&digits.labels(), &[0.5, 0.5], 0).expect("split");
    let source_train = Loader::new(
        subset(&digits, &parts[0], &[0, 1, 2, 3, 4]),
        LoaderConfig::train(32).seed(1),
    )
    .expect("l");
    let target = [5, 6, 7, 8, 9];
    let train =
        Loader::new(subset(&digits, &parts[0], &target), LoaderConfig::eval(128)).expect("l");
    let test =
        Loader::new(subset(&digits, &parts[1], &target), LoaderConfig::eval(128)).expect("l");

    // the source: resnet18_small trained on digits 0-4, saved as a user model
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(5).in_chans(1).seed(0);
    let (mut source, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let plan = Plan::new(&source, &FreezeConfig::none(), &LrConfig::adamw(2e-3)).expect("plan");
    let mut cfg = TrainConfig::new(3);
    cfg.progress = false;
    Trainer::new(
        cfg,
        plan.apply(&source).expect("apply"),
        plan.modes().clone(),
    )
    .fit(&mut source, &source_train, None)
    .expect("fit source");
    // "precise BN": after three short epochs the running statistics lag the weights (the frozen
    // features then vary between CPUs); estimate them once on the source's own images
    let source_eval = Loader::new(
        subset(&digits, &parts[0], &[0, 1, 2, 3, 4]),
        LoaderConfig::eval(128),
    )
    .expect("l");
    graft::reuse::reestimate_batch_norm(&source, &source_eval, None).expect("precise BN");
    source.save_user_model(&dir.join("digits04")).expect("save");
    let mut reg = Registry::builtin();
    reg.register_dir(&dir.join("digits04"), None)
        .expect("register");
    let (source_nd, _) = reg
        .create(&NdArray, "digits04", &opts)
        .expect("ndarray source");

    // the logistic head: same accuracy with the trunk on either backend
    let lcfg = LogisticConfig::default();
    let (tr_t, _) = extract(&source, &train, &FeatureSpec::Pooled, &cache).expect("tch");
    let (te_t, _) = extract(&source, &test, &FeatureSpec::Pooled, &cache).expect("tch");
    let (tr_n, _) = extract(&source_nd, &train, &FeatureSpec::Pooled, &cache).expect("nd");
    let (te_n, rn) = extract(&source_nd, &test, &FeatureSpec::Pooled, &cache).expect("nd");
    assert_eq!(rn.forwards, test.num_batches(), "ndarray ran its own trunk");
    let max_diff = tr_t
        .data
        .iter()
        .zip(&tr_n.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let head_t = LogisticHead::fit(&tr_t, 5, &lcfg).expect("fit");
    let head_n = LogisticHead::fit(&tr_n, 5, &lcfg).expect("fit");
    let acc_t = accuracy(&head_t.predict(&te_t).expect("p"), &te_t);
    let acc_n = accuracy(&head_n.predict(&te_n).expect("p"), &te_n);
    eprintln!(
        "logistic head on digits 5-9 ({} train / {} test), trunk on tch {:.2} % vs ndarray {:.2} % (features max |diff| {max_diff:.2e})",
        tr_t.n,
        te_t.n,
        100.0 * acc_t,
        100.0 * acc_n
    );
    assert!(
        (acc_t - acc_n).abs() <= 0.01,
        "tch {acc_t} vs ndarray {acc_n}"
    );
    assert!(
        acc_t > 0.85,
        "features of a digits 0-4 trunk serve 5-9: {acc_t}"
    );

    // export 1: the logistic head installed on the trunk, one user model, read by the registry
    let mut exported = reg
        .create(&b, "digits04", &opts)
        .expect("copy of the source")
        .0;
    head_t
        .install(&mut exported, &te_t.classes)
        .expect("install");
    exported
        .save_user_model(&dir.join("digits59_logistic"))
        .expect("save");
    reg.register_dir(&dir.join("digits59_logistic"), None)
        .expect("register");
    let (m, _) = reg
        .create(
            &NdArray,
            "digits59_logistic",
            &ModelOptions::default().num_classes(5).in_chans(1),
        )
        .expect("exported model");
    assert_eq!(m.cfg().labels.as_deref(), Some(&te_t.classes[..]));
    let on_images = evaluate(&m, &test, &Ctx::eval()).expect("eval").top1;
    eprintln!(
        "exported logistic model on test images (ndarray): {:.2} %",
        100.0 * on_images
    );
    assert!(
        (on_images - acc_t).abs() <= 0.005,
        "images {on_images} vs features {acc_t}"
    );

    // export 2: a Linear head trained by the Trainer on the cached features
    let mut tuned = reg.create(&b, "digits04", &opts).expect("copy").0;
    let mut how = HeadTraining::linear(50);
    how.train.progress = false;
    let h = train_head(&mut tuned, &tr_t, Some(&te_t), &how).expect("train head");
    let last = h.epochs.last().and_then(|e| e.val.clone()).expect("val");
    let via_images = evaluate(&tuned, &test, &Ctx::eval()).expect("eval");
    eprintln!(
        "Trainer-fitted Linear head: {:.2} % on cached features, {:.2} % on images",
        100.0 * last.top1,
        100.0 * via_images.top1
    );
    assert!(last.top1 > 0.8, "{}", last.top1);
    assert!((last.top1 - via_images.top1).abs() <= 0.005);
    for (name, e) in tuned.params().iter() {
        if !tuned.is_classifier(name) {
            let before = source.params().get(name).expect("same names");
            assert_eq!(
                b.to_data(&e.tensor).expect("d"),
                b.to_data(before).expect("d"),
                "{name} moved while training the head"
            );
        }
    }
    let stage2 = extract(
        &source,
        &train,
        &FeatureSpec::Stage("layer2".into()),
        &cache,
    )
    .expect("stage")
    .0;
    assert!(
        train_head(&mut tuned, &stage2, None, &HeadTraining::linear(1)).is_err(),
        "a head trains on the pooled features only"
    );

    // the probe: intact, then with layer3 made constant (its first block's convs zeroed)
    let report = probe(&source, &train, &test, &cache, &ProbeConfig::default()).expect("probe");
    eprintln!("{report}");
    assert_eq!(report.rows.len(), 5);
    let broken = reg.create(&b, "digits04", &opts).expect("copy").0;
    for name in ["layer3.0.conv2.weight", "layer3.0.downsample.0.weight"] {
        let t = broken.params().get(name).expect("weight");
        let z = b.full(&b.shape(t), 0.0, b.dtype(t)).expect("zeros");
        b.no_grad(|| b.assign(t, &z)).expect("assign");
    }
    let low = probe(&broken, &train, &test, &cache, &ProbeConfig::default()).expect("probe");
    eprintln!("{low}");
    for r in &low.rows[3..] {
        assert!(
            r.val_accuracy < 0.4,
            "{} carries nothing: {}",
            r.stage,
            r.val_accuracy
        );
    }
    assert!(
        low.freeze_stages <= 3,
        "the rule must pick a stage below layer3: {low}"
    );
    assert!(low.to_string().contains("fine-tune"));
    let again = probe(&broken, &train, &test, &cache, &ProbeConfig::default()).expect("probe");
    assert_eq!(
        again.forwards, 0,
        "the probe's features come from the cache"
    );
    assert_eq!(again.rows, low.rows);
    let _ = std::fs::remove_dir_all(&dir);
}
