//! graft-extract: feature extraction — run the frozen trunk once over a dataset (eval mode, no
//! parameter changes), cache the features on disk, and fit heads on the cached features in
//! seconds.
//!
//! Owns: the feature cache (keyed by the model's name, a hash of its current weights and buffers,
//! the loader's transform, the feature spec and the dataset's fingerprint — a second identical
//! run does no trunk forward at all), and the few-shot heads on host features (prototype /
//! nearest class mean by cosine, kNN).
//!
//! Must not know: concrete backends, optimizers, training loops, TOML.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use graft_backend::init::stable_hash;
use graft_backend::safetensors_io::{load, save};
use graft_backend::{Backend, Ctx, DType, TensorData};
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_zoo::Model;

/// Which features to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureSpec {
    /// The pooled pre-logits features (`forward_head(pre_logits = true)`).
    Pooled,
    /// A trunk stage's output, global-average-pooled to `[N, channels]`.
    Stage(String),
}

/// Features of a dataset: `[n, dim]` row-major, with labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
    pub labels: Vec<usize>,
}

impl Features {
    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// What an extraction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    /// The cache file.
    pub path: PathBuf,
    /// True when the features came from the cache.
    pub cached: bool,
    /// Trunk forwards run (0 on a cache hit).
    pub forwards: usize,
}

fn model_hash<B: Backend>(model: &Model<B>) -> Result<u64> {
    let mut b = Vec::new();
    for (name, t) in model.params().to_data()? {
        b.extend(name.as_bytes());
        b.extend(
            stable_hash(&match &t {
                TensorData::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
                TensorData::BF16(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
                TensorData::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            })
            .to_le_bytes(),
        );
    }
    Ok(stable_hash(&b))
}

/// The cache key of extracting `spec` from `model` over `loader`.
pub fn cache_key<B: Backend>(model: &Model<B>, loader: &Loader, spec: &FeatureSpec) -> Result<u64> {
    let mut b = Vec::new();
    b.extend(model.name().as_bytes());
    b.extend(model_hash(model)?.to_le_bytes());
    b.extend(format!("{:?}", loader.transform()).as_bytes());
    b.extend(format!("{spec:?}").as_bytes());
    b.extend(loader.dataset().fingerprint()?.to_le_bytes());
    Ok(stable_hash(&b))
}

/// Extracts features (batches in dataset order, eval mode), reading them from `cache_dir` when
/// an identical extraction was cached and writing them there otherwise.
pub fn extract<B: Backend>(
    model: &Model<B>,
    loader: &Loader,
    spec: &FeatureSpec,
    cache_dir: &Path,
) -> Result<(Features, ExtractReport)> {
    if loader.config().shuffle {
        return Err(Error::invalid(
            "extract",
            "the loader must not shuffle (features are stored in dataset order)",
        ));
    }
    let key = cache_key(model, loader, spec)?;
    let path = cache_dir.join(format!("features-{key:016x}.safetensors"));
    if path.exists() {
        let (t, _) = load(&path)?;
        let (Some(x), Some(y)) = (t.get("features"), t.get("labels")) else {
            return Err(Error::format(
                &path,
                "a feature cache holds `features` and `labels`",
            ));
        };
        let s = x.shape().to_vec();
        let labels = y
            .as_i64("feature cache")?
            .iter()
            .map(|&v| v as usize)
            .collect();
        let f = Features {
            n: s[0],
            dim: s[1],
            data: x.to_f32().iter().copied().collect(),
            labels,
        };
        return Ok((
            f,
            ExtractReport {
                path,
                cached: true,
                forwards: 0,
            },
        ));
    }
    let b = model.backend();
    let ctx = Ctx::eval();
    let (mut data, mut labels, mut dim, mut forwards) = (Vec::new(), Vec::new(), 0, 0);
    for batch in loader.epoch(0) {
        let batch = batch?;
        let x = b.from_data(&batch.images)?;
        let y = match spec {
            FeatureSpec::Pooled => model.forward_pooled(&x, &ctx)?,
            FeatureSpec::Stage(s) => {
                let out = model.forward_stages(&x, &[s.as_str()], &ctx)?;
                let m = out
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::invalid("extract", "no stage output"))?;
                b.flatten(&b.adaptive_avg_pool2d(&m, (1, 1))?, 1, 3)?
            }
        };
        forwards += 1;
        let y = b.to_data(&b.cast(&y, DType::F32)?)?.to_f32();
        dim = y.shape()[1];
        data.extend(y.iter().copied());
        labels.extend(batch.labels);
    }
    let n = labels.len();
    std::fs::create_dir_all(cache_dir).map_err(|e| Error::io(cache_dir, e))?;
    let mut t = BTreeMap::new();
    t.insert(
        "features".to_string(),
        TensorData::f32(&[n, dim], data.clone())?,
    );
    t.insert(
        "labels".to_string(),
        TensorData::i64(&[n], labels.iter().map(|&l| l as i64).collect())?,
    );
    let mut meta = std::collections::HashMap::new();
    meta.insert("model".to_string(), model.name().to_string());
    meta.insert("spec".to_string(), format!("{spec:?}"));
    save(&path, &t, Some(meta))?;
    Ok((
        Features {
            n,
            dim,
            data,
            labels,
        },
        ExtractReport {
            path,
            cached: false,
            forwards,
        },
    ))
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
        .max(1e-12) as f32;
    v.iter().map(|x| x / n).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Nearest class mean by cosine similarity (prototypes of L2-normalised features).
#[derive(Debug, Clone, PartialEq)]
pub struct PrototypeHead {
    pub prototypes: Vec<Vec<f32>>,
}

impl PrototypeHead {
    /// Class means of the normalised features of `train` (`classes` classes; a class without
    /// samples is an error naming it).
    pub fn fit(train: &Features, classes: usize) -> Result<Self> {
        let mut sums = vec![vec![0f32; train.dim]; classes];
        let mut counts = vec![0usize; classes];
        for i in 0..train.n {
            let c = train.labels[i];
            if c >= classes {
                return Err(Error::invalid(
                    "PrototypeHead",
                    format!("label {c} for {classes} classes"),
                ));
            }
            for (s, v) in sums[c].iter_mut().zip(normalized(train.row(i))) {
                *s += v;
            }
            counts[c] += 1;
        }
        if let Some(c) = counts.iter().position(|&n| n == 0) {
            return Err(Error::invalid(
                "PrototypeHead",
                format!("class {c} has no training sample"),
            ));
        }
        Ok(Self {
            prototypes: sums.iter().map(|s| normalized(s)).collect(),
        })
    }
    /// The predicted class of every row.
    pub fn predict(&self, f: &Features) -> Vec<usize> {
        (0..f.n)
            .map(|i| {
                let q = normalized(f.row(i));
                self.prototypes
                    .iter()
                    .enumerate()
                    .max_by(|a, b| dot(&q, a.1).total_cmp(&dot(&q, b.1)))
                    .map_or(0, |(k, _)| k)
            })
            .collect()
    }
}

/// k nearest neighbours by cosine similarity; votes weighted by similarity.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnHead {
    pub k: usize,
    train: Features,
    classes: usize,
}

