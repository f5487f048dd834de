//! Scores from a confusion matrix (`confusion[true][predicted]`), shared by every route's report.

/// Accuracy of each true class (its diagonal share of the row); NaN for a class with no sample.
pub fn per_class_accuracy(confusion: &[Vec<usize>]) -> Vec<f64> {
    confusion
        .iter()
        .enumerate()
        .map(|(k, row)| {
            let total: usize = row.iter().sum();
            if total == 0 {
                f64::NAN
            } else {
                row.get(k).copied().unwrap_or(0) as f64 / total as f64
            }
        })
        .collect()
}

/// Overall accuracy: the diagonal over every sample (0 for an empty matrix).
pub fn accuracy(confusion: &[Vec<usize>]) -> f64 {
    let total: usize = confusion.iter().flatten().sum();
    let correct: usize = confusion
        .iter()
        .enumerate()
        .map(|(k, row)| row.get(k).copied().unwrap_or(0))
        .sum();
    correct as f64 / total.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_from_a_confusion_matrix() {
        let c = vec![vec![3, 1], vec![0, 0]];
        let p = per_class_accuracy(&c);
        assert_eq!(p[0], 0.75);
        assert!(p[1].is_nan());
        assert_eq!(accuracy(&c), 0.75);
        assert_eq!(accuracy(&[]), 0.0);
    }
}
