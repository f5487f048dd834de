//! The experiment file: one TOML schema for every route — `[model]`, `[data]`, `[strategy]`
//! (the command's own keys), `[train]`, `[output]`. Unknown keys, wrong types, missing files,
//! unknown models and invalid values are reported as `FILE:LINE:COLUMN: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use toml::Spanned;

pub use crate::strategy::*;

/// A problem in the experiment file, located (`line` 0: the file as a whole).
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.msg);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.msg
        )
    }
}

impl std::error::Error for ConfigError {}

/// The parsed file, its text and where it lives (relative paths resolve against its directory).
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            msg: format!("cannot read the experiment file: {e}"),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }
    /// An error at byte range `span` (line and column 1-based, columns in characters).
    pub fn error(&self, span: Range<usize>, msg: impl Into<String>) -> ConfigError {
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigError {
            file: self.path.clone(),
            line,
            col,
            msg: msg.into(),
        }
    }
    /// The error at the start of a top-level table (`[name]`, else its first `[name.sub]`), or
    /// line 1.
    pub fn table_error(&self, table: &str, msg: impl Into<String>) -> ConfigError {
        let header = format!("[{table}]");
        let sub = format!("[{table}.");
        let at = self
            .text
            .find(&header)
            .or_else(|| self.text.find(&sub))
            .unwrap_or(0);
        self.error(at..at, msg)
    }
    pub fn parse<S: DeserializeOwned + Default>(&self) -> Result<Experiment<S>, ConfigError> {
        self.parse_as()
    }
    /// The file as any schema (`graft rank`'s [`RankFile`]).
    pub fn parse_as<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            self.error(span, e.message().trim().to_string())
        })
    }
    /// `p` relative to the experiment file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or_else(|| Path::new(".")).join(p)
        }
    }
    /// A path key that must exist.
    pub fn existing(&self, key: &str, p: &Spanned<PathBuf>) -> Result<PathBuf, ConfigError> {
        let full = self.resolve(p.get_ref());
        if full.exists() {
            Ok(full)
        } else {
            Err(self.error(
                p.span(),
                format!("{key}: {} does not exist", full.display()),
            ))
        }
    }
}

/// The whole file; `S` is the command's `[strategy]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment<S> {
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub strategy: S,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub output: OutputSection,
    /// `graft multitask`: the tasks (`[[task]]` tables), each with its own data.
    #[serde(default, rename = "task")]
    pub tasks: Vec<Spanned<TaskSection>>,
}

/// `graft rank`'s file: `[rank]` with the usual `[data]`, `[train]` (its seed splits the data)
/// and `[output]`; no `[model]` — the candidates are the models.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RankFile {
    pub rank: RankSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub output: OutputSection,
}

/// One `[[task]]` of `graft multitask`: a head on the shared trunk, its data (`[task.data]`,
/// the `[data]` schema), loss, weight and headline metric.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    /// Letters, digits, `_`, `-`: the head's parameters are `tasks.<name>.*`.
    pub name: Spanned<String>,
    pub data: DataSection,
    /// `classification` (the data's labels) or `regression` (the data's values: VADER's mean
    /// valence).
    #[serde(default)]
    pub kind: TaskKindName,
    /// `cross_entropy` (classification), `mse` (regression's default) or `smooth_l1`.
    pub loss: Option<Spanned<TaskLossName>>,
    /// smooth-L1's β (default 1; checked > 0 where it stands).
    pub beta: Option<Spanned<f64>>,
    /// The weight of the task's loss.
    #[serde(default = "one_f", deserialize_with = "crate::valid::non_negative")]
    pub weight: f64,
    /// `top1` / `top5` (classification), `mae` / `rmse` / `r2` (regression).
    pub metric: Option<Spanned<graft_train::TaskMetric>>,
    /// The task's head: `linear` or `mlp` (with `hidden`, `dropout`).
    #[serde(default)]
    pub head: HeadName,
    #[serde(default, deserialize_with = "crate::valid::widths")]
    pub hidden: Vec<usize>,
    #[serde(default, deserialize_with = "crate::valid::unit")]
    pub dropout: f64,
}

/// What a task predicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKindName {
    #[default]
    Classification,
    Regression,
}

/// A task's loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskLossName {
    CrossEntropy,
    Mse,
    SmoothL1,
}

