//! The backend conformance suite: every op of [`Backend`] on deterministic inputs with odd shapes
//! (groups = channels, dilation 2, stride 2 with padding, 1×1 spatial, batch 1, bf16 and i64 where
//! the op allows).
//!
//! - [`case_names`] / [`run_case`]: each case's outputs on a backend, as host tensors; the facade's
//!   `tests/` runs them on graft-tch and graft-ndarray and compares with [`Tol`].
//! - [`check_references`]: each backend against naive host references (f64 loops) for the cases that
//!   have one (elementwise maths, broadcasting, matmul, conv2d, pools, softmax, layer_norm).
//! - [`check_params`], [`check_norm_modes`]: the parameter store and the per-path forward context.
//! - [`conformance_tests!`](crate::conformance_tests): instantiates all of it as `#[test]`s in a
//!   backend crate's own tests (not a dev-dependency of this crate, which would build it twice).

use ndarray::{ArrayD, Dimension, IxDyn};

use crate::backend::{AutodiffBackend, Backend};
use crate::ctx::{Ctx, ModeRule, ModeTable, NormMode};
use crate::data::{DType, TensorData, broadcast_shape};
use crate::init::uniform_f32;
use crate::opts::{BatchNormMode, BatchNormTensors, Conv2dOpts, GeluApprox, Pool2dOpts};
use crate::params::{ParamBuilder, ParamKind};
use crate::{Error, Result, nn};

/// How closely two backends must agree on a case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tol {
    /// `|a - b| <= eps` elementwise.
    Abs(f64),
    /// `|a - b| <= eps * max(|a|, |b|, 1)` elementwise (conv, matmul, reductions over many terms).
    Rel(f64),
    /// Bit-identical (integer results, shape ops, selections).
    Exact,
}

impl Tol {
    /// Checks `got` against `want`; the error says where and by how much they differ.
    pub fn check(self, got: &TensorData, want: &TensorData) -> std::result::Result<(), String> {
        if got.shape() != want.shape() {
            return Err(format!("shape {:?} vs {:?}", got.shape(), want.shape()));
        }
        if got.dtype() != want.dtype() {
            return Err(format!("dtype {} vs {}", got.dtype(), want.dtype()));
        }
        let (a, b) = (got.to_f64(), want.to_f64());
        let mut worst: Option<(usize, f64, f64, f64)> = None;
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            let d = (x - y).abs();
            let ok = match self {
                _ if x.is_nan() && y.is_nan() => true,
                Tol::Exact => x.to_bits() == y.to_bits() || x == y,
                Tol::Abs(e) => d <= e,
                Tol::Rel(e) => d <= e * x.abs().max(y.abs()).max(1.0),
            };
            if !ok && worst.is_none_or(|(_, _, _, w)| d > w) {
                worst = Some((i, *x, *y, d));
            }
        }
        match worst {
            None => Ok(()),
            Some((i, x, y, d)) => Err(format!(
                "{self:?} violated: flat index {i}: {x} vs {y} (|diff| {d:e})"
            )),
        }
    }
}

/// The tolerance two backends must meet on `case`.
pub fn tolerance(case: &str) -> Tol {
    if case.contains("bf16") {
        // two bf16 roundings (2^-8 each) apart at most
        Tol::Rel(1.6e-2)
    } else if case.starts_with("i64_") || EXACT.contains(&case) {
        Tol::Exact
    } else if REL.iter().any(|p| case.starts_with(p)) {
        Tol::Rel(1e-4)
    } else {
        Tol::Abs(1e-5)
    }
}

const EXACT: &[&str] = &[
    "reshape",
    "permute",
    "cat",
    "narrow",
    "flatten",
    "transpose",
    "unsqueeze",
    "index_select",
    "gather",
    "embedding",
    "masked_fill",
    "argmax",
    "lt_scalar",
    "max_dim",
    "relu",
    "relu6",
    "clamp",
    "neg",
    "max_pool2d",
    "max_pool2d_ceil_dilated",
    "adaptive_max_pool2d",
    "cast_f32_i64",
];
const REL: &[&str] = &[
    "conv2d",
    "matmul",
    "linear",
    "sdpa",
    "sum",
    "mean",
    "batch_norm",
    "layer_norm",
    "avg_pool",
    "adaptive_avg",
];

/// Cases that need training (batch statistics, dropout): an inference-only backend must refuse
/// them with [`Error::Unsupported`].
pub const TRAIN_ONLY: &[&str] = &[
    "batch_norm_train",
    "batch_norm_cumulative",
    "dropout",
    "drop_path",
];

/// Every case, in a stable order.
pub fn case_names() -> &'static [&'static str] {
    &[
        "add_bcast",
        "sub_bcast",
        "mul_bcast",
        "div_bcast",
        "add_scalar",
        "mul_scalar",
        "lt_scalar",
        "neg",
        "exp",
        "log",
        "tanh",
        "sqrt",
        "sigmoid",
        "clamp",
        "relu",
        "relu6",
        "gelu_erf",
        "gelu_tanh",
        "silu",
        "hardswish",
        "hardsigmoid",
        "softmax_dim1",
        "softmax_last",
        "log_softmax",
        "sum_dim",
        "sum_all",
        "mean_dims",
        "max_dim",
        "argmax",
        "topk_largest",
        "topk_smallest",
        "gather",
        "index_select",
        "masked_fill",
        "embedding",
        "reshape",
        "permute",
        "cat",
        "narrow",
        "flatten",
        "transpose",
        "unsqueeze",
        "matmul_2d",
        "matmul_batched",
        "matmul_broadcast",
        "matmul_vec",
        "linear",
        "conv2d_3x3_pad1",
        "conv2d_stride2_pad1",
        "conv2d_dilation2",
        "conv2d_depthwise",
        "conv2d_groups2_bias",
        "conv2d_1x1_spatial",
        "conv2d_batch1_rect",
        "batch_norm_eval",
        "batch_norm_train",
        "batch_norm_cumulative",
        "layer_norm",
        "layer_norm_2d",
        "max_pool2d",
        "max_pool2d_ceil_dilated",
        "avg_pool2d",
        "avg_pool2d_ceil_nopad",
        "adaptive_avg_pool2d",
        "adaptive_max_pool2d",
        "sdpa_mask",
        "sdpa_nomask",
        "dropout",
        "drop_path",
        "cast_f32_bf16",
        "cast_f32_i64",
        "bf16_add",
        "bf16_mul",
        "bf16_gelu",
        "bf16_softmax",
        "bf16_matmul",
        "bf16_conv2d",
        "bf16_layer_norm",
        "i64_add",
        "i64_mul",
        "i64_sum",
        "i64_cat",
        "i64_permute",
        "i64_narrow",
        "i64_masked_fill",
        "i64_gather",
        "i64_max_dim",
        "i64_argmax",
        "i64_topk",
    ]
}

