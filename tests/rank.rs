//! Transferability scores against a NumPy reference written from the papers' equations
//! (tests/python/rank_reference.py): LogME on classes and on regression targets, with more
//! samples than dimensions and fewer, with rank-deficient features; LEEP and NCE from a source
//! head's logits. And the scores' refusals.

mod common;

use std::path::Path;

use graft::extract::{FeatureSpec, Features, leep, logme, logme_regression, nce};
use ndarray::{Array1, Array2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    // Box–Muller
    let u: f64 = rng.random::<f64>().max(1e-12);
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
}

/// Class-structured features: a random mean per class plus noise; `dead` zero columns and one
/// column copied from another (rank-deficient, as pooled ReLU features often are).
fn features(n: usize, d: usize, classes: usize, noise: f32, dead: usize, seed: u64) -> Features {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let means: Vec<Vec<f32>> = (0..classes)
        .map(|_| (0..d).map(|_| normal(&mut rng)).collect())
        .collect();
    let labels: Vec<usize> = (0..n).map(|i| i % classes).collect();
    let mut data = Vec::with_capacity(n * d);
    for &l in &labels {
        let mut row: Vec<f32> = (0..d)
            .map(|j| means[l][j] + noise * normal(&mut rng))
            .collect();
        for v in row.iter_mut().take(dead) {
            *v = 0.0;
        }
        row[d - 1] = row[d - 2];
        data.extend(row);
    }
    Features {
        n,
        dim: d,
        data,
        labels,
        classes: (0..classes).map(|c| c.to_string()).collect(),
        spec: FeatureSpec::Pooled,
    }
}

/// A source head's logits: a random linear map of the features to `z` source classes.
fn logits(f: &Features, z: usize, seed: u64) -> Features {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w: Vec<f32> = (0..z * f.dim).map(|_| normal(&mut rng) * 0.5).collect();
    let mut data = Vec::with_capacity(f.n * z);
    for i in 0..f.n {
        let r = f.row(i);
        for k in 0..z {
            data.push(r.iter().zip(&w[k * f.dim..]).map(|(a, b)| a * b).sum());
        }
    }
    Features {
        dim: z,
        data,
        spec: FeatureSpec::Logits,
        ..f.clone()
    }
}

/// Two regression targets: a linear function of the features plus noise, and noise alone.
fn targets(f: &Features, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w: Vec<f32> = (0..f.dim).map(|_| normal(&mut rng)).collect();
    let mut t = Vec::with_capacity(f.n * 2);
    for i in 0..f.n {
        let y: f32 = f.row(i).iter().zip(&w).map(|(a, b)| a * b).sum();
        t.push(y + 0.5 * normal(&mut rng));
        t.push(normal(&mut rng));
    }
    t
}

fn write(dir: &Path, f: &Features, classes: usize, t: Option<&[f32]>, l: Option<&Features>) {
    std::fs::create_dir_all(dir).expect("case dir");
    let x = Array2::from_shape_vec((f.n, f.dim), f.data.clone()).expect("shape");
    ndarray_npy::write_npy(dir.join("features.npy"), &x).expect("features");
    let y = Array1::from(f.labels.iter().map(|&v| v as i64).collect::<Vec<_>>());
    ndarray_npy::write_npy(dir.join("labels.npy"), &y).expect("labels");
    std::fs::write(dir.join("classes.txt"), classes.to_string()).expect("classes");
    if let Some(t) = t {
        let a = Array2::from_shape_vec((f.n, t.len() / f.n), t.to_vec()).expect("shape");
        ndarray_npy::write_npy(dir.join("targets.npy"), &a).expect("targets");
    }
    if let Some(l) = l {
        let a = Array2::from_shape_vec((l.n, l.dim), l.data.clone()).expect("shape");
        ndarray_npy::write_npy(dir.join("logits.npy"), &a).expect("logits");
    }
}

#[test]
fn scores_match_the_numpy_reference() {
    let dir = common::temp_dir("rank-ref");
    // (name, n, d, classes, noise, dead columns): more samples than dimensions, fewer (the
    // D > n case, where D − n eigenvalues of F'F are zero), features with no class signal
    let cases = [
        ("case_tall", 240, 24, 4, 0.8f32, 3),
        ("case_wide", 50, 120, 3, 1.0, 10),
        ("case_noise", 200, 16, 5, 50.0, 0),
        ("case_separable", 150, 8, 3, 0.05, 1),
    ];
    let mut ours = Vec::new();
    for (i, &(name, n, d, classes, noise, dead)) in cases.iter().enumerate() {
        let f = features(n, d, classes, noise, dead, 10 + i as u64);
        let t = targets(&f, 20 + i as u64);
        let l = logits(&f, 7, 30 + i as u64);
        write(&dir.join(name), &f, classes, Some(&t), Some(&l));
        ours.push((
            name,
            [
                ("logme", logme(&f, classes).expect("logme")),
                (
                    "logme_regression",
                    logme_regression(&f, &t, 2).expect("regression"),
                ),
                ("leep", leep(&l, classes).expect("leep")),
                ("nce", nce(&l, classes).expect("nce")),
            ],
        ));
    }
    common::run_python("rank_reference.py", &[dir.to_str().expect("utf-8")]);
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference");
    let want: serde_json::Value = serde_json::from_str(&text).expect("json");
    for (name, scores) in &ours {
        for (score, got) in scores {
            let w = want[name][score].as_f64().expect("reference value");
            assert!(
                (got - w).abs() <= 1e-6,
                "{name} {score}: graft {got} vs NumPy {w} (diff {:e})",
                (got - w).abs()
            );
        }
    }
    // the scores separate what they should: class signal vs none
    let score = |n: &str| ours.iter().find(|o| o.0 == n).expect("case").1[0].1;
    assert!(
        score("case_separable") > score("case_noise") + 0.1,
        "{} vs {}",
        score("case_separable"),
        score("case_noise")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scores_refuse_bad_input_by_name() {
    let f = features(30, 6, 3, 0.5, 0, 1);
    // a class without a sample (its one-hot target is all zeros)
    let e = logme(&f, 4).expect_err("class 3 empty");
    assert!(e.to_string().contains("class 3"), "{e}");
    // a label past the classes
    let e = logme(&f, 2).expect_err("label 2 of 2 classes");
    assert!(e.to_string().contains("sample 2 has label 2"), "{e}");
    let mut g = f.clone();
    g.data[6 * 4 + 1] = f32::NAN;
    let e = logme(&g, 3).expect_err("NaN");
    assert!(e.to_string().contains("sample 4"), "{e}");
    let e = logme_regression(&f, &[0.0; 10], 1).expect_err("10 targets for 30");
    assert!(e.to_string().contains("10 target values"), "{e}");
    let e = logme_regression(&f, &[f32::INFINITY; 30], 1).expect_err("inf target");
    assert!(e.to_string().contains("sample 0"), "{e}");
    let l = logits(&f, 4, 2);
    let e = leep(&l, 2).expect_err("label past classes");
    assert!(e.to_string().contains("label 2"), "{e}");
    let e = nce(&l, 0).expect_err("no class");
    assert!(e.to_string().contains("no class"), "{e}");
    // features that say nothing: all zeros is a valid input with the no-feature evidence
    let z = Features {
        data: vec![0.0; f.n * f.dim],
        ..f.clone()
    };
    let v = logme(&z, 3).expect("zero features");
    assert!(v.is_finite() && v < logme(&f, 3).expect("logme"), "{v}");
}
