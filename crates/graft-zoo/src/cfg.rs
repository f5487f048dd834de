//! Pretrained configuration (timm's `pretrained_cfg`): what a model expects of its input and where
//! its first conv and classifier are, plus the user-model file (`config.json`, timm's layout).

use std::path::Path;

use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Resampling used by the eval transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Bilinear,
    Bicubic,
    Nearest,
}

/// How the eval transform fits an image to the input size (timm's `crop_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    /// Resize the shorter side to `size / crop_pct`, then center-crop.
    #[default]
    Center,
    /// Resize both sides to `size / crop_pct` (aspect not kept), then center-crop.
    Squash,
    /// Resize the longer side to `size / crop_pct`, then center-crop or pad with the mean.
    Border,
}

fn is_center(m: &CropMode) -> bool {
    *m == CropMode::Center
}

/// timm's pretrained cfg: the preprocessing a model was trained with and where its ends are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainedCfg {
    /// Classes of the pretrained head.
    pub num_classes: usize,
    /// `[channels, height, width]`.
    pub input_size: [usize; 3],
    pub mean: [f64; 3],
    pub std: [f64; 3],
    /// Center-crop fraction of the eval transform (resize to `input / crop_pct`, then crop).
    pub crop_pct: f64,
    pub interpolation: Interpolation,
    /// Parameter prefix of the first conv (adapted when `in_chans != 3`).
    pub first_conv: String,
    /// Parameter prefix of the classifier (dropped when `num_classes` changes).
    pub classifier: String,
    /// Where the reference weights come from (`torchvision`, `timm`, `graft` for user models).
    #[serde(default)]
    pub source: String,
    /// Class names, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// A text encoder's tokenisation and where its files come from (None for image models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextCfg>,
    /// The input size timm evaluates these weights at (`test_input_size`), when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_input_size: Option<[usize; 3]>,
    /// The crop fraction that goes with `test_input_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_crop_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "is_center")]
    pub crop_mode: CropMode,
    /// The pretrained weights the model started from (`resnet50.a1_in1k`,
    /// `tv:resnet50.IMAGENET1K_V2`, `hf-hub:org/name@rev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The weights' licence, as their publisher states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

/// What a text encoder reads and where its pretrained files live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextCfg {
    /// Truncation length in tokens, special tokens included (sentence-transformers'
    /// `max_seq_length`).
    pub max_length: usize,
    /// The tokenizer file inside the model directory.
    pub tokenizer: String,
    /// The weights file inside the model directory.
    pub weights: String,
    /// A Python package that ships the model directory (found in an installed environment,
    /// never downloaded), and the directory inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default)]
    pub package_dir: String,
}

/// ImageNet mean / std.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];
/// timm's "inception" mean / std (0.5), used by ViT's augreg weights.
pub const INCEPTION_MEAN: [f64; 3] = [0.5, 0.5, 0.5];
pub const INCEPTION_STD: [f64; 3] = [0.5, 0.5, 0.5];

/// The 1000 ImageNet-1k class names in index order (torchvision's list).
pub fn imagenet_labels() -> Vec<String> {
    include_str!("../data/imagenet_classes.txt")
        .lines()
        .map(str::to_string)
        .collect()
}

impl PretrainedCfg {
    /// A torchvision ImageNet-1k cfg (`source` "torchvision").
    pub(crate) fn torchvision(
        size: usize,
        crop_pct: f64,
        interp: Interpolation,
        first_conv: &str,
        classifier: &str,
    ) -> Self {
        Self::imagenet(
            size,
            crop_pct,
            interp,
            first_conv,
            classifier,
            "torchvision",
        )
    }
    /// An ImageNet-1k cfg at `size`² with the given ends and the ImageNet class names.
    pub fn imagenet(
        size: usize,
        crop_pct: f64,
        interp: Interpolation,
        first_conv: &str,
        classifier: &str,
        source: &str,
    ) -> Self {
        Self {
            num_classes: 1000,
            input_size: [3, size, size],
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            crop_pct,
            interpolation: interp,
            first_conv: first_conv.into(),
            classifier: classifier.into(),
            source: source.into(),
            labels: Some(imagenet_labels()),
            text: None,
            test_input_size: None,
            test_crop_pct: None,
            crop_mode: CropMode::Center,
            tag: None,
            license: None,
        }
    }
}

