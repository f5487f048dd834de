//! The study's setup: the data halves, loaders, training a model from scratch, the fine-tuning
//! strategies it compares.

use super::*;

/// The ten digits: the source (MNIST) and every target share the classes.
pub(crate) const TARGET: [usize; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
pub(crate) const CLASSES: usize = TARGET.len();
/// The farther target's shift (the report says why it was chosen).
pub(crate) const FAR: Shift = Shift::Rot90(1);
pub(crate) const DEPTHS: [usize; 6] = [0, 1, 2, 3, 4, 5];

pub(crate) struct Setup {
    /// The target collection: scikit-learn's digits.
    pub(crate) digits: Arc<dyn Dataset>,
    /// The source collection: MNIST in the digits' 8×8 form.
    pub(crate) mnist: Arc<dyn Dataset>,
    /// First stratified half (training pool), second half (test).
    pub(crate) first: Vec<usize>,
    pub(crate) second: Vec<usize>,
    pub(crate) quick: bool,
    pub(crate) seeds: Vec<u64>,
    pub(crate) cache: PathBuf,
}

pub(crate) type Snapshot = BTreeMap<String, TensorData>;

/// Epochs for `n` training images: about 1000 image-passes, 6 to 60 epochs.
pub(crate) fn epochs_for(n: usize) -> usize {
    (1000 / n.max(1)).clamp(6, 60)
}

pub(crate) fn model_from(snapshot: &Snapshot, classes: usize, seed: u64) -> Result<Model<Tch>> {
    let opts = ModelOptions::default()
        .num_classes(classes)
        .in_chans(1)
        .seed(seed);
    let (mut m, _) = create_model(&Tch::cpu(), "resnet18_small", &opts)?;
    m.load_tensors(
        Path::new("source"),
        snapshot,
        &graft::zoo::LoadOptions::default(),
    )?;
    Ok(m)
}

pub(crate) fn loader(
    s: &Setup,
    idx: &[usize],
    classes: &[usize],
    shift: Option<Shift>,
    train_seed: Option<u64>,
) -> Result<Loader> {
    let ds = Arc::new(Subset::with_classes(
        s.digits.clone(),
        idx.to_vec(),
        classes,
    )?);
    let n = ds.len();
    let cfg = match train_seed {
        Some(seed) => LoaderConfig::train(n.clamp(1, 32)).seed(seed),
        None => LoaderConfig::eval(256),
    };
    let mut l = Loader::new(ds, cfg)?;
    if let Some(sh) = shift {
        l = l.with_transform(Arc::new(sh));
    }
    Ok(l)
}

/// Trains `resnet18_small` from scratch; returns the model and test accuracy per epoch (when
/// `curve` is given a test loader to evaluate on after each epoch).
pub(crate) fn scratch(
    train: &Loader,
    classes: usize,
    epochs: usize,
    seed: u64,
    curve: Option<&Loader>,
) -> Result<(Model<Tch>, Vec<f64>)> {
    let opts = ModelOptions::default()
        .num_classes(classes)
        .in_chans(1)
        .seed(seed);
    let (mut m, _) = create_model(&Tch::cpu(), "resnet18_small", &opts)?;
    let h = common::train_from_scratch(&mut m, train, epochs, seed, curve)?;
    Ok((
        m,
        h.epochs
            .iter()
            .filter_map(|e| e.val.as_ref().map(|v| v.top1))
            .collect(),
    ))
}

/// Fine-tunes a copy of the source with `strategy`; test accuracy per epoch when `curve` is set.
pub(crate) fn tune(
    src: &Snapshot,
    train: &Loader,
    strategy: &Strategy,
    seed: u64,
    curve: Option<&Loader>,
    cache: &Path,
) -> Result<(Model<Tch>, Vec<f64>)> {
    tune_with(src, train, strategy, seed, curve, cache, None)
}

/// [`tune`], semi-supervised on `unlabeled` where given.
pub(crate) fn tune_with(
    src: &Snapshot,
    train: &Loader,
    strategy: &Strategy,
    seed: u64,
    curve: Option<&Loader>,
    cache: &Path,
    unlabeled: Option<Unlabeled>,
) -> Result<(Model<Tch>, Vec<f64>)> {
    let mut m = model_from(src, CLASSES, seed)?;
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    opts.seed = seed;
    opts.cache_dir = Some(cache.to_path_buf());
    opts.unlabeled = unlabeled;
    let r = fine_tune(&mut m, CLASSES, train, curve, strategy, &opts)?;
    Ok((
        m,
        r.history
            .epochs
            .iter()
            .filter_map(|e| e.val.as_ref().map(|v| v.top1))
            .collect(),
    ))
}

pub(crate) fn recipe(depth: usize, epochs: usize) -> Strategy {
    Strategy::Recipe(Recipe {
        freeze: FreezeDepth::Stages(depth),
        epochs,
        // no early stopping: the only held-out images are the test set, never used to select
        patience: None,
        ..Recipe::default()
    })
}

pub(crate) fn lpft(epochs: usize) -> Strategy {
    Strategy::LpFt(LpFt {
        epochs: epochs.saturating_sub(1).max(1),
        ..LpFt::default()
    })
}

pub(crate) fn top1(m: &Model<Tch>, test: &Loader) -> Result<f64> {
    Ok(evaluate(m, test, &Ctx::eval())?.top1)
}

/// The source: `resnet18_small` from scratch on every MNIST image (the digits' 8×8 form),
/// labelled as the target's classes, normalisation the identity.
pub(crate) fn source(s: &Setup, epochs: usize) -> Result<Model<Tch>> {
    let train = Loader::new(s.mnist.clone(), LoaderConfig::train(32).seed(100))?;
    let (mut m, _) = scratch(&train, CLASSES, epochs, 100, None)?;
    let c = m.cfg_mut();
    c.input_size = [1, 8, 8];
    c.mean = [0.0; 3];
    c.std = [1.0; 3];
    c.crop_pct = 1.0;
    c.labels = Some(s.mnist.classes().to_vec());
    Ok(m)
}
