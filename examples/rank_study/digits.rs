//! The digits target: candidate sources made here from real data with different pretraining —
//! MNIST whole, in subsets, of other classes, shifted; a random trunk; other depths and widths —
//! each scored on scikit-learn's digits before training and then fine-tuned on them.

use super::*;

use graft::backend::safetensors_io;
use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Shift, Subset, k_shot};
use graft::finetune::{FineTuneOptions, FreezeDepth, Recipe, Strategy, fine_tune};
use graft::train::evaluate;
use graft::zoo::{Arch, Block, LoadOptions, Model, ModelOptions, Registry, ResNet};
use graft::{Ctx, Tch};

/// The trunk of a candidate: ResNets with the 3×3 stride-1 stem the 8×8 digits need.
#[derive(Debug, Clone, Copy)]
enum Trunk {
    /// `resnet18_small`: basic blocks [2, 2, 2, 2], 512-d features.
    R18,
    /// Shallower: basic blocks [1, 1, 1, 1].
    R10,
    /// Deeper: basic blocks [3, 4, 6, 3] (ResNet-34's).
    R34,
    /// Wider features: bottleneck blocks [2, 2, 2, 2], 2048-d (ResNet-26's).
    R26,
}

impl Trunk {
    fn arch(self) -> ResNet {
        let (block, layers) = match self {
            Trunk::R18 => (Block::Basic, [2, 2, 2, 2]),
            Trunk::R10 => (Block::Basic, [1, 1, 1, 1]),
            Trunk::R34 => (Block::Basic, [3, 4, 6, 3]),
            Trunk::R26 => (Block::Bottleneck, [2, 2, 2, 2]),
        };
        ResNet {
            small_stem: true,
            ..ResNet::new(block, layers)
        }
    }
    fn name(self) -> &'static str {
        match self {
            Trunk::R18 => "resnet18_small",
            Trunk::R10 => "resnet10_small",
            Trunk::R34 => "resnet34_small",
            Trunk::R26 => "resnet26_small",
        }
    }
}

