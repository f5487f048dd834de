//! Multi-task training in the one loop: several tasks, each with its own data, head, loss,
//! weight and headline metric, on one shared trunk ([`crate::Trainer::fit_tasks`]).
//!
//! Every optimizer (micro-)step trains one task on one of its batches: a sampling policy picks
//! the task — round-robin, proportional to the tasks' sizes, or by temperature
//! (`p_t ∝ n_t^(1/T)`: T = 1 is proportional, T → ∞ uniform; the policy of multilingual and
//! multi-task NLP training, e.g. Arivazhagan et al. 2019, "Massively Multilingual Neural Machine
//! Translation in the Wild") — and the task's loss times its weight drives the update. Which task
//! and which of its batches a step gets is a function of the step alone (its index in the run;
//! each task's own batches cycle through its loader's epochs), so a resumed run replays the same
//! sequence. A task head is the model's (`tasks.<name>`, [`graft_zoo::TaskHead`]); the trunk
//! runs once a batch, on images, token ids or cached pooled features alike.

use std::sync::Arc;

use graft_backend::{Backend, Ctx, TensorData};
use graft_core::{Error, Result};
use graft_data::{Batch, Loader};
use graft_zoo::Model;
use serde::{Deserialize, Serialize};

use crate::loss::{Targets, cross_entropy};
use crate::metrics::{ClassMetrics, RegressionMetrics, TaskMetrics};

mod set;
pub use set::{Sampling, TaskSet};

/// A task's loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskLoss {
    /// Classification: cross-entropy over the classes (the run's label smoothing applies).
    CrossEntropy,
    /// Regression: mean squared error (PyTorch's `mse_loss`).
    Mse,
    /// Regression: PyTorch's `smooth_l1_loss` (Huber's loss divided by β): `0.5 d² / β` where
    /// `|d| < β`, else `|d| - 0.5 β`.
    SmoothL1 { beta: f64 },
}

impl TaskLoss {
    /// True for a regression loss (MSE, smooth-L1).
    pub fn is_regression(&self) -> bool {
        !matches!(self, TaskLoss::CrossEntropy)
    }
}

/// The number a task is judged by (its curve, its line in a report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskMetric {
    Top1,
    Top5,
    /// Mean absolute error.
    Mae,
    /// Root mean squared error.
    Rmse,
    /// Coefficient of determination (per output, averaged).
    R2,
}

impl TaskMetric {
    /// True for a regression metric (MAE, RMSE, R²).
    pub fn is_regression(&self) -> bool {
        matches!(self, TaskMetric::Mae | TaskMetric::Rmse | TaskMetric::R2)
    }
    /// The metric's value in `m` (`None` when `m` is of the other kind).
    pub fn value(&self, m: &TaskMetrics) -> Option<f64> {
        match (self, m) {
            (TaskMetric::Top1, TaskMetrics::Classification(c)) => Some(c.top1),
            (TaskMetric::Top5, TaskMetrics::Classification(c)) => Some(c.top5),
            (TaskMetric::Mae, TaskMetrics::Regression(r)) => Some(r.mae),
            (TaskMetric::Rmse, TaskMetrics::Regression(r)) => Some(r.rmse),
            (TaskMetric::R2, TaskMetrics::Regression(r)) => Some(r.r2),
            _ => None,
        }
    }
}

/// Regression targets, `outputs` values a sample, in the order of a loader's dataset.
#[derive(Debug, Clone)]
struct Values {
    outputs: usize,
    train: Arc<Vec<f32>>,
    val: Option<Arc<Vec<f32>>>,
}

/// One task: its name (= its head's, `tasks.<name>`), data, loss, weight and metric.
#[derive(Debug, Clone)]
pub struct Task {
    name: String,
    loss: TaskLoss,
    weight: f64,
    metric: TaskMetric,
    train: Loader,
    val: Option<Loader>,
    values: Option<Values>,
}