/// A user model's `config.json` (timm's hub layout): the registered architecture it is built
/// from, its head size and input channels, its pretrained cfg and optional label names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserModelConfig {
    /// A built-in architecture name (`resnet18_small`, `vit_tiny_patch16_224`, ...).
    pub architecture: String,
    pub num_classes: usize,
    #[serde(default = "three")]
    pub in_chans: usize,
    /// Input size the model was built for (ViT position embeddings depend on it); defaults to
    /// the cfg's `input_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub img_size: Option<[usize; 2]>,
    /// The classifier (default: the reference's Linear).
    #[serde(default, skip_serializing_if = "is_linear")]
    pub head: crate::model::HeadSpec,
    pub pretrained_cfg: PretrainedCfg,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_names: Option<Vec<String>>,
    /// A multi-task model's task heads (`tasks.<name>.*` in its weights), rebuilt on load.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<crate::model::TaskHead>,
    /// Set when timm wrote the file: what it states that graft checks once the architecture
    /// is known. Its head is then the architecture's reference head.
    #[serde(skip)]
    pub(crate) written_by_timm: Option<TimmSays>,
}

/// What a timm `config.json` states beyond graft's own config.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimmSays {
    /// `global_pool` (top level or in `model_args`).
    pub global_pool: Option<String>,
}

fn is_linear(h: &crate::model::HeadSpec) -> bool {
    *h == crate::model::HeadSpec::Linear
}

fn three() -> usize {
    3
}

impl UserModelConfig {
    /// Reads and validates a `config.json` — graft's own, or the one timm writes
    /// (`timm.models.push_to_hf_hub` / `save_for_hf`: it has `num_features`); errors name the file
    /// and the line / column or key.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let probe: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                path,
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        let cfg: Self = if probe.get("num_features").is_some() {
            crate::timm_config::read(path, &text)?
        } else {
            serde_json::from_str(&text).map_err(|e| {
                Error::format(
                    path,
                    format!("line {} column {}: {e}", e.line(), e.column()),
                )
            })?
        };
        cfg.check()
            .map_err(|(key, msg)| Error::format(path, format!("{key}: {msg}")))?;
        Ok(cfg)
    }
    /// The sizes and values a model would be built from, each within graft's bounds
    /// ([`graft_core::limits`]): `Err((key, what is wrong))`.
    pub fn check(&self) -> std::result::Result<(), (String, String)> {
        use graft_core::limits::{MAX_CLASSES, MAX_IN_CHANS, MAX_INPUT_SIDE};
        let e = |k: &str, m: String| Err((k.to_string(), m));
        if self.num_classes > MAX_CLASSES {
            return e(
                "num_classes",
                format!("{}: at most {MAX_CLASSES}", self.num_classes),
            );
        }
        if !(1..=MAX_IN_CHANS).contains(&self.in_chans) {
            return e(
                "in_chans",
                format!("{}: 1 to {MAX_IN_CHANS}", self.in_chans),
            );
        }
        if let Some(s) = self.img_size
            && s.iter().any(|&v| v == 0 || v > MAX_INPUT_SIDE)
        {
            return e("img_size", format!("{s:?}: sides 1 to {MAX_INPUT_SIDE}"));
        }
        if let Some(l) = &self.label_names
            && l.len() != self.num_classes
        {
            return e(
                "label_names",
                format!("{} names for num_classes = {}", l.len(), self.num_classes),
            );
        }
        self.pretrained_cfg
            .check()
            .map_err(|(k, m)| (format!("pretrained_cfg.{k}"), m))
    }
}

impl PretrainedCfg {
    /// Input sizes, crop fractions and normalisation within bounds: every side 1 to
    /// [`graft_core::limits::MAX_INPUT_SIDE`], crop fractions in (0, 4] (timm's range), mean
    /// finite, std finite and > 0 (a zero std divides by zero: NaN probabilities).
    pub fn check(&self) -> std::result::Result<(), (String, String)> {
        use graft_core::limits::MAX_INPUT_SIDE;
        let e = |k: &str, m: String| Err((k.to_string(), m));
        let sides = |s: &[usize; 3]| s[1..].iter().all(|&v| v > 0 && v <= MAX_INPUT_SIDE);
        if !sides(&self.input_size) {
            return e(
                "input_size",
                format!("{:?}: sides 1 to {MAX_INPUT_SIDE}", self.input_size),
            );
        }
        if let Some(t) = &self.test_input_size
            && !sides(t)
        {
            return e(
                "test_input_size",
                format!("{t:?}: sides 1 to {MAX_INPUT_SIDE}"),
            );
        }
        let frac = |f: f64| f.is_finite() && f > 0.0 && f <= 4.0;
        if !frac(self.crop_pct) {
            return e(
                "crop_pct",
                format!("{}: a fraction in (0, 4]", self.crop_pct),
            );
        }
        if let Some(f) = self.test_crop_pct
            && !frac(f)
        {
            return e("test_crop_pct", format!("{f}: a fraction in (0, 4]"));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return e("mean", format!("{:?}: every value finite", self.mean));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return e("std", format!("{:?}: every value finite and > 0", self.std));
        }
        Ok(())
    }
}

impl UserModelConfig {
    /// Writes the file atomically (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("UserModelConfig::write", e.to_string()))?;
        graft_backend::safetensors_io::write_atomic(path, text.as_bytes())
    }
}