/// Deterministic f32 values in `[lo, hi)`.
pub fn rnd(shape: &[usize], seed: u64, lo: f32, hi: f32) -> TensorData {
    let n = shape.iter().product();
    let v = uniform_f32(n, seed)
        .into_iter()
        .map(|u| lo + (hi - lo) * u)
        .collect();
    TensorData::F32(
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape))),
    )
}

fn ints(shape: &[usize], seed: u64, hi: i64) -> TensorData {
    let n = shape.iter().product();
    let v = uniform_f32(n, seed)
        .into_iter()
        .map(|u| ((u * hi as f32) as i64).min(hi - 1))
        .collect();
    TensorData::I64(
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape))),
    )
}

/// Distinct i64 values (a seeded permutation of `0..n`, scaled and shifted) so that sorts,
/// top-k and argmax have no ties whose order backends may break differently.
fn distinct_ints(shape: &[usize], seed: u64) -> TensorData {
    let n: usize = shape.iter().product();
    let keys = uniform_f32(n, seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]).then(a.cmp(&b)));
    let v = order.into_iter().map(|i| 7 * i as i64 - 150).collect();
    TensorData::I64(
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| ArrayD::zeros(IxDyn(shape))),
    )
}

/// Inputs of a case (host values), shared by [`run_case`] and the references.
pub fn inputs(case: &str) -> Vec<TensorData> {
    let r = |s: &[usize], seed| rnd(s, seed, -2.0, 2.0);
    let pos = |s: &[usize], seed| rnd(s, seed, 0.1, 3.0);
    let wide = |s: &[usize], seed| rnd(s, seed, -8.0, 8.0);
    match case {
        "add_bcast" => vec![r(&[2, 3, 4], 1), r(&[3, 1], 2)],
        "sub_bcast" => vec![r(&[2, 1, 4], 3), r(&[3, 4], 4)],
        "mul_bcast" => vec![r(&[4], 5), r(&[2, 3, 4], 6)],
        "div_bcast" => vec![r(&[2, 3, 4], 7), pos(&[1, 3, 1], 8)],
        "log" | "sqrt" => vec![pos(&[3, 5], 9)],
        "relu" | "relu6" | "gelu_erf" | "gelu_tanh" | "silu" | "hardswish" | "hardsigmoid"
        | "clamp" | "sigmoid" | "tanh" | "neg" | "exp" | "lt_scalar" | "add_scalar"
        | "mul_scalar" => vec![wide(&[4, 7], 10)],
        "softmax_dim1" | "softmax_last" | "log_softmax" => vec![wide(&[2, 5, 3], 11)],
        "sum_dim" | "sum_all" | "mean_dims" | "max_dim" | "argmax" | "topk_largest"
        | "topk_smallest" => vec![r(&[3, 6, 5], 12)],
        "gather" => vec![r(&[3, 5], 13), ints(&[3, 4], 14, 5)],
        "index_select" => vec![
            r(&[4, 3, 2], 15),
            TensorData::i64(&[3], vec![2, 0, 2]).unwrap_or_else(|_| ints(&[3], 0, 4)),
        ],
        "masked_fill" => vec![r(&[2, 3, 4], 16), ints(&[1, 3, 4], 17, 2)],
        "embedding" => vec![r(&[10, 6], 18), ints(&[2, 5], 19, 10)],
        "reshape" | "permute" | "flatten" | "transpose" | "unsqueeze" | "narrow" => {
            vec![r(&[2, 3, 4, 5], 20)]
        }
        "cat" => vec![r(&[2, 3, 4], 21), r(&[2, 1, 4], 22), r(&[2, 2, 4], 23)],
        "matmul_2d" => vec![r(&[5, 7], 24), r(&[7, 3], 25)],
        "matmul_batched" => vec![r(&[3, 4, 6], 26), r(&[3, 6, 5], 27)],
        "matmul_broadcast" => vec![r(&[2, 1, 4, 6], 28), r(&[3, 6, 5], 29)],
        "matmul_vec" => vec![r(&[3, 6, 5], 30), r(&[5], 31)],
        "linear" => vec![r(&[2, 3, 8], 32), r(&[5, 8], 33), r(&[5], 34)],
        "conv2d_3x3_pad1" => vec![r(&[2, 3, 9, 8], 35), r(&[4, 3, 3, 3], 36)],
        "conv2d_stride2_pad1" => vec![r(&[2, 3, 9, 9], 37), r(&[5, 3, 3, 3], 38)],
        "conv2d_dilation2" => vec![r(&[1, 2, 11, 10], 39), r(&[3, 2, 3, 3], 40)],
        "conv2d_depthwise" => vec![r(&[2, 6, 7, 7], 41), r(&[6, 1, 3, 3], 42)],
        "conv2d_groups2_bias" => vec![r(&[2, 4, 6, 5], 43), r(&[6, 2, 3, 3], 44), r(&[6], 45)],
        "conv2d_1x1_spatial" => vec![r(&[3, 8, 1, 1], 46), r(&[4, 8, 1, 1], 47), r(&[4], 48)],
        "conv2d_batch1_rect" => vec![r(&[1, 3, 7, 12], 49), r(&[2, 3, 3, 5], 50)],
        "batch_norm_eval" | "batch_norm_train" | "batch_norm_cumulative" => vec![
            r(&[3, 4, 5, 5], 51),
            r(&[4], 52),
            r(&[4], 53),
            r(&[4], 54),
            pos(&[4], 55),
        ],
        "layer_norm" => vec![r(&[2, 3, 8], 56), r(&[8], 57), r(&[8], 58)],
        "layer_norm_2d" => vec![r(&[2, 3, 4], 59), r(&[3, 4], 60), r(&[3, 4], 61)],
        "max_pool2d" | "avg_pool2d" => vec![r(&[2, 3, 9, 8], 62)],
        "max_pool2d_ceil_dilated" | "avg_pool2d_ceil_nopad" => vec![r(&[1, 2, 10, 11], 63)],
        "adaptive_avg_pool2d" | "adaptive_max_pool2d" => vec![r(&[2, 3, 7, 10], 64)],
        "sdpa_mask" => vec![
            r(&[2, 3, 5, 4], 65),
            r(&[2, 3, 6, 4], 66),
            r(&[2, 3, 6, 4], 67),
            TensorData::F32(ArrayD::from_shape_fn(IxDyn(&[2, 1, 1, 6]), |i| {
                if i[2] == 0 && i[3] >= 4 - i[0] {
                    -1e9
                } else {
                    0.0
                }
            })),
        ],
        "sdpa_nomask" => vec![r(&[1, 4, 3], 68), r(&[1, 7, 3], 69), r(&[1, 7, 2], 70)],
        "dropout" | "drop_path" => vec![TensorData::F32(ArrayD::from_elem(IxDyn(&[64, 50]), 1.0))],
        "cast_f32_bf16" | "cast_f32_i64" => vec![wide(&[3, 4], 71)],
        "bf16_add" | "bf16_mul" => vec![
            r(&[3, 4], 72).cast(DType::BF16),
            r(&[4], 73).cast(DType::BF16),
        ],
        "bf16_gelu" => vec![wide(&[4, 5], 74).cast(DType::BF16)],
        "bf16_softmax" => vec![r(&[3, 6], 75).cast(DType::BF16)],
        "bf16_matmul" => vec![
            r(&[4, 16], 76).cast(DType::BF16),
            r(&[16, 3], 77).cast(DType::BF16),
        ],
        "bf16_conv2d" => vec![
            r(&[1, 4, 6, 6], 78).cast(DType::BF16),
            r(&[3, 4, 3, 3], 79).cast(DType::BF16),
        ],
        "bf16_layer_norm" => vec![r(&[2, 16], 80).cast(DType::BF16)],
        "i64_add" | "i64_mul" => vec![ints(&[3, 4], 81, 50), ints(&[4], 82, 50)],
        "i64_sum" | "i64_permute" | "i64_narrow" | "i64_max_dim" | "i64_argmax" | "i64_topk" => {
            vec![distinct_ints(&[3, 4, 5], 83)]
        }
        "i64_cat" => vec![ints(&[2, 3], 84, 9), ints(&[1, 3], 85, 9)],
        "i64_masked_fill" => vec![ints(&[3, 4], 86, 9), ints(&[3, 1], 87, 2)],
        "i64_gather" => vec![ints(&[3, 5], 88, 100), ints(&[3, 2], 89, 5)],
        _ => vec![],
    }
}

