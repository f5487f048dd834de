//! Transferability scores: how well a candidate's frozen features (LogME) or its source head's
//! predictions (LEEP, NCE) fit the target's labels, computed without training anything.
//!
//! - **LogME** (You, Liu, Wang, Long, "LogME: Practical Assessment of Pre-trained Models for
//!   Transfer Learning", ICML 2021): the log marginal likelihood (evidence) of the target under
//!   Bayesian linear regression on the features, `y ~ N(Fw, β⁻¹)`, `w ~ N(0, α⁻¹ I)`, with α and β
//!   set by MacKay's fixed-point updates on one eigendecomposition — per class for one-hot labels
//!   (or per target column for regression), divided by the number of samples, averaged.
//! - **LEEP** (Nguyen, Hassner, Seeger, Archambeau, "LEEP: A New Measure to Evaluate
//!   Transferability of Learned Representations", ICML 2020): the average log-likelihood of the
//!   target labels under the "expected empirical predictor" built from the source head's softmax
//!   and the empirical conditional P(y | z) of target label given source label.
//! - **NCE** (Tran, Nguyen, Hassner, "Transferability and Hardness of Supervised Classification
//!   Tasks", ICCV 2019): the negative conditional entropy −H(Y | Z) of the target labels given
//!   the source head's hard predictions.
//!
//! Every score: higher is better; LogME and LEEP are average log-likelihoods (≤ 0 for LEEP, any
//! sign for LogME), NCE is in [−log C, 0].

use faer::{Mat, Side};
use graft_core::{Error, Result};

use crate::Features;
use crate::heads::{check_label_range, check_labels};

/// Fixed-point iterations of α and β at most; the updates converge in a handful on real features
/// (the authors' code stops after 11 or at a relative change of α/β below 1e-3 — a looser stop
/// than this one; at the fixed point the evidence is flat, so the two agree to ~1e-6).
const MAX_ITER: usize = 100;
const TOL: f64 = 1e-10;

/// The spectrum of a feature matrix and the targets projected on its left singular vectors.
#[derive(Debug)]
struct Spectrum {
    n: usize,
    /// Nonzero eigenvalues of FᵀF (= squared singular values of F), numerically nonzero only.
    sigma: Vec<f64>,
    /// `[k, t]`: the projection of each target column on the k kept left singular vectors.
    proj: Mat<f64>,
    /// ‖y‖² of each target column.
    y2: Vec<f64>,
}

impl Spectrum {
    /// `f` `[n, d]` row-major, `y` `[n, t]` column `j` = target `j`.
    fn new(f: &[f32], n: usize, d: usize, y: &Mat<f64>) -> Result<Self> {
        let fm = Mat::<f64>::from_fn(n, d, |i, j| f64::from(f[i * d + j]));
        // The smaller Gram matrix: FᵀF (d × d) when there are more samples than dimensions,
        // else FFᵀ (n × n) — the same nonzero eigenvalues, σᵢ = sᵢ².
        let tall = n > d;
        let gram = if tall {
            fm.transpose() * &fm
        } else {
            &fm * fm.transpose()
        };
        let eig = gram
            .self_adjoint_eigen(Side::Lower)
            .map_err(|e| Error::invalid("logme", format!("eigendecomposition failed: {e:?}")))?;
        let (vals, vecs) = (eig.S().column_vector(), eig.U());
        let m = vals.nrows();
        let top = (0..m).map(|i| vals[i]).fold(0.0f64, f64::max);
        // Eigenvalues of a Gram matrix are accurate to about top · m · ε; below that the
        // direction is numerically absent (rank-deficient features: dead ReLU channels,
        // duplicated dimensions) and counts as a zero singular value.
        let floor = top * m as f64 * f64::EPSILON;
        let keep: Vec<usize> = (0..m).filter(|&i| vals[i] > floor).collect();
        let k = keep.len();
        let t = y.ncols();
        let sigma: Vec<f64> = keep.iter().map(|&i| vals[i]).collect();
        let proj = if tall {
            // uᵢ = F vᵢ / sᵢ, so uᵢᵀy = vᵢᵀ(Fᵀy) / sᵢ
            let fty = fm.transpose() * y;
            Mat::<f64>::from_fn(k, t, |r, c| {
                let i = keep[r];
                let dot: f64 = (0..d).map(|j| vecs[(j, i)] * fty[(j, c)]).sum();
                dot / vals[i].sqrt()
            })
        } else {
            Mat::<f64>::from_fn(k, t, |r, c| {
                let i = keep[r];
                (0..n).map(|j| vecs[(j, i)] * y[(j, c)]).sum()
            })
        };
        let y2 = (0..t)
            .map(|c| (0..n).map(|i| y[(i, c)] * y[(i, c)]).sum())
            .collect();
        Ok(Self { n, sigma, proj, y2 })
    }

