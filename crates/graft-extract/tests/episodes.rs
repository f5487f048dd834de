//! Few-shot episodes on real data: scikit-learn's digits with their pixels as features.

use graft_data::{ArrayDataset, Dataset, Sample};
use graft_extract::{
    EpisodeConfig, EpisodeHead, FeatureSpec, Features, LogisticConfig, evaluate_episodes,
};

fn digits() -> Features {
    let ds = ArrayDataset::digits();
    let mut data = Vec::new();
    for i in 0..ds.len() {
        let Sample::Image(im) = ds.get(i).expect("digit") else {
            panic!("image")
        };
        data.extend(im.data);
    }
    Features {
        n: ds.len(),
        dim: 64,
        data,
        labels: ds.labels(),
        classes: ds.classes().to_vec(),
        spec: FeatureSpec::Pooled,
    }
}

#[test]
fn episodes_report_mean_and_confidence_interval() {
    let f = digits();
    let logistic = EpisodeHead::Logistic(LogisticConfig::default());
    let mut one = EpisodeConfig::new(5, 1);
    one.episodes = 600;
    let p1 = evaluate_episodes(&f, &one, &EpisodeHead::Prototype).expect("1-shot");
    let p5 =
        evaluate_episodes(&f, &EpisodeConfig::new(5, 5), &EpisodeHead::Prototype).expect("5-shot");
    let l5 = evaluate_episodes(&f, &EpisodeConfig::new(5, 5), &logistic).expect("logistic");
    eprintln!("{p1}\n{p5}\n{l5}");
    assert_eq!(p1.accuracies.len(), 600);
    // the mean and interval are what the episodes say (1.96 σ / √n, σ over episodes)
    let n = p1.accuracies.len() as f64;
    let mean = p1.accuracies.iter().sum::<f64>() / n;
    let var = p1
        .accuracies
        .iter()
        .map(|a| (a - mean).powi(2))
        .sum::<f64>()
        / n;
    assert!(
        (p1.mean - mean).abs() < 1e-12 && (p1.ci95 - 1.96 * var.sqrt() / n.sqrt()).abs() < 1e-12
    );
    // every episode's accuracy is a fraction of its 75 queries
    assert!(
        p1.accuracies
            .iter()
            .all(|a| (a * 75.0 - (a * 75.0).round()).abs() < 1e-9)
    );
    // digits are easy: far above chance (20 %), more shots help
    assert!(p1.mean > 0.6, "{p1}");
    assert!(p5.mean > p1.mean + 0.05, "{p1} / {p5}");
    assert!(l5.mean > 0.8, "{l5}");
    assert!(p5.ci95 < 0.02 && p5.ci95 > 0.0, "{p5}");
    // the same seed, the same episodes; another seed, others
    let again = evaluate_episodes(&f, &one, &EpisodeHead::Prototype).expect("again");
    assert_eq!(again.accuracies, p1.accuracies);
    one.seed = 1;
    let other = evaluate_episodes(&f, &one, &EpisodeHead::Prototype).expect("other");
    assert_ne!(other.accuracies, p1.accuracies);
}

#[test]
fn impossible_episodes_are_refused() {
    let f = digits();
    let too_many_ways = EpisodeConfig::new(11, 1);
    let err = evaluate_episodes(&f, &too_many_ways, &EpisodeHead::Prototype).expect_err("11-way");
    assert!(
        err.to_string().contains("11-way episodes need 11 classes"),
        "{err}"
    );
    let mut too_many_queries = EpisodeConfig::new(5, 5);
    too_many_queries.queries = 200;
    let err =
        evaluate_episodes(&f, &too_many_queries, &EpisodeHead::Prototype).expect_err("queries");
    assert!(err.to_string().contains("205 samples each"), "{err}");
    assert!(evaluate_episodes(&f, &EpisodeConfig::new(1, 1), &EpisodeHead::Prototype).is_err());
}
