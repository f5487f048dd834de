//! Cross-entropy over logits `[N, C]`.

use graft_backend::{Backend, TensorData};
use graft_core::{Error, Result};

/// What the logits are scored against.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Class indices.
    Hard(Vec<usize>),
    /// Per-sample class probabilities `[N, C]`, rows summing to 1 (mixup / cutmix).
    Soft(TensorData),
}

/// Mean cross-entropy with label smoothing `ε` (PyTorch's: target `(1 - ε)·onehot + ε / C`).
pub fn cross_entropy<B: Backend>(
    b: &B,
    logits: &B::Tensor,
    targets: &Targets,
    smoothing: f64,
) -> Result<B::Tensor> {
    let s = b.shape(logits);
    let [n, c] = s[..] else {
        return Err(Error::shape(
            "cross_entropy",
            format!("logits must be [N, C], got {s:?}"),
        ));
    };
    if !(0.0..1.0).contains(&smoothing) {
        return Err(Error::invalid(
            "cross_entropy",
            format!("label smoothing {smoothing} must be in [0, 1)"),
        ));
    }
    let q = match targets {
        Targets::Hard(y) => {
            if y.len() != n {
                return Err(Error::shape(
                    "cross_entropy",
                    format!("{} labels for {n} logits", y.len()),
                ));
            }
            let off = (smoothing / c as f64) as f32;
            let on = (1.0 - smoothing + smoothing / c as f64) as f32;
            let mut q = vec![off; n * c];
            for (i, &l) in y.iter().enumerate() {
                if l >= c {
                    return Err(Error::invalid(
                        "cross_entropy",
                        format!("label {l} for {c} classes"),
                    ));
                }
                q[i * c + l] = on;
            }
            TensorData::f32(&[n, c], q)?
        }
        Targets::Soft(t) => {
            if t.shape() != [n, c] {
                return Err(Error::shape(
                    "cross_entropy",
                    format!("soft targets {:?} for logits [{n}, {c}]", t.shape()),
                ));
            }
            let t = t.to_f32();
            let k = smoothing as f32 / c as f32;
            TensorData::f32(
                &[n, c],
                t.iter().map(|v| v * (1.0 - smoothing as f32) + k).collect(),
            )?
        }
    };
    let q = b.cast(&b.from_data(&q)?, b.dtype(logits))?;
    let lsm = b.log_softmax(logits, 1)?;
    let per = b.sum(&b.mul(&q, &lsm)?, &[1], false)?;
    b.neg(&b.mean(&per, &[0], false)?)
}