fn bn_tensors<'a, T>(t: &'a [T], nbt: Option<&'a T>) -> BatchNormTensors<'a, T> {
    BatchNormTensors {
        weight: Some(&t[1]),
        bias: Some(&t[2]),
        running_mean: &t[3],
        running_var: &t[4],
        num_batches_tracked: nbt,
        eps: 1e-5,
    }
}

/// Runs `case` on `b`; returns its outputs as host values.
pub fn run_case<B: Backend>(b: &B, case: &str) -> Result<Vec<TensorData>> {
    let ins = inputs(case);
    if ins.is_empty() {
        return Err(Error::invalid(
            "conformance",
            format!("unknown case {case:?}"),
        ));
    }
    let t: Vec<B::Tensor> = ins.iter().map(|d| b.from_data(d)).collect::<Result<_>>()?;
    let one = |x: Result<B::Tensor>| -> Result<Vec<B::Tensor>> { Ok(vec![x?]) };
    let out: Vec<B::Tensor> = match case {
        "add_bcast" | "bf16_add" | "i64_add" => one(b.add(&t[0], &t[1]))?,
        "sub_bcast" => one(b.sub(&t[0], &t[1]))?,
        "mul_bcast" | "bf16_mul" | "i64_mul" => one(b.mul(&t[0], &t[1]))?,
        "div_bcast" => one(b.div(&t[0], &t[1]))?,
        "add_scalar" => one(b.add_scalar(&t[0], 0.75))?,
        "mul_scalar" => one(b.mul_scalar(&t[0], -1.5))?,
        "lt_scalar" => one(b.lt_scalar(&t[0], 0.5))?,
        "neg" => one(b.neg(&t[0]))?,
        "exp" => one(b.exp(&b.mul_scalar(&t[0], 0.5)?))?,
        "log" => one(b.log(&t[0]))?,
        "tanh" => one(b.tanh(&t[0]))?,
        "sqrt" => one(b.sqrt(&t[0]))?,
        "sigmoid" => one(b.sigmoid(&t[0]))?,
        "clamp" => vec![
            b.clamp(&t[0], Some(-1.5), Some(2.25))?,
            b.clamp(&t[0], None, Some(0.5))?,
        ],
        "relu" => one(b.relu(&t[0]))?,
        "relu6" => one(b.relu6(&t[0]))?,
        "gelu_erf" | "bf16_gelu" => one(b.gelu(&t[0], GeluApprox::Erf))?,
        "gelu_tanh" => one(b.gelu(&t[0], GeluApprox::Tanh))?,
        "silu" => one(b.silu(&t[0]))?,
        "hardswish" => one(b.hardswish(&t[0]))?,
        "hardsigmoid" => one(b.hardsigmoid(&t[0]))?,
        "softmax_dim1" => one(b.softmax(&t[0], 1))?,
        "softmax_last" => one(b.softmax(&t[0], 2))?,
        "bf16_softmax" => one(b.softmax(&t[0], 1))?,
        "log_softmax" => one(b.log_softmax(&t[0], 2))?,
        "sum_dim" => vec![b.sum(&t[0], &[1], true)?, b.sum(&t[0], &[2], false)?],
        "sum_all" => one(b.sum(&t[0], &[], false))?,
        "i64_sum" => vec![b.sum(&t[0], &[1], false)?, b.sum(&t[0], &[], false)?],
        "mean_dims" => vec![b.mean(&t[0], &[0, 2], false)?, b.mean(&t[0], &[1], true)?],
        "max_dim" | "i64_max_dim" => vec![b.max_dim(&t[0], 1, false)?, b.max_dim(&t[0], 2, true)?],
        "argmax" | "i64_argmax" => vec![b.argmax(&t[0], 1, false)?, b.argmax(&t[0], 2, true)?],
        "topk_largest" | "i64_topk" => {
            let (v, i) = b.topk(&t[0], 3, 1, true)?;
            vec![v, i]
        }
        "topk_smallest" => {
            let (v, i) = b.topk(&t[0], 2, 2, false)?;
            vec![v, i]
        }
        "gather" | "i64_gather" => one(b.gather(&t[0], 1, &t[1]))?,
        "index_select" => vec![
            b.index_select(&t[0], 0, &t[1])?,
            b.index_select(&t[0], 1, &b.from_data(&TensorData::i64(&[2], vec![1, 1])?)?)?,
        ],
        "masked_fill" => one(b.masked_fill(&t[0], &t[1], -3.5))?,
        "i64_masked_fill" => one(b.masked_fill(&t[0], &t[1], -7.0))?,
        "embedding" => one(b.embedding(&t[0], &t[1]))?,
        "reshape" => one(b.reshape(&t[0], &[6, 20]))?,
        "permute" => one(b.permute(&t[0], &[2, 0, 3, 1]))?,
        "i64_permute" => one(b.permute(&t[0], &[2, 0, 1]))?,
        "cat" => one(b.cat(&[&t[0], &t[1], &t[2]], 1))?,
        "i64_cat" => one(b.cat(&[&t[0], &t[1]], 0))?,
        "narrow" => vec![b.narrow(&t[0], 2, 1, 2)?, b.narrow(&t[0], 3, 4, 1)?],
        "i64_narrow" => one(b.narrow(&t[0], 1, 1, 3))?,
        "flatten" => vec![b.flatten(&t[0], 1, 3)?, b.flatten(&t[0], 0, 1)?],
        "transpose" => one(b.transpose(&t[0], 1, 3))?,
        "unsqueeze" => one(b.unsqueeze(&t[0], 2))?,
        "matmul_2d" | "matmul_batched" | "matmul_broadcast" | "matmul_vec" | "bf16_matmul" => {
            one(b.matmul(&t[0], &t[1]))?
        }
        "linear" => vec![
            b.linear(&t[0], &t[1], Some(&t[2]))?,
            b.linear(&t[0], &t[1], None)?,
        ],
        "conv2d_3x3_pad1" => one(b.conv2d(&t[0], &t[1], None, Conv2dOpts::new().padding(1)))?,
        "conv2d_stride2_pad1" => {
            one(b.conv2d(&t[0], &t[1], None, Conv2dOpts::new().stride(2).padding(1)))?
        }
        "conv2d_dilation2" => {
            one(b.conv2d(&t[0], &t[1], None, Conv2dOpts::new().dilation(2).padding(2)))?
        }
        "conv2d_depthwise" => one(b.conv2d(
            &t[0],
            &t[1],
            None,
            Conv2dOpts::new().groups(6).padding(1).stride(2),
        ))?,
        "conv2d_groups2_bias" => one(b.conv2d(
            &t[0],
            &t[1],
            Some(&t[2]),
            Conv2dOpts::new().groups(2).padding(1),
        ))?,
        "conv2d_1x1_spatial" => one(b.conv2d(&t[0], &t[1], Some(&t[2]), Conv2dOpts::new()))?,
        "conv2d_batch1_rect" => one(b.conv2d(
            &t[0],
            &t[1],
            None,
            Conv2dOpts {
                stride: (2, 1),
                padding: (1, 2),
                dilation: (1, 1),
                groups: 1,
            },
        ))?,
        "bf16_conv2d" => one(b.conv2d(&t[0], &t[1], None, Conv2dOpts::new().padding(1)))?,
        "batch_norm_eval" => one(b.batch_norm(&t[0], bn_tensors(&t, None), BatchNormMode::Eval))?,
        "batch_norm_train" | "batch_norm_cumulative" => {
            let nbt = b.from_data(&TensorData::i64(&[], vec![3])?)?;
            let momentum = if case == "batch_norm_train" {
                Some(0.1)
            } else {
                None
            };
            let y = b.batch_norm(
                &t[0],
                bn_tensors(&t, Some(&nbt)),
                BatchNormMode::Train { momentum },
            )?;
            vec![y, t[3].clone(), t[4].clone(), nbt]
        }
        "layer_norm" => vec![
            b.layer_norm(&t[0], 1, Some(&t[1]), Some(&t[2]), 1e-5)?,
            b.layer_norm(&t[0], 1, None, None, 1e-6)?,
        ],
        "layer_norm_2d" => one(b.layer_norm(&t[0], 2, Some(&t[1]), Some(&t[2]), 1e-5))?,
        "bf16_layer_norm" => one(b.layer_norm(&t[0], 1, None, None, 1e-5))?,
        "max_pool2d" => one(b.max_pool2d(&t[0], Pool2dOpts::new(3).stride(2).padding(1)))?,
        "max_pool2d_ceil_dilated" => vec![
            b.max_pool2d(&t[0], Pool2dOpts::new(2).stride(2).ceil_mode(true))?,
            b.max_pool2d(&t[0], Pool2dOpts::new(3).stride(2).dilation(2).padding(1))?,
        ],
        "avg_pool2d" => vec![
            b.avg_pool2d(&t[0], Pool2dOpts::new(3).stride(2).padding(1))?,
            b.avg_pool2d(
                &t[0],
                Pool2dOpts::new(3)
                    .stride(2)
                    .padding(1)
                    .count_include_pad(false),
            )?,
        ],
        "avg_pool2d_ceil_nopad" => vec![
            b.avg_pool2d(&t[0], Pool2dOpts::new(3).stride(2).ceil_mode(true))?,
            b.avg_pool2d(
                &t[0],
                Pool2dOpts::new(2)
                    .stride(2)
                    .padding(1)
                    .ceil_mode(true)
                    .count_include_pad(false),
            )?,
        ],
        "adaptive_avg_pool2d" => vec![
            b.adaptive_avg_pool2d(&t[0], (3, 4))?,
            b.adaptive_avg_pool2d(&t[0], (1, 1))?,
        ],
        "adaptive_max_pool2d" => vec![
            b.adaptive_max_pool2d(&t[0], (3, 4))?,
            b.adaptive_max_pool2d(&t[0], (1, 1))?,
        ],
        "sdpa_mask" => one(b.scaled_dot_product_attention(&t[0], &t[1], &t[2], Some(&t[3]), None))?,
        "sdpa_nomask" => one(b.scaled_dot_product_attention(&t[0], &t[1], &t[2], None, Some(0.3)))?,
        "dropout" => one(b.dropout(&t[0], 0.25, 1234))?,
        "drop_path" => one(b.drop_path(&t[0], 0.25, 1234))?,
        "cast_f32_bf16" => one(b.cast(&t[0], DType::BF16))?,
        "cast_f32_i64" => one(b.cast(&t[0], DType::I64))?,
        other => {
            return Err(Error::invalid(
                "conformance",
                format!("case {other:?} has no runner"),
            ));
        }
    };
    out.iter().map(|x| b.to_data(x)).collect()
}

