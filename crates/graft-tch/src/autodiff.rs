//! [`AutodiffBackend`] on libtorch: requires-grad flags, gradients through the autograd engine
//! with explicit inputs (nothing accumulates on the tensors), no-grad scopes, in-place
//! assignment and the in-place AdamW update.

use graft_backend::{AdamWStep, AutodiffBackend};
use graft_core::{Error, Result};
use tch::{TchError, Tensor};

use crate::*;

impl AutodiffBackend for Tch {
    fn set_requires_grad(&self, x: &TchTensor, on: bool) -> Result<()> {
        let _same =
            x.0.f_set_requires_grad(on)
                .map_err(err("set_requires_grad"))?;
        Ok(())
    }
    fn requires_grad(&self, x: &TchTensor) -> bool {
        x.0.requires_grad()
    }
    fn backward(&self, loss: &TchTensor, wrt: &[&TchTensor]) -> Result<Vec<Option<TchTensor>>> {
        if loss.0.numel() != 1 {
            return Err(Error::shape(
                "backward",
                format!("loss must be a scalar, got shape {:?}", loss.0.size()),
            ));
        }
        if let Some(i) = wrt.iter().position(|w| !w.0.requires_grad()) {
            return Err(Error::invalid(
                "backward",
                format!("input {i} does not require grad"),
            ));
        }
        let inputs: Vec<&Tensor> = wrt.iter().map(|w| &w.0).collect();
        let grads =
            Tensor::f_run_backward(&[&loss.0], &inputs, false, false).map_err(err("backward"))?;
        Ok(grads
            .into_iter()
            .map(|g| g.defined().then(|| TchTensor(g)))
            .collect())
    }
    fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        tch::no_grad(f)
    }
    fn num_threads(&self) -> usize {
        Tch::num_threads()
    }
    fn detach(&self, x: &TchTensor) -> Result<TchTensor> {
        Ok(t(x.0.f_detach().map_err(err("detach"))?))
    }
    fn assign(&self, dst: &TchTensor, src: &TchTensor) -> Result<()> {
        if dst.0.size() != src.0.size() {
            return Err(Error::shape(
                "assign",
                format!("{:?} ← {:?}", dst.0.size(), src.0.size()),
            ));
        }
        let mut d = dst.0.shallow_clone();
        tch::no_grad(|| d.f_copy_(&src.0)).map_err(err("assign"))?;
        Ok(())
    }
    fn adamw_in_place(
        &self,
        p: &TchTensor,
        g: &TchTensor,
        m: &TchTensor,
        v: &TchTensor,
        scratch: &mut Option<TchTensor>,
        s: &AdamWStep,
    ) -> Result<bool> {
        let size = p.0.size();
        if [&g.0, &m.0, &v.0].iter().any(|t| t.size() != size) {
            return Err(Error::shape(
                "adamw_in_place",
                format!(
                    "param {size:?}, grad {:?}, moments {:?} / {:?}",
                    g.0.size(),
                    m.0.size(),
                    v.0.size()
                ),
            ));
        }
        let e = err("adamw_in_place");
        let buf = match scratch {
            Some(b) if b.0.size() == size && b.0.kind() == p.0.kind() => b.0.shallow_clone(),
            _ => {
                let b = p.0.f_empty_like().map_err(&e)?;
                *scratch = Some(TchTensor(b.shallow_clone()));
                b
            }
        };
        let (mut p, mut m, mut v, mut buf) = (
            p.0.shallow_clone(),
            m.0.shallow_clone(),
            v.0.shallow_clone(),
            buf,
        );
        let step = s.step.max(1) as i32;
        let bc1 = 1.0 - s.beta1.powi(step);
        let bc2_sqrt = (1.0 - s.beta2.powi(step)).sqrt();
        tch::no_grad(|| -> std::result::Result<(), TchError> {
            if s.weight_decay != 0.0 {
                let _ = p.f_mul_scalar_(1.0 - s.lr * s.weight_decay)?;
            }
            let _ = m.f_lerp_(&g.0, 1.0 - s.beta1)?;
            // v = β2·v + (1-β2)·g²  (as a lerp towards g²: one pass less than mul_ + addcmul_)
            let _ = g.0.f_mul_out(&buf, &g.0)?;
            let _ = v.f_lerp_(&buf, 1.0 - s.beta2)?;
            // p -= lr/bc1 · m / (√v/√bc2 + eps), rearranged so that the scalars fold into the
            // denominator and addcdiv_ does the rest: p += m / ((√v + eps·√bc2) / (-lr·√bc2/bc1))
            let _ = v.f_sqrt_out(&buf)?;
            let _ = buf.f_add_scalar_(s.eps * bc2_sqrt)?;
            let _ = buf.f_div_scalar_(-s.lr * bc2_sqrt / bc1)?;
            let _ = p.f_addcdiv_(&m, &buf)?;
            Ok(())
        })
        .map_err(e)?;
        Ok(true)
    }
}
