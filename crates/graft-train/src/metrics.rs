//! Classification and regression metrics from a head's outputs, on the host.

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

/// What a classification evaluation accumulates over its batches.
pub(crate) struct Tally {
    samples: usize,
    loss: f64,
    top1: f64,
    top5: f64,
    counts: graft_core::confusion::Confusion,
}

impl Tally {
    pub(crate) fn new(c: usize) -> Self {
        Self {
            samples: 0,
            loss: 0.0,
            top1: 0.0,
            top5: 0.0,
            counts: graft_core::confusion::Confusion::new(c),
        }
    }
    /// Counts a batch; non-finite logits are an error naming `model` and the sample.
    pub(crate) fn add(
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
    pub(crate) fn finish(self) -> ClassMetrics {
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

/// Regression metrics of a dataset: the task's loss, mean absolute error, root mean squared
/// error and R² (per output, then averaged over the outputs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub samples: usize,
    pub loss: f64,
    pub mae: f64,
    pub rmse: f64,
    pub r2: f64,
}

/// A task's validation metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskMetrics {
    Classification(ClassMetrics),
    Regression(RegressionMetrics),
}

/// What a regression evaluation accumulates: per output, the sums of the targets, their squares
/// and the squared and absolute errors.
pub(crate) struct RegressionTally {
    samples: usize,
    loss: f64,
    sum_y: Vec<f64>,
    sum_y2: Vec<f64>,
    sse: Vec<f64>,
    sae: Vec<f64>,
}

impl RegressionTally {
    pub(crate) fn new(outputs: usize) -> Self {
        Self {
            samples: 0,
            loss: 0.0,
            sum_y: vec![0.0; outputs],
            sum_y2: vec![0.0; outputs],
            sse: vec![0.0; outputs],
            sae: vec![0.0; outputs],
        }
    }
    /// Counts a batch of predictions `[N, K]` against targets `[N, K]`.
    pub(crate) fn add(
        &mut self,
        pred: &TensorData,
        target: &TensorData,
        loss_sum: f64,
        task: &str,
    ) -> Result<()> {
        let (p, y) = (pred.to_f64(), target.to_f64());
        let k = self.sse.len();
        if p.shape() != y.shape() || p.ndim() != 2 || p.shape()[1] != k {
            return Err(graft_core::Error::shape(
                "evaluate",
                format!(
                    "{task}: predictions {:?} for targets {:?}",
                    p.shape(),
                    y.shape()
                ),
            ));
        }
        for i in 0..p.shape()[0] {
            for j in 0..k {
                let (pv, yv) = (p[[i, j]], y[[i, j]]);
                if !pv.is_finite() {
                    return Err(graft_core::Error::invalid(
                        "evaluate",
                        format!(
                            "{task}: non-finite prediction for sample {} (NaN or infinite weights or input values)",
                            self.samples + i
                        ),
                    ));
                }
                let e = pv - yv;
                self.sum_y[j] += yv;
                self.sum_y2[j] += yv * yv;
                self.sse[j] += e * e;
                self.sae[j] += e.abs();
            }
        }
        self.samples += p.shape()[0];
        self.loss += loss_sum;
        Ok(())
    }
    pub(crate) fn finish(self) -> RegressionMetrics {
        let n = self.samples.max(1) as f64;
        let k = self.sse.len().max(1) as f64;
        let r2 = (0..self.sse.len())
            .map(|j| {
                let var = self.sum_y2[j] - self.sum_y[j] * self.sum_y[j] / n;
                // constant targets: scikit-learn's r2_score convention (1 when exact, else 0)
                if var > 0.0 {
                    1.0 - self.sse[j] / var
                } else if self.sse[j] == 0.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .sum::<f64>()
            / k;
        RegressionMetrics {
            samples: self.samples,
            loss: self.loss / n,
            mae: self.sae.iter().sum::<f64>() / (n * k),
            rmse: (self.sse.iter().sum::<f64>() / (n * k)).sqrt(),
            r2,
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
