//! Task heads: the named heads of a multi-task model, side by side on the one trunk's pooled
//! features (`tasks.<name>.*` in the model's store), each with its own output width — class
//! logits or regression values. The trunk runs once a batch; a head reads the pooled features
//! as the model's own classifier does (the family's classifier dropout, then a Linear or an MLP
//! head, initialised as the family initialises its classifier).
//!
//! A model's own classifier and its task heads are independent: a multi-task model is usually
//! built without the classifier (`num_classes` 0) and given one head a task. Task heads belong to
//! the `head` stage (freezing and LR plans treat them as the classifier), are saved with the
//! model ([`Model::save_user_model`]) and rebuilt when it is registered again.

use graft_backend::{Backend, Ctx, InputBatch, ParamBuilder};
use graft_core::selector::{Stage, StageTable};
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use super::{HeadSpec, Model};

/// Where every task head's parameters live: `tasks.<name>.`.
pub const TASKS_PREFIX: &str = "tasks";

/// True when `name` is a task head's parameter.
pub fn is_task_param(name: &str) -> bool {
    name.strip_prefix(TASKS_PREFIX)
        .is_some_and(|r| r.starts_with('.'))
}

/// One task's head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskHead {
    /// The task's name (letters, digits, `_`, `-`): its parameters are `tasks.<name>.*`.
    pub name: String,
    /// Output width: classes for a classification task, values for a regression task.
    pub outputs: usize,
    /// Linear (default) or MLP; DeiT's distilled pair is not a task head.
    #[serde(default, skip_serializing_if = "is_linear")]
    pub head: HeadSpec,
    /// A classification task's class names, index = output (`None`: unnamed, or regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
}

fn is_linear(h: &HeadSpec) -> bool {
    *h == HeadSpec::Linear
}

impl TaskHead {
    /// The prefix of this head's parameters.
    pub fn prefix(&self) -> String {
        format!("{TASKS_PREFIX}.{}", self.name)
    }
    fn check(&self) -> Result<()> {
        let bad = |why: String| Error::invalid("task head", format!("{:?}: {why}", self.name));
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(
                "a task name is letters, digits, '_' and '-' (it names the head's parameters)"
                    .into(),
            ));
        }
        if self.outputs == 0 || self.outputs > graft_core::limits::MAX_CLASSES {
            return Err(bad(format!(
                "{} outputs: must be 1 to {}",
                self.outputs,
                graft_core::limits::MAX_CLASSES
            )));
        }
        if let Some(l) = &self.labels
            && l.len() != self.outputs
        {
            return Err(bad(format!(
                "{} labels for {} outputs",
                l.len(),
                self.outputs
            )));
        }
        if self.head == HeadSpec::Distilled {
            return Err(bad(
                "the distilled head reads a DeiT's two tokens; a task head reads the pooled features (Linear or MLP)".into(),
            ));
        }
        Ok(())
    }
}

impl<B: Backend> Model<B> {
    /// The task heads, in the order they were added.
    pub fn task_heads(&self) -> &[TaskHead] {
        &self.tasks
    }
    /// The task head named `name`.
    pub fn task_head(&self, name: &str) -> Result<&TaskHead> {
        self.tasks.iter().find(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.tasks.iter().map(|t| t.name.as_str()).collect();
            Error::invalid(
                "task head",
                format!("{} has no task head {name:?} (it has {names:?})", self.name),
            )
        })
    }
    /// Adds a fresh head for task `t` (seeded as a classifier would be). A name already taken is
    /// an error and leaves the model as it was.
    pub fn add_task_head(&mut self, t: TaskHead, seed: u64) -> Result<()> {
        self.trainable_form("add_task_head")?;
        t.check()?;
        if self.tasks.iter().any(|h| h.name == t.name) {
            return Err(Error::invalid(
                "task head",
                format!("{} already has a task head {:?}", self.name, t.name),
            ));
        }
        let builder = ParamBuilder::new(self.backend().clone(), seed).with_dtype(self.dtype);
        super::head::init_head_at(&builder.root(), &t.prefix(), &self.arch, &t.head, t.outputs)?;
        for (name, entry) in builder.finish().iter() {
            self.params.insert(name, entry.tensor.clone(), entry.kind)?;
        }
        self.tasks.push(t);
        Ok(())
    }
    /// Removes every task head (their parameters too); returns the names removed.
    pub fn remove_task_heads(&mut self) -> Result<Vec<String>> {
        self.trainable_form("remove_task_heads")?;
        self.tasks.clear();
        Ok(self.params.remove_prefix(TASKS_PREFIX))
    }
    /// Task `name`'s outputs on pooled features `[N, num_features]` (what
    /// [`Model::forward_pooled_batch`] gives): the family's classifier dropout, then the head.
    pub fn forward_task(&self, name: &str, pooled: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        let t = self.task_head(name)?;
        let b = self.backend();
        self.check_pooled(
            "forward_task",
            &format!("{}: task {name:?}", self.name),
            pooled,
        )?;
        let prefix = t.prefix();
        let c = self.arch.classifier();
        let y = graft_backend::nn::dropout(b, pooled, c.dropout, ctx, &prefix)?;
        super::head::forward_head_at(&self.params, &prefix, &t.head, &y, ctx)
    }
    /// Pooled pre-logits features of a batch: the trunk on images or token ids; cached pooled
    /// features as they are (cast to the model's dtype; their width is checked by the head that
    /// reads them). What every task head, and the classifier, reads.
    pub fn forward_pooled_batch(&self, batch: &InputBatch, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        match batch {
            InputBatch::Features(d) => {
                let b = self.backend();
                let x = b.from_data(d)?;
                if b.dtype(&x) != self.dtype {
                    return b.cast(&x, self.dtype);
                }
                Ok(x)
            }
            _ => self.forward_pooled(&self.input(batch)?, ctx),
        }
    }
    /// The stage table with the task heads in the `head` stage.
    pub(super) fn stages_with_tasks(&self) -> StageTable {
        let table = self.arch.stage_table();
        if self.tasks.is_empty() {
            return table;
        }
        let stages: Vec<Stage> = table
            .stages()
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if s.name == "head" {
                    s.prefixes.push(TASKS_PREFIX.to_string());
                }
                s
            })
            .collect();
        StageTable::new(stages).unwrap_or(table)
    }
}
