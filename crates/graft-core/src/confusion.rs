//! The confusion matrix (`confusion[true][predicted]`) and its scores: one builder for every
//! evaluation (the trainer's metrics, direct reuse, heads on cached features) and every report.

/// Counts of (true class, predicted class) over `n` classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confusion {
    matrix: Vec<Vec<usize>>,
}

impl Confusion {
    /// An empty `n × n` matrix.
    pub fn new(n: usize) -> Self {
        Self {
            matrix: vec![vec![0; n]; n],
        }
    }
    /// The matrix of `pred[i]` against `truth[i]`.
    pub fn from_pairs(n: usize, truth: &[usize], pred: &[usize]) -> Self {
        let mut c = Self::new(n);
        for (&t, &p) in truth.iter().zip(pred) {
            c.add(t, p);
        }
        c
    }
    /// Counts one sample; `false` (nothing counted) when a class is outside the matrix.
    pub fn add(&mut self, truth: usize, pred: usize) -> bool {
        let n = self.matrix.len();
        if truth < n && pred < n {
            self.matrix[truth][pred] += 1;
            true
        } else {
            false
        }
    }
    /// `matrix[true][predicted]`.
    pub fn matrix(&self) -> &[Vec<usize>] {
        &self.matrix
    }
    pub fn into_matrix(self) -> Vec<Vec<usize>> {
        self.matrix
    }
    /// [`accuracy`] of the matrix.
    pub fn accuracy(&self) -> f64 {
        accuracy(&self.matrix)
    }
    /// [`per_class_accuracy`] of the matrix.
    pub fn per_class(&self) -> Vec<f64> {
        per_class_accuracy(&self.matrix)
    }
}

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
        let c = Confusion::from_pairs(2, &[0, 0, 0, 0, 7], &[0, 0, 1, 0, 0]);
        assert_eq!(c.matrix(), &[vec![3, 1], vec![0, 0]]);
        assert_eq!((c.accuracy(), c.per_class()[0]), (0.75, 0.75));
    }
}
