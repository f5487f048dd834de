//! The typed contract between data and models: what a batch holds, and what a model takes.
//!
//! A loader stacks samples into an [`InputBatch`] — images, token ids or pooled features, each
//! with its own dtype and rank — and a model takes one through a single call
//! (`graft_zoo::Model::forward_batch`). Nothing travels in another's layout: token ids stay
//! int64 from the tokenizer to the embedding, features stay `[N, D]`.

use crate::{DType, Error, Result, TensorData};

/// A batch of model inputs on the host, typed by what it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum InputBatch {
    /// Images `[N, C, H, W]` (f32, or bf16 for an inference copy that takes it).
    Images(TensorData),
    /// Token ids `[N, T]` (int64), each row padded with `pad_id` to the batch's longest text:
    /// the attention mask is `ids != pad_id`.
    TokenIds { ids: TensorData, pad_id: i64 },
    /// Pooled pre-logits features `[N, D]` (f32): a feature cache's rows, on which only a
    /// classifier runs.
    Features(TensorData),
}

/// The kinds of input, for messages and for what a model declares it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Images,
    TokenIds,
    Features,
}

impl std::fmt::Display for InputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InputKind::Images => "images [N, C, H, W]",
            InputKind::TokenIds => "token ids [N, T]",
            InputKind::Features => "pooled features [N, D]",
        })
    }
}

fn check(kind: InputKind, d: &TensorData, rank: usize, float: bool) -> Result<()> {
    let ok_dtype = if float {
        d.dtype().is_float()
    } else {
        d.dtype() == DType::I64
    };
    if !ok_dtype || d.shape().len() != rank || d.shape().iter().skip(1).any(|&s| s == 0) {
        return Err(Error::shape(
            "InputBatch",
            format!(
                "{kind} must be {} of rank {rank} with non-empty dimensions, got {} {:?}",
                if float { "float" } else { "int64" },
                d.dtype(),
                d.shape()
            ),
        ));
    }
    Ok(())
}

impl InputBatch {
    /// Images; `data` must be a float `[N, C, H, W]`.
    pub fn images(data: TensorData) -> Result<Self> {
        check(InputKind::Images, &data, 4, true)?;
        Ok(Self::Images(data))
    }
    /// Token ids; `ids` must be an int64 `[N, T]`, `T ≥ 1`.
    pub fn token_ids(ids: TensorData, pad_id: i64) -> Result<Self> {
        check(InputKind::TokenIds, &ids, 2, false)?;
        Ok(Self::TokenIds { ids, pad_id })
    }
    /// Unequal-length texts as one batch: each padded with `pad_id` to the longest (at least
    /// one token: an empty text is one padding token, which the mask then leaves out).
    pub fn pad_token_ids<S: AsRef<[i64]>>(rows: &[S], pad_id: i64) -> Result<Self> {
        let t = rows
            .iter()
            .map(|r| r.as_ref().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = Vec::with_capacity(rows.len() * t);
        for r in rows {
            let r = r.as_ref();
            ids.extend_from_slice(r);
            ids.extend(std::iter::repeat_n(pad_id, t - r.len()));
        }
        Self::token_ids(TensorData::i64(&[rows.len(), t], ids)?, pad_id)
    }
    /// Pooled features; `data` must be a float `[N, D]`.
    pub fn features(data: TensorData) -> Result<Self> {
        check(InputKind::Features, &data, 2, true)?;
        Ok(Self::Features(data))
    }
    /// What the batch holds.
    pub fn kind(&self) -> InputKind {
        match self {
            InputBatch::Images(_) => InputKind::Images,
            InputBatch::TokenIds { .. } => InputKind::TokenIds,
            InputBatch::Features(_) => InputKind::Features,
        }
    }
    /// The host values (ids, pixels or features).
    pub fn data(&self) -> &TensorData {
        match self {
            InputBatch::Images(d) | InputBatch::Features(d) => d,
            InputBatch::TokenIds { ids, .. } => ids,
        }
    }
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.data().shape().first().copied().unwrap_or(0)
    }
    /// True for a batch of no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_checked_by_dtype_and_rank() {
        let img = TensorData::f32(&[2, 3, 4, 4], vec![0.0; 96]).expect("test value");
        assert_eq!(
            InputBatch::images(img.clone()).expect("test value").len(),
            2
        );
        assert!(InputBatch::features(img.clone()).is_err());
        assert!(InputBatch::token_ids(img, 0).is_err());
        let ids = TensorData::i64(&[2, 3], vec![1, 2, 0, 3, 0, 0]).expect("test value");
        assert!(InputBatch::images(ids.clone()).is_err());
        assert_eq!(
            InputBatch::token_ids(ids, 0).expect("test value").kind(),
            InputKind::TokenIds
        );
        let empty = TensorData::i64(&[2, 0], vec![]).expect("test value");
        assert!(InputBatch::token_ids(empty, 0).is_err());
    }

    #[test]
    fn texts_are_padded_to_the_longest() {
        let b =
            InputBatch::pad_token_ids(&[vec![5, 6, 7], vec![8], vec![]], 1).expect("test value");
        assert_eq!(
            b.data(),
            &TensorData::i64(&[3, 3], vec![5, 6, 7, 8, 1, 1, 1, 1, 1]).expect("test value")
        );
        let none: [Vec<i64>; 0] = [];
        assert!(
            InputBatch::pad_token_ids(&none, 0)
                .expect("test value")
                .is_empty()
        );
    }
}
