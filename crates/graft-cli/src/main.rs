//! graft-cli: the `graft` binary. Lists registered models and pretrained tags, fetches
//! pretrained weights ahead of time (`pull`), inspects weights files, runs
//! inference from `.npy` to `.npy` or on image files (`predict`), and runs the three transfer
//! routes from one TOML experiment file (`extract | probe | reuse | finetune | plan | eval
//! EXP.toml`), each writing a run directory. Libtorch (`--backend tch`, default feature) or pure
//! Rust (`--backend ndarray`; a `--no-default-features` build links no libtorch at all and serves
//! the inference routes).
//!
//! Owns: argument parsing, the experiment file's schema and its located errors (`FILE:LINE:COL`,
//! exit status 2), run directories and reports, tables, `.npy` I/O, choosing the backend. Must
//! not know: how models compute or load (graft-zoo), how routes train or evaluate (the route
//! crates) — TOML lives here and only here.

#[macro_use]
mod guard;
mod exp;
mod pretrained;
mod resume;
mod routes;
mod valid;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use graft_backend::{Backend, Ctx, TensorData};
use graft_ndarray::NdArray;
use graft_zoo::{LoadOptions, ModelOptions, Registry, WeightsFile};

#[derive(Parser, Debug)]
#[command(
    name = "graft",
    version,
    about = "Transfer learning in Rust: models, weights, inference"
)]
struct Cli {
    /// Directories of user models (each subdirectory holding model.safetensors + config.json);
    /// also read from GRAFT_MODELS_DIR (colon-separated).
    #[arg(long = "models-dir", global = true)]
    models_dir: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Feature extraction: frozen trunk -> cached features -> a new head (logistic, linear, MLP,
    /// prototype, kNN); exports trunk + head as a user model.
    Extract { experiment: PathBuf },
    /// Linear probe of every trunk stage and the freeze depth it recommends.
    Probe { experiment: PathBuf },
    /// Direct reuse: the model as it is on the target data (label map), then with BatchNorm
    /// statistics re-estimated on the unlabelled target images.
    Reuse { experiment: PathBuf },
    /// Fine-tuning: the recipe (freeze k or auto), fastai's fine_tune, gradual unfreezing.
    Finetune {
        experiment: PathBuf,
        /// Continue an interrupted run in its directory, from each phase's last checkpoint
        /// (the experiment must resolve to the run's config.toml unchanged).
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
    },
    /// The surgery plan(s) a finetune experiment would run, without training.
    Plan { experiment: PathBuf },
    /// Accuracy, per-class accuracy and confusion matrix of a model on the experiment's data.
    Eval { experiment: PathBuf },
    /// Classify image files (the model's eval transform; top-k labels and probabilities).
    Predict {
        /// A registered name, a pretrained tag (`resnet50.a1_in1k`), `hf-hub:org/name[@rev]` or
        /// `tv:resnet50.IMAGENET1K_V2`.
        #[arg(long)]
        model: String,
        /// safetensors weights (optional for user models and pretrained names).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// `pretrained` (an architecture's default tag) or `random` (scratch weights).
        #[arg(long, value_enum)]
        init: Option<pretrained::Init>,
        #[arg(long, default_value_t = 5, value_parser = at_least_one())]
        top: usize,
        #[arg(long, value_enum, default_value_t = default_backend())]
        backend: BackendKind,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Sentence embeddings of texts with a text encoder (`minilm_l6`): one text per line of a
    /// .txt, or a column of a .csv / .tsv / .jsonl; writes an [n, dim] float32 .npy, row i for
    /// text i.
    Embed {
        #[arg(long)]
        model: String,
        /// The model's directory (weights + tokenizer.json); default: the directory its Python
        /// package ships, found in an installed environment (never downloaded).
        #[arg(long)]
        model_dir: Option<PathBuf>,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// The text column of a .csv / .tsv / .jsonl input.
        #[arg(long, default_value = "text")]
        column: String,
        /// The input's format when its extension does not say: csv, tsv, jsonl or txt.
        #[arg(long)]
        format: Option<String>,
        /// Texts per forward.
        #[arg(long, default_value_t = 64, value_parser = at_least_one())]
        batch_size: usize,
        /// Run a bf16 copy of the model (faster on CPUs with AMX; cosine >= 0.999 to fp32).
        #[arg(long)]
        bf16: bool,
        #[arg(long, value_enum, default_value_t = default_backend())]
        backend: BackendKind,
    },
    /// List registered models (wildcards: `resnet*`, `*vit*`); with --pretrained, the
    /// pretrained tags (timm's and torchvision's) with licence and whether they are cached.
    Models {
        pattern: Option<String>,
        #[arg(long)]
        pretrained: bool,
    },
    /// Fetch pretrained weights into the local caches ahead of time (Hugging Face's cache,
    /// shared with Python; torchvision's in $TORCH_HOME): tags, `hf-hub:` repos, `tv:` names,
    /// or architectures (their default tag).
    Pull {
        #[arg(required = true)]
        names: Vec<String>,
        /// Hub revision (branch, tag or commit) for tags and `hf-hub:` repos.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Show a weights file's tensors and which registered models it fits.
    Inspect {
        weights: PathBuf,
        /// Print every tensor (default: the first 40).
        #[arg(long)]
        all: bool,
    },
    /// Run a model on an NCHW float32 .npy batch; write logits (or pooled features) as .npy.
    Infer {
        /// A registered name, a pretrained tag, or `tv:arch.WEIGHTS`.
        #[arg(long)]
        model: String,
        /// `pretrained` (an architecture's default tag) or `random` (scratch weights).
        #[arg(long, value_enum)]
        init: Option<pretrained::Init>,
        /// safetensors, or a torch.save .pth / .pt / .bin (read without running its pickle, on
        /// either backend). Optional for user models and pretrained names.
        #[arg(long)]
        weights: Option<PathBuf>,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Pooled pre-logits features instead of logits.
        #[arg(long)]
        features: bool,
        #[arg(long, value_enum, default_value_t = default_backend())]
        backend: BackendKind,
        /// Head size (default: the weights file's head, else the model's cfg).
        #[arg(long)]
        num_classes: Option<usize>,
        /// Images per forward.
        #[arg(long, default_value_t = 16, value_parser = at_least_one())]
        batch_size: usize,
        /// Apply what fits and report the rest instead of failing on a mismatch.
        #[arg(long)]
        lenient: bool,
    },
}

/// A count that must be at least 1 (`--batch-size 0` is refused, not read as 1).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Tch,
    Ndarray,
}

fn default_backend() -> BackendKind {
    if cfg!(feature = "tch") {
        BackendKind::Tch
    } else {
        BackendKind::Ndarray
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // a problem in the experiment file: one located line, exit status 2 (like a usage error)
        if let Some(c) = e.downcast_ref::<exp::ConfigError>() {
            eprintln!("error: {c}");
            std::process::exit(2);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn registry(dirs: &[PathBuf]) -> Result<Registry> {
    let (reg, skipped) = Registry::with_user_models(dirs)?;
    for s in skipped {
        eprintln!("warning: {s}");
    }
    Ok(reg)
}

fn run(cli: Cli) -> Result<()> {
    let route = |r: routes::Route, p: &Path| routes::run(r, p, &cli.models_dir, None);
    match &cli.command {
        Command::Extract { experiment } => return route(routes::Route::Extract, experiment),
        Command::Probe { experiment } => return route(routes::Route::Probe, experiment),
        Command::Reuse { experiment } => return route(routes::Route::Reuse, experiment),
        Command::Finetune { experiment, resume } => {
            return routes::run(
                routes::Route::Finetune,
                experiment,
                &cli.models_dir,
                resume.as_deref(),
            );
        }
        Command::Plan { experiment } => return route(routes::Route::Plan, experiment),
        Command::Eval { experiment } => return route(routes::Route::Eval, experiment),
        _ => {}
    }
    let reg = registry(&cli.models_dir)?;
    match cli.command {
        Command::Extract { .. }
        | Command::Probe { .. }
        | Command::Reuse { .. }
        | Command::Finetune { .. }
        | Command::Plan { .. }
        | Command::Eval { .. } => unreachable!("routed above"),
        Command::Predict {
            model,
            weights,
            init,
            top,
            backend,
            images,
        } => {
            let job = PredictJob {
                model,
                weights,
                init,
                top,
                images,
            };
            match backend {
                BackendKind::Ndarray => predict(&NdArray, &reg, &job),
                BackendKind::Tch => predict_tch(&reg, &job),
            }
        }
        Command::Embed {
            model,
            model_dir,
            input,
            output,
            column,
            format,
            batch_size,
            bf16,
            backend,
        } => {
            let format = match format {
                Some(f) => Some(
                    f.parse::<graft_text::TextFormat>()
                        .map_err(|e| anyhow::anyhow!("--format: {e}"))?,
                ),
                None => None,
            };
            let job = EmbedJob {
                model,
                model_dir,
                input,
                output,
                column,
                format,
                batch_size,
                bf16,
            };
            match backend {
                BackendKind::Ndarray => embed(&NdArray, &reg, &job),
                BackendKind::Tch => embed_tch(&reg, &job),
            }
        }
        Command::Models {
            pattern,
            pretrained: true,
        } => pretrained::list(&reg, pattern.as_deref()),
        Command::Models { pattern, .. } => models(&reg, pattern.as_deref()),
        Command::Pull { names, revision } => pretrained::pull(&reg, &names, revision.as_deref()),
        Command::Inspect { weights, all } => inspect(&reg, &weights, all),
        Command::Infer {
            model,
            init,
            weights,
            input,
            output,
            features,
            backend,
            num_classes,
            batch_size,
            lenient,
        } => {
            let job = InferJob {
                model,
                init,
                weights,
                input,
                output,
                features,
                num_classes,
                batch_size,
                lenient,
            };
            match backend {
                BackendKind::Ndarray => infer(&NdArray, &reg, &job),
                BackendKind::Tch => infer_tch(&reg, &job),
            }
        }
    }
}

/// Left-aligned text table.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    out.push_str(&line(w.iter().map(|n| "-".repeat(*n)).collect()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn millions(n: usize) -> String {
    format!("{:.2}M", n as f64 / 1e6)
}

fn models(reg: &Registry, pattern: Option<&str>) -> Result<()> {
    let entries = reg.list(pattern);
    if entries.is_empty() {
        bail!("no model matches {:?}", pattern.unwrap_or("*"));
    }
    let mut rows = Vec::new();
    for e in entries {
        let params = reg.param_count(&NdArray, &e.name)?;
        let s = e.cfg.input_size;
        rows.push(vec![
            e.name.clone(),
            e.arch.family().to_string(),
            millions(params),
            match &e.cfg.text {
                Some(t) => format!("<={} tokens", t.max_length),
                None => format!("{}x{}x{}", s[0], s[1], s[2]),
            },
            e.cfg.num_classes.to_string(),
            e.reference.clone(),
        ]);
    }
    out!(
        "{}",
        table(
            &["model", "family", "params", "input", "classes", "reference"],
            &rows
        )
    );
    Ok(())
}

fn inspect(reg: &Registry, path: &Path, all: bool) -> Result<()> {
    let file = WeightsFile::open(path)?;
    let idx = file.index();
    let mut dtypes: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in idx.values() {
        *dtypes.entry(t.dtype.as_str()).or_default() += 1;
    }
    let dt: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    outln!(
        "{}: {} tensors, {} parameters ({})",
        path.display(),
        idx.len(),
        millions(file.num_float_elements()),
        dt.join(", ")
    );
    let limit = if all { usize::MAX } else { 40 };
    let rows: Vec<Vec<String>> = idx
        .iter()
        .take(limit)
        .map(|(n, t)| vec![n.clone(), t.dtype.clone(), format!("{:?}", t.shape)])
        .collect();
    out!("{}", table(&["tensor", "dtype", "shape"], &rows));
    if idx.len() > limit {
        outln!("... {} more (--all shows every tensor)", idx.len() - limit);
    }
    let mut fits = Vec::new();
    for e in reg.list(None) {
        let r = reg.fit(&NdArray, &e.name, &file)?;
        let matched = r.applied.len();
        let total = matched
            + r.missing.len()
            + r.mismatched.len()
            + r.head_dropped.len()
            + r.defaulted.len();
        if total == 0 || matched * 2 < total {
            continue;
        }
        let note = if r.is_clean() && r.head_dropped.is_empty() {
            "loads as is".to_string()
        } else if r.is_clean() {
            let head = idx
                .iter()
                .find(|(k, _)| k.ends_with(&format!("{}.weight", e.cfg.classifier)))
                .map(|(_, t)| format!("with --num-classes {}", t.shape[0]))
                .unwrap_or_else(|| "with another head".into());
            format!("fits {head}")
        } else {
            format!(
                "{} missing, {} unexpected, {} wrong shape",
                r.missing.len(),
                r.unexpected.len(),
                r.mismatched.len()
            )
        };
        fits.push((
            r.is_clean(),
            matched as f64 / total as f64,
            vec![
                e.name.clone(),
                format!("{:.1} %", 100.0 * matched as f64 / total as f64),
                note,
            ],
        ));
    }
    fits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    if fits.is_empty() {
        outln!(
            "fits no registered model (under half of any model's tensors match by name and shape)"
        );
    } else {
        let rows: Vec<Vec<String>> = fits.into_iter().take(8).map(|f| f.2).collect();
        out!(
            "{}",
            table(&["fits model", "tensors matched", "how"], &rows)
        );
    }
    Ok(())
}

#[derive(Debug)]
struct InferJob {
    model: String,
    init: Option<pretrained::Init>,
    weights: Option<PathBuf>,
    input: PathBuf,
    output: PathBuf,
    features: bool,
    num_classes: Option<usize>,
    batch_size: usize,
    lenient: bool,
}

#[cfg(feature = "tch")]
fn infer_tch(reg: &Registry, job: &InferJob) -> Result<()> {
    infer(&graft_tch::Tch::cpu(), reg, job)
}

#[cfg(not(feature = "tch"))]
fn infer_tch(_reg: &Registry, _job: &InferJob) -> Result<()> {
    bail!("this graft was built without libtorch (--no-default-features); use --backend ndarray")
}

/// The head size of a weights file (its index only, nothing decoded), checked.
fn weights_num_classes(path: &Path, classifier: &str) -> Result<Option<usize>> {
    Ok(WeightsFile::open_index(path)?.head_classes(classifier)?)
}

#[derive(Debug)]
struct EmbedJob {
    model: String,
    model_dir: Option<PathBuf>,
    input: PathBuf,
    output: PathBuf,
    column: String,
    format: Option<graft_text::TextFormat>,
    batch_size: usize,
    bf16: bool,
}

#[cfg(feature = "tch")]
fn embed_tch(reg: &Registry, job: &EmbedJob) -> Result<()> {
    embed(&graft_tch::Tch::cpu(), reg, job)
}

#[cfg(not(feature = "tch"))]
fn embed_tch(_reg: &Registry, _job: &EmbedJob) -> Result<()> {
    bail!("this graft was built without libtorch (--no-default-features); use --backend ndarray")
}

fn embed<B: Backend>(b: &B, reg: &Registry, job: &EmbedJob) -> Result<()> {
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

fn infer<B: Backend>(b: &B, reg: &Registry, job: &InferJob) -> Result<()> {
    let (entry, entry_cfg) = reg.entry_of(&job.model)?;
    let mut reads = guard::Reads::default().file("--input", &job.input);
    if let Some(w) = &job.weights {
        reads = reads.file("--weights", w);
    }
    if let Some(w) = &entry.weights {
        // a user model: its directory's files
        reads = match w.parent() {
            Some(d) => reads.dir(&format!("{}'s files", job.model), d),
            None => reads.file(&format!("{}'s weights", job.model), w),
        };
    }
    reads.check_output(&job.output)?;
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
    let mut opts = ModelOptions::default().in_chans(c);
    if job.lenient {
        opts.load = LoadOptions::lenient();
    }
    if let Some(size) = entry.arch.img_size()
        && size != [h, w]
    {
        eprintln!(
            "note: {} is built for {}x{}; building it for {h}x{w} (position embeddings resampled on load)",
            job.model, size[0], size[1]
        );
        opts.img_size = Some([h, w]);
    }
    let start = pretrained::start(reg, &job.model, job.weights.clone(), job.init)?;
    let weights = job.weights.clone().or_else(|| entry.weights.clone());
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
    opts.num_classes = job.num_classes.or(file_classes);
    let t0 = Instant::now();
    let (model, report) = match (&weights, pickled) {
        (Some(p), Some(tensors)) => {
            let (mut m, _) = reg.create(
                b,
                &job.model,
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
            &job.model,
            &ModelOptions {
                weights: Some(p.clone()),
                ..opts.clone()
            },
        )?,
        (None, _) => {
            if start == pretrained::Start::Random {
                eprintln!(
                    "note: {} runs with random weights (init = random)",
                    job.model
                );
            }
            reg.create(
                b,
                &job.model,
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
        let xt = b.from_data(&chunk)?;
        let y = if job.features {
            model.forward_pooled(&xt, &ctx)?
        } else {
            model.forward(&xt, &ctx)?
        };
        let y = b.to_data(&y)?.to_f32();
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            bail!(
                "{}: non-finite output for input row {} (NaN or infinite weights; the load report lists them)",
                job.model,
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
        job.model,
        if job.features { "features" } else { "logits" },
        b.name(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Debug)]
struct PredictJob {
    model: String,
    weights: Option<PathBuf>,
    init: Option<pretrained::Init>,
    top: usize,
    images: Vec<PathBuf>,
}

#[cfg(feature = "tch")]
fn predict_tch(reg: &Registry, job: &PredictJob) -> Result<()> {
    predict(&graft_tch::Tch::cpu(), reg, job)
}

#[cfg(not(feature = "tch"))]
fn predict_tch(_reg: &Registry, _job: &PredictJob) -> Result<()> {
    bail!("this graft was built without libtorch (--no-default-features); use --backend ndarray")
}

/// Classifies image files with the model's eval transform (timm's: resize, center crop,
/// normalise, from the model's cfg; one-channel models see the mean of R, G, B).
fn predict<B: Backend>(b: &B, reg: &Registry, job: &PredictJob) -> Result<()> {
    use graft_data::Transform as _;
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
        let raw = graft_data::decode_raw(path, graft_core::limits::max_image_pixels()?)?;
        let s = if model.in_chans() == 1 {
            let s = raw.to_sample();
            let [_, h, w] = s.shape;
            let hw = h * w;
            let gray: Vec<f32> = (0..hw)
                .map(|i| (s.data[i] + s.data[hw + i] + s.data[2 * hw + i]) / 3.0)
                .collect();
            let s = graft_data::Sample {
                shape: [1, h, w],
                data: gray,
                label: 0,
            };
            tf.apply(s, &mut rng)
        } else {
            // the transform reads the 8-bit pixels: no full-size float copy of a large photo
            tf.apply_raw(raw, &mut rng)
        }
        .with_context(|| format!("{}", path.display()))?;
        let x = b.from_data(&TensorData::f32(
            &[1, s.shape[0], s.shape[1], s.shape[2]],
            s.data,
        )?)?;
        let p = b
            .to_data(&b.softmax(&model.forward(&x, &Ctx::eval())?, 1)?)?
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