// ---- naive host references (f64) -------------------------------------------------------------

fn f(d: &TensorData) -> ArrayD<f64> {
    d.to_f64()
}
fn back(a: ArrayD<f64>) -> TensorData {
    TensorData::F32(a.mapv(|v| v as f32))
}
fn erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse; use a series / continued fraction split.
    if x.abs() < 2.5 {
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        for n in 1..60 {
            term *= -x2 / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction
        let ax = x.abs();
        let mut cf = 0.0;
        for k in (1..80).rev() {
            cf = (k as f64 / 2.0) / (ax + cf);
        }
        let erfc = (-ax * ax).exp() / (ax + cf) / std::f64::consts::PI.sqrt();
        x.signum() * (1.0 - erfc)
    }
}

fn conv_ref(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    bias: Option<&ArrayD<f64>>,
    o: Conv2dOpts,
) -> ArrayD<f64> {
    let (n, h, wd) = (x.shape()[0], x.shape()[2], x.shape()[3]);
    let (oc, icg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let oh = (h + 2 * o.padding.0 - o.dilation.0 * (kh - 1) - 1) / o.stride.0 + 1;
    let ow = (wd + 2 * o.padding.1 - o.dilation.1 * (kw - 1) - 1) / o.stride.1 + 1;
    let ocg = oc / o.groups;
    ArrayD::from_shape_fn(IxDyn(&[n, oc, oh, ow]), |i| {
        let (b, co, y, xx) = (i[0], i[1], i[2], i[3]);
        let g = co / ocg;
        let mut s = bias.map_or(0.0, |bb| bb[[co]]);
        for ci in 0..icg {
            for ky in 0..kh {
                for kx in 0..kw {
                    let iy = (y * o.stride.0 + ky * o.dilation.0) as isize - o.padding.0 as isize;
                    let ix = (xx * o.stride.1 + kx * o.dilation.1) as isize - o.padding.1 as isize;
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                        s += x[[b, g * icg + ci, iy as usize, ix as usize]] * w[[co, ci, ky, kx]];
                    }
                }
            }
        }
        s
    })
}

