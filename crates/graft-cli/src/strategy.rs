//! The `[strategy]` table of each command: what `graft extract`, `probe`, `reuse` and
//! `finetune` / `plan` take (`graft eval` takes none), checked as the file is parsed.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// The head of `graft extract`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExtractHead {
    #[default]
    Logistic,
    Linear,
    Mlp,
    Prototype,
    Knn,
    /// A text model's zero-shot classifier: cosine to the embedded class descriptions of
    /// `[strategy.zero_shot]` (no training labels used).
    ZeroShot,
}

/// What runs the trunk of `graft extract`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ExtractEngine {
    /// The model's backend (`[model] backend`).
    #[default]
    Backend,
    /// The model traced to ONNX and run by ONNX Runtime (found through `ORT_DYLIB_PATH` or the
    /// `onnxruntime` wheel of `$VIRTUAL_ENV`): fp32 image models, pooled features.
    Onnxruntime,
    /// As `onnxruntime`, on the int8 graph (static post-training quantisation: per-channel int8
    /// weights, uint8 activations calibrated on the first `calibration_images` train images).
    OnnxruntimeInt8,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractStrategy {
    #[serde(default)]
    pub head: ExtractHead,
    /// `pooled` (default) or a trunk stage's name.
    #[serde(default = "pooled")]
    pub features: Spanned<String>,
    /// Logistic regression's L2 penalty (scikit-learn's 1 / C).
    #[serde(default = "alpha", deserialize_with = "crate::valid::positive")]
    pub alpha: f64,
    #[serde(default = "iters")]
    pub max_iterations: u64,
    #[serde(default)]
    pub standardize: bool,
    /// kNN's k.
    #[serde(default = "five", deserialize_with = "crate::valid::at_least_one")]
    pub k: usize,
    /// MLP hidden widths.
    #[serde(default, deserialize_with = "crate::valid::widths")]
    pub hidden: Vec<usize>,
    #[serde(default, deserialize_with = "crate::valid::unit")]
    pub dropout: f64,
    /// Class name → descriptions (`negative = ["a negative word"]`), for `head = "zero_shot"`.
    pub zero_shot: Option<Spanned<BTreeMap<String, Vec<String>>>>,
    /// A CLIP's prompt templates for `head = "zero_shot"` (`{}` is the class name): a list, or
    /// `"imagenet"` — CLIP's 80 ImageNet templates, the default.
    pub templates: Option<Spanned<Templates>>,
    /// Class → the name its prompts say (`n01440764 = "tench"`; default: the class itself).
    pub class_names: Option<Spanned<BTreeMap<String, String>>>,
    /// Few-shot episodes on a split's features (`[strategy.episodes]`), beside the head.
    pub episodes: Option<EpisodesSection>,
    /// What runs the trunk pass: `backend` (default), `onnxruntime` or `onnxruntime_int8`.
    pub engine: Option<Spanned<ExtractEngine>>,
    /// How many train images calibrate `onnxruntime_int8` (default 256).
    pub calibration_images: Option<Spanned<usize>>,
}

/// `[strategy.episodes]`: N-way K-shot episodes with mean and 95 % confidence interval.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EpisodesSection {
    #[serde(default = "five")]
    pub ways: usize,
    #[serde(default = "default_shots")]
    pub shots: Vec<usize>,
    #[serde(default = "fifteen")]
    pub queries: usize,
    #[serde(default = "six_hundred")]
    pub episodes: usize,
    /// `prototype` and / or `logistic`.
    #[serde(default = "both_heads")]
    pub heads: Vec<EpisodeHeadName>,
    /// The split the episodes are drawn from (default: test).
    #[serde(default = "test_split")]
    pub split: Spanned<String>,
    #[serde(default)]
    pub seed: u64,
}

/// A few-shot head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EpisodeHeadName {
    Prototype,
    Logistic,
}

fn default_shots() -> Vec<usize> {
    vec![1, 5]
}
fn fifteen() -> usize {
    15
}
fn six_hundred() -> usize {
    600
}
fn both_heads() -> Vec<EpisodeHeadName> {
    vec![EpisodeHeadName::Prototype, EpisodeHeadName::Logistic]
}
fn test_split() -> Spanned<String> {
    Spanned::new(0..0, "test".to_string())
}

/// Prompt templates: a named set or a list.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Templates {
    /// `"imagenet"`.
    Set(String),
    List(Vec<String>),
}

fn pooled() -> Spanned<String> {
    Spanned::new(0..0, "pooled".to_string())
}
fn alpha() -> f64 {
    1.0
}
fn iters() -> u64 {
    100
}
fn five() -> usize {
    5
}

