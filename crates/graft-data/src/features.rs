//! Pooled features held in memory as a dataset: what a feature cache feeds the Trainer.

use graft_core::Result;

use crate::dataset::{ArrayDataset, Dataset, Sample};

/// Rows of pooled features `[N, D]` with labels; its samples are [`Sample::Features`], so its
/// batches are `[N, D]` features and only a model's classifier runs on them. The rows are held as
/// an [`ArrayDataset`] of `[D, 1, 1]` arrays (its checks, storage and fingerprint).
#[derive(Debug, Clone)]
pub struct FeatureDataset {
    rows: ArrayDataset,
}

impl FeatureDataset {
    /// From row-major `[N, dim]` values; `data.len()` must be `labels.len() × dim` and every label
    /// a class.
    pub fn new(
        dim: usize,
        data: Vec<f32>,
        labels: Vec<usize>,
        classes: Vec<String>,
    ) -> Result<Self> {
        Ok(Self {
            rows: ArrayDataset::new([dim, 1, 1], data, labels, classes)?,
        })
    }
    /// Features per row.
    pub fn dim(&self) -> usize {
        self.rows.sample_shape()[0]
    }
}

impl Dataset for FeatureDataset {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn in_memory(&self) -> bool {
        true
    }
    fn label(&self, i: usize) -> usize {
        self.rows.label(i)
    }
    fn get(&self, i: usize) -> Result<Sample> {
        let row = self.rows.get(i)?.into_image("FeatureDataset")?;
        Ok(Sample::Features {
            values: row.data,
            label: row.label,
        })
    }
    fn classes(&self) -> &[String] {
        self.rows.classes()
    }
    fn fingerprint(&self) -> Result<u64> {
        self.rows.fingerprint()
    }
}
