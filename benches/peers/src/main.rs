//! The pure-Rust peers of graft-ndarray as workers of `benches/compare` (its driver spawns this
//! binary with a case's JSON and speaks the same line protocol as graft's and PyTorch's workers:
//! `ready` → `run` / `secs {...}` → `done` / `rss KIB`):
//!
//! - `tract`: tract-onnx (Sonos's ONNX inference engine) on graft's own ONNX export of the case's
//!   model (`"onnx"` in the case), optimised (`into_optimized`), its matrix products threaded;
//! - `candle`: candle-transformers' ResNet (Hugging Face's candle, CPU device), random weights
//!   from a `VarMap` — speed does not depend on the values.
//!
//! Both take the same input graft's worker does (a fixed sine pattern) and use the case's
//! thread count.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

fn num(c: &Value, k: &str) -> Result<usize> {
    c[k].as_u64()
        .map(|v| v as usize)
        .with_context(|| format!("case field {k}"))
}

fn input(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 9973) as f32 * 0.001).sin()).collect()
}

fn peak_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

type Step = Box<dyn FnMut() -> Result<()>>;

fn tract_step(c: &Value, shape: [usize; 4], threads: usize) -> Result<Step> {
    use tract_onnx::prelude::*;
    tract_linalg::multithread::set_default_executor(
        tract_linalg::multithread::Executor::multithread(threads),
    );
    let path = c["onnx"].as_str().context("the case's onnx file")?;
    let model = tract_onnx::onnx()
        .model_for_path(path)?
        .into_optimized()?
        .into_runnable()?;
    let x: Tensor =
        tract_ndarray::Array4::from_shape_vec(shape, input(shape.iter().product()))?.into();
    let pool = tract_linalg::multithread::current_tract_executor();
    Ok(Box::new(move || {
        let out = tract_linalg::multithread::multithread_tract_scope(pool.clone(), || {
            model.run(tvec!(x.clone().into()))
        })?;
        let v = out[0].to_plain_array_view::<f32>()?;
        std::hint::black_box(v.sum());
        Ok(())
    }))
}

fn candle_step(c: &Value, shape: [usize; 4]) -> Result<Step> {
    use candle_core::{DType, Device, Module, Tensor};
    let dev = Device::Cpu;
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = match c["model"].as_str().context("model")? {
        "resnet50" => candle_transformers::models::resnet::resnet50(1000, vb)?,
        "resnet18" => candle_transformers::models::resnet::resnet18(1000, vb)?,
        other => bail!("candle: no {other} here"),
    };
    let x = Tensor::from_vec(input(shape.iter().product()), &shape, &dev)?;
    Ok(Box::new(move || {
        let y = model.forward(&x)?;
        std::hint::black_box(y.to_vec2::<f32>()?);
        Ok(())
    }))
}

fn main() -> Result<()> {
    let case = std::env::args()
        .nth(1)
        .context("usage: graft-bench-peers CASE_JSON")?;
    let c: Value = serde_json::from_str(&case).context("case json")?;
    let (size, batch) = (num(&c, "size")?, num(&c, "batch")?);
    let threads = c["threads"].as_u64().map_or(2, |t| t as usize);
    let shape = [batch, 3, size, size];
    let mut step = match c["variant"].as_str().context("variant")? {
        "tract" => tract_step(&c, shape, threads)?,
        "candle" => candle_step(&c, shape)?,
        other => bail!("unknown peer {other:?}"),
    };
    for _ in 0..c["warmup"].as_u64().unwrap_or(1) {
        step()?;
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "ready {}", json!({"threads": threads}))?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "run" => {
                let t = Instant::now();
                step()?;
                let s = BTreeMap::from([("total".to_string(), t.elapsed().as_secs_f64())]);
                writeln!(out, "secs {}", serde_json::to_string(&s)?)?;
                out.flush()?;
            }
            "done" => {
                writeln!(out, "rss {}", peak_rss_kib())?;
                out.flush()?;
                return Ok(());
            }
            other => bail!("unknown command {other:?}"),
        }
    }
    Ok(())
}