    /// The maximised evidence of target column `c`, per sample.
    fn evidence(&self, c: usize) -> f64 {
        let n = self.n as f64;
        let x2: Vec<f64> = (0..self.sigma.len())
            .map(|r| self.proj[(r, c)] * self.proj[(r, c)])
            .collect();
        let ln2pi = (2.0 * std::f64::consts::PI).ln();
        // ‖y‖² outside the features' span: fitted by no weight
        let outside = (self.y2[c] - x2.iter().sum::<f64>()).max(0.0);
        if x2.iter().all(|&v| v == 0.0) {
            // nothing to fit with: the weights' prior collapses (α → ∞) and only the noise
            // remains, β = n / ‖y‖²
            let beta = n / self.y2[c].max(f64::MIN_POSITIVE);
            return (n / 2.0 * beta.ln() - beta / 2.0 * self.y2[c] - n / 2.0 * ln2pi) / n;
        }
        // at t = α/β: γ (effective number of parameters), ‖m‖², ‖Fm − y‖²
        let terms = |t: f64| {
            let mut gamma = 0.0;
            let mut m2 = 0.0;
            let mut res2 = outside;
            for (&s, &x) in self.sigma.iter().zip(&x2) {
                gamma += s / (s + t);
                m2 += s * x / ((s + t) * (s + t));
                res2 += x * (t / (s + t)) * (t / (s + t));
            }
            (gamma, m2, res2)
        };
        let (mut alpha, mut beta) = (1.0f64, 1.0f64);
        for _ in 0..MAX_ITER {
            let t = alpha / beta;
            let (gamma, m2, res2) = terms(t);
            if m2 <= 0.0 || res2 <= 0.0 || n - gamma <= 0.0 {
                break;
            }
            let (a, b) = (gamma / m2, (n - gamma) / res2);
            let done = ((a / b) - t).abs() <= TOL * t;
            (alpha, beta) = (a, b);
            if done {
                break;
            }
        }
        let (_, m2, res2) = terms(alpha / beta);
        // k/2 ln α − ½ Σ ln(α + βσᵢ) is D/2 ln α − ½ ln|αI + βFᵀF|: the D − k zero eigenvalues
        // each add ln α to the log-determinant, cancelling as many ln α of the prior
        let k = self.sigma.len() as f64;
        let logdet: f64 = self.sigma.iter().map(|&s| (alpha + beta * s).ln()).sum();
        let ev = k / 2.0 * alpha.ln() + n / 2.0 * beta.ln()
            - alpha / 2.0 * m2
            - beta / 2.0 * res2
            - logdet / 2.0
            - n / 2.0 * ln2pi;
        ev / n
    }
}

fn check_features(what: &'static str, f: &Features) -> Result<()> {
    if f.n == 0 || f.dim == 0 {
        return Err(Error::invalid(
            what,
            format!("no features ({} samples of {} dimensions)", f.n, f.dim),
        ));
    }
    if f.data.len() != f.n * f.dim || f.labels.len() != f.n {
        return Err(Error::invalid(
            what,
            format!(
                "{} values and {} labels for {} samples of {} dimensions",
                f.data.len(),
                f.labels.len(),
                f.n,
                f.dim
            ),
        ));
    }
    if let Some(i) = f.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            what,
            format!("the features of sample {} are not finite", i / f.dim),
        ));
    }
    Ok(())
}

/// LogME of `f` for its class labels (`classes` classes, one-hot targets): the mean over classes
/// of the per-sample log evidence. A class with no sample is refused (its target is all zeros,
/// which any features "explain").
pub fn logme(f: &Features, classes: usize) -> Result<f64> {
    check_features("logme", f)?;
    check_labels("logme", f, classes)?;
    let y = Mat::<f64>::from_fn(f.n, classes, |i, c| f64::from(u8::from(f.labels[i] == c)));
    mean_evidence("logme", f, &y)
}