fn matmul_ref(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
    // batched with broadcasting over leading dims; both >= 2-d here
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch_a = &a.shape()[..ra - 2];
    let batch_b = &b.shape()[..rb - 2];
    let r = batch_a.len().max(batch_b.len());
    let dim = |s: &[usize], i: usize| {
        if i + s.len() >= r {
            s[i + s.len() - r]
        } else {
            1
        }
    };
    let batch: Vec<usize> = (0..r)
        .map(|i| dim(batch_a, i).max(dim(batch_b, i)))
        .collect();
    let mut shape = batch.clone();
    shape.extend([m, n]);
    ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let idx = idx.slice();
        let pick = |s: &[usize], full: &[usize]| -> Vec<usize> {
            (0..s.len())
                .map(|j| if s[j] == 1 { 0 } else { full[j + r - s.len()] })
                .collect()
        };
        let ia = pick(batch_a, &idx[..r]);
        let ib = pick(batch_b, &idx[..r]);
        let (row, col) = (idx[r], idx[r + 1]);
        (0..k)
            .map(|kk| {
                let mut pa = ia.clone();
                pa.extend([row, kk]);
                let mut pb = ib.clone();
                pb.extend([kk, col]);
                a[IxDyn(&pa)] * b[IxDyn(&pb)]
            })
            .sum()
    })
}

fn pool_ref(x: &ArrayD<f64>, o: Pool2dOpts, max: bool) -> ArrayD<f64> {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oh, ow) = (o.out_len(h, 0).unwrap_or(0), o.out_len(w, 1).unwrap_or(0));
    ArrayD::from_shape_fn(IxDyn(&[n, c, oh, ow]), |i| {
        let (mut best, mut sum, mut cnt) = (f64::NEG_INFINITY, 0.0, 0usize);
        let y0 = (i[2] * o.stride.0) as isize - o.padding.0 as isize;
        let x0 = (i[3] * o.stride.1) as isize - o.padding.1 as isize;
        for ky in 0..o.kernel.0 {
            for kx in 0..o.kernel.1 {
                let (dy, dx) = if max {
                    (o.dilation.0, o.dilation.1)
                } else {
                    (1, 1)
                };
                let (yy, xx) = (y0 + (ky * dy) as isize, x0 + (kx * dx) as isize);
                if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                    let v = x[[i[0], i[1], yy as usize, xx as usize]];
                    best = best.max(v);
                    sum += v;
                    cnt += 1;
                }
            }
        }
        if max {
            best
        } else {
            let div = if o.count_include_pad {
                // window clipped to the padded input, PyTorch's divisor
                let ye = (y0 + o.kernel.0 as isize).min((h + o.padding.0) as isize);
                let xe = (x0 + o.kernel.1 as isize).min((w + o.padding.1) as isize);
                ((ye - y0) * (xe - x0)) as usize
            } else {
                cnt
            };
            sum / div as f64
        }
    })
}

fn adaptive_ref(x: &ArrayD<f64>, out: (usize, usize), max: bool) -> ArrayD<f64> {
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    ArrayD::from_shape_fn(IxDyn(&[n, c, out.0, out.1]), |i| {
        let (y0, y1) = (i[2] * h / out.0, ((i[2] + 1) * h).div_ceil(out.0));
        let (x0, x1) = (i[3] * w / out.1, ((i[3] + 1) * w).div_ceil(out.1));
        let vals = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |xx| (y, xx)))
            .map(|(y, xx)| x[[i[0], i[1], y, xx]]);
        if max {
            vals.fold(f64::NEG_INFINITY, f64::max)
        } else {
            vals.sum::<f64>() / ((y1 - y0) * (x1 - x0)) as f64
        }
    })
}

fn softmax_ref(x: &ArrayD<f64>, dim: usize) -> ArrayD<f64> {
    let mut out = x.clone();
    for mut lane in out.lanes_mut(ndarray::Axis(dim)) {
        let m = lane.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        lane.mapv_inplace(|v| (v - m).exp());
        let s = lane.sum();
        lane.mapv_inplace(|v| v / s);
    }
    out
}