impl Default for ExtractStrategy {
    fn default() -> Self {
        Self {
            head: ExtractHead::default(),
            features: pooled(),
            alpha: alpha(),
            max_iterations: iters(),
            standardize: false,
            k: five(),
            hidden: Vec::new(),
            dropout: 0.0,
            zero_shot: None,
            templates: None,
            class_names: None,
            episodes: None,
            engine: None,
            calibration_images: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeStrategy {
    #[serde(default = "tolerance", deserialize_with = "crate::valid::non_negative")]
    pub tolerance: f64,
    pub stages: Option<Spanned<Vec<String>>>,
    #[serde(default = "alpha", deserialize_with = "crate::valid::positive")]
    pub alpha: f64,
    #[serde(default = "iters")]
    pub max_iterations: u64,
}

fn tolerance() -> f64 {
    0.01
}

impl Default for ProbeStrategy {
    fn default() -> Self {
        Self {
            tolerance: tolerance(),
            stages: None,
            alpha: alpha(),
            max_iterations: iters(),
        }
    }
}

/// A source class, by name or index.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ClassRef {
    Index(usize),
    Name(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReuseStrategy {
    /// Target class → source classes (names or indices); default: identity by name.
    pub label_map: Option<Spanned<BTreeMap<String, Vec<ClassRef>>>>,
    /// Re-estimate BatchNorm statistics on the unlabelled target images.
    #[serde(default = "crate::exp::yes")]
    pub reestimate_bn: bool,
    /// At most this many batches for the re-estimation.
    #[serde(default, deserialize_with = "crate::valid::opt_at_least_one")]
    pub bn_batches: Option<usize>,
}

impl Default for ReuseStrategy {
    fn default() -> Self {
        Self {
            label_map: None,
            reestimate_bn: true,
            bn_batches: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FinetuneKind {
    /// The classic recipe (`graft_finetune::Recipe`).
    #[default]
    Recipe,
    /// fastai's fine_tune.
    Lpft,
    /// Gradual unfreezing.
    Gradual,
}

/// `freeze = 3` or `freeze = "auto"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum FreezeValue {
    Stages(usize),
    Word(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BnName {
    #[default]
    Frozen,
    TrainAffineOnly,
    Train,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HeadName {
    #[default]
    Linear,
    Mlp,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneStrategy {
    #[serde(default)]
    pub kind: FinetuneKind,
    #[serde(default)]
    pub head: HeadName,
    #[serde(default, deserialize_with = "crate::valid::widths")]
    pub hidden: Vec<usize>,
    #[serde(default, deserialize_with = "crate::valid::unit")]
    pub dropout: f64,
    /// Bottom stages' LR = lr / lr_mult (default 10; fastai's fine_tune: 100).
    #[serde(default, deserialize_with = "crate::valid::opt_positive")]
    pub lr_mult: Option<f64>,
    // recipe
    pub freeze: Option<Spanned<FreezeValue>>,
    pub patience: Option<Spanned<usize>>,
    pub bn: Option<Spanned<BnName>>,
    /// The probe's tolerance under `freeze = "auto"`.
    pub tolerance: Option<Spanned<f64>>,
    // lpft
    pub freeze_epochs: Option<Spanned<usize>>,
    pub pct_start: Option<Spanned<f64>>,
    pub div: Option<Spanned<f64>>,
    // gradual
    pub min_frozen: Option<Spanned<usize>>,
}

impl FinetuneStrategy {
    /// Keys set in the file that the chosen kind does not use, with their spans.
    pub fn misplaced(&self) -> Vec<(&'static str, Range<usize>, &'static str)> {
        let mut v = Vec::new();
        let mut check =
            |set: Option<Range<usize>>, key: &'static str, kind: &'static str, ok: bool| {
                if let (Some(span), false) = (set, ok) {
                    v.push((key, span, kind));
                }
            };
        let recipe = self.kind == FinetuneKind::Recipe;
        let lpft = self.kind == FinetuneKind::Lpft;
        let gradual = self.kind == FinetuneKind::Gradual;
        check(
            self.freeze.as_ref().map(Spanned::span),
            "freeze",
            "recipe",
            recipe,
        );
        check(
            self.patience.as_ref().map(Spanned::span),
            "patience",
            "recipe",
            recipe,
        );
        check(self.bn.as_ref().map(Spanned::span), "bn", "recipe", recipe);
        check(
            self.tolerance.as_ref().map(Spanned::span),
            "tolerance",
            "recipe",
            recipe,
        );
        check(
            self.freeze_epochs.as_ref().map(Spanned::span),
            "freeze_epochs",
            "lpft",
            lpft,
        );
        check(
            self.pct_start.as_ref().map(Spanned::span),
            "pct_start",
            "lpft",
            lpft,
        );
        check(self.div.as_ref().map(Spanned::span), "div", "lpft", lpft);
        check(
            self.min_frozen.as_ref().map(Spanned::span),
            "min_frozen",
            "gradual",
            gradual,
        );
        v
    }
}

/// `graft eval` takes no strategy keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoStrategy {}

/// `graft multitask`'s `[strategy]`: how the tasks share the steps, and the plan over the shared
/// trunk.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MultitaskStrategy {
    /// `round_robin` (default), `proportional` (to the tasks' training samples) or
    /// `temperature` (∝ samples^(1/temperature)).
    #[serde(default)]
    pub sampling: SamplingName,
    /// `sampling = "temperature"`'s T.
    pub temperature: Option<Spanned<f64>>,
    /// Bottom trunk stages frozen (LR 0).
    #[serde(default)]
    pub freeze: usize,
    /// Each stage below the heads trains at this factor of the one above (discriminative LRs;
    /// default 1: one LR).
    #[serde(default, deserialize_with = "crate::valid::opt_positive")]
    pub lr_mult: Option<f64>,
    /// Steps of an epoch (default: the tasks' training batches together).
    #[serde(default, deserialize_with = "crate::valid::opt_at_least_one")]
    pub steps_per_epoch: Option<usize>,
}

/// A task-sampling policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingName {
    #[default]
    RoundRobin,
    Proportional,
    Temperature,
}

/// `graft rank`'s `[rank]`: the candidates, what features they are scored on, the probes, and
/// what every candidate shares (the backend, user models, input channels).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RankSection {
    /// Pretrained tags (`resnet50.a1_in1k`), `hf-hub:` / `tv:` names, user models, wildcards
    /// over the cached tags and the user models (`resnet*.a1_in1k`), or tables
    /// (`{ name = "resnet18_small", init = "random", label = "scratch" }`).
    pub candidates: Spanned<Vec<Spanned<CandidateEntry>>>,
    /// `pooled` (default) or a trunk stage's name, for every candidate without its own.
    #[serde(default = "pooled")]
    pub features: Spanned<String>,
    /// Neighbours of the kNN probe on the val split (0: no kNN probe).
    #[serde(default = "twenty")]
    pub knn_k: usize,
    /// The linear probe (a logistic head fitted on train, scored on val).
    #[serde(default = "crate::exp::yes")]
    pub linear: bool,
    /// The linear probe's L2 penalty (scikit-learn's 1 / C).
    #[serde(default = "alpha", deserialize_with = "crate::valid::positive")]
    pub alpha: f64,
    #[serde(default = "iters")]
    pub max_iterations: u64,
    /// `tch` (default when built with libtorch) or `ndarray`: ranking trains nothing.
    pub backend: Option<Spanned<crate::exp::BackendName>>,
    /// Directories of user models.
    #[serde(default)]
    pub models_dir: Vec<Spanned<std::path::PathBuf>>,
    /// Input channels (default: the data's).
    #[serde(default, deserialize_with = "crate::valid::opt_in_chans")]
    pub in_chans: Option<usize>,
}

fn twenty() -> usize {
    20
}

/// One entry of `[rank] candidates`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum CandidateEntry {
    /// A name or a wildcard.
    Name(String),
    Table(CandidateTable),
}

// By hand rather than `untagged`: a table's own errors (an unknown key, a wrong type) are said as
// they are, not as "did not match any variant".
impl<'de> Deserialize<'de> for CandidateEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = CandidateEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a model name, a wildcard, or a table with `name`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CandidateEntry::Name(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                CandidateTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(CandidateEntry::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// A candidate with settings of its own.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateTable {
    /// As `[model] name`.
    pub name: String,
    /// The name in the table (default: `name`); labels must differ.
    pub label: Option<String>,
    /// `random` (a scratch trunk) or `pretrained`.
    pub init: Option<crate::pretrained::Init>,
    /// safetensors weights for `name`'s architecture.
    pub weights: Option<std::path::PathBuf>,
    /// The Hub revision of a tag's files.
    pub revision: Option<String>,
    /// `pooled` or a trunk stage (default: `[rank] features`).
    pub features: Option<String>,
    /// A text model's directory.
    pub dir: Option<std::path::PathBuf>,
}