/// LogME of `f` for real-valued targets, `targets` `[n, width]` row-major (one column per
/// target, evidence averaged over the columns). The authors use it as is on regression targets;
/// targets on very different scales weigh differently, so standardise them first if that
/// matters.
pub fn logme_regression(f: &Features, targets: &[f32], width: usize) -> Result<f64> {
    check_features("logme_regression", f)?;
    if width == 0 || targets.len() != f.n * width {
        return Err(Error::invalid(
            "logme_regression",
            format!(
                "{} target values for {} samples of {width} targets",
                targets.len(),
                f.n
            ),
        ));
    }
    if let Some(i) = targets.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            "logme_regression",
            format!("the target of sample {} is not finite", i / width),
        ));
    }
    let y = Mat::<f64>::from_fn(f.n, width, |i, c| f64::from(targets[i * width + c]));
    mean_evidence("logme_regression", f, &y)
}

fn mean_evidence(what: &'static str, f: &Features, y: &Mat<f64>) -> Result<f64> {
    let s = Spectrum::new(&f.data, f.n, f.dim, y)?;
    let mut total = 0.0;
    for c in 0..y.ncols() {
        let e = s.evidence(c);
        if !e.is_finite() {
            return Err(Error::invalid(
                what,
                format!("the evidence of target {c} is not finite"),
            ));
        }
        total += e;
    }
    Ok(total / y.ncols() as f64)
}

/// The source head's softmax, row by row, in f64.
fn softmax_rows(f: &Features) -> Vec<f64> {
    let mut p = Vec::with_capacity(f.data.len());
    for i in 0..f.n {
        let r = f.row(i);
        let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f64> = r.iter().map(|&v| f64::from(v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        p.extend(e.iter().map(|v| v / s));
    }
    p
}

/// LEEP of a source head's logits `source` (`[n, Z]`: the candidate's own classifier on the
/// target samples; `source.labels` are the target labels of `classes` classes).
pub fn leep(source: &Features, classes: usize) -> Result<f64> {
    check_features("leep", source)?;
    check_label_range("leep", &source.labels, classes)?;
    let (n, z) = (source.n, source.dim);
    let theta = softmax_rows(source);
    // the empirical joint P(y, z) = 1/n Σᵢ θᵢ(z) [yᵢ = y], and P(z)
    let mut joint = vec![0.0f64; classes * z];
    for i in 0..n {
        let y = source.labels[i];
        for (j, p) in theta[i * z..(i + 1) * z].iter().enumerate() {
            joint[y * z + j] += p / n as f64;
        }
    }
    let mut pz = vec![0.0f64; z];
    for y in 0..classes {
        for j in 0..z {
            pz[j] += joint[y * z + j];
        }
    }
    let mut total = 0.0;
    for i in 0..n {
        let y = source.labels[i];
        let eep: f64 = theta[i * z..(i + 1) * z]
            .iter()
            .enumerate()
            .filter(|(j, _)| pz[*j] > 0.0)
            .map(|(j, p)| joint[y * z + j] / pz[j] * p)
            .sum();
        total += eep.max(f64::MIN_POSITIVE).ln();
    }
    Ok(total / n as f64)
}

/// NCE of a source head's logits `source` (as [`leep`]): −H(Y | Z) with Z the head's top class.
pub fn nce(source: &Features, classes: usize) -> Result<f64> {
    check_features("nce", source)?;
    check_label_range("nce", &source.labels, classes)?;
    let (n, z) = (source.n, source.dim);
    let mut counts = vec![0usize; classes * z];
    let mut cz = vec![0usize; z];
    for i in 0..n {
        let top = source
            .row(i)
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(j, _)| j);
        counts[source.labels[i] * z + top] += 1;
        cz[top] += 1;
    }
    let mut h = 0.0;
    for y in 0..classes {
        for j in 0..z {
            let c = counts[y * z + j];
            if c > 0 {
                h += c as f64 / n as f64 * (c as f64 / cz[j] as f64).ln();
            }
        }
    }
    Ok(h)
}