/// One candidate source: its trunk and what it was trained on (`None`: a random trunk).
struct SourceSpec {
    label: &'static str,
    trunk: Trunk,
    /// MNIST images per class (None: all), the MNIST classes kept, a shift of every image.
    data: Option<(Option<usize>, &'static [usize], Option<Shift>)>,
}

const ALL: &[usize] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

fn sources() -> Vec<SourceSpec> {
    let s = |label, trunk, data| SourceSpec { label, trunk, data };
    vec![
        s("MNIST", Trunk::R18, Some((None, ALL, None))),
        s("MNIST 100/class", Trunk::R18, Some((Some(100), ALL, None))),
        s("MNIST 10/class", Trunk::R18, Some((Some(10), ALL, None))),
        s(
            "MNIST digits 0-4",
            Trunk::R18,
            Some((None, &[0, 1, 2, 3, 4], None)),
        ),
        s("MNIST digits 0-1", Trunk::R18, Some((None, &[0, 1], None))),
        s(
            "MNIST inverted",
            Trunk::R18,
            Some((None, ALL, Some(Shift::Invert(1.0)))),
        ),
        s(
            "MNIST rotated 90°",
            Trunk::R18,
            Some((None, ALL, Some(Shift::Rot90(1)))),
        ),
        s(
            "MNIST blurred σ 1",
            Trunk::R18,
            Some((None, ALL, Some(Shift::Blur(1.0)))),
        ),
        s("random trunk", Trunk::R18, None),
        s("MNIST, resnet10_small", Trunk::R10, Some((None, ALL, None))),
        s("MNIST, resnet34_small", Trunk::R34, Some((None, ALL, None))),
        s(
            "MNIST, resnet26_small (2048-d)",
            Trunk::R26,
            Some((None, ALL, None)),
        ),
    ]
}

/// A fresh candidate model: `trunk` with `classes` outputs, the digits' input form.
fn build(trunk: Trunk, classes: usize, seed: u64) -> Result<Model<Tch>> {
    let reg = Registry::builtin();
    let mut cfg = reg.get("resnet18_small")?.cfg.clone();
    cfg.input_size = [1, 8, 8];
    cfg.mean = [0.0; 3];
    cfg.std = [1.0; 3];
    cfg.crop_pct = 1.0;
    let opts = ModelOptions::default()
        .num_classes(classes)
        .in_chans(1)
        .seed(seed);
    Ok(Model::build(
        &Tch::cpu(),
        trunk.name(),
        Arch::ResNet(trunk.arch()),
        cfg,
        &opts,
    )?)
}

/// A trained (or random) source, as saved: its weights file and head width.
pub(crate) struct Source {
    pub(crate) label: &'static str,
    trunk: Trunk,
    weights: PathBuf,
    classes: usize,
    trained: bool,
    pub(crate) what: String,
}

impl Source {
    fn model(&self) -> Result<Model<Tch>> {
        let mut m = build(self.trunk, self.classes, 100)?;
        let (t, _) = safetensors_io::load(&self.weights)?;
        m.load_tensors(&self.weights, &t, &LoadOptions::default())?;
        Ok(m)
    }
}

/// Trains (or reads back) every source. Each trained source gets the same budget, about
/// `budget` image-passes (at most 60 epochs), AdamW 3e-3, weight decay 0.05, label smoothing
/// 0.1, one-cycle, batch 32 — the digits study's recipe from scratch.
pub(crate) fn make_sources(dir: &Path, budget: usize, quick: bool) -> Result<Vec<Source>> {
    let mnist: Arc<dyn Dataset> = Arc::new(ArrayDataset::mnist_8x8()?);
    let mut out = Vec::new();
    for spec in sources() {
        if quick && !matches!(spec.label, "MNIST" | "random trunk" | "MNIST digits 0-1") {
            continue;
        }
        let slug: String = spec
            .label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let weights = dir.join(format!("{slug}-{budget}.safetensors"));
        let classes = spec.data.map_or(10, |(_, c, _)| c.len());
        let t = Instant::now();
        let mut what = match spec.data {
            None => format!(
                "{}, random weights (seed 100), no training",
                spec.trunk.name()
            ),
            Some((per, cls, shift)) => format!(
                "{} from scratch on MNIST{}{}{}",
                spec.trunk.name(),
                per.map_or(String::new(), |k| format!(", {k} images a class")),
                if cls.len() < 10 {
                    format!(", digits {cls:?} only")
                } else {
                    String::new()
                },
                shift.map_or(String::new(), |s| format!(", every image under {s}")),
            ),
        };
        if !weights.exists() {
            let mut m = build(spec.trunk, classes, 100)?;
            if let Some((per, cls, shift)) = spec.data {
                let all: Vec<usize> = (0..mnist.len()).collect();
                let labels = mnist.labels();
                let idx: Vec<usize> = match per {
                    Some(k) => k_shot(&labels, &all, k, 100)?
                        .into_iter()
                        .filter(|&i| cls.contains(&labels[i]))
                        .collect(),
                    None => all
                        .into_iter()
                        .filter(|&i| cls.contains(&labels[i]))
                        .collect(),
                };
                let ds = Arc::new(Subset::with_classes(mnist.clone(), idx, cls)?);
                let n = ds.len();
                let mut train = Loader::new(ds, LoaderConfig::train(32).seed(100))?;
                if let Some(s) = shift {
                    train = train.with_transform(Arc::new(s));
                }
                let epochs = budget.div_ceil(n).clamp(1, 60);
                common::train_from_scratch(&mut m, &train, epochs, 100, None)?;
                eprintln!(
                    "source {}: {n} images, {epochs} epochs, {:.0} s",
                    spec.label,
                    t.elapsed().as_secs_f64()
                );
            }
            std::fs::create_dir_all(dir)?;
            safetensors_io::save(&weights, &m.params().to_data()?, None)?;
        }
        if spec.data.is_some() {
            what.push_str(&format!(", ~{budget} image-passes"));
        }
        out.push(Source {
            label: spec.label,
            trunk: spec.trunk,
            weights,
            classes,
            trained: spec.data.is_some(),
            what,
        });
    }
    Ok(out)
}

/// The target: scikit-learn's digits; a draw of `k` labelled images a class from the first
/// stratified half (train), `k` more a class from the rest of it (val, for the probes), the
/// second half (test).
pub(crate) struct Target {
    digits: Arc<dyn Dataset>,
    train: Vec<usize>,
    val: Vec<usize>,
    test: Vec<usize>,
}

pub(crate) fn target(k: usize, seed: u64) -> Result<Target> {
    let h = common::digits_halves()?;
    let labels = h.digits.labels();
    let train = k_shot(&labels, &h.first, k, seed)?;
    let rest: Vec<usize> = h
        .first
        .iter()
        .copied()
        .filter(|i| !train.contains(i))
        .collect();
    let val = k_shot(&labels, &rest, k, seed)?;
    Ok(Target {
        digits: h.digits,
        train,
        val,
        test: h.second,
    })
}

impl Target {
    fn loader(&self, idx: &[usize], shuffle_seed: Option<u64>) -> Result<Loader> {
        let ds = Arc::new(Subset::with_classes(
            self.digits.clone(),
            idx.to_vec(),
            ALL,
        )?);
        let cfg = match shuffle_seed {
            Some(s) => LoaderConfig::train(32).seed(s),
            None => LoaderConfig::eval(256),
        };
        Ok(Loader::new(ds, cfg)?)
    }
}

/// Scores every source on the target's train draw (`graft_extract::rank`, features cached).
pub(crate) fn score(sources: &[Source], t: &Target, cache: &Path) -> Result<RankReport> {
    rank_each(
        sources,
        |s| s.label.to_string(),
        cache,
        |s| {
            Ok(Candidate {
                model: s.model()?,
                train: t.loader(&t.train, None)?,
                val: Some(t.loader(&t.val, None)?),
                // a random trunk's head was never trained: no LEEP / NCE from it
                source_head: s.trained,
                features: FeatureSpec::Pooled,
            })
        },
    )
}

/// Fine-tunes a copy of the source on the target's train draw with the classic recipe (a new
/// head, the stem frozen, AdamW 1e-3 sliced to 1e-4, one-cycle, `epochs`), returns test top-1.
pub(crate) fn fine_tune_on(s: &Source, t: &Target, epochs: usize, seed: u64) -> Result<f64> {
    let mut m = s.model()?;
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    opts.seed = seed;
    let recipe = Recipe {
        freeze: FreezeDepth::Stages(1),
        epochs,
        patience: None,
        ..Recipe::default()
    };
    let train = t.loader(&t.train, Some(seed))?;
    fine_tune(&mut m, 10, &train, None, &Strategy::Recipe(recipe), &opts)?;
    Ok(evaluate(&m, &t.loader(&t.test, None)?, &Ctx::eval())?.top1)
}