/// The host reference outputs of `case`, where one exists.
pub fn reference(case: &str) -> Option<Vec<TensorData>> {
    let ins = inputs(case);
    let x = ins.first().map(f)?;
    let un = |g: fn(f64) -> f64| Some(vec![back(x.mapv(g))]);
    let bin = |g: fn(f64, f64) -> f64| {
        let y = f(&ins[1]);
        let shape = broadcast_shape(x.shape(), y.shape())?;
        let (xa, ya) = (x.broadcast(IxDyn(&shape))?, y.broadcast(IxDyn(&shape))?);
        Some(vec![back(
            ndarray::Zip::from(&xa)
                .and(&ya)
                .map_collect(|&a, &b| g(a, b)),
        )])
    };
    match case {
        "add_bcast" => bin(|a, b| a + b),
        "sub_bcast" => bin(|a, b| a - b),
        "mul_bcast" => bin(|a, b| a * b),
        "div_bcast" => bin(|a, b| a / b),
        "add_scalar" => un(|v| v + 0.75),
        "mul_scalar" => un(|v| v * -1.5),
        "lt_scalar" => un(|v| if v < 0.5 { 1.0 } else { 0.0 }),
        "neg" => un(|v| -v),
        "exp" => un(|v| (v * 0.5).exp()),
        "log" => un(f64::ln),
        "tanh" => un(f64::tanh),
        "sqrt" => un(f64::sqrt),
        "sigmoid" => un(|v| 1.0 / (1.0 + (-v).exp())),
        "clamp" => Some(vec![
            back(x.mapv(|v| v.clamp(-1.5, 2.25))),
            back(x.mapv(|v| v.min(0.5))),
        ]),
        "relu" => un(|v| v.max(0.0)),
        "relu6" => un(|v| v.clamp(0.0, 6.0)),
        "gelu_erf" => un(|v| 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))),
        "gelu_tanh" => un(|v| {
            0.5 * v
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
        }),
        "silu" => un(|v| v / (1.0 + (-v).exp())),
        "hardswish" => un(|v| v * (v + 3.0).clamp(0.0, 6.0) / 6.0),
        "hardsigmoid" => un(|v| (v + 3.0).clamp(0.0, 6.0) / 6.0),
        "softmax_dim1" => Some(vec![back(softmax_ref(&x, 1))]),
        "softmax_last" => Some(vec![back(softmax_ref(&x, 2))]),
        "log_softmax" => Some(vec![back(softmax_ref(&x, 2).mapv(f64::ln))]),
        "sum_all" => Some(vec![back(ArrayD::from_elem(IxDyn(&[]), x.sum()))]),
        "matmul_2d" | "matmul_batched" | "matmul_broadcast" => {
            Some(vec![back(matmul_ref(&x, &f(&ins[1])))])
        }
        "linear" => {
            let wt = f(&ins[1]).reversed_axes();
            let y = matmul_ref(&x, &wt);
            let b = f(&ins[2]);
            Some(vec![back(&y + &b), back(y)])
        }
        c if c.starts_with("conv2d_") => {
            let opts = match c {
                "conv2d_3x3_pad1" => Conv2dOpts::new().padding(1),
                "conv2d_stride2_pad1" => Conv2dOpts::new().stride(2).padding(1),
                "conv2d_dilation2" => Conv2dOpts::new().dilation(2).padding(2),
                "conv2d_depthwise" => Conv2dOpts::new().groups(6).padding(1).stride(2),
                "conv2d_groups2_bias" => Conv2dOpts::new().groups(2).padding(1),
                "conv2d_1x1_spatial" => Conv2dOpts::new(),
                _ => Conv2dOpts {
                    stride: (2, 1),
                    padding: (1, 2),
                    dilation: (1, 1),
                    groups: 1,
                },
            };
            let bias = ins.get(2).map(f);
            Some(vec![back(conv_ref(&x, &f(&ins[1]), bias.as_ref(), opts))])
        }
        "batch_norm_eval" => {
            let (w, b, m, v) = (f(&ins[1]), f(&ins[2]), f(&ins[3]), f(&ins[4]));
            Some(vec![back(ArrayD::from_shape_fn(x.raw_dim(), |i| {
                let c = i[1];
                (x[&i] - m[[c]]) / (v[[c]] + 1e-5).sqrt() * w[[c]] + b[[c]]
            }))])
        }
        "layer_norm" => {
            let (w, b) = (f(&ins[1]), f(&ins[2]));
            let norm = |eps: f64| {
                let mut out = x.clone();
                for mut lane in out.lanes_mut(ndarray::Axis(2)) {
                    let mu = lane.mean().unwrap_or(0.0);
                    let var = lane.mapv(|v| (v - mu).powi(2)).mean().unwrap_or(0.0);
                    lane.mapv_inplace(|v| (v - mu) / (var + eps).sqrt());
                }
                out
            };
            let a = norm(1e-5);
            Some(vec![back(&(&a * &w) + &b), back(norm(1e-6))])
        }
        "max_pool2d" => Some(vec![back(pool_ref(
            &x,
            Pool2dOpts::new(3).stride(2).padding(1),
            true,
        ))]),
        "max_pool2d_ceil_dilated" => Some(vec![
            back(pool_ref(
                &x,
                Pool2dOpts::new(2).stride(2).ceil_mode(true),
                true,
            )),
            back(pool_ref(
                &x,
                Pool2dOpts::new(3).stride(2).dilation(2).padding(1),
                true,
            )),
        ]),
        "avg_pool2d" => Some(vec![
            back(pool_ref(&x, Pool2dOpts::new(3).stride(2).padding(1), false)),
            back(pool_ref(
                &x,
                Pool2dOpts::new(3)
                    .stride(2)
                    .padding(1)
                    .count_include_pad(false),
                false,
            )),
        ]),
        "adaptive_avg_pool2d" => Some(vec![
            back(adaptive_ref(&x, (3, 4), false)),
            back(adaptive_ref(&x, (1, 1), false)),
        ]),
        "adaptive_max_pool2d" => Some(vec![
            back(adaptive_ref(&x, (3, 4), true)),
            back(adaptive_ref(&x, (1, 1), true)),
        ]),
        _ => None,
    }
}

/// Runs every case on `b`: cases with a host reference must match it (f32: the case's [`Tol`], at
/// least 1e-5 abs / 1e-4 rel), train-only cases must run or — when `inference_only` — fail with
/// [`Error::Unsupported`], and every other case must run. Returns the failures.
pub fn check_references<B: Backend>(b: &B, inference_only: bool) -> Vec<String> {
    let mut failures = Vec::new();
    for &case in case_names() {
        let got = run_case(b, case);
        if inference_only && TRAIN_ONLY.contains(&case) {
            match got {
                Err(Error::Unsupported { .. }) => {}
                Err(e) => failures.push(format!("{case}: expected Unsupported, got error {e}")),
                Ok(_) => failures.push(format!(
                    "{case}: an inference-only backend ran a training op"
                )),
            }
            continue;
        }
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{case}: {e}"));
                continue;
            }
        };
        if let Some(want) = reference(case) {
            if want.len() != got.len() {
                failures.push(format!(
                    "{case}: {} outputs, reference has {}",
                    got.len(),
                    want.len()
                ));
                continue;
            }
            let tol = match tolerance(case) {
                Tol::Exact | Tol::Abs(_) => Tol::Abs(1e-5),
                t => t,
            };
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if let Err(msg) = tol.check(g, w) {
                    failures.push(format!("{case} output {i} vs host reference: {msg}"));
                }
            }
        }
    }
    failures
}

/// The consuming forms (`relu_consume`, ..., `add_consume`) give exactly what the plain ops give,
/// and the plain ops' inputs are left as they were.
pub fn check_consuming_forms<B: Backend>(b: &B) -> Result<()> {
    let x = rnd(&[2, 3, 4, 5], 11, -4.0, 4.0);
    let y = rnd(&[2, 3, 4, 5], 12, -1.0, 1.0);
    let fresh = |d: &TensorData| b.from_data(d);
    let bad = |what: &str| Error::invalid("check_consuming_forms", what.to_string());
    let kept = fresh(&x)?;
    let pairs: [(&str, TensorData, TensorData); 4] = [
        (
            "relu",
            b.to_data(&b.relu(&kept)?)?,
            b.to_data(&b.relu_consume(fresh(&x)?)?)?,
        ),
        (
            "hardswish",
            b.to_data(&b.hardswish(&kept)?)?,
            b.to_data(&b.hardswish_consume(fresh(&x)?)?)?,
        ),
        (
            "silu",
            b.to_data(&b.silu(&kept)?)?,
            b.to_data(&b.silu_consume(fresh(&x)?)?)?,
        ),
        (
            "add",
            b.to_data(&b.add(&kept, &fresh(&y)?)?)?,
            b.to_data(&b.add_consume(fresh(&x)?, &fresh(&y)?)?)?,
        ),
    ];
    for (op, plain, consumed) in pairs {
        if plain != consumed {
            return Err(bad(&format!("{op}_consume differs from {op}")));
        }
    }
    if b.to_data(&kept)? != x {
        return Err(bad("a plain op changed its input"));
    }
    // broadcasting into a smaller `a` still works (out of place)
    let row = fresh(&rnd(&[5], 13, -1.0, 1.0))?;
    let got = b.to_data(&b.add_consume(row.clone(), &kept)?)?;
    if got != b.to_data(&b.add(&row, &kept)?)? {
        return Err(bad("add_consume with a broadcast first operand"));
    }
    Ok(())
}

