//! `graft infer`, `graft embed` and `graft predict`: a model run on a `.npy` batch, texts or
//! image files, on either backend; outputs written atomically, never over an input.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use graft_backend::{Backend, Ctx, InputBatch, TensorData};
use graft_zoo::{LoadOptions, ModelOptions, Registry, WeightsFile};

use crate::{guard, pretrained};

/// A model as the command line names it (`graft infer`, `graft export`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ModelArgs {
    /// A registered name, a pretrained tag, `hf-hub:org/name` or `tv:arch.WEIGHTS`.
    #[arg(long)]
    pub(crate) model: String,
    /// `pretrained` (an architecture's default tag) or `random` (scratch weights).
    #[arg(long, value_enum)]
    pub(crate) init: Option<pretrained::Init>,
    /// safetensors, or a torch.save .pth / .pt / .bin (read without running its pickle, on
    /// either backend). Optional for user models and pretrained names.
    #[arg(long)]
    pub(crate) weights: Option<PathBuf>,
    /// Head size (default: the weights file's head, else the model's cfg).
    #[arg(long)]
    pub(crate) num_classes: Option<usize>,
    /// Apply what fits and report the rest instead of failing on a mismatch.
    #[arg(long)]
    pub(crate) lenient: bool,
}

#[derive(Debug)]
pub(crate) struct InferJob {
    pub(crate) args: ModelArgs,
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) features: bool,
    pub(crate) batch_size: usize,
}

/// The head size of a weights file (its index only, nothing decoded), checked.
pub(crate) fn weights_num_classes(path: &Path, classifier: &str) -> Result<Option<usize>> {
    Ok(WeightsFile::open_index(path)?.head_classes(classifier)?)
}

#[derive(Debug)]
pub(crate) struct EmbedJob {
    pub(crate) model: String,
    pub(crate) clip: bool,
    pub(crate) model_dir: Option<PathBuf>,
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) column: String,
    pub(crate) format: Option<graft_text::TextFormat>,
    pub(crate) batch_size: usize,
    pub(crate) bf16: bool,
}

