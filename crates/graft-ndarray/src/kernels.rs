//! CPU kernels on f32 (and generic element types for data movement).

use graft_backend::{Pool2dOpts, broadcast_shape};
use graft_core::{Error, Result};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn, Zip};

use crate::gemm::gemm_into;
use rayon::prelude::*;

/// Elements above which elementwise maps run in parallel.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// `f` applied to every element, in parallel for large arrays.
pub fn par_map(a: &ArrayViewD<'_, f32>, f: impl Fn(f32) -> f32 + Sync) -> ArrayD<f32> {
    if a.len() >= PAR_MIN {
        Zip::from(a).par_map_collect(|&v| f(v))
    } else {
        a.mapv(f)
    }
}

/// `f(a, b)` with broadcasting; incompatible shapes are an error naming `op`.
pub fn zip_bcast<T: Copy + Send + Sync>(
    op: &'static str,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<ArrayD<T>> {
    let shape = broadcast_shape(a.shape(), b.shape()).ok_or_else(|| {
        Error::shape(
            op,
            format!(
                "shapes {:?} and {:?} do not broadcast",
                a.shape(),
                b.shape()
            ),
        )
    })?;
    let s = IxDyn(&shape);
    let (x, y) = match (a.broadcast(s.clone()), b.broadcast(s)) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(Error::shape(op, "broadcast failed")),
    };
    let z = Zip::from(&x).and(&y);
    Ok(if x.len() >= PAR_MIN {
        z.par_map_collect(|&p, &q| f(p, q))
    } else {
        z.map_collect(|&p, &q| f(p, q))
    })
}

/// Softmax (or log-softmax) along `ax`, max-subtracted.
pub fn softmax(a: &ArrayViewD<'_, f32>, ax: Axis, log: bool) -> ArrayD<f32> {
    let mut out = a.to_owned();
    let run = |mut lane: ndarray::ArrayViewMut1<'_, f32>| {
        let m = lane.fold(f32::NEG_INFINITY, |acc, &v| acc.max(v));
        if log {
            let s: f32 = lane.iter().map(|&v| (v - m).exp()).sum();
            let ls = s.ln();
            lane.mapv_inplace(|v| v - m - ls);
        } else {
            lane.mapv_inplace(|v| (v - m).exp());
            let s: f32 = lane.sum();
            lane.mapv_inplace(|v| v / s);
        }
    };
    if out.len() >= PAR_MIN {
        out.lanes_mut(ax).into_iter().par_bridge().for_each(run);
    } else {
        out.lanes_mut(ax).into_iter().for_each(run);
    }
    out
}

/// Top-k along `ax`, sorted; ties keep the lower index first.
pub fn topk<T: Copy + PartialOrd + Default>(
    a: &ArrayViewD<'_, T>,
    k: usize,
    ax: Axis,
    largest: bool,
) -> (ArrayD<T>, ArrayD<i64>) {
    let mut shape = a.shape().to_vec();
    shape[ax.index()] = k;
    let mut vals = ArrayD::from_elem(IxDyn(&shape), T::default());
    let mut idx = ArrayD::<i64>::zeros(IxDyn(&shape));
    for ((lane, mut vl), mut il) in a
        .lanes(ax)
        .into_iter()
        .zip(vals.lanes_mut(ax))
        .zip(idx.lanes_mut(ax))
    {
        let mut order: Vec<usize> = (0..lane.len()).collect();
        order.sort_by(|&i, &j| {
            let o = lane[i]
                .partial_cmp(&lane[j])
                .unwrap_or(std::cmp::Ordering::Equal);
            if largest { o.reverse() } else { o }
        });
        for (slot, &i) in order.iter().take(k).enumerate() {
            vl[slot] = lane[i];
            il[slot] = i as i64;
        }
    }
    (vals, idx)
}

/// PyTorch's gather along `dim`.
pub fn gather<T: Copy>(
    a: &ArrayViewD<'_, T>,
    dim: usize,
    idx: &ArrayViewD<'_, i64>,
) -> Result<ArrayD<T>> {
    if idx.ndim() != a.ndim() {
        return Err(Error::shape(
            "gather",
            format!("index rank {} != input rank {}", idx.ndim(), a.ndim()),
        ));
    }
    for d in 0..a.ndim() {
        if d != dim && idx.shape()[d] > a.shape()[d] {
            return Err(Error::shape(
                "gather",
                format!(
                    "index {:?} larger than input {:?} off dim {dim}",
                    idx.shape(),
                    a.shape()
                ),
            ));
        }
    }
    let n = a.shape()[dim] as i64;
    let mut bad = None;
    let out = ArrayD::from_shape_fn(idx.raw_dim(), |i| {
        let mut src = i.clone();
        let j = idx[&i];
        if !(0..n).contains(&j) {
            bad = Some(j);
            return a[IxDyn(&vec![0; a.ndim()])];
        }
        src[dim] = j as usize;
        a[src]
    });
    match bad {
        Some(j) => Err(Error::invalid(
            "gather",
            format!("index {j} out of range for size {n}"),
        )),
        None => Ok(out),
    }
}