/// The parameter store on `b`: dotted paths, collisions, kinds, ids, removal.
pub fn check_params<B: Backend>(b: &B) -> Result<()> {
    let pb = ParamBuilder::new(b.clone(), 3);
    let root = pb.root();
    let l = root.sub("layer1.0")?;
    nn::init_conv2d(&l.sub("conv1")?, 3, 4, (3, 3), 1, false)?;
    nn::init_batch_norm(&l.sub("bn1")?, 4)?;
    nn::init_linear(&root.sub("fc")?, 4, 2, true)?;
    let dup = nn::init_linear(&root.sub("fc")?, 4, 2, true);
    if !matches!(dup, Err(Error::NameCollision(ref n)) if n == "fc.weight") {
        return Err(Error::invalid(
            "check_params",
            format!("duplicate fc.weight gave {dup:?}"),
        ));
    }
    if root.sub("a..b").is_ok() || root.sub("").is_ok() {
        return Err(Error::invalid("check_params", "bad sub-path accepted"));
    }
    let mut p = pb.finish();
    let names: Vec<&str> = p.names().collect();
    let want = [
        "layer1.0.conv1.weight",
        "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",
        "layer1.0.bn1.running_mean",
        "layer1.0.bn1.running_var",
        "layer1.0.bn1.num_batches_tracked",
        "fc.weight",
        "fc.bias",
    ];
    if names != want {
        return Err(Error::invalid("check_params", format!("names {names:?}")));
    }
    let kinds: Vec<ParamKind> = p.iter().map(|(_, e)| e.kind).collect();
    if kinds[3] != ParamKind::Buffer
        || kinds[5] != ParamKind::Buffer
        || kinds[0] != ParamKind::Parameter
    {
        return Err(Error::invalid("check_params", format!("kinds {kinds:?}")));
    }
    if b.dtype(p.get("layer1.0.bn1.num_batches_tracked")?) != DType::I64 {
        return Err(Error::invalid(
            "check_params",
            "num_batches_tracked is not i64",
        ));
    }
    if p.num_parameters() != 4 * 3 * 9 + 4 + 4 + 8 + 2 {
        return Err(Error::invalid(
            "check_params",
            format!("num_parameters {}", p.num_parameters()),
        ));
    }
    let id = p.entry("fc.weight")?.id();
    let w2 = b.zeros(&[2, 4], DType::F32)?;
    p.replace("fc.weight", w2)?;
    if p.entry("fc.weight")?.id() == id {
        return Err(Error::invalid("check_params", "replace kept the id"));
    }
    let gone = p.remove_prefix("fc");
    if gone != ["fc.weight", "fc.bias"] || p.contains("fc.bias") || p.len() != 6 {
        return Err(Error::invalid(
            "check_params",
            format!("remove_prefix removed {gone:?}"),
        ));
    }
    if !matches!(p.get("nope"), Err(Error::MissingParam(_))) {
        return Err(Error::invalid("check_params", "missing name not reported"));
    }
    // the same seed builds the same weights on any backend
    let d = p.get("layer1.0.conv1.weight").and_then(|t| b.to_data(t))?;
    let again = ParamBuilder::new(b.clone(), 3);
    nn::init_conv2d(&again.root().sub("layer1.0.conv1")?, 3, 4, (3, 3), 1, false)?;
    if again
        .finish()
        .get("layer1.0.conv1.weight")
        .and_then(|t| b.to_data(t))?
        != d
    {
        return Err(Error::invalid(
            "check_params",
            "same seed, different weights",
        ));
    }
    Ok(())
}

