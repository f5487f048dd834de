//! `graft embed --clip`: a CLIP's image embeddings (an image, or a directory of images in
//! file-name order) or text embeddings, written as an `[n, embed_dim]` float32 `.npy`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use graft_backend::{Backend, Ctx, DType, InputBatch, TensorData};

use crate::guard;
use crate::inference::EmbedJob;

/// The images `input` names: itself, or a directory's image files sorted by name.
fn image_inputs(input: &Path) -> Result<Option<Vec<PathBuf>>> {
    if input.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(input)
            .with_context(|| format!("{}", input.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("{}", input.display()))?;
        files.retain(|p| p.is_file() && graft_data::is_image_file(p));
        files.sort();
        if files.is_empty() {
            bail!(
                "{}: no image files (jpg, jpeg, png, webp, bmp) in this directory",
                input.display()
            );
        }
        return Ok(Some(files));
    }
    Ok(graft_data::is_image_file(input).then(|| vec![input.to_path_buf()]))
}

pub(crate) fn embed<B: Backend>(b: &B, job: &EmbedJob) -> Result<()> {
    if job.model_dir.is_some() {
        bail!(
            "--model-dir is for text encoders: with --clip, --model names the CLIP (a directory of open_clip's files, say)"
        );
    }
    let t0 = Instant::now();
    let mut reads = guard::Reads::default();
    reads = if job.input.is_dir() {
        reads.dir("--input", &job.input)
    } else {
        reads.file("--input", &job.input)
    };
    let local = Path::new(&job.model);
    if local.is_dir() {
        reads = reads.dir("--model", local);
    }
    reads.check_output(&job.output)?;
    let images = image_inputs(&job.input)?;
    let texts = match images {
        Some(_) => Vec::new(),
        None => graft_text::read_texts(&job.input, job.format, &job.column)?,
    };
    let (enc, report) =
        graft_extract::ClipEncoder::pretrained(b, &job.model, &graft_zoo::Hub::from_env())?;
    guard::Reads::default()
        .file(&format!("{}'s weights", job.model), &report.file)
        .check_output(&job.output)?;
    let opts = if job.bf16 {
        graft_zoo::InferenceOptions::bf16()
    } else {
        graft_zoo::InferenceOptions::default()
    };
    let dim = enc.visual().num_classes();
    let t1 = Instant::now();
    let (rows, what) = match &images {
        Some(files) => {
            let visual = enc.visual().for_inference(&opts)?;
            let tf = graft_data::transform::eval_transform(
                &graft_train::data_config(visual.cfg()),
                true,
            );
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
            let mut out = Vec::with_capacity(files.len() * dim);
            for chunk in files.chunks(job.batch_size) {
                let mut data = Vec::new();
                let mut shape = [0usize; 3];
                for path in chunk {
                    let s = crate::inference::image_input(path, &tf, visual.in_chans(), &mut rng)?;
                    shape = s.shape;
                    data.extend(s.data);
                }
                let x = InputBatch::images(TensorData::f32(
                    &[chunk.len(), shape[0], shape[1], shape[2]],
                    data,
                )?)?;
                let y = visual.forward_batch(&x, &Ctx::eval())?;
                out.extend(
                    b.to_data(&b.cast(&y, DType::F32)?)?
                        .to_f32()
                        .iter()
                        .copied(),
                );
            }
            (out, "images")
        }
        None => {
            let mut text = enc.text().for_inference(&opts)?;
            text.batch_size = job.batch_size;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            (text.embed(&refs)?, "texts")
        }
    };
    let secs = t1.elapsed().as_secs_f64();
    let n = rows.len() / dim.max(1);
    if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: the embedding of {what} row {} is not finite (NaN or infinite weights; the load report lists them)",
            job.model,
            i / dim.max(1)
        );
    }
    let arr = ndarray::Array2::from_shape_vec((n, dim), rows)?;
    let mut bytes = Vec::new();
    ndarray_npy::WriteNpyExt::write_npy(&arr, &mut bytes).context("encode .npy")?;
    graft_backend::safetensors_io::write_atomic(&job.output, &bytes)?;
    eprintln!(
        "{} (CLIP): {n} {what} -> {} [{n}, {dim}] on {}{} in {secs:.2} s ({:.1} {what}/s; {:.2} s in all){}",
        job.model,
        job.output.display(),
        b.name(),
        if job.bf16 { " (bf16)" } else { "" },
        n as f64 / secs.max(1e-9),
        t0.elapsed().as_secs_f64(),
        if images.is_some() {
            "; rows in file-name order"
        } else {
            ""
        },
    );
    Ok(())
}