fn as2<'a>(a: &'a ArrayViewD<'_, f32>) -> Option<ArrayView2<'a, f32>> {
    a.view().into_dimensionality::<ndarray::Ix2>().ok()
}

/// NumPy matmul semantics (1-d promotion, broadcast batch dims), on the `gemm` crate's kernels.
pub fn matmul(a: &ArrayViewD<'_, f32>, b: &ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(Error::shape("matmul", "operands must be at least 1-d"));
    }
    let a2 = if a.ndim() == 1 {
        a.view().insert_axis(Axis(0))
    } else {
        a.view()
    };
    let b2 = if b.ndim() == 1 {
        b.view().insert_axis(Axis(1))
    } else {
        b.view()
    };
    let (ra, rb) = (a2.ndim(), b2.ndim());
    let (m, k) = (a2.shape()[ra - 2], a2.shape()[ra - 1]);
    let (k2, n) = (b2.shape()[rb - 2], b2.shape()[rb - 1]);
    if k != k2 {
        return Err(Error::shape(
            "matmul",
            format!(
                "{:?} @ {:?}: inner dims {k} and {k2} differ",
                a.shape(),
                b.shape()
            ),
        ));
    }
    let batch = broadcast_shape(&a2.shape()[..ra - 2], &b2.shape()[..rb - 2]).ok_or_else(|| {
        Error::shape(
            "matmul",
            format!(
                "batch dims of {:?} and {:?} do not broadcast",
                a.shape(),
                b.shape()
            ),
        )
    })?;
    let mut full_a = batch.clone();
    full_a.extend([m, k]);
    let mut full_b = batch.clone();
    full_b.extend([k, n]);
    let (av, bv) = match (a2.broadcast(IxDyn(&full_a)), b2.broadcast(IxDyn(&full_b))) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(Error::shape("matmul", "broadcast failed")),
    };
    let nb: usize = batch.iter().product();
    let av = av
        .to_shape(IxDyn(&[nb, m, k]))
        .map_err(|e| Error::shape("matmul", e.to_string()))?;
    let bv = bv
        .to_shape(IxDyn(&[nb, k, n]))
        .map_err(|e| Error::shape("matmul", e.to_string()))?;
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[nb, m, n]));
    let small_batch = nb > 1 && m * n * k < (1 << 18);
    let gemm = |(i, mut o): (usize, ndarray::ArrayViewMut2<'_, f32>)| {
        let x = av
            .index_axis(Axis(0), i)
            .into_dimensionality::<ndarray::Ix2>();
        let y = bv
            .index_axis(Axis(0), i)
            .into_dimensionality::<ndarray::Ix2>();
        if let (Ok(x), Ok(y)) = (x, y) {
            // shapes checked above: [m, k] @ [k, n] into [m, n]
            gemm_into(&x, &y, &mut o, false, !small_batch);
        }
    };
    let mats: Vec<_> = out
        .axis_iter_mut(Axis(0))
        .map(|o| o.into_dimensionality::<ndarray::Ix2>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::shape("matmul", e.to_string()))?;
    if small_batch {
        // many small products: parallel over the batch, each GEMM single-threaded in effect
        mats.into_par_iter().enumerate().for_each(gemm);
    } else {
        mats.into_iter().enumerate().for_each(gemm);
    }
    let mut shape = batch;
    if a.ndim() > 1 {
        shape.push(m);
    }
    if b.ndim() > 1 {
        shape.push(n);
    }
    out.into_shape_with_order(IxDyn(&shape))
        .map_err(|e| Error::shape("matmul", e.to_string()))
}