/// The tensor backend, on the command line (`--backend`) and in the file (`[model] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendName {
    Tch,
    Ndarray,
}

impl BackendName {
    /// libtorch when this graft has it, else the pure-Rust backend.
    pub fn default_for_build() -> Self {
        if cfg!(feature = "tch") {
            Self::Tch
        } else {
            Self::Ndarray
        }
    }
}

/// Runs on a [`BackendName`]'s backend: `on_backend!(name, f(args))` calls `f(&backend, args)`;
/// `on_backend!(name, recv.method(args))` calls `recv.method(&backend, args)`. The one place a
/// backend is chosen; a build without libtorch refuses `tch` here.
macro_rules! on_backend {
    ($name:expr, $recv:ident . $m:ident ( $($arg:expr),* )) => {
        on_backend!(@pick $name, |b| $recv.$m(b $(, $arg)*))
    };
    ($name:expr, $f:ident ( $($arg:expr),* )) => {
        on_backend!(@pick $name, |b| $f(b $(, $arg)*))
    };
    (@pick $name:expr, |$b:ident| $call:expr) => {
        match $name {
            $crate::exp::BackendName::Ndarray => {
                let $b = &graft_ndarray::NdArray;
                $call
            }
            $crate::exp::BackendName::Tch => {
                #[cfg(feature = "tch")]
                {
                    let $b = &graft_tch::Tch::cpu();
                    $call
                }
                #[cfg(not(feature = "tch"))]
                {
                    anyhow::bail!(
                        "this graft was built without libtorch (--no-default-features); use --backend ndarray"
                    )
                }
            }
        }
    };
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A registered model (built-in or a user model under `models_dir`), a pretrained tag
    /// (`resnet50.a1_in1k`), `hf-hub:org/name[@revision]` or `tv:resnet50.IMAGENET1K_V2`.
    pub name: Spanned<String>,
    /// Load the name's pretrained weights (default: yes for tags, `hf-hub:`, `tv:` and user
    /// models; an architecture gets its default tag).
    pub pretrained: Option<Spanned<bool>>,
    /// `"random"`: a model trained from scratch (random weights, as the reference initialises
    /// them); `"pretrained"`: as `pretrained = true`. A bare architecture needs one of them or
    /// `weights`.
    pub init: Option<Spanned<crate::pretrained::Init>>,
    /// The Hub revision (branch, tag or commit) of a tag's or `hf-hub:` repo's files.
    pub revision: Option<String>,
    /// safetensors weights (optional for user models, which carry theirs).
    pub weights: Option<Spanned<PathBuf>>,
    /// Target classes (default: the data's).
    #[serde(default, deserialize_with = "crate::valid::opt_classes")]
    pub num_classes: Option<usize>,
    /// Input channels (default: the data's).
    #[serde(default, deserialize_with = "crate::valid::opt_in_chans")]
    pub in_chans: Option<usize>,
    /// Directories of user models.
    #[serde(default)]
    pub models_dir: Vec<Spanned<PathBuf>>,
    /// `tch` (default when built with libtorch) or `ndarray` (inference routes only).
    pub backend: Option<Spanned<BackendName>>,
    /// A text model's directory (weights + tokenizer.json); default: the directory its Python
    /// package ships, found in an installed environment.
    pub dir: Option<Spanned<PathBuf>>,
    /// Load what fits and report the rest instead of failing on a mismatch.
    #[serde(default)]
    pub lenient: bool,
    /// `name` is a CLIP in open_clip's layout (a timm CLIP tag whose repo carries open_clip's
    /// files, `hf-hub:org/name[@revision]`, or a directory of them): its image tower is the
    /// trunk, and `head = "zero_shot"` classifies images by class name through its text tower.
    #[serde(default)]
    pub clip: Option<Spanned<bool>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DigitsSection {
    /// Digit classes to keep (default: all ten), relabelled 0.. in this order.
    pub classes: Option<Spanned<Vec<usize>>>,
    /// Train / val / test fractions (stratified, seeded).
    pub split: Option<Spanned<Vec<f64>>>,
    /// Labelled training images per class (default: all of the train split).
    #[serde(default, deserialize_with = "crate::valid::opt_at_least_one")]
    pub k_shot: Option<usize>,
    /// The train split's images left out by `k_shot` become unlabelled data (`[train.semi]`);
    /// their labels are never read.
    #[serde(default)]
    pub unlabeled: bool,
    #[serde(default)]
    pub seed: u64,
}

/// Labelled text files (`.csv`, `.tsv`, `.jsonl`): train / val / test files, or one `file`
/// split by `split`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TextSection {
    pub train: Option<Spanned<PathBuf>>,
    pub val: Option<Spanned<PathBuf>>,
    pub test: Option<Spanned<PathBuf>>,
    /// One file for every split (with `split`).
    pub file: Option<Spanned<PathBuf>>,
    /// The text column (CSV / TSV header) or key (JSONL).
    pub text_column: Option<String>,
    pub label_column: Option<String>,
    /// `csv`, `tsv`, `jsonl` or `txt` for files whose extension does not say.
    pub format: Option<Spanned<String>>,
    /// Train / val / test fractions of `file` (stratified, seeded).
    pub split: Option<Spanned<Vec<f64>>>,
    /// Labelled training texts per class (default: all of the train split).
    #[serde(default, deserialize_with = "crate::valid::opt_at_least_one")]
    pub k_shot: Option<usize>,
    #[serde(default)]
    pub seed: u64,
}

