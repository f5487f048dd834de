//! Few-shot evaluation as the field reports it: N-way K-shot episodes drawn from cached features
//! (Vinyals et al. 2016; Snell et al. 2017), a head fitted on each episode's support set and scored
//! on its query set, and the mean accuracy with its 95 % confidence interval,
//! `1.96 · σ / √episodes` (σ the standard deviation over episodes, as Chen et al. 2019, "A Closer
//! Look at Few-shot Classification", compute it) over ≥ 600 episodes.
//!
//! Episode `e` is drawn from its own generator seeded by (seed, e): which classes, which support
//! and query samples — the same episodes for every head and every model evaluated with the same
//! seed, so two heads or two trunks are compared on identical tasks.

use graft_core::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::{FeatureSpec, Features, LogisticConfig, LogisticHead, PrototypeHead};

/// The head fitted on each episode's support set.
#[derive(Debug, Clone)]
pub enum EpisodeHead {
    /// Nearest class mean by cosine (Snell et al. 2017's prototypes on frozen features).
    Prototype,
    /// Multinomial logistic regression (Tian et al. 2020, "Rethinking Few-Shot Image
    /// Classification": a linear classifier on frozen features).
    Logistic(LogisticConfig),
}

impl std::fmt::Display for EpisodeHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EpisodeHead::Prototype => "prototype",
            EpisodeHead::Logistic(_) => "logistic",
        })
    }
}

/// What the episodes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodeConfig {
    /// Classes per episode (N).
    pub ways: usize,
    /// Labelled examples per class (K).
    pub shots: usize,
    /// Query examples per class, scored.
    pub queries: usize,
    pub episodes: usize,
    pub seed: u64,
}

impl EpisodeConfig {
    /// `ways`-way `shots`-shot, 15 queries a class, 600 episodes (the field's usual protocol).
    pub fn new(ways: usize, shots: usize) -> Self {
        Self {
            ways,
            shots,
            queries: 15,
            episodes: 600,
            seed: 0,
        }
    }
}

/// The accuracy over episodes.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeReport {
    pub config: EpisodeConfig,
    pub head: String,
    /// Each episode's query accuracy, in episode order.
    pub accuracies: Vec<f64>,
    pub mean: f64,
    /// Standard deviation over episodes.
    pub std: f64,
    /// Half-width of the 95 % confidence interval of the mean: `1.96 · std / √episodes`.
    pub ci95: f64,
}

impl std::fmt::Display for EpisodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        write!(
            f,
            "{}-way {}-shot ({}, {} episodes, {} queries a class): {:.2} ± {:.2} %",
            c.ways,
            c.shots,
            self.head,
            c.episodes,
            c.queries,
            100.0 * self.mean,
            100.0 * self.ci95
        )
    }
}

/// Runs `cfg`'s episodes over `features` (each class with at least `shots + queries` samples
/// takes part) with `head`.
pub fn evaluate_episodes(
    features: &Features,
    cfg: &EpisodeConfig,
    head: &EpisodeHead,
) -> Result<EpisodeReport> {
    let need = cfg.shots + cfg.queries;
    if cfg.ways < 2 || cfg.shots == 0 || cfg.queries == 0 || cfg.episodes == 0 {
        return Err(Error::invalid(
            "episodes",
            format!(
                "{}-way {}-shot, {} queries, {} episodes: at least 2 ways and one shot, query and episode",
                cfg.ways, cfg.shots, cfg.queries, cfg.episodes
            ),
        ));
    }
    let classes = features
        .classes
        .len()
        .max(features.labels.iter().copied().max().map_or(0, |m| m + 1));
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in features.labels.iter().enumerate() {
        members[l].push(i);
    }
    let eligible: Vec<usize> = (0..classes).filter(|&c| members[c].len() >= need).collect();
    if eligible.len() < cfg.ways {
        return Err(Error::invalid(
            "episodes",
            format!(
                "{}-way episodes need {} classes with {need} samples each ({} shots + {} queries); {} of the {classes} classes have that many",
                cfg.ways,
                cfg.ways,
                cfg.shots,
                cfg.queries,
                eligible.len()
            ),
        ));
    }
    let mut accuracies = Vec::with_capacity(cfg.episodes);
    for e in 0..cfg.episodes {
        let mut rng = ChaCha8Rng::seed_from_u64(graft_backend::init::stable_hash(
            &[cfg.seed.to_le_bytes(), (e as u64).to_le_bytes()].concat(),
        ));
        let mut pool = eligible.clone();
        pool.shuffle(&mut rng);
        let mut support = (Vec::new(), Vec::new());
        let mut query = (Vec::new(), Vec::new());
        for (new, &c) in pool[..cfg.ways].iter().enumerate() {
            let mut m = members[c].clone();
            m.shuffle(&mut rng);
            for (k, &i) in m[..need].iter().enumerate() {
                let side = if k < cfg.shots {
                    &mut support
                } else {
                    &mut query
                };
                side.0.extend_from_slice(features.row(i));
                side.1.push(new);
            }
        }
        let names: Vec<String> = (0..cfg.ways).map(|w| w.to_string()).collect();
        let make = |(data, labels): (Vec<f32>, Vec<usize>)| Features {
            n: labels.len(),
            dim: features.dim,
            data,
            labels,
            classes: names.clone(),
            spec: FeatureSpec::Pooled,
        };
        let (s, q) = (make(support), make(query));
        let pred = match head {
            EpisodeHead::Prototype => PrototypeHead::fit(&s, cfg.ways)?.predict(&q),
            EpisodeHead::Logistic(lc) => LogisticHead::fit(&s, cfg.ways, lc)?.predict(&q)?,
        };
        let right = pred.iter().zip(&q.labels).filter(|(p, l)| p == l).count();
        accuracies.push(right as f64 / q.n as f64);
    }
    let n = accuracies.len() as f64;
    let mean = accuracies.iter().sum::<f64>() / n;
    let std = (accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n).sqrt();
    Ok(EpisodeReport {
        config: *cfg,
        head: head.to_string(),
        accuracies,
        mean,
        std,
        ci95: 1.96 * std / n.sqrt(),
    })
}