/// Per-path modes on a training backend: in a training forward, a BatchNorm set to `Eval` keeps
/// its running statistics bit-identical while another one's change; `Reestimate` yields the
/// cumulative average; a dropout switched off by path is the identity while another one drops.
pub fn check_norm_modes<B: Backend>(b: &B) -> Result<()> {
    let pb = ParamBuilder::new(b.clone(), 11);
    nn::init_batch_norm(&pb.root().sub("frozen.bn")?, 4)?;
    nn::init_batch_norm(&pb.root().sub("live.bn")?, 4)?;
    let p = pb.finish();
    let x = b.from_data(&rnd(&[8, 4, 3, 3], 5, -1.0, 3.0))?;
    let mut modes = ModeTable::new();
    modes.set(
        "frozen",
        ModeRule {
            norm: Some(NormMode::Eval),
            dropout_off: true,
        },
    );
    let snapshot = |name: &str| -> Result<TensorData> { b.to_data(p.get(name)?) };
    let before_frozen = (
        snapshot("frozen.bn.running_mean")?,
        snapshot("frozen.bn.running_var")?,
    );
    let before_live = snapshot("live.bn.running_mean")?;
    for step in 0..3 {
        let ctx = Ctx::train(&modes, 1, step);
        let y1 = nn::batch_norm(&p, "frozen.bn", &x, &ctx, 1e-5, 0.1)?;
        let y2 = nn::batch_norm(&p, "live.bn", &x, &ctx, 1e-5, 0.1)?;
        // frozen: normalised with the running stats (identity at init); live: batch stats
        if b.to_data(&y1)?.max_abs_diff(&b.to_data(&x)?)? > 1e-4 {
            return Err(Error::invalid(
                "check_norm_modes",
                "frozen BN did not use running stats",
            ));
        }
        if b.to_data(&y2)?.max_abs_diff(&b.to_data(&x)?)? < 0.1 {
            return Err(Error::invalid(
                "check_norm_modes",
                "live BN did not use batch stats",
            ));
        }
    }
    if (
        snapshot("frozen.bn.running_mean")?,
        snapshot("frozen.bn.running_var")?,
    ) != before_frozen
    {
        return Err(Error::invalid(
            "check_norm_modes",
            "frozen BN running stats moved",
        ));
    }
    if snapshot("frozen.bn.num_batches_tracked")?.to_f64().sum() != 0.0 {
        return Err(Error::invalid(
            "check_norm_modes",
            "frozen BN counted batches",
        ));
    }
    if snapshot("live.bn.running_mean")? == before_live
        || snapshot("live.bn.num_batches_tracked")?.to_f64().sum() != 3.0
    {
        return Err(Error::invalid(
            "check_norm_modes",
            "live BN running stats did not move",
        ));
    }
    // Re-estimation: running mean = cumulative average of the batch means.
    let pb = ParamBuilder::new(b.clone(), 12);
    nn::init_batch_norm(&pb.root().sub("bn")?, 4)?;
    let p = pb.finish();
    let mut re = ModeTable::new();
    re.set(
        "",
        ModeRule {
            norm: Some(NormMode::Reestimate),
            dropout_off: true,
        },
    );
    let ctx = Ctx::eval_with(&re);
    let mut means = Vec::new();
    for seed in 0..3 {
        let xs = rnd(&[6, 4, 2, 2], 100 + seed, -2.0, 4.0);
        let a = xs.to_f64();
        means.push(
            a.mean_axis(ndarray::Axis(0))
                .and_then(|m| m.mean_axis(ndarray::Axis(1)))
                .and_then(|m| m.mean_axis(ndarray::Axis(1))),
        );
        nn::batch_norm(&p, "bn", &b.from_data(&xs)?, &ctx, 1e-5, 0.1)?;
    }
    let got = b.to_data(p.get("bn.running_mean")?)?.to_f64();
    for c in 0..4 {
        let want: f64 = means
            .iter()
            .map(|m| m.as_ref().map_or(f64::NAN, |m| m[c]))
            .sum::<f64>()
            / 3.0;
        if (got[c] - want).abs() > 1e-5 {
            return Err(Error::invalid(
                "check_norm_modes",
                format!("re-estimated mean[{c}] {} vs {want}", got[c]),
            ));
        }
    }
    // Dropout off by path inside a training forward.
    let ones = b.full(&[16, 16], 1.0, DType::F32)?;
    let ctx = Ctx::train(&modes, 9, 0);
    let off = nn::dropout(b, &ones, 0.5, &ctx, "frozen.drop")?;
    let on = nn::dropout(b, &ones, 0.5, &ctx, "live.drop")?;
    if b.to_data(&off)? != b.to_data(&ones)? {
        return Err(Error::invalid(
            "check_norm_modes",
            "dropout under a dropout_off path changed values",
        ));
    }
    let zeros = b
        .to_data(&on)?
        .to_f64()
        .iter()
        .filter(|v| **v == 0.0)
        .count();
    if !(64..=192).contains(&zeros) {
        return Err(Error::invalid(
            "check_norm_modes",
            format!("dropout p=0.5 zeroed {zeros}/256"),
        ));
    }
    Ok(())
}

/// Autograd on a training backend: gradients of a small known function, no gradient for a
/// tensor that does not require it, no-grad scopes, in-place assignment seen by clones.
pub fn check_autodiff<B: AutodiffBackend>(b: &B) -> Result<()> {
    let x = b.from_data(&TensorData::f32(&[3], vec![1.0, -2.0, 0.5])?)?;
    let w = b.from_data(&TensorData::f32(&[3], vec![0.5, 0.25, -1.0])?)?;
    let frozen = b.from_data(&TensorData::f32(&[3], vec![1.0, 1.0, 1.0])?)?;
    b.set_requires_grad(&w, true)?;
    // loss = sum(w^2 * x) + sum(frozen)  →  dloss/dw = 2 w x
    let loss = b.add(
        &b.sum(&b.mul(&b.mul(&w, &w)?, &x)?, &[], false)?,
        &b.sum(&frozen, &[], false)?,
    )?;
    let g = b.backward(&loss, &[&w])?;
    let g = g
        .into_iter()
        .next()
        .flatten()
        .ok_or_else(|| Error::invalid("check_autodiff", "no grad for w"))?;
    let want = TensorData::f32(&[3], vec![1.0, -1.0, -1.0])?;
    if b.to_data(&g)?.max_abs_diff(&want)? > 1e-6 {
        return Err(Error::invalid(
            "check_autodiff",
            format!("grad {:?}", b.to_data(&g)?),
        ));
    }
    if b.requires_grad(&frozen) || !b.requires_grad(&w) {
        return Err(Error::invalid(
            "check_autodiff",
            "requires_grad flags wrong",
        ));
    }
    let y = b.no_grad(|| b.mul(&w, &x))?;
    if b.requires_grad(&y) {
        return Err(Error::invalid("check_autodiff", "no_grad recorded a graph"));
    }
    let alias = w.clone();
    b.assign(
        &w,
        &b.from_data(&TensorData::f32(&[3], vec![9.0, 8.0, 7.0])?)?,
    )?;
    if b.to_data(&alias)? != TensorData::f32(&[3], vec![9.0, 8.0, 7.0])? || !b.requires_grad(&w) {
        return Err(Error::invalid(
            "check_autodiff",
            "assign not seen by a clone, or lost requires_grad",
        ));
    }
    // a tensor the loss does not use gets None
    let unused = b.from_data(&TensorData::f32(&[1], vec![1.0])?)?;
    b.set_requires_grad(&unused, true)?;
    let loss = b.sum(&b.mul(&w, &x)?, &[], false)?;
    let g = b.backward(&loss, &[&w, &unused])?;
    if g.len() != 2 || g[0].is_none() || g[1].is_some() {
        return Err(Error::invalid(
            "check_autodiff",
            "unused input got a gradient",
        ));
    }
    Ok(())
}

/// Instantiates the conformance suite as tests in a backend crate:
/// `graft_backend::conformance_tests!(MyBackend::default(), inference_only = false, autodiff = true);`
#[macro_export]
macro_rules! conformance_tests {
    ($backend:expr, inference_only = $inf:expr) => {
        #[test]
        fn conformance_every_case_against_host_references() {
            let b = $backend;
            let failures = $crate::conformance::check_references(&b, $inf);
            assert!(
                failures.is_empty(),
                "{} failing cases:\n{}",
                failures.len(),
                failures.join("\n")
            );
        }
        #[test]
        fn conformance_params() {
            $crate::conformance::check_params(&$backend).expect("parameter store");
        }
        #[test]
        fn conformance_consuming_forms() {
            $crate::conformance::check_consuming_forms(&$backend).expect("consuming forms");
        }
    };
    ($backend:expr, inference_only = $inf:expr, autodiff) => {
        $crate::conformance_tests!($backend, inference_only = $inf);
        #[test]
        fn conformance_per_path_norm_and_dropout_modes() {
            $crate::conformance::check_norm_modes(&$backend).expect("per-path modes");
        }
        #[test]
        fn conformance_autodiff() {
            $crate::conformance::check_autodiff(&$backend).expect("autodiff");
        }
    };
}