fn check_values(task: &str, which: &str, loader: &Loader, v: &[f32], outputs: usize) -> Result<()> {
    let n = loader.dataset().len();
    if v.len() != n * outputs {
        return Err(Error::invalid(
            "task",
            format!(
                "{task:?}: {} {which} targets for {n} samples × {outputs} outputs (one row of targets a sample, in the dataset's order)",
                v.len()
            ),
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(
            "task",
            format!(
                "{task:?}: {which} target of sample {} is {} (targets must be finite)",
                i / outputs,
                v[i]
            ),
        ));
    }
    Ok(())
}

impl Task {
    /// A classification task: the loaders' labels, cross-entropy, judged by top-1.
    pub fn classification(name: &str, train: Loader, val: Option<Loader>) -> Result<Self> {
        if let Some(v) = &val
            && v.dataset().classes().len() != train.dataset().classes().len()
        {
            return Err(Error::invalid(
                "task",
                format!(
                    "{name:?}: the training data has {} classes, the validation data {}",
                    train.dataset().classes().len(),
                    v.dataset().classes().len()
                ),
            ));
        }
        Ok(Self {
            name: name.into(),
            loss: TaskLoss::CrossEntropy,
            weight: 1.0,
            metric: TaskMetric::Top1,
            train,
            val,
            values: None,
        })
    }
    /// A regression task: `outputs` target values a sample, `train_values` (and `val_values`)
    /// in the order of the loader's dataset (sample `i`'s at `i * outputs..`); the loaders'
    /// labels are not read. MSE, judged by MAE, unless changed.
    pub fn regression(
        name: &str,
        outputs: usize,
        train: Loader,
        train_values: Vec<f32>,
        val: Option<(Loader, Vec<f32>)>,
    ) -> Result<Self> {
        if outputs == 0 {
            return Err(Error::invalid(
                "task",
                format!("{name:?}: a regression task has at least one output"),
            ));
        }
        check_values(name, "training", &train, &train_values, outputs)?;
        let (val, val_values) = match val {
            Some((l, v)) => {
                check_values(name, "validation", &l, &v, outputs)?;
                (Some(l), Some(Arc::new(v)))
            }
            None => (None, None),
        };
        Ok(Self {
            name: name.into(),
            loss: TaskLoss::Mse,
            weight: 1.0,
            metric: TaskMetric::Mae,
            train,
            val,
            values: Some(Values {
                outputs,
                train: Arc::new(train_values),
                val: val_values,
            }),
        })
    }
    /// The loss (a regression task takes MSE or smooth-L1, a classification task
    /// cross-entropy).
    pub fn with_loss(mut self, loss: TaskLoss) -> Result<Self> {
        if loss.is_regression() != self.values.is_some() {
            return Err(Error::invalid(
                "task",
                format!(
                    "{:?}: {loss:?} is a {} loss, the task is a {} task",
                    self.name,
                    if loss.is_regression() {
                        "regression"
                    } else {
                        "classification"
                    },
                    self.kind()
                ),
            ));
        }
        if let TaskLoss::SmoothL1 { beta } = loss
            && !(beta.is_finite() && beta > 0.0)
        {
            return Err(Error::invalid(
                "task",
                format!("{:?}: smooth-L1 beta {beta}: a finite value > 0", self.name),
            ));
        }
        self.loss = loss;
        Ok(self)
    }
    /// The weight of the task's loss (default 1).
    pub fn with_weight(mut self, weight: f64) -> Result<Self> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(Error::invalid(
                "task",
                format!("{:?}: weight {weight}: a finite value >= 0", self.name),
            ));
        }
        self.weight = weight;
        Ok(self)
    }
    /// The headline metric (top1 / top5 for classification, mae / rmse / r2 for regression).
    pub fn with_metric(mut self, metric: TaskMetric) -> Result<Self> {
        if metric.is_regression() != self.values.is_some() {
            return Err(Error::invalid(
                "task",
                format!(
                    "{:?}: {metric:?} does not measure a {} task",
                    self.name,
                    self.kind()
                ),
            ));
        }
        self.metric = metric;
        Ok(self)
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn loss(&self) -> TaskLoss {
        self.loss
    }
    pub fn weight(&self) -> f64 {
        self.weight
    }
    pub fn metric(&self) -> TaskMetric {
        self.metric
    }
    pub fn train(&self) -> &Loader {
        &self.train
    }
    pub fn val(&self) -> Option<&Loader> {
        self.val.as_ref()
    }
    /// `classification` or `regression`.
    pub fn kind(&self) -> &'static str {
        if self.values.is_some() {
            "regression"
        } else {
            "classification"
        }
    }
    /// The head's output width: the classes, or the regression outputs.
    pub fn outputs(&self) -> usize {
        match &self.values {
            Some(v) => v.outputs,
            None => self.train.dataset().classes().len(),
        }
    }

    /// The regression targets of a batch's samples, `[N, outputs]`.
    fn targets(&self, values: &[f32], outputs: usize, batch: &Batch) -> Result<TensorData> {
        let mut t = Vec::with_capacity(batch.indices.len() * outputs);
        for &i in &batch.indices {
            let row = values.get(i * outputs..(i + 1) * outputs).ok_or_else(|| {
                Error::Training(format!("{:?}: no target for sample {i}", self.name))
            })?;
            t.extend_from_slice(row);
        }
        TensorData::f32(&[batch.indices.len(), outputs], t)
    }

    /// The task's loss (unweighted) of outputs `out` on `batch` (from its training loader when
    /// `train`, else its validation loader).
    pub(crate) fn loss_of<B: Backend>(
        &self,
        b: &B,
        out: &B::Tensor,
        batch: &Batch,
        smoothing: f64,
        train: bool,
    ) -> Result<B::Tensor> {
        let Some(v) = &self.values else {
            return cross_entropy(b, out, &Targets::Hard(batch.labels.clone()), smoothing);
        };
        let values = if train {
            &v.train
        } else {
            v.val.as_ref().unwrap_or(&v.train)
        };
        let y = self.targets(values, v.outputs, batch)?;
        let y = b.cast(&b.from_data(&y)?, b.dtype(out))?;
        let shape = b.shape(out);
        if shape != [batch.indices.len(), v.outputs] {
            return Err(Error::shape(
                "task loss",
                format!(
                    "{:?}: outputs {shape:?} for targets [{}, {}]",
                    self.name,
                    batch.indices.len(),
                    v.outputs
                ),
            ));
        }
        regression_loss(b, self.loss, out, &y)
    }

    /// Evaluates the task's head on its validation loader (eval mode): classification or
    /// regression metrics; `None` without one.
    pub fn evaluate<B: Backend>(&self, model: &Model<B>) -> Result<Option<TaskMetrics>> {
        let Some(val) = &self.val else {
            return Ok(None);
        };
        let ctx = Ctx::eval();
        let b = model.backend();
        let mut class = crate::metrics::Tally::new(self.outputs());
        let mut reg = crate::metrics::RegressionTally::new(self.outputs());
        for batch in val.epoch(0) {
            let batch = batch?;
            let pooled = model.forward_pooled_batch(&batch.inputs, &ctx)?;
            let out = model.forward_task(&self.name, &pooled, &ctx)?;
            let loss = self.loss_of(b, &out, &batch, 0.0, false)?;
            let l = crate::trainer::host_scalar(b, &loss)? * batch.indices.len() as f64;
            let host = b.to_data(&out)?;
            match &self.values {
                None => class.add(&host, &batch.labels, l, &self.name)?,
                Some(v) => {
                    let values = v.val.as_ref().unwrap_or(&v.train);
                    let y = self.targets(values, v.outputs, &batch)?;
                    reg.add(&host, &y, l, &self.name)?;
                }
            }
        }
        Ok(Some(match &self.values {
            None => TaskMetrics::Classification(class.finish()),
            Some(_) => TaskMetrics::Regression(reg.finish()),
        }))
    }
}

