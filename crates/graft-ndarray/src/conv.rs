//! conv2d: im2col + GEMM written straight into the output planes (1×1 stride-1 convs read the
//! image itself; small planes batch a chunk of images), depthwise as direct loops.

use graft_backend::Conv2dOpts;
use graft_core::{Error, Result};
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, IxDyn};
use rayon::prelude::*;

use crate::gemm::gemm_into;

fn conv_out(len: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (len + 2 * p >= span && s > 0).then(|| (len + 2 * p - span) / s + 1)
}

/// im2col of images `start..start + imgs`: row `r = (group, ci, ky, kx)` of `cols` holds, for
/// each image, the input values that kernel tap sees at every output position (0 in padding).
#[allow(clippy::too_many_arguments)]
fn im2col(
    cols: &mut [f32],
    xsl: &[f32],
    start: usize,
    imgs: usize,
    (c, h, wd): (usize, usize, usize),
    (oh, ow): (usize, usize),
    (icg, kh, kw): (usize, usize, usize),
    o: Conv2dOpts,
) {
    let plane = oh * ow;
    let cols_w = imgs * plane;
    let kk = icg * kh * kw;
    cols.par_chunks_mut(cols_w)
        .enumerate()
        .for_each(|(r, row)| {
            let (gi, rem) = (r / kk, r % kk);
            let (ci, ky, kx) = (rem / (kh * kw), (rem / kw) % kh, rem % kw);
            let ch = gi * icg + ci;
            for im in 0..imgs {
                let src =
                    &xsl[((start + im) * c + ch) * h * wd..((start + im) * c + ch + 1) * h * wd];
                let dst = &mut row[im * plane..(im + 1) * plane];
                for y in 0..oh {
                    let iy = (y * o.stride.0 + ky * o.dilation.0) as isize - o.padding.0 as isize;
                    let drow = &mut dst[y * ow..(y + 1) * ow];
                    if iy < 0 || iy as usize >= h {
                        drow.fill(0.0);
                        continue;
                    }
                    let srow = &src[iy as usize * wd..(iy as usize + 1) * wd];
                    if o.stride.1 == 1 {
                        // a shifted copy of the source row, zeros where it falls in the padding
                        let off = (kx * o.dilation.1) as isize - o.padding.1 as isize;
                        let lo = (-off).clamp(0, ow as isize) as usize;
                        let hi = (wd as isize - off).clamp(lo as isize, ow as isize) as usize;
                        drow[..lo].fill(0.0);
                        let s0 = (lo as isize + off) as usize;
                        drow[lo..hi].copy_from_slice(&srow[s0..s0 + (hi - lo)]);
                        drow[hi..].fill(0.0);
                        continue;
                    }
                    // strided: the valid output range first, then a branch-free gather
                    let (st, off) = (
                        o.stride.1 as isize,
                        (kx * o.dilation.1) as isize - o.padding.1 as isize,
                    );
                    let lo = ((-off + st - 1).div_euclid(st)).clamp(0, ow as isize) as usize;
                    let hi = ((wd as isize - off + st - 1).div_euclid(st))
                        .clamp(lo as isize, ow as isize) as usize;
                    drow[..lo].fill(0.0);
                    for (xx, d) in drow[lo..hi].iter_mut().enumerate() {
                        *d = srow[((xx + lo) as isize * st + off) as usize];
                    }
                    drow[hi..].fill(0.0);
                }
            }
        });
}

