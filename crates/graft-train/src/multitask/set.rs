//! A multi-task run's schedule: which task, and which of its batches, each step trains
//! ([`TaskSet`]: the sampling policy; [`TaskEpoch`]: one epoch's micro-batches).

use std::collections::BTreeMap;

use graft_backend::Backend;
use graft_backend::init::mix_seed;
use graft_core::{Error, Result};
use graft_data::{Batch, EpochIter};
use graft_zoo::Model;
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use super::Task;
use crate::metrics::TaskMetrics;

/// How the tasks share the steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Sampling {
    /// Task `m mod T` at step `m`.
    RoundRobin,
    /// A task drawn with probability proportional to its training samples.
    Proportional,
    /// A task drawn with probability ∝ `samples^(1/t)`.
    Temperature { t: f64 },
}

/// The tasks of a multi-task run and how they share its steps.
#[derive(Debug, Clone)]
pub struct TaskSet {
    tasks: Vec<Task>,
    sampling: Sampling,
    seed: u64,
    steps_per_epoch: usize,
    /// Cumulative sampling probabilities (random policies).
    cumulative: Vec<f64>,
}

impl TaskSet {
    /// Tasks sharing the steps by `sampling`; an epoch is as many steps as the tasks have
    /// training batches together (under the proportional policy and equal batch sizes, each
    /// task's data is then seen about once an epoch). The draws are seeded by `seed` and the
    /// step.
    pub fn new(tasks: Vec<Task>, sampling: Sampling, seed: u64) -> Result<Self> {
        if tasks.is_empty() {
            return Err(Error::invalid("multi-task", "no task"));
        }
        for (i, t) in tasks.iter().enumerate() {
            if tasks[..i].iter().any(|o| o.name == t.name) {
                return Err(Error::invalid(
                    "multi-task",
                    format!("two tasks are named {:?}", t.name),
                ));
            }
        }
        if let Sampling::Temperature { t } = sampling
            && !(t.is_finite() && t > 0.0)
        {
            return Err(Error::invalid(
                "multi-task",
                format!("sampling temperature {t}: a finite value > 0"),
            ));
        }
        let sizes: Vec<f64> = tasks
            .iter()
            .map(|t| t.train.dataset().len() as f64)
            .collect();
        let w: Vec<f64> = match sampling {
            Sampling::RoundRobin => vec![1.0; tasks.len()],
            Sampling::Proportional => sizes,
            Sampling::Temperature { t } => sizes.iter().map(|n| n.powf(1.0 / t)).collect(),
        };
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let cumulative = w
            .iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect();
        let steps_per_epoch = tasks.iter().map(|t| t.train.num_batches()).sum();
        Ok(Self {
            tasks,
            sampling,
            seed,
            steps_per_epoch,
            cumulative,
        })
    }
    /// Sets the steps of an epoch (default: the tasks' training batches together).
    pub fn with_steps_per_epoch(mut self, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::invalid("multi-task", "an epoch of 0 steps"));
        }
        self.steps_per_epoch = steps;
        Ok(self)
    }
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }
    /// Micro-batches an epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.steps_per_epoch
    }
    /// The task of micro-batch `m` of the run (counted from the run's first).
    pub fn task_of(&self, m: u64) -> usize {
        match self.sampling {
            Sampling::RoundRobin => (m % self.tasks.len() as u64) as usize,
            _ => {
                let mut rng =
                    rand_chacha::ChaCha8Rng::seed_from_u64(mix_seed(&[self.seed, 0x7461_736b, m]));
                let r: f64 = rng.random();
                self.cumulative
                    .iter()
                    .position(|&c| r < c)
                    .unwrap_or(self.tasks.len() - 1)
            }
        }
    }
    /// Checks that `model` has a head of the right width for every task.
    pub(crate) fn check_model<B: Backend>(&self, model: &Model<B>) -> Result<()> {
        for t in &self.tasks {
            let h = model.task_head(&t.name)?;
            if h.outputs != t.outputs() {
                return Err(Error::invalid(
                    "multi-task",
                    format!(
                        "task {:?} has {} outputs ({}), its head on {} has {}",
                        t.name,
                        t.outputs(),
                        t.kind(),
                        model.name(),
                        h.outputs
                    ),
                ));
            }
        }
        Ok(())
    }
    /// The micro-batches of epoch `epoch` from its batch `first` on: (task, batch).
    pub(crate) fn epoch_from(&self, epoch: u64, first: usize) -> TaskEpoch<'_> {
        let start = epoch * self.steps_per_epoch as u64 + first as u64;
        // how many batches each task had before this point: the replayed draws
        let mut taken = vec![0u64; self.tasks.len()];
        for m in 0..start {
            taken[self.task_of(m)] += 1;
        }
        TaskEpoch {
            set: self,
            m: start,
            end: (epoch + 1) * self.steps_per_epoch as u64,
            taken,
            streams: (0..self.tasks.len()).map(|_| None).collect(),
        }
    }
    /// Every task's validation metrics.
    pub(crate) fn evaluate<B: Backend>(
        &self,
        model: &Model<B>,
    ) -> Result<BTreeMap<String, TaskMetrics>> {
        let mut out = BTreeMap::new();
        for t in &self.tasks {
            if let Some(m) = t.evaluate(model)? {
                out.insert(t.name.clone(), m);
            }
        }
        Ok(out)
    }
}

/// A task's position in its own loader: batch `next` of epoch `epoch`.
struct TaskStream {
    epoch: u64,
    next: usize,
    it: EpochIter,
}

/// One epoch's micro-batches of a [`TaskSet`].
pub(crate) struct TaskEpoch<'a> {
    set: &'a TaskSet,
    m: u64,
    end: u64,
    taken: Vec<u64>,
    streams: Vec<Option<TaskStream>>,
}

impl Iterator for TaskEpoch<'_> {
    type Item = Result<(usize, Batch)>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.m >= self.end {
            return None;
        }
        let t = self.set.task_of(self.m);
        self.m += 1;
        let loader = &self.set.tasks[t].train;
        let n = loader.num_batches() as u64;
        let k = self.taken[t];
        self.taken[t] += 1;
        let (epoch, bi) = (k / n, (k % n) as usize);
        let stream = &mut self.streams[t];
        if !matches!(stream, Some(s) if s.epoch == epoch && s.next == bi) {
            *stream = Some(TaskStream {
                epoch,
                next: bi,
                it: loader.epoch_from(epoch, bi),
            });
        }
        let s = stream.as_mut()?;
        let batch = s.it.next();
        s.next += 1;
        if s.next as u64 == n {
            *stream = None;
        }
        Some(match batch {
            Some(b) => b.map(|b| (t, b)),
            None => Err(Error::Training(format!(
                "task {:?}: batch {bi} of epoch {epoch} missing",
                self.set.tasks[t].name
            ))),
        })
    }
}
