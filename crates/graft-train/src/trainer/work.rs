//! What a run trains on: one loader (with its validation loader), or a multi-task set. The loop
//! is the same; the batches, the validation and the monitored value come from here.

use std::collections::BTreeMap;

use graft_backend::AutodiffBackend;
use graft_core::Result;
use graft_data::{Batch, Loader};
use graft_zoo::Model;

use super::{EpochRecord, LoopState, Monitor, Trainer};
use crate::multitask::{TaskRecord, TaskSet};

#[derive(Clone, Copy)]
pub(super) enum Work<'a> {
    One {
        train: &'a Loader,
        val: Option<&'a Loader>,
    },
    Tasks(&'a TaskSet),
}

type Items<'a> = Box<dyn Iterator<Item = Result<(Option<&'a crate::Task>, Batch)>> + 'a>;

impl<'a> Work<'a> {
    /// Micro-batches an epoch.
    pub(super) fn num_batches(&self) -> usize {
        match self {
            Work::One { train, .. } => train.num_batches(),
            Work::Tasks(t) => t.steps_per_epoch(),
        }
    }
    /// The single-task validation loader.
    pub(super) fn val(&self) -> Option<&'a Loader> {
        match self {
            Work::One { val, .. } => *val,
            Work::Tasks(_) => None,
        }
    }
    /// The micro-batches of `epoch` from batch `first` on, each with its task (multi-task).
    pub(super) fn epoch_from(&self, epoch: u64, first: usize) -> Items<'a> {
        match *self {
            Work::One { train, .. } => {
                Box::new(train.epoch_from(epoch, first).map(|b| b.map(|b| (None, b))))
            }
            Work::Tasks(set) => Box::new(
                set.epoch_from(epoch, first)
                    .map(move |r| r.map(|(t, b)| (Some(&set.tasks()[t]), b))),
            ),
        }
    }
    /// The value early stopping watches in an epoch's record: the validation loss or top-1; a
    /// multi-task run's weighted mean of its tasks' validation losses, or the mean top-1 of its
    /// classification tasks. `None` when the record has nothing to watch.
    pub(super) fn monitored(&self, rec: &EpochRecord, monitor: Option<Monitor>) -> Option<f64> {
        let monitor = monitor.unwrap_or(Monitor::ValLoss);
        match self {
            Work::One { .. } => rec.val.as_ref().map(|m| match monitor {
                Monitor::ValLoss => m.loss,
                Monitor::ValTop1 => m.top1,
            }),
            Work::Tasks(set) => {
                let (mut sum, mut w) = (0.0, 0.0);
                for t in set.tasks() {
                    let Some(m) = rec.tasks.get(t.name()).and_then(|r| r.val.as_ref()) else {
                        continue;
                    };
                    match monitor {
                        Monitor::ValLoss => {
                            sum += t.weight() * m.loss();
                            w += t.weight();
                        }
                        Monitor::ValTop1 => {
                            if let Some(c) = m.classification() {
                                sum += c.top1;
                                w += 1.0;
                            }
                        }
                    }
                }
                (w > 0.0).then(|| sum / w)
            }
        }
    }
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A multi-task epoch's per-task records: the training loss of its batches this epoch, the
    /// validation metrics (and the EMA weights'). Empty for a single-task run.
    pub(super) fn task_records(
        &self,
        model: &Model<B>,
        work: Work<'_>,
        st: &LoopState,
    ) -> Result<BTreeMap<String, TaskRecord>> {
        let Work::Tasks(set) = work else {
            return Ok(BTreeMap::new());
        };
        let val = set.evaluate(model)?;
        let ema = self.with_ema_weights(model, |m| set.evaluate(m))?;
        let mut out = BTreeMap::new();
        for t in set.tasks() {
            let (sum, n) = st.task_loss.get(t.name()).copied().unwrap_or((0.0, 0));
            out.insert(
                t.name().to_string(),
                TaskRecord {
                    train_loss: (n > 0).then(|| sum / n as f64),
                    train_batches: n,
                    val: val.get(t.name()).cloned(),
                    ema_val: ema.as_ref().and_then(|e| e.get(t.name()).cloned()),
                },
            );
        }
        Ok(out)
    }
}
