//! graft-backend: the thin tensor interface every graft model is written against.
//!
//! Owns: the [`Backend`] trait (one tensor type and the ~60 ops the zoo and training need, most of
//! them with composite default implementations), [`AutodiffBackend`] (backward, no-grad, in-place
//! assignment — implemented by graft-tch only), the host-side tensor value [`TensorData`], the
//! parameter store with its prefix builder ([`Params`], [`ParamPath`]), the forward context
//! ([`Ctx`], [`ModeTable`]) that decides BatchNorm and dropout behaviour per dotted path, the small
//! layer helpers that read it ([`nn`]), and the conformance suite ([`conformance`]) each backend
//! runs on itself.
//!
//! Must not know: any concrete tensor library (tch, ndarray's kernels), model families, files other
//! than safetensors for named tensors, optimizers, or TOML.

pub mod backend;
pub mod conformance;
pub mod ctx;
pub mod data;
pub mod init;
pub mod input;
pub mod nn;
pub mod opts;
pub mod params;
pub mod resample;
pub mod safetensors_io;

pub use backend::{AutodiffBackend, Backend};
pub use ctx::{Ctx, ModeRule, ModeTable, NormMode};
pub use data::{DType, TensorData, broadcast_shape, check_permutation};
pub use init::Init;
pub use input::{InputBatch, InputKind};
pub use opts::{
    AdamWStep, BatchNormMode, BatchNormTensors, Conv2dOpts, GeluApprox, MemoryFormat, Pool2dOpts,
};
pub use params::{Gradients, ParamBuilder, ParamKind, ParamPath, Params};

pub use graft_core::{Error, Result};
