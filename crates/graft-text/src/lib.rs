//! graft-text: the text side of graft — turning sentences into what a text encoder reads.
//!
//! Owns: [`Tokenizer`], a HF `tokenizer.json` (WordPiece / BPE, normaliser, pre-tokeniser,
//! special tokens — through the `tokenizers` crate) with padding and truncation set by graft, not
//! by the file (a packaged file may pin them: MiniLM's pads every sequence to 128), producing
//! `input_ids`, `attention_mask` and `token_type_ids` as i64 [`TensorData`]; CLIP's tokenizer from
//! OpenAI's BPE merges shipped in `data/` ([`Tokenizer::clip`]); the VADER
//! lexicon as a labelled word task ([`VaderLexicon`]: polarity labels with a threshold, the mean
//! valence kept as a regression target).
//!
//! Must not know: model families, backends' internals, training, TOML, where model files come
//! from (callers pass paths).

mod clip;
mod dataset;
mod ngrams;
mod vader;
pub use dataset::{TextColumns, TextDataset, TextFormat, TokenDataset, read_texts};
pub use ngrams::CharNgrams;
pub use vader::{LexiconEntry, VaderLexicon};

use std::path::{Path, PathBuf};

use graft_backend::{InputBatch, TensorData};
use graft_core::{Error, Result};
use tokenizers::{PaddingDirection, PaddingParams, PaddingStrategy, TruncationParams};

/// A batch ready for an encoder: `[n, len]` i64 tensors, `len` the longest sequence in the batch
/// (at most the tokenizer's `max_len`).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub input_ids: TensorData,
    pub attention_mask: TensorData,
    pub token_type_ids: TensorData,
}

/// Texts' ids as one typed batch: `[n, len]` int64 padded on the right with `pad_id` to the
/// longest (`len` >= 1) — what a text encoder's `Model::forward_batch` / `Model::input` takes.
pub fn token_batch(seqs: &[&[u32]], pad_id: i64) -> Result<InputBatch> {
    let rows: Vec<Vec<i64>> = seqs
        .iter()
        .map(|s| s.iter().map(|&v| i64::from(v)).collect())
        .collect();
    InputBatch::pad_token_ids(&rows, pad_id)
}

/// A tokenizer from a `tokenizer.json`, padding each batch to its longest sequence and
/// truncating at `max_len` tokens (special tokens included).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    /// Where it came from (errors name it).
    path: PathBuf,
    /// A stable hash of the definition it was built from (the file's bytes).
    content: u64,
}

fn tok_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::format(path, format!("tokenizer: {e}"))
}

impl Tokenizer {
    /// Reads `path` (a HF `tokenizer.json`); `max_len` is the truncation length (MiniLM's
    /// sentence-transformers config uses 256). The file's own padding / truncation are replaced.
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(Error::invalid(
                "Tokenizer",
                format!("max_len {max_len}: room for the special tokens is needed"),
            ));
        }
        if !path.is_file() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no tokenizer.json here"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path, max_len)
    }
    /// A `tokenizer.json` held in memory; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(Error::invalid(
                "Tokenizer",
                format!("max_len {max_len}: room for the special tokens is needed"),
            ));
        }
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| tok_err(origin, e))?;
        let pad = inner.get_padding().cloned().unwrap_or_default();
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            ..pad
        }));
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| tok_err(origin, e))?;
        Ok(Self {
            inner,
            max_len,
            path: origin.to_path_buf(),
            content: graft_backend::init::stable_hash(bytes),
        })
    }
    /// The id padding is written with (the file's `[PAD]`).
    pub fn pad_id(&self) -> i64 {
        self.inner
            .get_padding()
            .map(|p| i64::from(p.pad_id))
            .unwrap_or(0)
    }
    /// The same tokenizer padding with `id` (a model whose padding the attention never reads —
    /// CLIP's causal text tower — takes whatever id it was trained with).
    pub fn with_pad_id(mut self, id: u32) -> Self {
        let pad = self.inner.get_padding().cloned().unwrap_or_default();
        self.inner
            .with_padding(Some(PaddingParams { pad_id: id, ..pad }));
        self
    }
    /// Token ids of each text, truncated, unpadded (tokenised in parallel).
    pub fn ids_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| tok_err(&self.path, e))?;
        Ok(enc
            .iter()
            .map(|e| {
                // Padding is on the right: the real tokens are the mask's leading ones.
                let real = e.get_attention_mask().iter().filter(|&&m| m == 1).count();
                e.get_ids()[..real].to_vec()
            })
            .collect())
    }
    /// A stable hash of what the tokenizer produces: the file's bytes and the truncation length
    /// (for feature caches keyed on it).
    pub fn fingerprint(&self) -> Result<u64> {
        let mut bytes = self.content.to_le_bytes().to_vec();
        bytes.extend((self.max_len as u64).to_le_bytes());
        Ok(graft_backend::init::stable_hash(&bytes))
    }
    /// The truncation length.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
    /// Token ids of one text, with the special tokens, unpadded (padding to the longest of a
    /// batch of one adds nothing).
    pub fn ids(&self, text: &str) -> Result<Vec<u32>> {
        let e = self
            .inner
            .encode(text, true)
            .map_err(|e| tok_err(&self.path, e))?;
        Ok(e.get_ids().to_vec())
    }
    /// A padded batch of `texts`.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Encoded> {
        if texts.is_empty() {
            return Err(Error::invalid("Tokenizer::encode_batch", "no texts"));
        }
        let enc = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| tok_err(&self.path, e))?;
        let len = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let n = enc.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        let mut types = Vec::with_capacity(n * len);
        for e in &enc {
            if e.get_ids().len() != len {
                return Err(Error::invalid(
                    "Tokenizer::encode_batch",
                    "padding left sequences of different lengths",
                ));
            }
            ids.extend(e.get_ids().iter().map(|&v| i64::from(v)));
            mask.extend(e.get_attention_mask().iter().map(|&v| i64::from(v)));
            types.extend(e.get_type_ids().iter().map(|&v| i64::from(v)));
        }
        Ok(Encoded {
            input_ids: TensorData::i64(&[n, len], ids)?,
            attention_mask: TensorData::i64(&[n, len], mask)?,
            token_type_ids: TensorData::i64(&[n, len], types)?,
        })
    }
}
