//! Classification metrics from logits, on the host.

use graft_backend::{Backend, Ctx, TensorData};
use graft_core::Result;
use graft_data::Loader;
use graft_zoo::Model;
use serde::{Deserialize, Serialize};

use crate::loss::{Targets, cross_entropy};

/// Loss, top-1 / top-5 accuracy, per-class accuracy and the confusion matrix of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub samples: usize,
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    pub per_class: Vec<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// What an evaluation accumulates over its batches.
struct Tally {
    samples: usize,
    loss: f64,
    top1: f64,
    top5: f64,
    counts: graft_core::confusion::Confusion,
}

impl Tally {
    fn new(c: usize) -> Self {
        Self {
            samples: 0,
            loss: 0.0,
            top1: 0.0,
            top5: 0.0,
            counts: graft_core::confusion::Confusion::new(c),
        }
    }
    /// Counts a batch; non-finite logits are an error naming `model` and the sample.
    fn add(
        &mut self,
        logits: &TensorData,
        labels: &[usize],
        loss_sum: f64,
        model: &str,
    ) -> Result<()> {
        let a = logits.to_f32();
        let c = a.shape()[1];
        if let Some(i) = a.iter().position(|v| !v.is_finite()) {
            let row = self.samples + i / c.max(1);
            return Err(graft_core::Error::invalid(
                "evaluate",
                format!(
                    "{model}: non-finite logits for sample {row} (NaN or infinite weights or input values)"
                ),
            ));
        }
        for (i, &y) in labels.iter().enumerate() {
            let row: Vec<f32> = (0..c).map(|j| a[[i, j]]).collect();
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|&p, &q| row[q].total_cmp(&row[p]).then(p.cmp(&q)));
            if order[0] == y {
                self.top1 += 1.0;
            }
            if order.iter().take(5).any(|&k| k == y) {
                self.top5 += 1.0;
            }
            self.counts.add(y, order[0]);
        }
        self.samples += labels.len();
        self.loss += loss_sum;
        Ok(())
    }
    fn finish(self) -> ClassMetrics {
        let n = self.samples.max(1) as f64;
        ClassMetrics {
            samples: self.samples,
            loss: self.loss / n,
            top1: self.top1 / n,
            top5: self.top5 / n,
            per_class: self.counts.per_class(),
            confusion: self.counts.into_matrix(),
        }
    }
}

/// Evaluates `model` on every batch of `loader` (epoch 0 order) under `ctx` (eval mode): images
/// and token ids through the whole model, cached pooled features through its classifier
/// (`Model::forward_batch`).
pub fn evaluate<B: Backend>(
    model: &Model<B>,
    loader: &Loader,
    ctx: &Ctx<'_>,
) -> Result<ClassMetrics> {
    let b = model.backend();
    let mut m = Tally::new(model.num_classes());
    for batch in loader.epoch(0) {
        let batch = batch?;
        let logits = model.forward_batch(&batch.inputs, ctx)?;
        let host = b.to_data(&logits)?;
        let loss = cross_entropy(b, &logits, &Targets::Hard(batch.labels.clone()), 0.0)?;
        let l = crate::trainer::host_scalar(b, &loss)?;
        m.add(
            &host,
            &batch.labels,
            l * batch.labels.len() as f64,
            model.name(),
        )?;
    }
    Ok(m.finish())
}
