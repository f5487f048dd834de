//! conv2d: im2col + GEMM written straight into the output planes (1×1 stride-1 convs read the
//! image itself; images in parallel when the batch fills the thread pool), depthwise as direct
//! loops.

use graft_backend::Conv2dOpts;
use graft_core::{Error, Result};
use ndarray::{ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, IxDyn};
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

/// 2-d convolution: im2col per image (none for a pointwise conv) + one GEMM per image and group
/// into the output; depthwise runs as direct loops.
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
        if let Some(bv) = &bias {
            out.par_chunks_mut(plane)
                .enumerate()
                .for_each(|(pi, dst)| dst.fill(bv[pi % oc]));
        }
        // one GEMM per image and group, written straight into the image's output planes: with
        // a batch at least as large as the thread pool the images run in parallel, each product
        // on its thread (no shared packing, no scatter); a smaller batch threads each product
        let threaded_gemm = n < rayon::current_num_threads().max(2);
        let image = |img: usize, dst: &mut [f32], cols: &mut Vec<f32>| -> Result<()> {
            let colsv: &[f32] = if pointwise {
                &xsl[img * c * h * wd..(img + 1) * c * h * wd]
            } else {
                cols.resize(g * kk * plane, 0f32);
                im2col(cols, xsl, img, 1, (c, h, wd), (oh, ow), (icg, kh, kw), o);
                cols
            };
            for gi in 0..g {
                let wmat =
                    ArrayView2::from_shape((ocg, kk), &wsl[gi * ocg * kk..(gi + 1) * ocg * kk])
                        .map_err(shape_err)?;
                let cmat = ArrayView2::from_shape(
                    (kk, plane),
                    &colsv[gi * kk * plane..(gi + 1) * kk * plane],
                )
                .map_err(shape_err)?;
                let mut d = ArrayViewMut2::from_shape(
                    (ocg, plane),
                    &mut dst[gi * ocg * plane..(gi + 1) * ocg * plane],
                )
                .map_err(shape_err)?;
                if !gemm_into(&wmat, &cmat, &mut d, bias.is_some(), threaded_gemm) {
                    return Err(Error::shape("conv2d", "gemm shapes"));
                }
            }
            Ok(())
        };
        if threaded_gemm {
            let mut cols = Vec::new();
            for (img, dst) in out.chunks_mut(oc * plane).enumerate() {
                image(img, dst, &mut cols)?;
            }
        } else {
            out.par_chunks_mut(oc * plane)
                .enumerate()
                .try_for_each_init(Vec::new, |cols, (img, dst)| image(img, dst, cols))?;
        }
    }
    ArrayD::from_shape_vec(IxDyn(&[n, oc, oh, ow]), out)
        .map_err(|e| Error::shape("conv2d", e.to_string()))
}