pub(crate) fn embed<B: Backend>(b: &B, reg: &Registry, job: &EmbedJob) -> Result<()> {
    if job.clip {
        return crate::clip::embed(b, job);
    }
    let t0 = Instant::now();
    let mut reads = guard::Reads::default().file("--input", &job.input);
    if let Some(d) = &job.model_dir {
        reads = reads.dir("--model-dir", d);
    }
    reads.check_output(&job.output)?;
    let texts = graft_text::read_texts(&job.input, job.format, &job.column)?;
    let (enc, report) = graft_extract::TextEncoder::pretrained(
        b,
        reg,
        &job.model,
        job.model_dir.as_deref(),
        &ModelOptions::default(),
    )?;
    let mut enc = if job.bf16 {
        enc.for_inference(&graft_zoo::InferenceOptions::bf16())?
    } else {
        enc.for_inference(&graft_zoo::InferenceOptions::default())?
    };
    enc.batch_size = job.batch_size;
    if let Some(d) = report.file.parent() {
        // the model's own directory (weights, tokenizer), wherever the registry found it
        guard::Reads::default()
            .dir(&format!("{}'s files", job.model), d)
            .check_output(&job.output)?;
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t1 = Instant::now();
    let emb = enc.embed(&refs)?;
    let secs = t1.elapsed().as_secs_f64();
    let dim = enc.model().num_features();
    let arr = ndarray::Array2::from_shape_vec((texts.len(), dim), emb)?;
    let mut bytes = Vec::new();
    ndarray_npy::WriteNpyExt::write_npy(&arr, &mut bytes).context("encode .npy")?;
    graft_backend::safetensors_io::write_atomic(&job.output, &bytes)?;
    eprintln!(
        "{}: {} texts -> {} [{}, {dim}] on {}{} in {secs:.2} s ({:.0} texts/s; {:.2} s in all; weights {} tensors from {})",
        job.model,
        texts.len(),
        job.output.display(),
        texts.len(),
        b.name(),
        if job.bf16 { " (bf16)" } else { "" },
        texts.len() as f64 / secs.max(1e-9),
        t0.elapsed().as_secs_f64(),
        report.applied.len(),
        report.file.display(),
    );
    Ok(())
}

/// The files a model named on the command line reads (its weights, a user model's directory),
/// beside which no output may be written.
pub(crate) fn model_reads(
    reg: &Registry,
    args: &ModelArgs,
    reads: guard::Reads,
) -> Result<guard::Reads> {
    let (entry, _) = reg.entry_of(&args.model)?;
    let mut reads = reads;
    if let Some(w) = &args.weights {
        reads = reads.file("--weights", w);
    }
    if let Some(w) = &entry.weights {
        // a user model: its directory's files
        reads = match w.parent() {
            Some(d) => reads.dir(&format!("{}'s files", args.model), d),
            None => reads.file(&format!("{}'s weights", args.model), w),
        };
    }
    Ok(reads)
}

/// Builds and loads the model `args` names for `c`-channel `h`x`w` inputs (a ViT built for
/// another size is built for this one, its position embeddings resampled on load); prints the
/// load report.
pub(crate) fn build_model<B: Backend>(
    b: &B,
    reg: &Registry,
    args: &ModelArgs,
    [c, h, w]: [usize; 3],
) -> Result<graft_zoo::Model<B>> {
    let (entry, entry_cfg) = reg.entry_of(&args.model)?;
    let mut opts = ModelOptions::default().in_chans(c);
    if args.lenient {
        opts.load = LoadOptions::lenient();
    }
    if let Some(size) = entry.arch.img_size()
        && size != [h, w]
    {
        eprintln!(
            "note: {} is built for {}x{}; building it for {h}x{w} (position embeddings resampled on load)",
            args.model, size[0], size[1]
        );
        opts.img_size = Some([h, w]);
    }
    let start = pretrained::start(reg, &args.model, args.weights.clone(), args.init)?;
    let weights = args.weights.clone().or_else(|| entry.weights.clone());
    // a torch.save file is decoded once here, then loaded from memory
    let pickled = match &weights {
        Some(p) if graft_zoo::pretrained::is_pickle(p) => Some(graft_zoo::torch_file::read(p)?),
        _ => None,
    };
    let file_classes = match (&weights, &pickled) {
        (Some(p), Some(t)) => WeightsFile::index_only(
            p,
            t.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        (v.shape().to_vec(), v.dtype().name().to_string()),
                    )
                })
                .collect(),
        )
        .head_classes(&entry_cfg.classifier)?,
        (Some(p), None) => weights_num_classes(p, &entry_cfg.classifier)?,
        (None, _) => None,
    };
    opts.num_classes = args.num_classes.or(file_classes);
    let (model, report) = match (&weights, pickled) {
        (Some(p), Some(tensors)) => {
            let (mut m, _) = reg.create(
                b,
                &args.model,
                &ModelOptions {
                    weights: None,
                    ..opts.clone()
                },
            )?;
            let r = m.load_tensors(p, &tensors, &opts.load)?;
            (m, Some(r))
        }
        (Some(p), None) => reg.create(
            b,
            &args.model,
            &ModelOptions {
                weights: Some(p.clone()),
                ..opts.clone()
            },
        )?,
        (None, _) => {
            if start == pretrained::Start::Random {
                eprintln!(
                    "note: {} runs with random weights (init = random)",
                    args.model
                );
            }
            reg.create(
                b,
                &args.model,
                &ModelOptions {
                    pretrained: start == pretrained::Start::Pretrained,
                    ..opts.clone()
                },
            )?
        }
    };
    if let Some(r) = &report {
        eprint!("{r}");
    }
    Ok(model)
}

pub(crate) fn infer<B: Backend>(b: &B, reg: &Registry, job: &InferJob) -> Result<()> {
    let reads = guard::Reads::default().file("--input", &job.input);
    model_reads(reg, &job.args, reads)?.check_output(&job.output)?;
    let x = graft_data::npy::read_f32(&job.input)?;
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {i} (flat index) is not finite: inputs must be",
            job.input.display()
        );
    }
    if x.ndim() != 4 {
        bail!(
            "{}: input must be NCHW float32, got shape {:?}",
            job.input.display(),
            x.shape()
        );
    }
    let (n, c, h, w) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
    let t0 = Instant::now();
    let model = build_model(b, reg, &job.args, [c, h, w])?;
    // the eval-only copy: BatchNorm folded, channels-last where it pays (same outputs)
    let model = model.for_inference(&graft_zoo::InferenceOptions::default())?;
    let ctx = Ctx::eval();
    let flat: Vec<f32> = x.iter().copied().collect();
    let per = c * h * w;
    let mut outs: Vec<f32> = Vec::new();
    let mut width = 0;
    for start in (0..n).step_by(job.batch_size) {
        let m = job.batch_size.min(n - start);
        let chunk = TensorData::f32(&[m, c, h, w], flat[start * per..(start + m) * per].to_vec())?;
        let xt = model.input(&InputBatch::images(chunk)?)?;
        let y = if job.features {
            model.forward_pooled(&xt, &ctx)?
        } else {
            model.forward(&xt, &ctx)?
        };
        let y = b.to_data(&y)?.to_f32();
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: non-finite output for input row {} (NaN or infinite weights; the load report lists them)",
                job.args.model,
                start + i / y.shape()[1].max(1)
            );
        }
        width = y.shape()[1];
        outs.extend(y.iter().copied());
    }
    let arr = ndarray::Array2::from_shape_vec((n, width), outs)?;
    let mut bytes = Vec::new();
    ndarray_npy::WriteNpyExt::write_npy(&arr, &mut bytes).context("encode .npy")?;
    graft_backend::safetensors_io::write_atomic(&job.output, &bytes)?;
    eprintln!(
        "{}: {n} images {c}x{h}x{w} -> {} [{n}, {width}] on {} in {:.2} s",
        job.args.model,
        if job.features { "features" } else { "logits" },
        b.name(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Debug)]