/// `x · wᵀ + b` over the last dim of `x`.
pub fn linear(
    x: &ArrayViewD<'_, f32>,
    w: &ArrayViewD<'_, f32>,
    b: Option<ArrayViewD<'_, f32>>,
) -> Result<ArrayD<f32>> {
    let w2 = as2(w).ok_or_else(|| {
        Error::shape("linear", format!("weight must be 2-d, got {:?}", w.shape()))
    })?;
    let (out_f, in_f) = w2.dim();
    let Some(&last) = x.shape().last() else {
        return Err(Error::shape("linear", "input must be at least 1-d"));
    };
    if last != in_f {
        return Err(Error::shape(
            "linear",
            format!("input {:?} vs weight {:?}", x.shape(), w.shape()),
        ));
    }
    let rows = x.len() / in_f.max(1);
    let xs = x.as_standard_layout();
    let x2 = xs
        .to_shape((rows, in_f))
        .map_err(|e| Error::shape("linear", e.to_string()))?;
    let mut out = match &b {
        Some(b) => {
            if b.len() != out_f {
                return Err(Error::shape(
                    "linear",
                    format!("bias {:?} for {out_f} outputs", b.shape()),
                ));
            }
            let bb: Vec<f32> = b.iter().copied().collect();
            Array2::from_shape_fn((rows, out_f), |(_, j)| bb[j])
        }
        None => Array2::zeros((rows, out_f)),
    };
    if !gemm_into(&x2.view(), &w2.t(), &mut out.view_mut(), b.is_some(), true) {
        return Err(Error::shape("linear", "gemm shapes"));
    }
    let mut shape = x.shape().to_vec();
    if let Some(l) = shape.last_mut() {
        *l = out_f;
    }
    out.into_shape_with_order(IxDyn(&shape))
        .map_err(|e| Error::shape("linear", e.to_string()))
}

pub use crate::conv::conv2d;

/// Inference BatchNorm over dim 1: `y = x · α + β` with `α = w / √(var + eps)`, `β = b − mean · α`
/// (libtorch's CPU formulation).
pub fn batch_norm_eval(
    x: &ArrayViewD<'_, f32>,
    mean: &[f32],
    var: &[f32],
    w: Option<&[f32]>,
    b: Option<&[f32]>,
    eps: f64,
) -> Result<ArrayD<f32>> {
    if x.ndim() < 2 {
        return Err(Error::shape(
            "batch_norm",
            format!("input {:?} needs [N, C, ...]", x.shape()),
        ));
    }
    let c = x.shape()[1];
    let ok = |v: Option<&[f32]>| v.is_none_or(|v| v.len() == c);
    if mean.len() != c || var.len() != c || !ok(w) || !ok(b) {
        return Err(Error::shape(
            "batch_norm",
            format!("statistics do not match {c} channels"),
        ));
    }
    let alpha: Vec<f32> = (0..c)
        .map(|i| (f64::from(w.map_or(1.0, |w| w[i])) / (f64::from(var[i]) + eps).sqrt()) as f32)
        .collect();
    let beta: Vec<f32> = (0..c)
        .map(|i| b.map_or(0.0, |b| b[i]) - mean[i] * alpha[i])
        .collect();
    let mut out = x.as_standard_layout().into_owned();
    let inner: usize = x.shape()[2..].iter().product();
    if let Some(s) = out.as_slice_mut() {
        s.par_chunks_mut(inner.max(1))
            .enumerate()
            .for_each(|(i, chunk)| {
                let ch = i % c;
                for v in chunk {
                    *v = *v * alpha[ch] + beta[ch];
                }
            });
    }
    Ok(out)
}

/// LayerNorm over the last `nd` dims (f64 statistics, biased variance).
pub fn layer_norm(
    x: &ArrayViewD<'_, f32>,
    nd: usize,
    w: Option<ArrayViewD<'_, f32>>,
    b: Option<ArrayViewD<'_, f32>>,
    eps: f64,
) -> Result<ArrayD<f32>> {
    let r = x.ndim();
    if nd == 0 || nd > r {
        return Err(Error::invalid(
            "layer_norm",
            format!("normalized_dims {nd} for shape {:?}", x.shape()),
        ));
    }
    let d: usize = x.shape()[r - nd..].iter().product();
    let check = |t: &Option<ArrayViewD<'_, f32>>| t.as_ref().is_none_or(|t| t.len() == d);
    if !check(&w) || !check(&b) {
        return Err(Error::shape(
            "layer_norm",
            format!("weight / bias do not have {d} elements"),
        ));
    }
    let wv: Option<Vec<f32>> = w.map(|t| t.iter().copied().collect());
    let bv: Option<Vec<f32>> = b.map(|t| t.iter().copied().collect());
    let mut out = x.as_standard_layout().into_owned();
    if let Some(s) = out.as_slice_mut() {
        s.par_chunks_mut(d.max(1)).for_each(|row| {
            let n = row.len() as f64;
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let inv = 1.0 / (var + eps).sqrt();
            for (j, v) in row.iter_mut().enumerate() {
                let mut y = ((f64::from(*v) - mean) * inv) as f32;
                if let Some(w) = &wv {
                    y *= w[j];
                }
                if let Some(b) = &bv {
                    y += b[j];
                }
                *v = y;
            }
        });
    }
    Ok(out)
}

