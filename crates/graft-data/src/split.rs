//! Seeded splits: stratified train / val / test, class subsets, k-shot per class.

use graft_core::{Error, Result};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

fn by_class(labels: &[usize], indices: &[usize]) -> Vec<Vec<usize>> {
    let n = indices.iter().map(|&i| labels[i] + 1).max().unwrap_or(0);
    let mut v = vec![Vec::new(); n];
    for &i in indices {
        v[labels[i]].push(i);
    }
    v
}

/// Splits `0..labels.len()` into parts with the given fractions (summing to 1), each class split
/// in the same proportions (per class: shuffled by `seed`, cut at the rounded cumulative
/// fractions). Each part is sorted.
pub fn stratified_split(labels: &[usize], fractions: &[f64], seed: u64) -> Result<Vec<Vec<usize>>> {
    let total: f64 = fractions.iter().sum();
    if fractions.is_empty()
        || fractions.iter().any(|f| f.is_nan() || *f < 0.0)
        || (total - 1.0).abs() > 1e-9
    {
        return Err(Error::invalid(
            "stratified_split",
            format!("fractions {fractions:?} must be >= 0 and sum to 1"),
        ));
    }
    let all: Vec<usize> = (0..labels.len()).collect();
    let mut parts = vec![Vec::new(); fractions.len()];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for mut members in by_class(labels, &all) {
        members.shuffle(&mut rng);
        let n = members.len() as f64;
        let mut start = 0;
        let mut cum = 0.0;
        for (k, f) in fractions.iter().enumerate() {
            cum += f;
            let end = if k + 1 == fractions.len() {
                members.len()
            } else {
                (cum * n).round() as usize
            };
            parts[k].extend_from_slice(&members[start..end.max(start)]);
            start = end.max(start);
        }
    }
    for p in &mut parts {
        p.sort_unstable();
    }
    Ok(parts)
}

/// The indices (of `indices`) whose label is in `classes`.
pub fn class_subset(labels: &[usize], indices: &[usize], classes: &[usize]) -> Vec<usize> {
    indices
        .iter()
        .copied()
        .filter(|&i| classes.contains(&labels[i]))
        .collect()
}

/// `k` indices per class drawn from `indices` with `seed` (sorted). A class with fewer than `k`
/// samples is an error naming it.
pub fn k_shot(labels: &[usize], indices: &[usize], k: usize, seed: u64) -> Result<Vec<usize>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for (c, mut members) in by_class(labels, indices).into_iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        if members.len() < k {
            return Err(Error::invalid(
                "k_shot",
                format!(
                    "class {c} has {} samples, fewer than k = {k}",
                    members.len()
                ),
            ));
        }
        members.shuffle(&mut rng);
        out.extend_from_slice(&members[..k]);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_keeps_proportions_and_covers_everything_once() {
        let labels: Vec<usize> = (0..1000)
            .map(|i| if i % 10 < 7 { 0 } else { 1 + i % 3 })
            .collect();
        let parts = stratified_split(&labels, &[0.8, 0.2], 3).expect("split");
        let mut all: Vec<usize> = parts.concat();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let count = |p: &[usize], c: usize| p.iter().filter(|&&i| labels[i] == c).count();
        for c in 0..4 {
            let total = count(&all, c) as f64;
            assert!(
                (count(&parts[1], c) as f64 - 0.2 * total).abs() <= 1.0,
                "class {c}"
            );
        }
        assert_eq!(
            parts,
            stratified_split(&labels, &[0.8, 0.2], 3).expect("again")
        );
        assert_ne!(
            parts,
            stratified_split(&labels, &[0.8, 0.2], 4).expect("other seed")
        );
        assert!(stratified_split(&labels, &[0.5, 0.4], 0).is_err());
    }

    #[test]
    fn k_shot_and_subsets() {
        let labels: Vec<usize> = (0..100).map(|i| i % 5).collect();
        let idx: Vec<usize> = (0..100).collect();
        let sub = class_subset(&labels, &idx, &[1, 3]);
        assert!(sub.iter().all(|&i| labels[i] == 1 || labels[i] == 3) && sub.len() == 40);
        let k = k_shot(&labels, &sub, 5, 1).expect("k-shot");
        assert_eq!(k.len(), 10);
        assert!(
            k_shot(&labels, &sub, 21, 1)
                .expect_err("too few")
                .to_string()
                .contains("fewer than k = 21")
        );
    }
}
