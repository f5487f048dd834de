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
        if probe.get("num_features").is_some() {
            return crate::timm_config::read(path, &text);
        }
        let cfg: Self = serde_json::from_str(&text).map_err(|e| {
            Error::format(
                path,
                format!("line {} column {}: {e}", e.line(), e.column()),
            )
        })?;
        if let Some(l) = &cfg.label_names
            && l.len() != cfg.num_classes
        {
            return Err(Error::format(
                path,
                format!(
                    "label_names has {} names for num_classes = {}",
                    l.len(),
                    cfg.num_classes
                ),
            ));
        }
        Ok(cfg)
    }
    /// Writes the file atomically (pretty JSON).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("UserModelConfig::write", e.to_string()))?;
        graft_backend::safetensors_io::write_atomic(path, text.as_bytes())
    }
}
