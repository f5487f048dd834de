//! Semi-supervised training in the one Trainer (pseudo-labelling, FixMatch) on scikit-learn's
//! digits: the unlabelled set's labels are never read — corrupting every one of them changes no
//! weight —, and a run stopped after an epoch and resumed ends bit-identical to an uninterrupted
//! one (the unlabelled batch of a step is a function of the step).

mod common;

use std::sync::Arc;

use graft::data::{
    ArrayDataset, Dataset, Loader, LoaderConfig, Sample, Shift, Subset, k_shot, stratified_split,
};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{TrainConfig, Trainer, Unlabeled, snapshot};
use graft::zoo::{ModelOptions, create_model};
use graft::{Result, Tch};

/// A dataset whose labels are all wrong (the same samples).
#[derive(Debug)]
struct Garbled(Arc<dyn Dataset>);

impl Dataset for Garbled {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn label(&self, i: usize) -> usize {
        (self.0.label(i) * 7 + 3) % 10
    }
    fn get(&self, i: usize) -> Result<Sample> {
        Ok(match self.0.get(i)? {
            Sample::Image(mut im) => {
                im.label = self.label(i);
                Sample::Image(im)
            }
            other => other,
        })
    }
    fn classes(&self) -> &[String] {
        self.0.classes()
    }
    fn in_memory(&self) -> bool {
        self.0.in_memory()
    }
}

struct Data {
    labelled: Loader,
    unlabelled: Arc<dyn Dataset>,
}

fn data() -> Data {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let halves = stratified_split(&digits.labels(), &[0.5, 0.5], 0).expect("split");
    let labels = digits.labels();
    let few = k_shot(&labels, &halves[0], 5, 0).expect("k-shot");
    let rest: Vec<usize> = halves[0]
        .iter()
        .copied()
        .filter(|i| !few.contains(i))
        .collect();
    let labelled = Loader::new(
        Arc::new(Subset::new(digits.clone(), few).expect("subset")),
        LoaderConfig::train(10).seed(1),
    )
    .expect("loader");
    let unlabelled: Arc<dyn Dataset> = Arc::new(Subset::new(digits, rest).expect("subset"));
    Data {
        labelled,
        unlabelled,
    }
}

fn unlabeled(ds: Arc<dyn Dataset>, fixmatch: bool) -> Unlabeled {
    // μ = 2: 20 unlabelled images a step beside 10 labelled ones
    let cfg = LoaderConfig::train(20).seed(2);
    let weak = Loader::new(ds.clone(), cfg.clone()).expect("weak");
    if fixmatch {
        let strong = Loader::new(ds, cfg)
            .expect("strong")
            .with_transform(Arc::new(Shift::parse("noise:0.2").expect("shift")));
        Unlabeled::fixmatch(weak, strong, 0.5, 1.0).expect("fixmatch")
    } else {
        Unlabeled::pseudo_label(weak, 0.5, 1.0, Some(0.5)).expect("pseudo-label")
    }
}

/// `epochs` epochs of resnet18_small, semi-supervised on `u`; `stop_after`: stop there (the
/// checkpoint in `dir` kept); `resume`: continue from `dir`'s checkpoint.
fn train(
    u: Unlabeled,
    labelled: &Loader,
    dir: Option<&std::path::Path>,
    stop_after: Option<usize>,
) -> std::collections::BTreeMap<String, graft::TensorData> {
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
    let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::adamw(2e-3)).expect("plan");
    let opt = plan.apply(&model).expect("apply");
    let mut cfg = TrainConfig::new(2);
    cfg.progress = false;
    cfg.seed = 3;
    if let Some(d) = dir {
        cfg.run_dir = Some(d.to_path_buf());
        cfg.resume = true;
    }
    let mut t = Trainer::new(cfg, opt, plan.modes().clone()).with_unlabeled(u);
    if let Some(n) = stop_after {
        t = t.with_callback(Box::new(common::StopAfter(n)));
    }
    t.fit(&mut model, labelled, None).expect("fit");
    snapshot(&model).expect("snapshot")
}

#[test]
fn the_unlabelled_labels_are_never_read() {
    let d = data();
    let garbled: Arc<dyn Dataset> = Arc::new(Garbled(d.unlabelled.clone()));
    assert_ne!(garbled.labels(), d.unlabelled.labels());
    for fixmatch in [true, false] {
        let honest = train(
            unlabeled(d.unlabelled.clone(), fixmatch),
            &d.labelled,
            None,
            None,
        );
        let lied = train(
            unlabeled(garbled.clone(), fixmatch),
            &d.labelled,
            None,
            None,
        );
        assert!(
            honest == lied,
            "fixmatch {fixmatch}: the weights depend on the unlabelled labels"
        );
        // and the unlabelled data does take part: without it the weights differ
        let b = Tch::cpu();
        let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
        let (mut model, _) = create_model(&b, "resnet18_small", &opts).expect("model");
        let plan = Plan::new(&model, &FreezeConfig::none(), &LrConfig::adamw(2e-3)).expect("plan");
        let mut cfg = TrainConfig::new(2);
        cfg.progress = false;
        cfg.seed = 3;
        Trainer::new(
            cfg,
            plan.apply(&model).expect("apply"),
            plan.modes().clone(),
        )
        .fit(&mut model, &d.labelled, None)
        .expect("fit");
        assert!(
            snapshot(&model).expect("snapshot") != honest,
            "fixmatch {fixmatch}"
        );
    }
}

#[test]
fn a_semi_supervised_run_resumes_bit_identical() {
    let d = data();
    let whole = train(
        unlabeled(d.unlabelled.clone(), true),
        &d.labelled,
        None,
        None,
    );
    let dir = std::env::temp_dir().join(format!("graft-semi-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = train(
        unlabeled(d.unlabelled.clone(), true),
        &d.labelled,
        Some(&dir),
        Some(1),
    );
    let resumed = train(
        unlabeled(d.unlabelled.clone(), true),
        &d.labelled,
        Some(&dir),
        None,
    );
    assert!(
        whole == resumed,
        "the resumed run differs from the uninterrupted one"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fixmatch_views_must_be_of_the_same_samples() {
    let d = data();
    let weak = Loader::new(d.unlabelled.clone(), LoaderConfig::train(30).seed(2)).expect("l");
    let other = Loader::new(d.unlabelled.clone(), LoaderConfig::train(30).seed(5)).expect("l");
    assert!(Unlabeled::fixmatch(weak.clone(), other, 0.95, 1.0).is_err());
    assert!(Unlabeled::pseudo_label(weak.clone(), 1.5, 1.0, None).is_err());
    assert!(Unlabeled::pseudo_label(weak, 0.9, f64::NAN, None).is_err());
}