impl KnnHead {
    /// Keeps the (normalised) training features.
    pub fn fit(train: &Features, classes: usize, k: usize) -> Result<Self> {
        if k == 0 || train.n == 0 {
            return Err(Error::invalid(
                "KnnHead",
                format!("k = {k} with {} training samples", train.n),
            ));
        }
        let data = (0..train.n)
            .flat_map(|i| normalized(train.row(i)))
            .collect();
        Ok(Self {
            k: k.min(train.n),
            train: Features {
                data,
                ..train.clone()
            },
            classes,
        })
    }
    /// The predicted class of every row.
    pub fn predict(&self, f: &Features) -> Vec<usize> {
        (0..f.n)
            .map(|i| {
                let q = normalized(f.row(i));
                let mut sims: Vec<(f32, usize)> = (0..self.train.n)
                    .map(|j| (dot(&q, self.train.row(j)), self.train.labels[j]))
                    .collect();
                sims.sort_by(|a, b| b.0.total_cmp(&a.0));
                let mut votes = vec![0f32; self.classes];
                for (s, l) in sims.iter().take(self.k) {
                    if *l < self.classes {
                        votes[*l] += 1.0 + s;
                    }
                }
                votes
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(c, _)| c)
            })
            .collect()
    }
}

/// Fraction of `pred` equal to `f`'s labels.
pub fn accuracy(pred: &[usize], f: &Features) -> f64 {
    let ok = pred.iter().zip(&f.labels).filter(|(p, y)| p == y).count();
    ok as f64 / f.n.max(1) as f64
}
