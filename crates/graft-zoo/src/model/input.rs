//! What a model takes, and the one way a batch reaches it.
//!
//! A batch arrives as a typed [`InputBatch`] (images, token ids or pooled features). The model
//! checks it against what its family takes ([`Model::input_kind`]) and uploads it
//! ([`Model::input`]); [`Model::forward_batch`] is that plus the forward to logits — how the
//! Trainer, evaluation, the LR finder, direct reuse and the CLI feed a model. Extraction takes
//! the same [`Model::input`] to the trunk's pooled or stage outputs.

use graft_backend::{Backend, Ctx, DType, InputBatch, InputKind};
use graft_core::{Error, Result};

use super::Model;

impl<B: Backend> Model<B> {
    /// What the trunk takes: images, or token ids for a text encoder (pooled features reach
    /// the classifier alone, whatever the family).
    pub fn input_kind(&self) -> InputKind {
        match self.arch.pad_token_id() {
            Some(_) => InputKind::TokenIds,
            None => InputKind::Images,
        }
    }
    /// The padding id a text encoder's attention mask leaves out (`None` for image models).
    pub fn pad_token_id(&self) -> Option<i64> {
        self.arch.pad_token_id()
    }
    /// The trunk's input on this model's backend, checked against what the model takes: images
    /// with its `in_chans`, or token ids padded with its own padding id (a batch padded with
    /// another id would be masked wrongly — the error names both). Pooled features are not a
    /// trunk input ([`Model::forward_batch`] runs the classifier on them).
    pub fn input(&self, batch: &InputBatch) -> Result<B::Tensor> {
        self.check_batch(batch)?;
        self.backend().from_data(batch.data())
    }
    /// [`Model::input`]'s check alone, for a caller that feeds the batch to another engine
    /// (ONNX Runtime) and so needs it on the host, not uploaded.
    pub fn check_batch(&self, batch: &InputBatch) -> Result<()> {
        let wrong = |why: String| Error::invalid("forward", format!("{}: {why}", self.name));
        let takes = self.input_kind();
        match (batch, takes) {
            (InputBatch::Images(_), InputKind::Images) => {}
            (InputBatch::TokenIds { pad_id, .. }, InputKind::TokenIds) => {
                let own = self.arch.pad_token_id();
                if own != Some(*pad_id) {
                    return Err(wrong(format!(
                        "the token ids are padded with {pad_id}, the model's padding id is {} (tokenizer and model disagree)",
                        own.unwrap_or_default()
                    )));
                }
            }
            (b, _) => {
                return Err(wrong(format!(
                    "the trunk takes {takes}, the batch holds {}",
                    b.kind()
                )));
            }
        }
        Ok(())
    }
    /// Logits of a batch: the whole model on images or token ids, the classifier alone on
    /// pooled features (a feature cache: the trunk never runs). Without a head, images and
    /// token ids give pooled features, as [`Model::forward`].
    pub fn forward_batch(&self, batch: &InputBatch, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        match batch {
            InputBatch::Features(_) => {
                self.forward_classifier(&self.forward_pooled_batch(batch, ctx)?, ctx)
            }
            _ => self.forward(&self.input(batch)?, ctx),
        }
    }
}

/// Checks a text encoder's batch of ids: `[N, T]` int64 with `1 <= T <= max_len` (the
/// positions it has embeddings for); `model` names it in the error.
pub(crate) fn check_token_ids(
    shape: &[usize],
    dtype: DType,
    max_len: usize,
    model: &str,
) -> Result<()> {
    if shape.len() != 2 || dtype != DType::I64 {
        return Err(Error::shape(
            "forward",
            format!("{model}: input must be [N, T] int64 token ids, got {shape:?} {dtype:?}"),
        ));
    }
    if shape[1] == 0 || shape[1] > max_len {
        return Err(Error::shape(
            "forward",
            format!(
                "{model}: {} tokens per text, the model has position embeddings for 1..={max_len}",
                shape[1]
            ),
        ));
    }
    Ok(())
}
