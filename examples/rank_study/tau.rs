//! Kendall's τ-b and the weighted τ, and the study's tables.

use super::*;
use crate::common::mean_std;

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Kendall's τ-b (ties in either ranking taken out of the denominator, as `scipy.stats.kendalltau`).
pub(crate) fn kendall(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len();
    let (mut s, mut pairs, mut tx, mut ty) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..n {
        for j in i + 1..n {
            let (a, b) = (sign(x[i] - x[j]), sign(y[i] - y[j]));
            s += a * b;
            pairs += 1.0;
            tx += f64::from(u8::from(a == 0.0));
            ty += f64::from(u8::from(b == 0.0));
        }
    }
    s / ((pairs - tx) * (pairs - ty)).sqrt()
}

/// The weighted τ with element `i` at `rank[i]` (0 first): a pair weighs `1/(rᵢ+1) + 1/(rⱼ+1)`.
fn weighted_with(x: &[f64], y: &[f64], rank: &[usize]) -> f64 {
    let w = |i: usize| 1.0 / (rank[i] as f64 + 1.0);
    let (mut num, mut dx, mut dy) = (0.0, 0.0, 0.0);
    for i in 0..x.len() {
        for j in i + 1..x.len() {
            let wij = w(i) + w(j);
            let (a, b) = (sign(x[i] - x[j]), sign(y[i] - y[j]));
            num += wij * a * b;
            dx += wij * a * a;
            dy += wij * b * b;
        }
    }
    num / (dx * dy).sqrt()
}

/// Vigna's weighted τ with hyperbolic weights, as `scipy.stats.weightedtau(x, y)` computes it by
/// default: the mean of the τ weighted by the decreasing lexicographic rank by (x, y) and by
/// (y, x) — the top of either ranking counts most.
pub(crate) fn weighted(x: &[f64], y: &[f64]) -> f64 {
    let rank_by = |a: &[f64], b: &[f64]| {
        let mut order: Vec<usize> = (0..a.len()).collect();
        order.sort_by(|&i, &j| a[j].total_cmp(&a[i]).then(b[j].total_cmp(&b[i])));
        let mut rank = vec![0; a.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        rank
    };
    (weighted_with(x, y, &rank_by(x, y)) + weighted_with(x, y, &rank_by(y, x))) / 2.0
}

/// (per-draw τ values, τ-b of the means, weighted τ of the means, candidates) for score `k`.
pub(crate) fn taus(ms: &[Measured], k: usize) -> Option<(Vec<f64>, f64, f64, usize)> {
    let with: Vec<&Measured> = ms
        .iter()
        .filter(|m| m.scores.iter().all(|s| s[k].is_some()))
        .collect();
    if with.len() < 3 {
        return None;
    }
    let draws = with[0].acc.len();
    let per: Vec<f64> = (0..draws)
        .map(|d| {
            let x: Vec<f64> = with.iter().map(|m| m.scores[d][k].unwrap_or(0.0)).collect();
            let y: Vec<f64> = with.iter().map(|m| m.acc[d]).collect();
            kendall(&x, &y)
        })
        .collect();
    let xm: Vec<f64> = with
        .iter()
        .map(|m| {
            mean_std(
                &m.scores
                    .iter()
                    .map(|s| s[k].unwrap_or(0.0))
                    .collect::<Vec<_>>(),
            )
            .0
        })
        .collect();
    let ym: Vec<f64> = with.iter().map(|m| mean_std(&m.acc).0).collect();
    Some((per, kendall(&xm, &ym), weighted(&xm, &ym), with.len()))
}

/// The candidates' table (means over draws) and the τ table.
pub(crate) fn tables(md: &mut String, ms: &[Measured]) {
    let _ = writeln!(
        md,
        "| candidate | LogME | LEEP | NCE | kNN val % | linear val % | fine-tuned test % |\n|---|---|---|---|---|---|---|"
    );
    let mut order: Vec<&Measured> = ms.iter().collect();
    order.sort_by(|a, b| mean_std(&b.acc).0.total_cmp(&mean_std(&a.acc).0));
    for m in order {
        let cell = |k: usize, pct: bool| {
            let v: Vec<f64> = m.scores.iter().filter_map(|s| s[k]).collect();
            if v.len() < m.scores.len() || v.is_empty() {
                return "-".to_string();
            }
            let (a, _) = mean_std(&v);
            if pct {
                format!("{:.1}", 100.0 * a)
            } else {
                format!("{a:.3}")
            }
        };
        let (a, s) = mean_std(&m.acc);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1} ± {:.1} |",
            m.label,
            cell(0, false),
            cell(1, false),
            cell(2, false),
            cell(3, true),
            cell(4, true),
            100.0 * a,
            100.0 * s
        );
    }
    let _ = writeln!(
        md,
        "\nRows by fine-tuned accuracy. Kendall's τ against it:\n\n| score | τ-b per draw (mean ± std) | τ-b of the means | weighted τ of the means | candidates |\n|---|---|---|---|---|"
    );
    for (k, name) in SCORES.iter().enumerate() {
        match taus(ms, k) {
            Some((per, tm, tw, n)) => {
                let (a, s) = mean_std(&per);
                let _ = writeln!(
                    md,
                    "| {name} | {a:+.2} ± {s:.2} | {tm:+.2} | {tw:+.2} | {n} |"
                );
            }
            None => {
                let _ = writeln!(md, "| {name} | - | - | - | fewer than 3 with the score |");
            }
        }
    }
    md.push('\n');
}

/// Where the measurement lands, said plainly from the numbers.
pub(crate) fn verdict(dig: &[Measured], txt: &[Measured]) -> String {
    let mut md = String::from("### Where graft's measurement lands\n\n");
    for (name, ms) in [("digits", dig), ("VADER", txt)] {
        let mut parts = Vec::new();
        for (k, score) in SCORES.iter().enumerate() {
            if let Some((_, tm, tw, n)) = taus(ms, k) {
                parts.push(format!(
                    "{score} τ-b {tm:+.2} / weighted {tw:+.2} ({n} candidates)"
                ));
            }
        }
        let _ = writeln!(md, "- **{name}**: {}.", parts.join("; "));
    }
    md.push_str(
        "\nThe LogME paper reports a weighted τ around 0.5 for LogME on its benchmark (ImageNet \
         models onto standard classification sets); the values above are graft's on its own \
         candidates and targets, as measured here.\n",
    );
    md
}