/// A regression loss of predictions `out` against targets `y` (same shape), averaged over every
/// value — PyTorch's `mse_loss` / `smooth_l1_loss` with `reduction="mean"`.
pub fn regression_loss<B: Backend>(
    b: &B,
    loss: TaskLoss,
    out: &B::Tensor,
    y: &B::Tensor,
) -> Result<B::Tensor> {
    let (so, sy) = (b.shape(out), b.shape(y));
    if so != sy {
        return Err(Error::shape(
            "regression loss",
            format!("predictions {so:?} for targets {sy:?}"),
        ));
    }
    let d = b.sub(out, y)?;
    let all: Vec<usize> = (0..so.len()).collect();
    match loss {
        TaskLoss::Mse => b.mean(&b.mul(&d, &d)?, &all, false),
        TaskLoss::SmoothL1 { beta } => {
            // |d| as relu(d) + relu(-d); with c = min(|d|, β): 0.5 c² / β + (|d| - c)
            let a = b.add(&b.relu(&d)?, &b.relu(&b.neg(&d)?)?)?;
            let c = b.clamp(&a, None, Some(beta))?;
            let quad = b.mul_scalar(&b.mul(&c, &c)?, 0.5 / beta)?;
            b.mean(&b.add(&quad, &b.sub(&a, &c)?)?, &all, false)
        }
        TaskLoss::CrossEntropy => Err(Error::invalid(
            "regression loss",
            "cross-entropy is a classification loss",
        )),
    }
}

/// A task's epoch, as logged: its training loss over the epoch's batches of it, its validation
/// metrics (and the EMA weights').
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `None` when the task had no batch this epoch.
    pub train_loss: Option<f64>,
    pub train_batches: usize,
    pub val: Option<TaskMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema_val: Option<TaskMetrics>,
}

impl TaskMetrics {
    /// The validation loss.
    pub fn loss(&self) -> f64 {
        match self {
            TaskMetrics::Classification(c) => c.loss,
            TaskMetrics::Regression(r) => r.loss,
        }
    }
    /// The classification metrics, when these are.
    pub fn classification(&self) -> Option<&ClassMetrics> {
        match self {
            TaskMetrics::Classification(c) => Some(c),
            TaskMetrics::Regression(_) => None,
        }
    }
    /// The regression metrics, when these are.
    pub fn regression(&self) -> Option<&RegressionMetrics> {
        match self {
            TaskMetrics::Regression(r) => Some(r),
            TaskMetrics::Classification(_) => None,
        }
    }
}