/// 2-d convolution: im2col over chunks of images + one GEMM per group and chunk; depthwise runs
/// as direct loops.
pub fn conv2d(
    x: &ArrayViewD<'_, f32>,
    w: &ArrayViewD<'_, f32>,
    b: Option<ArrayViewD<'_, f32>>,
    o: Conv2dOpts,
) -> Result<ArrayD<f32>> {
    if x.ndim() != 4 || w.ndim() != 4 {
        return Err(Error::shape(
            "conv2d",
            format!(
                "input {:?} and weight {:?} must be 4-d",
                x.shape(),
                w.shape()
            ),
        ));
    }
    let (n, c, h, wd) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let (oc, icg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
    let g = o.groups;
    if g == 0 || c % g != 0 || oc % g != 0 || icg != c / g {
        return Err(Error::shape(
            "conv2d",
            format!(
                "input {:?}, weight {:?}, groups {g}: need in = groups × weight.shape[1] and out divisible by groups",
                x.shape(),
                w.shape()
            ),
        ));
    }
    if kh == 0 || kw == 0 {
        return Err(Error::shape("conv2d", "empty kernel"));
    }
    let (Some(oh), Some(ow)) = (
        conv_out(h, kh, o.stride.0, o.padding.0, o.dilation.0),
        conv_out(wd, kw, o.stride.1, o.padding.1, o.dilation.1),
    ) else {
        return Err(Error::shape(
            "conv2d",
            format!("kernel larger than padded input {:?}", x.shape()),
        ));
    };
    let bias: Option<Vec<f32>> = match &b {
        Some(b) if b.len() != oc => {
            return Err(Error::shape(
                "conv2d",
                format!("bias {:?} for {oc} outputs", b.shape()),
            ));
        }
        Some(b) => Some(b.iter().copied().collect()),
        None => None,
    };
    let xs = x.as_standard_layout();
    let xsl = xs.as_slice().unwrap_or(&[]);
    let ws = w.as_standard_layout();
    let wsl = ws.as_slice().unwrap_or(&[]);
    let mut out = vec![0f32; n * oc * oh * ow];
    let plane = oh * ow;
    let ocg = oc / g;
    let kk = icg * kh * kw;

    if icg == 1 && ocg == 1 {
        // depthwise: direct loops, parallel over (image, channel) planes
        out.par_chunks_mut(plane).enumerate().for_each(|(pi, dst)| {
            let (img, ch) = (pi / oc, pi % oc);
            let src = &xsl[(img * c + ch) * h * wd..(img * c + ch + 1) * h * wd];
            let ker = &wsl[ch * kh * kw..(ch + 1) * kh * kw];
            let b0 = bias.as_ref().map_or(0.0, |b| b[ch]);
            for y in 0..oh {
                for xx in 0..ow {
                    let mut s = b0;
                    for ky in 0..kh {
                        let iy =
                            (y * o.stride.0 + ky * o.dilation.0) as isize - o.padding.0 as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        let row = &src[iy as usize * wd..(iy as usize + 1) * wd];
                        for kx in 0..kw {
                            let ix = (xx * o.stride.1 + kx * o.dilation.1) as isize
                                - o.padding.1 as isize;
                            if ix >= 0 && (ix as usize) < wd {
                                s += row[ix as usize] * ker[ky * kw + kx];
                            }
                        }
                    }
                    dst[y * ow + xx] = s;
                }
            }
        });
    } else {
        let shape_err = |e: ndarray::ShapeError| Error::shape("conv2d", e.to_string());
        // a 1x1, stride-1, unpadded conv multiplies the image itself: no im2col
        let pointwise = kh == 1 && kw == 1 && o.stride == (1, 1) && o.padding == (0, 0);
        // large output planes: one GEMM per image and group straight into the output (no
        // scatter); small ones: im2col over a chunk of images for a wider product, then scatter
        let per_img = kk * plane * g;
        let chunk = if plane >= 1024 {
            1
        } else {
            (16usize << 20)
                .checked_div(per_img.max(1))
                .unwrap_or(1)
                .clamp(1, n.max(1))
        };
        if let Some(bv) = &bias {
            out.par_chunks_mut(plane)
                .enumerate()
                .for_each(|(pi, dst)| dst.fill(bv[pi % oc]));
        }
        let mut cols = Vec::new();
        for start in (0..n).step_by(chunk) {
            let imgs = chunk.min(n - start);
            let cols_w = imgs * plane;
            let direct = imgs == 1;
            let colsv: &[f32] = if direct && pointwise {
                &xsl[start * c * h * wd..(start + 1) * c * h * wd]
            } else {
                cols.resize(g * kk * cols_w, 0f32);
                im2col(
                    &mut cols,
                    xsl,
                    start,
                    imgs,
                    (c, h, wd),
                    (oh, ow),
                    (icg, kh, kw),
                    o,
                );
                &cols
            };
            for gi in 0..g {
                let wmat =
                    ArrayView2::from_shape((ocg, kk), &wsl[gi * ocg * kk..(gi + 1) * ocg * kk])
                        .map_err(shape_err)?;
                let cmat = ArrayView2::from_shape(
                    (kk, cols_w),
                    &colsv[gi * kk * cols_w..(gi + 1) * kk * cols_w],
                )
                .map_err(shape_err)?;
                if direct {
                    let base = start * oc * plane + gi * ocg * plane;
                    let mut dst =
                        ArrayViewMut2::from_shape((ocg, plane), &mut out[base..base + ocg * plane])
                            .map_err(shape_err)?;
                    if !gemm_into(&wmat, &cmat, &mut dst, bias.is_some(), true) {
                        return Err(Error::shape("conv2d", "gemm shapes"));
                    }
                    continue;
                }
                let mut res = Array2::<f32>::zeros((ocg, cols_w));
                if !gemm_into(&wmat, &cmat, &mut res.view_mut(), false, true) {
                    return Err(Error::shape("conv2d", "gemm shapes"));
                }
                // scatter [ocg, imgs*plane] into out[img, gi*ocg + j, plane] (bias already there)
                for j in 0..ocg {
                    let co = gi * ocg + j;
                    let src = res.row(j);
                    let src = src.as_slice().unwrap_or(&[]);
                    for im in 0..imgs {
                        let dst = &mut out[((start + im) * oc + co) * plane
                            ..((start + im) * oc + co + 1) * plane];
                        for (d, s) in dst.iter_mut().zip(&src[im * plane..(im + 1) * plane]) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, oc, oh, ow]), out)
        .map_err(|e| Error::shape("conv2d", e.to_string()))
}
