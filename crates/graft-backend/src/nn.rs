//! Layer helpers: create a layer's parameters under a path with PyTorch's names and default
//! initialisation, and run it reading the forward context. Model families (graft-zoo) are written
//! with these and the raw [`Backend`] ops.

use crate::backend::Backend;
use crate::ctx::Ctx;
use crate::data::DType;
use crate::init::{Init, fans};
use crate::opts::{BatchNormTensors, Conv2dOpts};
use crate::params::{ParamPath, Params};
use crate::{Error, Result};
use graft_core::name::join;

/// Creates `weight` `[out, in/groups, k, k]` (and `bias`) with PyTorch's default init.
pub fn init_conv2d<B: Backend>(
    p: &ParamPath<'_, B>,
    in_ch: usize,
    out_ch: usize,
    kernel: (usize, usize),
    groups: usize,
    bias: bool,
) -> Result<()> {
    let shape = [out_ch, in_ch / groups.max(1), kernel.0, kernel.1];
    p.param("weight", &shape, Init::TorchDefaultWeight)?;
    if bias {
        p.param(
            "bias",
            &[out_ch],
            Init::TorchDefaultBias {
                fan_in: fans(&shape).0,
            },
        )?;
    }
    Ok(())
}

/// Creates `weight` `[out, in]` (and `bias`) with PyTorch's default Linear init.
pub fn init_linear<B: Backend>(
    p: &ParamPath<'_, B>,
    in_f: usize,
    out_f: usize,
    bias: bool,
) -> Result<()> {
    p.param("weight", &[out_f, in_f], Init::TorchDefaultWeight)?;
    if bias {
        p.param("bias", &[out_f], Init::TorchDefaultBias { fan_in: in_f })?;
    }
    Ok(())
}

/// Creates a BatchNorm's `weight`, `bias`, `running_mean`, `running_var` and the i64
/// `num_batches_tracked`, initialised as PyTorch does.
pub fn init_batch_norm<B: Backend>(p: &ParamPath<'_, B>, ch: usize) -> Result<()> {
    p.param("weight", &[ch], Init::Ones)?;
    p.param("bias", &[ch], Init::Zeros)?;
    p.buffer("running_mean", &[ch], Init::Zeros)?;
    p.buffer("running_var", &[ch], Init::Ones)?;
    p.buffer_typed("num_batches_tracked", &[], Init::Zeros, DType::I64)?;
    Ok(())
}

/// Creates a LayerNorm's `weight` (ones) and `bias` (zeros).
pub fn init_layer_norm<B: Backend>(p: &ParamPath<'_, B>, dim: usize) -> Result<()> {
    p.param("weight", &[dim], Init::Ones)?;
    p.param("bias", &[dim], Init::Zeros)?;
    Ok(())
}

/// Conv2d with the `weight` / optional `bias` under `path`.
pub fn conv2d<B: Backend>(
    params: &Params<B>,
    path: &str,
    x: &B::Tensor,
    opts: Conv2dOpts,
) -> Result<B::Tensor> {
    let b = params.backend();
    let w = params.get(&join(path, "weight"))?;
    b.conv2d(x, w, params.try_get(&join(path, "bias")), opts)
}

/// Linear with the `weight` / optional `bias` under `path`.
pub fn linear<B: Backend>(params: &Params<B>, path: &str, x: &B::Tensor) -> Result<B::Tensor> {
    let b = params.backend();
    b.linear(
        x,
        params.get(&join(path, "weight"))?,
        params.try_get(&join(path, "bias")),
    )
}

/// BatchNorm under `path`, in the mode the context gives that path.
pub fn batch_norm<B: Backend>(
    params: &Params<B>,
    path: &str,
    x: &B::Tensor,
    ctx: &Ctx<'_>,
    eps: f64,
    momentum: f64,
) -> Result<B::Tensor> {
    let b = params.backend();
    let mode = ctx.norm_mode(path).batch_norm_mode(momentum);
    if params.is_folded(path) {
        // an inference copy: the conv before this layer already applies its affine transform
        return match mode {
            crate::BatchNormMode::Eval => Ok(x.clone()),
            crate::BatchNormMode::Train { .. } => Err(Error::invalid(
                "batch_norm",
                format!(
                    "{path}: this BatchNorm was folded into its conv for inference; train or re-estimate the original model, not its inference copy"
                ),
            )),
        };
    }
    if matches!(mode, crate::BatchNormMode::Train { .. }) {
        // PyTorch's check: batch statistics of a single value give a zero variance and an
        // infinite unbiased running variance, which silently wrecks the layer in eval mode
        let shape = b.shape(x);
        let per_channel: usize = shape
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, d)| d)
            .product();
        if per_channel <= 1 {
            return Err(Error::shape(
                "batch_norm",
                format!(
                    "{path}: expected more than 1 value per channel when training, got input shape {shape:?} (a batch of one: drop the last partial batch, LoaderConfig::drop_last, or use a larger batch)"
                ),
            ));
        }
    }
    let bn = BatchNormTensors {
        weight: params.try_get(&join(path, "weight")),
        bias: params.try_get(&join(path, "bias")),
        running_mean: params.get(&join(path, "running_mean"))?,
        running_var: params.get(&join(path, "running_var"))?,
        num_batches_tracked: params.try_get(&join(path, "num_batches_tracked")),
        eps,
    };
    b.batch_norm(x, bn, mode)
}

/// LayerNorm over the last dim with the `weight` / `bias` under `path`.
pub fn layer_norm<B: Backend>(
    params: &Params<B>,
    path: &str,
    x: &B::Tensor,
    eps: f64,
) -> Result<B::Tensor> {
    let b = params.backend();
    b.layer_norm(
        x,
        1,
        params.try_get(&join(path, "weight")),
        params.try_get(&join(path, "bias")),
        eps,
    )
}

/// Dropout at `path`: applied only when the context says so.
pub fn dropout<B: Backend>(
    b: &B,
    x: &B::Tensor,
    p: f64,
    ctx: &Ctx<'_>,
    path: &str,
) -> Result<B::Tensor> {
    if p > 0.0 && ctx.dropout_active(path) {
        b.dropout(x, p, ctx.dropout_seed(path))
    } else {
        Ok(x.clone())
    }
}

/// Stochastic depth at `path`: applied only when the context says so.
pub fn drop_path<B: Backend>(
    b: &B,
    x: &B::Tensor,
    p: f64,
    ctx: &Ctx<'_>,
    path: &str,
) -> Result<B::Tensor> {
    if p > 0.0 && ctx.dropout_active(path) {
        b.drop_path(x, p, ctx.dropout_seed(path))
    } else {
        Ok(x.clone())
    }
}
