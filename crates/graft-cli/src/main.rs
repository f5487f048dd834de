//! graft-cli: the `graft` binary. Lists registered models and pretrained tags, fetches
//! pretrained weights ahead of time (`pull`), inspects weights files, runs
//! inference from `.npy` to `.npy` or on image files (`predict`), and runs the three transfer
//! routes from one TOML experiment file (`extract | probe | reuse | finetune | plan | eval
//! EXP.toml`), multi-task training (`multitask EXP.toml`, `[[task]]` tables) and ranking candidate
//! models before training (`rank EXP.toml`), each writing a run directory. Libtorch (`--backend tch`, default feature) or pure
//! Rust (`--backend ndarray`; a `--no-default-features` build links no libtorch at all and serves
//! the inference routes).
//!
//! Owns: argument parsing, the experiment file's schema and its located errors (`FILE:LINE:COL`,
//! exit status 2), run directories and reports, tables, `.npy` I/O, choosing the backend. Must
//! not know: how models compute or load (graft-zoo), how routes train or evaluate (the route
//! crates) — TOML lives here and only here.

#[macro_use]
mod guard;
#[macro_use]
mod exp;
mod clip;
mod export;
mod inference;
mod listing;
mod pretrained;
mod resume;
mod routes;
mod strategy;
mod valid;

use exp::BackendName;
use export::export as export_onnx;
pub(crate) use inference::weights_num_classes;
use inference::{EmbedJob, InferJob, ModelArgs, PredictJob, embed, infer, predict};
use listing::{inspect, models};
pub(crate) use listing::{millions, table};

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
use graft_zoo::Registry;

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
    /// Multi-task training: one trunk, a head per [[task]] (classification or regression, its
    /// own data, loss, weight and metric), the tasks sharing the steps by a sampling policy;
    /// exports the trunk with every head.
    Multitask { experiment: PathBuf },
    /// Accuracy, per-class accuracy and confusion matrix of a model on the experiment's data.
    Eval { experiment: PathBuf },
    /// Which pretrained model to start from, before any training: `[rank] candidates` scored on
    /// the target's train split by LogME (LEEP and NCE from a source head, kNN and linear probes
    /// on val), sorted by LogME with the time each took.
    Rank { experiment: PathBuf },
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
        backend: BackendName,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Sentence embeddings of texts with a text encoder (`minilm_l6`): one text per line of a
    /// .txt, or a column of a .csv / .tsv / .jsonl; writes an [n, dim] float32 .npy, row i for
    /// text i. With --clip, a CLIP's image or text embeddings: --input an image, a directory of
    /// images (rows in file-name order) or texts.
    Embed {
        #[arg(long)]
        model: String,
        /// --model is a CLIP in open_clip's layout: a timm CLIP tag
        /// (`vit_base_patch16_clip_224.openai`), `hf-hub:org/name[@revision]` or a directory of
        /// open_clip's files.
        #[arg(long)]
        clip: bool,
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
        backend: BackendName,
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
        #[command(flatten)]
        args: ModelArgs,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// Pooled pre-logits features instead of logits.
        #[arg(long)]
        features: bool,
        #[arg(long, value_enum, default_value_t = default_backend())]
        backend: BackendName,
        /// Images per forward.
        #[arg(long, default_value_t = 16, value_parser = at_least_one())]
        batch_size: usize,
    },
    /// Write a model as an ONNX graph (opset 18, traced from graft's own forward; BatchNorm
    /// folded) for ONNX Runtime and other ONNX consumers: logits, or with --features the pooled
    /// features, of a fixed input shape.
    Export {
        #[command(flatten)]
        args: ModelArgs,
        /// The .onnx file to write.
        #[arg(long)]
        output: PathBuf,
        /// Pooled pre-logits features instead of logits.
        #[arg(long)]
        features: bool,
        /// The input's C,H,W (default: the model's pretrained input size).
        #[arg(long, value_delimiter = ',')]
        input_size: Option<Vec<usize>>,
        /// The graph's batch size (its shapes are fixed).
        #[arg(long, default_value_t = 1, value_parser = at_least_one())]
        batch_size: usize,
        /// The backend the model is loaded on before tracing (the graph is the same).
        #[arg(long, value_enum, default_value_t = default_backend())]
        backend: BackendName,
    },
}

/// A count that must be at least 1 (`--batch-size 0` is refused, not read as 1).
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

fn default_backend() -> BackendName {
    BackendName::default_for_build()
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
        Command::Multitask { experiment } => return route(routes::Route::Multitask, experiment),
        Command::Eval { experiment } => return route(routes::Route::Eval, experiment),
        Command::Rank { experiment } => return route(routes::Route::Rank, experiment),
        _ => {}
    }
    let reg = registry(&cli.models_dir)?;
    match cli.command {
        Command::Extract { .. }
        | Command::Probe { .. }
        | Command::Reuse { .. }
        | Command::Finetune { .. }
        | Command::Plan { .. }
        | Command::Multitask { .. }
        | Command::Eval { .. }
        | Command::Rank { .. } => unreachable!("routed above"),
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
            on_backend!(backend, predict(&reg, &job))
        }
        Command::Embed {
            model,
            clip,
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
                clip,
                model_dir,
                input,
                output,
                column,
                format,
                batch_size,
                bf16,
            };
            on_backend!(backend, embed(&reg, &job))
        }
        Command::Models {
            pattern,
            pretrained: true,
        } => pretrained::list(&reg, pattern.as_deref()),
        Command::Models { pattern, .. } => models(&reg, pattern.as_deref()),
        Command::Pull { names, revision } => pretrained::pull(&reg, &names, revision.as_deref()),
        Command::Inspect { weights, all } => inspect(&reg, &weights, all),
        Command::Infer {
            args,
            input,
            output,
            features,
            backend,
            batch_size,
        } => {
            let job = InferJob {
                args,
                input,
                output,
                features,
                batch_size,
            };
            on_backend!(backend, infer(&reg, &job))
        }
        Command::Export {
            args,
            output,
            features,
            input_size,
            batch_size,
            backend,
        } => {
            let job = export::ExportJob {
                args,
                output,
                features,
                input_size,
                batch_size,
            };
            on_backend!(backend, export_onnx(&reg, &job))
        }
    }
}
