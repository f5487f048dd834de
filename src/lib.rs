//! graft: transfer learning in Rust — feature extraction, direct reuse and fine-tuning over a
//! timm / torchvision-like model zoo, on libtorch (training, CPU / CUDA) or pure Rust (inference).
//!
//! This facade owns nothing of its own: it re-exports the workspace crates under one name and picks
//! the backends. It must not grow logic that a lower crate should own.
//!
//! - [`core`]: errors, dotted names, selectors.
//! - [`backend`]: the `Backend` / `AutodiffBackend` traits, the parameter store, the forward context.
//! - [`tch`] (feature `tch`, default): the libtorch backend; [`ndarray`]: the pure-Rust inference
//!   backend (`default-features = false` builds graft with no libtorch at all).
//! - [`optim`]: SGD and AdamW with mutable parameter groups and exportable state.
//! - [`zoo`]: model families with timm / torchvision names, the registry, weight loading.
//! - [`surgery`]: freezing, head replacement, parameter groups and learning-rate plans.
//! - [`data`]: datasets, splits, transforms and the loader.
//! - [`train`]: schedules, losses, metrics and the training loop with exact resume.
//! - [`reuse`]: direct reuse — label maps, BatchNorm re-estimation, evaluation.
//! - [`extract`]: feature extraction — the feature cache, heads on features, the per-stage probe.
//! - [`finetune`]: fine-tuning — the classic recipe, fastai's `fine_tune`, gradual unfreezing.
//! - [`text`]: tokenisation for text encoders, text datasets, the VADER lexicon.
//! - [`onnx`]: any model as an ONNX graph, traced from its forward; [`ort`]: running such a graph
//!   in ONNX Runtime (loaded at run time from an installed library).

pub use graft_backend as backend;
pub use graft_core as core;
pub use graft_data as data;
pub use graft_extract as extract;
pub use graft_finetune as finetune;
pub use graft_hub as hub;
pub use graft_ndarray as ndarray;
pub use graft_onnx as onnx;
pub use graft_optim as optim;
pub use graft_ort as ort;
pub use graft_reuse as reuse;
pub use graft_surgery as surgery;
#[cfg(feature = "tch")]
pub use graft_tch as tch;
pub use graft_text as text;
pub use graft_train as train;
pub use graft_zoo as zoo;

pub use graft_backend::{
    AutodiffBackend, Backend, Ctx, DType, InputBatch, InputKind, ModeTable, Params, TensorData,
};
pub use graft_core::{Error, Result};
pub use graft_ndarray::NdArray;
#[cfg(feature = "tch")]
pub use graft_tch::Tch;
