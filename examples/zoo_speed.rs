//! graft-tch vs graft-ndarray forward time on one zoo model, measured side by side: the two
//! backends alternate, each run is timed, best and median of N are reported with their ratio.
//!
//! cargo run --release --example zoo_speed -- [MODEL] [BATCH] [SIZE] [N] [plain|copy]
//! (default: resnet18 8 224 7 plain; `copy` runs both backends' fp32 inference copies,
//! `Model::for_inference`)

use std::time::Instant;

use anyhow::{Context, Result};
use graft::zoo::{ModelOptions, create_model};
use graft::{Backend, Ctx, NdArray, Tch, TensorData};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("resnet18", String::as_str).to_string();
    let num = |i: usize, d: usize| -> Result<usize> {
        args.get(i).map_or(Ok(d), |s| {
            s.parse().with_context(|| format!("argument {s:?}"))
        })
    };
    let (batch, size, n) = (num(1, 8)?, num(2, 224)?, num(3, 7)?);
    let mut opts = ModelOptions::default().seed(1);
    if model.starts_with("vit") {
        opts.img_size = Some([size, size]);
    }
    let (mut mt, _) = create_model(&Tch::cpu(), &model, &opts)?;
    let (mut mn, _) = create_model(&NdArray, &model, &opts)?;
    let form = args.get(4).map_or("plain", String::as_str);
    match form {
        "plain" => {}
        "copy" => {
            let o = graft::zoo::InferenceOptions::default();
            mt = mt.for_inference(&o)?;
            mn = mn.for_inference(&o)?;
        }
        other => anyhow::bail!("form {other:?}: plain or copy"),
    }
    // Same seed: graft initialises on the host, so both models hold bit-identical weights.
    let values: Vec<f32> = (0..batch * 3 * size * size)
        .map(|i| ((i % 9973) as f32 * 0.001).sin())
        .collect();
    let x = TensorData::f32(&[batch, 3, size, size], values)?;
    let xt = Tch::cpu().from_data(&x)?;
    let xn = NdArray.from_data(&x)?;
    let ctx = Ctx::eval();
    // warm-up, and the two agree
    let yt = Tch::cpu().to_data(&mt.forward(&xt, &ctx)?)?;
    let yn = NdArray.to_data(&mn.forward(&xn, &ctx)?)?;
    let max_ref = yt.to_f64().iter().fold(0f64, |m, v| m.max(v.abs()));
    let agree = yt.max_abs_diff(&yn)? / max_ref.max(1e-12);
    let (mut tt, mut tn) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let t0 = Instant::now();
        let y = mt.forward(&xt, &ctx)?;
        Tch::cpu().to_data(&y)?;
        tt.push(t0.elapsed().as_secs_f64());
        let t0 = Instant::now();
        let y = mn.forward(&xn, &ctx)?;
        NdArray.to_data(&y)?;
        tn.push(t0.elapsed().as_secs_f64());
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    };
    let (bt, mdt) = stats(&mut tt);
    let (bn, mdn) = stats(&mut tn);
    println!(
        "{model} ({form}) batch {batch} at {size}x{size}, {n} alternating runs, {} threads (tch) / {} (ndarray rayon)",
        Tch::num_threads(),
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    println!(
        "  graft-tch      best {:.3} s  median {:.3} s  ({:.1} img/s best)",
        bt,
        mdt,
        batch as f64 / bt
    );
    println!(
        "  graft-ndarray  best {:.3} s  median {:.3} s  ({:.1} img/s best)",
        bn,
        mdn,
        batch as f64 / bn
    );
    println!("  outputs agree: max abs diff / max|ref| = {agree:.2e}");
    println!(
        "  ndarray / tch time: best {:.2}x, median {:.2}x",
        bn / bt,
        mdn / mdt
    );
    Ok(())
}