/// The VADER sentiment lexicon as a polarity task (label = sign of the mean valence).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaderSection {
    /// `vader_lexicon.txt` (default: the installed `vadersentiment` package's).
    pub path: Option<Spanned<PathBuf>>,
    /// Entries with |mean valence| <= threshold are left out.
    #[serde(default, deserialize_with = "crate::valid::non_negative")]
    pub threshold: f64,
    /// Train / val / test fractions (default [0.7, 0.1, 0.2]).
    pub split: Option<Spanned<Vec<f64>>>,
    #[serde(default, deserialize_with = "crate::valid::opt_at_least_one")]
    pub k_shot: Option<usize>,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// scikit-learn's real digits, shipped with graft (instead of folders).
    pub digits: Option<DigitsSection>,
    /// Labelled text files, for a text model.
    pub text: Option<TextSection>,
    /// The VADER lexicon, for a text model.
    pub vader: Option<VaderSection>,
    /// ImageFolder roots (one sub-directory per class).
    pub train: Option<Spanned<PathBuf>>,
    pub val: Option<Spanned<PathBuf>>,
    pub test: Option<Spanned<PathBuf>>,
    /// Images per batch.
    #[serde(
        default = "default_batch",
        deserialize_with = "crate::valid::at_least_one"
    )]
    pub batch_size: usize,
    /// Resize / crop image folders to this size (default: the model's input size).
    #[serde(default, deserialize_with = "crate::valid::opt_side")]
    pub img_size: Option<usize>,
    /// The most pixels one image file may decode to (0: no bound; default
    /// `GRAFT_MAX_IMAGE_PIXELS`, else PIL's 89,478,485): larger files are refused as possible
    /// decompression bombs.
    pub max_image_pixels: Option<u64>,
    /// A documented shift of the target images, applied to val and test (`contrast:0.25`,
    /// `blur:1.0`, `noise:0.3`, `invert`, `rot90`).
    pub shift: Option<Spanned<String>>,
    /// Apply the shift to the training images too (a shifted target domain).
    #[serde(default)]
    pub shift_train: bool,
    /// Random augmentation on the training images (the model's timm train transform for
    /// folders; off by default).
    #[serde(default)]
    pub augment: bool,
    /// Unlabelled images for `[train.semi]`: every image under this directory (class folders or
    /// not; any labels they imply are never read).
    pub unlabeled: Option<Spanned<PathBuf>>,
}

fn default_batch() -> usize {
    64
}

impl Default for DataSection {
    fn default() -> Self {
        Self {
            digits: None,
            text: None,
            vader: None,
            train: None,
            val: None,
            test: None,
            batch_size: default_batch(),
            img_size: None,
            max_image_pixels: None,
            shift: None,
            shift_train: false,
            augment: false,
            unlabeled: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    #[serde(default, deserialize_with = "crate::valid::opt_at_least_one")]
    pub epochs: Option<usize>,
    /// The head's (top) learning rate.
    #[serde(default, deserialize_with = "crate::valid::opt_positive")]
    pub lr: Option<f64>,
    #[serde(default, deserialize_with = "crate::valid::opt_non_negative")]
    pub weight_decay: Option<f64>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default, deserialize_with = "crate::valid::unit")]
    pub label_smoothing: f64,
    #[serde(default, deserialize_with = "crate::valid::opt_positive")]
    pub clip_grad_norm: Option<f64>,
    #[serde(default = "one", deserialize_with = "crate::valid::at_least_one")]
    pub accumulate: usize,
    #[serde(default, deserialize_with = "crate::valid::opt_unit")]
    pub ema_decay: Option<f64>,
    /// A progress bar on stderr (hidden when stderr is not a terminal).
    #[serde(default = "yes")]
    pub progress: bool,
    /// Semi-supervised fine-tuning on `[data] unlabeled` / `[data.digits] unlabeled`.
    pub semi: Option<Spanned<SemiSection>>,
}

