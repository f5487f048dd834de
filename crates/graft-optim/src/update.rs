//! The per-tensor updates: `torch.optim.SGD`'s and `torch.optim.AdamW`'s single-tensor
//! arithmetic, composed from backend ops (the in-place AdamW is the backend's).

use graft_backend::{AdamWStep, AutodiffBackend};
use graft_core::Result;

use crate::*;

/// `torch.optim.SGD`'s single-tensor update.
pub(crate) fn sgd_update<B: AutodiffBackend>(
    b: &B,
    p: &B::Tensor,
    g: &B::Tensor,
    st: &mut ParamState<B::Tensor>,
    h: &Hyper,
) -> Result<()> {
    let mut d_p = if h.weight_decay != 0.0 {
        b.add(g, &b.mul_scalar(p, h.weight_decay)?)?
    } else {
        g.clone()
    };
    if h.momentum != 0.0 {
        let buf = match st.buf1.take() {
            None => b.detach(&d_p)?,
            Some(buf) => b.add(
                &b.mul_scalar(&buf, h.momentum)?,
                &b.mul_scalar(&d_p, 1.0 - h.dampening)?,
            )?,
        };
        d_p = if h.nesterov {
            b.add(&d_p, &b.mul_scalar(&buf, h.momentum)?)?
        } else {
            buf.clone()
        };
        st.buf1 = Some(buf);
    }
    st.step += 1;
    let new = b.sub(p, &b.mul_scalar(&d_p, h.lr)?)?;
    b.assign(p, &new)
}

/// `torch.optim.AdamW`'s single-tensor update (decoupled decay, then lerp / addcmul moments,
/// bias corrections, addcdiv).
pub(crate) fn adamw_update<B: AutodiffBackend>(
    b: &B,
    p: &B::Tensor,
    g: &B::Tensor,
    st: &mut ParamState<B::Tensor>,
    h: &Hyper,
    in_place: bool,
) -> Result<()> {
    let (b1, b2) = h.betas;
    st.step += 1;
    if st.buf1.is_none() {
        st.buf1 = Some(b.zeros(&b.shape(g), b.dtype(g))?);
    }
    if st.buf2.is_none() {
        st.buf2 = Some(b.zeros(&b.shape(g), b.dtype(g))?);
    }
    if let (true, Some(m), Some(v)) = (in_place, &st.buf1, &st.buf2) {
        let s = AdamWStep {
            lr: h.lr,
            beta1: b1,
            beta2: b2,
            weight_decay: h.weight_decay,
            eps: h.eps,
            step: st.step,
        };
        if b.adamw_in_place(p, g, m, v, &mut st.scratch, &s)? {
            return Ok(());
        }
    }
    let step = st.step as f64;
    let p_dec = if h.weight_decay != 0.0 {
        b.mul_scalar(p, 1.0 - h.lr * h.weight_decay)?
    } else {
        p.clone()
    };
    let m = match st.buf1.take() {
        None => b.zeros(&b.shape(g), b.dtype(g))?,
        Some(m) => m,
    };
    let v = match st.buf2.take() {
        None => b.zeros(&b.shape(g), b.dtype(g))?,
        Some(v) => v,
    };
    // exp_avg.lerp_(grad, 1 - beta1)  ==  m + (1 - b1) * (g - m)
    let m = b.add(&m, &b.mul_scalar(&b.sub(g, &m)?, 1.0 - b1)?)?;
    // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value = 1 - beta2)
    let v = b.add(
        &b.mul_scalar(&v, b2)?,
        &b.mul(&b.mul_scalar(g, 1.0 - b2)?, g)?,
    )?;
    let bc1 = 1.0 - b1.powf(step);
    let bc2 = 1.0 - b2.powf(step);
    let step_size = h.lr / bc1;
    let denom = b.add_scalar(
        &b.div(&b.sqrt(&v)?, &b.scalar(bc2.sqrt(), b.dtype(&v))?)?,
        h.eps,
    )?;
    // param.addcdiv_(exp_avg, denom, value = -step_size)
    let new = b.sub(&p_dec, &b.div(&b.mul_scalar(&m, step_size)?, &denom)?)?;
    st.buf1 = Some(m);
    st.buf2 = Some(v);
    b.assign(p, &new)
}
