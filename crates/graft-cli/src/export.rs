//! `graft export`: a model written as an ONNX graph (graft-onnx traces graft's own forward on
//! the eval-mode inference copy), for ONNX Runtime and every other ONNX consumer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use graft_backend::Backend;
use graft_zoo::Registry;

use crate::guard;
use crate::inference::{ModelArgs, build_model, model_reads};

#[derive(Debug)]
pub(crate) struct ExportJob {
    pub(crate) args: ModelArgs,
    pub(crate) output: PathBuf,
    pub(crate) features: bool,
    pub(crate) input_size: Option<Vec<usize>>,
    pub(crate) batch_size: usize,
}

pub(crate) fn export<B: Backend>(b: &B, reg: &Registry, job: &ExportJob) -> Result<()> {
    model_reads(reg, &job.args, guard::Reads::default())?.check_output(&job.output)?;
    let [c, h, w] = match &job.input_size {
        Some(v) => match v[..] {
            [c, h, w] if c > 0 && h > 0 && w > 0 => [c, h, w],
            _ => bail!("--input-size {v:?}: three positive numbers C,H,W"),
        },
        None => reg.entry_of(&job.args.model)?.1.input_size,
    };
    let t0 = Instant::now();
    let model = build_model(b, reg, &job.args, [c, h, w])?;
    let model = model.for_inference(&graft_zoo::InferenceOptions::default())?;
    let what = if job.features {
        graft_onnx::Output::Pooled
    } else {
        graft_onnx::Output::Logits
    };
    let shape = [job.batch_size, c, h, w];
    let e = graft_onnx::export(&model, &shape, what)?;
    e.save(&job.output)?;
    let graph = e.proto.graph.as_ref();
    eprintln!(
        "{}: {} -> {} (ONNX opset {}, input {:?} `{}`, output {:?} `{}`, {} nodes, {} weights) in {:.2} s",
        job.args.model,
        if job.features {
            "pooled features"
        } else {
            "logits"
        },
        job.output.display(),
        graft_onnx::trace::OPSET,
        e.input.1,
        e.input.0,
        e.output.1,
        e.output.0,
        graph.map_or(0, |g| g.node.len()),
        graph.map_or(0, |g| g.initializer.len()),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
