//! Matrix products on the `gemm` crate (the kernels faer uses: AVX-512 — the `x86-v4` feature —
//! / AVX2 / NEON picked at run time, packed panels, rayon threads) — about twice
//! matrixmultiply's speed with AVX2 alone.
//!
//! The crate's entry point takes raw pointers and strides; this module is the one place graft
//! calls it, through [`gemm_into`], which takes ndarray views and checks every shape first.

use ndarray::{ArrayView2, ArrayViewMut2};

/// Below this many multiply-adds a product runs on one thread.
const THREADED_MIN: usize = 1 << 16;

/// `c ← a·b` (or `c ← c + a·b` with `accumulate`), any strides. Shapes must agree:
/// `a: [m, k]`, `b: [k, n]`, `c: [m, n]` (checked; a mismatch is a programming error reported as
/// `false` and leaves `c` untouched). `threaded: false` keeps the product on the calling thread
/// (callers that already parallelise over a batch).
pub(crate) fn gemm_into(
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    c: &mut ArrayViewMut2<'_, f32>,
    accumulate: bool,
    threaded: bool,
) -> bool {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k != k2 || c.dim() != (m, n) {
        return false;
    }
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return true;
    }
    let par = if threaded && m * n * k >= THREADED_MIN {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    let (sa, sb, sc) = (a.strides(), b.strides(), c.strides());
    let (cs, rs) = (sc[1], sc[0]);
    let dst = c.as_mut_ptr();
    // SAFETY: the three views are valid for every index within their (checked, non-empty)
    // shapes at their strides, which is exactly the memory gemm touches: it reads a (m×k) and
    // b (k×n) and writes c (m×n). `c` is a unique mutable borrow, so it aliases neither input.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            cs,
            rs,
            accumulate,
            a.as_ptr(),
            sa[1],
            sa[0],
            b.as_ptr(),
            sb[1],
            sb[0],
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn naive(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let (m, k) = a.dim();
        let n = b.dim().1;
        Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|t| a[[i, t]] * b[[t, j]]).sum())
    }

    #[test]
    fn matches_the_naive_product_at_any_strides() {
        for &(m, k, n) in &[(1, 1, 1), (7, 13, 5), (64, 300, 129), (3, 0, 4)] {
            let a = Array2::from_shape_fn((m, k), |(i, j)| ((i * 31 + j * 7) % 17) as f32 - 8.0);
            let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 13) as f32 - 6.0);
            let want = naive(&a, &b);
            let mut c = Array2::from_elem((m, n), 5.0f32);
            assert!(gemm_into(
                &a.view(),
                &b.view(),
                &mut c.view_mut(),
                false,
                true
            ));
            assert_eq!(c, want, "{m}x{k}x{n}");
            // transposed views (column-major strides) and accumulation
            let at = a.t().to_owned();
            let bt = b.t().to_owned();
            let mut c2 = Array2::from_elem((m, n), 1.0f32);
            assert!(gemm_into(&at.t(), &bt.t(), &mut c2.view_mut(), true, false));
            assert_eq!(c2, want.mapv(|v| v + 1.0), "{m}x{k}x{n} transposed");
        }
        let a = Array2::<f32>::zeros((2, 3));
        let mut c = Array2::<f32>::zeros((2, 2));
        assert!(!gemm_into(
            &a.view(),
            &a.view(),
            &mut c.view_mut(),
            false,
            true
        ));
    }
}