/// `[train.semi]`: pseudo-labelling (Lee 2013) or FixMatch (Sohn et al. 2020).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SemiSection {
    pub method: SemiMethodName,
    /// Confidence a prediction needs to become a target (τ).
    #[serde(default = "tau", deserialize_with = "crate::valid::unit")]
    pub threshold: f64,
    /// Weight of the unlabelled loss (λ_u).
    #[serde(default = "one_f", deserialize_with = "crate::valid::non_negative")]
    pub weight: f64,
    /// Unlabelled images a step per labelled one (μ).
    #[serde(default = "seven", deserialize_with = "crate::valid::at_least_one")]
    pub mu: usize,
    /// Pseudo-labelling: weight of Arazo et al.'s class-balance term (0: none).
    #[serde(default, deserialize_with = "crate::valid::non_negative")]
    pub class_balance: f64,
}

/// A semi-supervised method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SemiMethodName {
    PseudoLabel,
    Fixmatch,
}

fn tau() -> f64 {
    0.95
}
fn one_f() -> f64 {
    1.0
}
fn seven() -> usize {
    7
}

fn one() -> usize {
    1
}
pub(crate) fn yes() -> bool {
    true
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            epochs: None,
            lr: None,
            weight_decay: None,
            seed: 0,
            label_smoothing: 0.0,
            clip_grad_norm: None,
            accumulate: 1,
            ema_decay: None,
            progress: true,
            semi: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Parent of the run directories.
    #[serde(default = "default_runs")]
    pub dir: PathBuf,
    /// Run directory name (default: the experiment file's stem); an existing one is never
    /// overwritten — `-2`, `-3`, ... are appended.
    #[serde(default, deserialize_with = "crate::valid::opt_run_name")]
    pub name: Option<String>,
    /// Feature cache (default: `<dir>/feature-cache`, shared by runs).
    pub cache: Option<PathBuf>,
    /// Save the trained model (trunk + head) as a user model in `<run>/model`.
    #[serde(default = "yes")]
    pub export: bool,
}

fn default_runs() -> PathBuf {
    PathBuf::from("runs")
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            dir: default_runs(),
            name: None,
            cache: None,
            export: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source {
        Source {
            path: PathBuf::from("exp.toml"),
            text: text.to_string(),
        }
    }

    #[test]
    fn errors_carry_line_and_column() {
        let s = src("[model]\nname = \"resnet18\"\n\n[train]\nepoch = 3\n");
        let e = s.parse::<NoStrategy>().expect_err("unknown key");
        assert_eq!((e.line, e.col), (5, 1), "{e}");
        assert!(
            e.to_string()
                .starts_with("exp.toml:5:1: unknown field `epoch`"),
            "{e}"
        );
        let s = src("[model]\nname = \"resnet18\"\n[train]\nepochs = \"three\"\n");
        let e = s.parse::<NoStrategy>().expect_err("type");
        assert_eq!(e.line, 4, "{e}");
        assert!(e.msg.contains("invalid type"), "{e}");
        let s = src("[model]\nname = \"x\"\n[strategy]\nkind = \"lpft\"\nfreeze = 2\n");
        let x = s.parse::<FinetuneStrategy>().expect("parses");
        let m = x.strategy.misplaced();
        assert_eq!(m.len(), 1);
        let e = s.error(m[0].1.clone(), "misplaced");
        assert_eq!((e.line, e.col), (5, 10));
        let s = src("[model]\nname = \"x\"\n[strategy]\nfreeze = \"auto\"\n");
        let x = s.parse::<FinetuneStrategy>().expect("parses");
        assert_eq!(
            x.strategy.freeze.map(Spanned::into_inner),
            Some(FreezeValue::Word("auto".into()))
        );
    }
}
