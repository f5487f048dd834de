//! Which pretrained model to start from, before any training: every candidate's frozen features
//! on the target's training split (extracted once, cached), scored by LogME, by LEEP and NCE from
//! its own source head where it has one, and by the kNN and linear-probe accuracies on a
//! validation split that the cache makes cheap; the candidates sorted by LogME.

mod scores;

pub use scores::{leep, logme, logme_regression, nce};

use std::path::Path;
use std::time::Instant;

use graft_backend::Backend;
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_zoo::Model;

use crate::heads::{KnnHead, LogisticConfig, LogisticHead, accuracy};
use crate::{FeatureSpec, extract_many};

/// A candidate, ready to score: the model (its weights loaded), the target's training split
/// through the model's own eval transform, and optionally a validation split for the probes.
#[derive(Debug)]
pub struct Candidate<B: Backend> {
    pub model: Model<B>,
    pub train: Loader,
    pub val: Option<Loader>,
    /// The model's classifier came with its weights (a trained source head): LEEP and NCE are
    /// computed from it. A random or dropped head has nothing to say about the target.
    pub source_head: bool,
    /// The features LogME and the probes read: the pooled features or a trunk stage's (not the
    /// logits).
    pub features: FeatureSpec,
}

/// What to compute besides LogME.
#[derive(Debug, Clone, PartialEq)]
pub struct RankConfig {
    /// Neighbours of the kNN probe (cosine, similarity-weighted votes); 0 skips it.
    pub knn_k: usize,
    /// The linear probe (a logistic head on the features); `None` skips it.
    pub linear: Option<LogisticConfig>,
}

impl Default for RankConfig {
    fn default() -> Self {
        Self {
            knn_k: 20,
            linear: Some(LogisticConfig::default()),
        }
    }
}

/// Seconds one candidate took, by part.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RankTimes {
    /// Building the model and its loaders (weights read from the caches).
    pub load: f64,
    /// The trunk pass over the splits (≈ 0 when the features were cached).
    pub extract: f64,
    pub logme: f64,
    /// LEEP and NCE together.
    pub source: f64,
    pub knn: f64,
    pub linear: f64,
}

impl RankTimes {
    pub fn total(&self) -> f64 {
        self.load + self.extract + self.logme + self.source + self.knn + self.linear
    }
}

/// One candidate's scores (higher is better for each).
#[derive(Debug, Clone, PartialEq)]
pub struct RankRow {
    pub name: String,
    /// Feature width and training samples scored.
    pub dim: usize,
    pub n: usize,
    pub logme: f64,
    /// From the candidate's own source head (none without one).
    pub leep: Option<f64>,
    pub nce: Option<f64>,
    /// Validation accuracies of the probes (none without a validation split or when off).
    pub knn: Option<f64>,
    pub linear: Option<f64>,
    /// Every feature came from the cache (no trunk forward).
    pub cached: bool,
    pub times: RankTimes,
}

/// The ranking: scored candidates sorted by LogME (best first), and those that could not be
/// scored with why.
#[derive(Debug, Clone, PartialEq)]
pub struct RankReport {
    pub rows: Vec<RankRow>,
    pub failed: Vec<(String, String)>,
}

/// Scores every candidate of `names` — `prepare` builds each (a model is dropped before the next
/// is built) — and sorts them by LogME. A candidate that cannot be prepared (a tag not in the
/// cache, offline) or scored is listed in `failed` with its error and the others go on; features
/// are cached in `cache_dir`.
pub fn rank<B, F, E>(
    names: &[String],
    cache_dir: &Path,
    cfg: &RankConfig,
    mut prepare: F,
) -> Result<RankReport>
where
    B: Backend,
    F: FnMut(&str) -> std::result::Result<Candidate<B>, E>,
    E: std::fmt::Display,
{
    if names.is_empty() {
        return Err(Error::invalid("rank", "no candidate to rank"));
    }
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for name in names {
        let t = Instant::now();
        let scored = match prepare(name) {
            Ok(c) => {
                let load = t.elapsed().as_secs_f64();
                score(name, &c, cache_dir, cfg, load).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match scored {
            Ok(r) => rows.push(r),
            Err(e) => failed.push((name.clone(), e)),
        }
    }
    rows.sort_by(|a, b| b.logme.total_cmp(&a.logme));
    Ok(RankReport { rows, failed })
}

fn score<B: Backend>(
    name: &str,
    c: &Candidate<B>,
    cache_dir: &Path,
    cfg: &RankConfig,
    load: f64,
) -> Result<RankRow> {
    let mut times = RankTimes {
        load,
        ..RankTimes::default()
    };
    let classes = c.train.dataset().classes().len();
    if c.features == FeatureSpec::Logits {
        return Err(Error::invalid(
            "rank",
            format!("{name}: LogME reads features, not logits (pooled or a stage)"),
        ));
    }
    let mut specs = vec![c.features.clone()];
    if c.source_head {
        specs.push(FeatureSpec::Logits);
    }
    let t = Instant::now();
    let (train, rt) = extract_many(&c.model, &c.train, &specs, cache_dir)?;
    let probes = cfg.knn_k > 0 || cfg.linear.is_some();
    let val = match (&c.val, probes) {
        (Some(v), true) => Some(extract_many(&c.model, v, &specs[..1], cache_dir)?),
        _ => None,
    };
    times.extract = t.elapsed().as_secs_f64();
    let cached = rt.cached && val.as_ref().is_none_or(|(_, r)| r.cached);
    let feats = &train[0];
    let t = Instant::now();
    let logme = logme(feats, classes)?;
    times.logme = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (leep, nce) = match train.get(1) {
        Some(logits) => (Some(leep(logits, classes)?), Some(nce(logits, classes)?)),
        None => (None, None),
    };
    times.source = t.elapsed().as_secs_f64();
    let (mut knn, mut linear) = (None, None);
    if let Some((v, _)) = &val {
        let v = &v[0];
        if cfg.knn_k > 0 {
            let t = Instant::now();
            let head = KnnHead::fit(feats, classes, cfg.knn_k)?;
            knn = Some(accuracy(&head.predict(v), v));
            times.knn = t.elapsed().as_secs_f64();
        }
        if let Some(l) = &cfg.linear {
            let t = Instant::now();
            let head = LogisticHead::fit(feats, classes, l)?;
            linear = Some(accuracy(&head.predict(v)?, v));
            times.linear = t.elapsed().as_secs_f64();
        }
    }
    Ok(RankRow {
        name: name.to_string(),
        dim: feats.dim,
        n: feats.n,
        logme,
        leep,
        nce,
        knn,
        linear,
        cached,
        times,
    })
}