/// Max / average pooling over NCHW, PyTorch's output size and divisor rules.
pub fn pool2d(x: &ArrayViewD<'_, f32>, o: Pool2dOpts, max: bool) -> Result<ArrayD<f32>> {
    let op = if max { "max_pool2d" } else { "avg_pool2d" };
    if x.ndim() != 4 {
        return Err(Error::shape(
            op,
            format!("input {:?} must be NCHW", x.shape()),
        ));
    }
    if o.kernel.0 == 0
        || o.kernel.1 == 0
        || o.padding.0 * 2 > o.kernel.0
        || o.padding.1 * 2 > o.kernel.1
    {
        return Err(Error::invalid(
            op,
            format!(
                "kernel {:?} / padding {:?}: padding must be at most half the kernel",
                o.kernel, o.padding
            ),
        ));
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (Some(oh), Some(ow)) = (o.out_len(h, 0), o.out_len(w, 1)) else {
        return Err(Error::shape(
            op,
            format!("kernel larger than padded input {:?}", x.shape()),
        ));
    };
    let (dy, dx) = if max { o.dilation } else { (1, 1) };
    let xs = x.as_standard_layout();
    let xsl = xs.as_slice().unwrap_or(&[]);
    let mut out = vec![0f32; n * c * oh * ow];
    out.par_chunks_mut((oh * ow).max(1))
        .enumerate()
        .for_each(|(pi, dst)| {
            let src = &xsl[pi * h * w..(pi + 1) * h * w];
            for y in 0..oh {
                for xx in 0..ow {
                    let y0 = (y * o.stride.0) as isize - o.padding.0 as isize;
                    let x0 = (xx * o.stride.1) as isize - o.padding.1 as isize;
                    let (mut best, mut sum, mut cnt) = (f32::NEG_INFINITY, 0f32, 0usize);
                    for ky in 0..o.kernel.0 {
                        let iy = y0 + (ky * dy) as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        for kx in 0..o.kernel.1 {
                            let ix = x0 + (kx * dx) as isize;
                            if ix < 0 || ix as usize >= w {
                                continue;
                            }
                            let v = src[iy as usize * w + ix as usize];
                            if v > best || v.is_nan() {
                                best = v;
                            }
                            sum += v;
                            cnt += 1;
                        }
                    }
                    dst[y * ow + xx] = if max {
                        best
                    } else {
                        let div = if o.count_include_pad {
                            let ye = (y0 + o.kernel.0 as isize).min((h + o.padding.0) as isize);
                            let xe = (x0 + o.kernel.1 as isize).min((w + o.padding.1) as isize);
                            ((ye - y0) * (xe - x0)) as usize
                        } else {
                            cnt
                        };
                        sum / div.max(1) as f32
                    };
                }
            }
        });
    ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), out).map_err(|e| Error::shape(op, e.to_string()))
}

/// Adaptive average / max pooling with PyTorch's bin edges.
pub fn adaptive_pool2d(
    x: &ArrayViewD<'_, f32>,
    out_hw: (usize, usize),
    max: bool,
) -> Result<ArrayD<f32>> {
    let op = if max {
        "adaptive_max_pool2d"
    } else {
        "adaptive_avg_pool2d"
    };
    if x.ndim() != 4 || out_hw.0 == 0 || out_hw.1 == 0 {
        return Err(Error::shape(
            op,
            format!(
                "input {:?} must be NCHW, output {out_hw:?} non-empty",
                x.shape()
            ),
        ));
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oh, ow) = out_hw;
    let xs = x.as_standard_layout();
    let xsl = xs.as_slice().unwrap_or(&[]);
    let mut out = vec![0f32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(pi, dst)| {
            let src = &xsl[pi * h * w..(pi + 1) * h * w];
            for y in 0..oh {
                let (y0, y1) = (y * h / oh, ((y + 1) * h).div_ceil(oh));
                for xx in 0..ow {
                    let (x0, x1) = (xx * w / ow, ((xx + 1) * w).div_ceil(ow));
                    let mut best = f32::NEG_INFINITY;
                    let mut sum = 0f32;
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let v = src[iy * w + ix];
                            best = best.max(v);
                            sum += v;
                        }
                    }
                    dst[y * ow + xx] = if max {
                        best
                    } else {
                        sum / ((y1 - y0) * (x1 - x0)).max(1) as f32
                    };
                }
            }
        });
    ArrayD::from_shape_vec(IxDyn(&[n, c, oh, ow]), out).map_err(|e| Error::shape(op, e.to_string()))
}