pub(crate) struct PredictJob {
    pub(crate) model: String,
    pub(crate) weights: Option<PathBuf>,
    pub(crate) init: Option<pretrained::Init>,
    pub(crate) top: usize,
    pub(crate) images: Vec<PathBuf>,
}

/// Classifies image files with the model's eval transform (timm's: resize, center crop,
/// normalise, from the model's cfg; one-channel models see the mean of R, G, B).
/// An image file through the eval transform `tf`, for a model of `in_chans` channels (1: the
/// mean of the RGB channels first).
pub(crate) fn image_input(
    path: &Path,
    tf: &graft_data::transform::Compose,
    in_chans: usize,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> Result<graft_data::Image> {
    use graft_data::Transform as _;
    let raw = graft_data::decode_raw(path, graft_core::limits::max_image_pixels()?)?;
    if in_chans == 1 {
        let s = raw.to_image();
        let [_, h, w] = s.shape;
        let hw = h * w;
        let gray: Vec<f32> = (0..hw)
            .map(|i| (s.data[i] + s.data[hw + i] + s.data[2 * hw + i]) / 3.0)
            .collect();
        let s = graft_data::Image {
            shape: [1, h, w],
            data: gray,
            label: 0,
        };
        tf.apply(s, rng)
    } else {
        // the transform reads the 8-bit pixels: no full-size float copy of a large photo
        tf.apply_raw(raw, rng)
    }
    .with_context(|| format!("{}", path.display()))
}

pub(crate) fn predict<B: Backend>(b: &B, reg: &Registry, job: &PredictJob) -> Result<()> {
    let start = pretrained::start(reg, &job.model, job.weights.clone(), job.init)?;
    let mut opts = pretrained::options(&start, None);
    if !pretrained::is_hub(reg, &job.model) {
        let (_, cfg) = reg.entry_of(&job.model)?;
        opts.in_chans = cfg.input_size[0];
        if let Some(w) = &job.weights {
            opts.num_classes = weights_num_classes(w, &cfg.classifier)?;
        }
    }
    if start == pretrained::Start::Random {
        eprintln!(
            "note: {} runs with random weights (init = random)",
            job.model
        );
    }
    let (model, _) = reg.create(b, &job.model, &opts)?;
    let model = model.for_inference(&graft_zoo::InferenceOptions::default())?;
    let tf = graft_data::transform::eval_transform(&graft_train::data_config(model.cfg()), true);
    let labels: Vec<String> = model
        .cfg()
        .labels
        .clone()
        .unwrap_or_else(|| (0..model.num_classes()).map(|i| i.to_string()).collect());
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    for path in &job.images {
        let s = image_input(path, &tf, model.in_chans(), &mut rng)?;
        let x = InputBatch::images(TensorData::f32(
            &[1, s.shape[0], s.shape[1], s.shape[2]],
            s.data,
        )?)?;
        let p = b
            .to_data(&b.softmax(&model.forward_batch(&x, &Ctx::eval())?, 1)?)?
            .to_f32();
        if p.iter().any(|v| !v.is_finite()) {
            bail!(
                "{}: {} gives non-finite probabilities (NaN or infinite weights; the load report lists them)",
                path.display(),
                job.model
            );
        }
        let mut order: Vec<usize> = (0..p.shape()[1]).collect();
        order.sort_by(|&i, &j| p[[0, j]].total_cmp(&p[[0, i]]));
        let top: Vec<String> = order
            .iter()
            .take(job.top)
            .map(|&i| {
                format!(
                    "{} ({:.3})",
                    labels.get(i).cloned().unwrap_or_else(|| i.to_string()),
                    p[[0, i]]
                )
            })
            .collect();
        outln!("{}: {}", path.display(), top.join(", "));
    }
    Ok(())
}
