//! The smallest end-to-end run of the two backends: train a small MLP classifier on graft-tch with
//! graft's AdamW, save it as safetensors, load it into the pure-Rust graft-ndarray backend and
//! check both backends predict the same classes. (`make demo` runs the digits transfer study,
//! `examples/digits_study/`.)
//!
//! The data is a seeded, noisy three-arm spiral (2-d points, 3 classes), generated here.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use graft::backend::safetensors_io;
use graft::backend::{ParamBuilder, Params, nn};
use graft::optim::{Hyper, Optimizer};
use graft::{AutodiffBackend, Backend, DType, NdArray, Tch, TensorData};

const CLASSES: usize = 3;
const PER_CLASS: usize = 200;
const HIDDEN: usize = 64;

fn spiral(seed: u64) -> Result<(TensorData, TensorData)> {
    let noise = graft::backend::init::uniform_f32(CLASSES * PER_CLASS * 2, seed);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for c in 0..CLASSES {
        for i in 0..PER_CLASS {
            let r = i as f32 / PER_CLASS as f32;
            let k = 2 * (c * PER_CLASS + i);
            let theta = c as f32 * 2.094 + r * 4.0 + (noise[k] - 0.5) * 0.4;
            xs.push(r * theta.cos() + (noise[k + 1] - 0.5) * 0.05);
            xs.push(r * theta.sin());
            ys.push(c as i64);
        }
    }
    Ok((
        TensorData::f32(&[CLASSES * PER_CLASS, 2], xs)?,
        TensorData::i64(&[CLASSES * PER_CLASS], ys)?,
    ))
}

fn build<B: Backend>(b: &B) -> Result<Params<B>> {
    let pb = ParamBuilder::new(b.clone(), 0);
    nn::init_linear(&pb.root().sub("fc1")?, 2, HIDDEN, true)?;
    nn::init_linear(&pb.root().sub("fc2")?, HIDDEN, HIDDEN, true)?;
    nn::init_linear(&pb.root().sub("head")?, HIDDEN, CLASSES, true)?;
    Ok(pb.finish())
}

/// The model, written once over any backend.
fn forward<B: Backend>(p: &Params<B>, x: &B::Tensor) -> graft::Result<B::Tensor> {
    let b = p.backend();
    let h = b.relu(&nn::linear(p, "fc1", x)?)?;
    let h = b.relu(&nn::linear(p, "fc2", &h)?)?;
    nn::linear(p, "head", &h)
}

fn cross_entropy<B: Backend>(
    b: &B,
    logits: &B::Tensor,
    labels: &B::Tensor,
) -> graft::Result<B::Tensor> {
    let lp = b.log_softmax(logits, 1)?;
    let picked = b.gather(&lp, 1, &b.unsqueeze(labels, 1)?)?;
    b.neg(&b.mean(&picked, &[], false)?)
}

fn predictions<B: Backend>(b: &B, logits: &B::Tensor) -> Result<Vec<i64>> {
    let d = b.to_data(&b.argmax(logits, 1, false)?)?;
    Ok(d.as_i64("argmax")?.iter().copied().collect())
}

fn accuracy(pred: &[i64], labels: &TensorData) -> Result<f64> {
    let l = labels.as_i64("labels")?;
    Ok(pred.iter().zip(l.iter()).filter(|(a, b)| a == b).count() as f64 / pred.len() as f64)
}

fn main() -> Result<()> {
    let t0 = Instant::now();
    let (x, y) = spiral(7)?;
    let tch = Tch::cpu();
    let params = build(&tch)?;
    params.set_trainable(|_| true, true)?;
    let mut opt = Optimizer::adamw();
    opt.add_group(
        "body",
        vec![
            "fc1.weight".into(),
            "fc1.bias".into(),
            "fc2.weight".into(),
            "fc2.bias".into(),
        ],
        Hyper::adamw(1e-2).weight_decay(1e-4),
    )?;
    opt.add_group(
        "head",
        vec!["head.weight".into(), "head.bias".into()],
        Hyper::adamw(2e-2).weight_decay(1e-4),
    )?;
    let (xt, yt) = (tch.from_data(&x)?, tch.from_data(&y)?);
    println!(
        "graft demo: {}-class spiral, {} points, MLP 2-{HIDDEN}-{HIDDEN}-{CLASSES} on tch ({})",
        CLASSES,
        CLASSES * PER_CLASS,
        tch.device()
    );
    for epoch in 1..=300 {
        let loss = cross_entropy(&tch, &forward(&params, &xt)?, &yt)?;
        let grads = params.gradients(&loss)?;
        opt.step(&params, &grads)?;
        if epoch % 50 == 0 {
            let l = tch.to_data(&loss)?.to_f64().sum();
            let acc = tch.no_grad(|| -> Result<f64> {
                accuracy(&predictions(&tch, &forward(&params, &xt)?)?, &y)
            })?;
            println!(
                "  epoch {epoch:3}  loss {l:.4}  train accuracy {:.1}%",
                100.0 * acc
            );
        }
    }
    let tch_pred =
        tch.no_grad(|| -> Result<Vec<i64>> { predictions(&tch, &forward(&params, &xt)?) })?;
    let acc = accuracy(&tch_pred, &y)?;

    let out_dir = std::path::Path::new("target/demo");
    std::fs::create_dir_all(out_dir).context("create target/demo")?;
    let path = out_dir.join("spiral_mlp.safetensors");
    safetensors_io::save(&path, &params.to_data()?, None)?;

    // Reload into the pure-Rust backend and compare.
    let (weights, _) = safetensors_io::load(&path)?;
    let nd = NdArray;
    let mut nd_params = Params::new(nd);
    for (name, data) in &weights {
        nd_params.insert(
            name,
            nd.from_data(data)?,
            graft::backend::ParamKind::Parameter,
        )?;
    }
    let nd_logits = forward(&nd_params, &nd.from_data(&x)?)?;
    let nd_pred = predictions(&nd, &nd_logits)?;
    let tch_logits = tch.to_data(&tch.no_grad(|| forward(&params, &xt))?)?;
    let max_diff = nd.to_data(&nd_logits)?.max_abs_diff(&tch_logits)?;
    let agree = nd_pred
        .iter()
        .zip(&tch_pred)
        .filter(|(a, b)| a == b)
        .count();
    println!(
        "tch accuracy {:.1}%; weights saved to {}",
        100.0 * acc,
        path.display()
    );
    println!(
        "ndarray reload: predictions agree on {agree}/{} points, max |logit diff| {max_diff:.2e}",
        nd_pred.len()
    );
    ensure!(
        agree == nd_pred.len(),
        "backends disagree on {} points",
        nd_pred.len() - agree
    );
    ensure!(
        acc > 0.9,
        "the MLP did not learn the spiral (accuracy {acc:.3})"
    );
    ensure!(nd.dtype(&nd_logits) == DType::F32);
    println!("done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}
