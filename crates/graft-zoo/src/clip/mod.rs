//! CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision"): an image tower and a text tower trained so that an image and its caption land
//! close in one embedding space — what zero-shot classification by class names reads.
//!
//! graft builds a CLIP from open_clip's configuration ([`ClipConfig`]) and loads open_clip's full
//! checkpoint (`open_clip_model.safetensors` / `open_clip_pytorch_model.bin`): the image tower's
//! `visual.*` keys are renamed onto timm's ViT as timm's `_convert_openai_clip` does
//! (`visual.conv1` → `patch_embed.proj`, `visual.transformer.resblocks.N` → `blocks.N`, ...,
//! `visual.proj` transposed into a bias-free `head`), so the image tower *is* a zoo ViT — the
//! same model `vit_base_patch16_clip_224.openai` builds, usable as a trunk by every route — and its
//! head is the projection into the shared space; the text tower is
//! [`crate::families::clip_text::ClipText`] with open_clip's own names.

mod config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use graft_backend::{Backend, Ctx, TensorData};
use graft_core::{Error, Result};

pub use config::{ClipConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};

use crate::cfg::{Interpolation, PretrainedCfg};
use crate::load::{LoadOptions, LoadReport, WeightsFile};
use crate::model::{Arch, Model, ModelOptions};

/// What loading an open_clip checkpoint did to each tower.
#[derive(Debug, Clone)]
pub struct ClipLoadReport {
    pub file: PathBuf,
    pub visual: LoadReport,
    pub text: LoadReport,
}

/// A CLIP: the image tower (a zoo ViT whose head projects into the shared space), the text
/// tower, and the learned temperature.
#[derive(Debug)]
pub struct Clip<B: Backend> {
    name: String,
    visual: Model<B>,
    text: Model<B>,
    /// `log` of the logit scale, as open_clip stores it.
    logit_scale: f32,
    logit_bias: Option<f32>,
    config: ClipConfig,
}

fn text_cfg(t: &crate::families::clip_text::ClipText) -> PretrainedCfg {
    PretrainedCfg {
        num_classes: 0,
        input_size: [1, t.context_length, 1],
        mean: [0.0; 3],
        std: [1.0; 3],
        crop_pct: 1.0,
        interpolation: Interpolation::Nearest,
        first_conv: "token_embedding".into(),
        classifier: "head".into(),
        source: "open_clip".into(),
        labels: None,
        text: None,
        test_input_size: None,
        test_crop_pct: None,
        crop_mode: Default::default(),
        tag: None,
        license: None,
    }
}

/// open_clip's image-tower key (under `visual.`) as timm's ViT names it (timm's
/// `_convert_openai_clip`, plus LayerScale), and how its value changes.
enum Convert {
    Same,
    /// `[D, E]` → `[E, D]` (`visual.proj` → `head.weight`).
    Transpose,
    /// Prepend unit dimensions to reach this rank (`class_embedding [D]` → `cls_token [1, 1, D]`).
    Unsqueeze(usize),
}

fn visual_key(k: &str) -> (String, Convert) {
    match k {
        "proj" => return ("head.weight".into(), Convert::Transpose),
        "class_embedding" => return ("cls_token".into(), Convert::Unsqueeze(3)),
        "positional_embedding" => return ("pos_embed".into(), Convert::Unsqueeze(3)),
        _ => {}
    }
    let mut k = k.to_string();
    for (from, to) in [
        ("conv1", "patch_embed.proj"),
        ("transformer.resblocks.", "blocks."),
        ("ln_pre", "norm_pre"),
        ("ln_post", "norm"),
        ("ln_", "norm"),
        ("ls_", "ls"),
        ("in_proj_", "qkv."),
        ("out_proj", "proj"),
        ("mlp.c_fc", "mlp.fc1"),
        ("mlp.c_proj", "mlp.fc2"),
    ] {
        k = k.replace(from, to);
    }
    (k, Convert::Same)
}

fn convert(path: &Path, key: &str, t: TensorData, how: Convert) -> Result<TensorData> {
    match how {
        Convert::Same => Ok(t),
        Convert::Unsqueeze(rank) => {
            let s = t.shape().to_vec();
            if s.len() > rank {
                return Err(Error::format(
                    path,
                    format!("{key}: {s:?} has more than {rank} dimensions"),
                ));
            }
            let mut shape = vec![1; rank - s.len()];
            shape.extend(&s);
            let dtype = t.dtype();
            let a = t.to_f32();
            TensorData::f32(&shape, a.iter().copied().collect()).map(|d| d.cast(dtype))
        }
        Convert::Transpose => {
            let s = t.shape().to_vec();
            if s.len() != 2 {
                return Err(Error::format(
                    path,
                    format!("{key}: expected a [width, embed_dim] matrix, got {s:?}"),
                ));
            }
            let dtype = t.dtype();
            let a = t.to_f32();
            let tr: Vec<f32> = a.t().iter().copied().collect();
            TensorData::f32(&[s[1], s[0]], tr).map(|d| d.cast(dtype))
        }
    }
}

fn scalar(path: &Path, key: &str, t: &TensorData) -> Result<f32> {
    let a = t.to_f32();
    match a.len() {
        1 => Ok(a.iter().copied().next().unwrap_or(f32::NAN)),
        n => Err(Error::format(
            path,
            format!("{key}: expected one value, got {n} ({:?})", t.shape()),
        )),
    }
}

impl<B: Backend> Clip<B> {
    /// Builds both towers with fresh parameters (seeded; the image tower's projection head with
    /// a zero bias, as timm's conversion leaves it) and the configuration's initial scale.
    pub fn build(backend: &B, name: &str, config: ClipConfig, seed: u64) -> Result<Self> {
        let e = config.embed_dim;
        let mut vcfg = config.image_cfg.clone();
        vcfg.num_classes = e;
        let mut visual = Model::build(
            backend,
            &format!("{name}.visual"),
            Arch::Vit(config.vision.clone()),
            vcfg,
            &ModelOptions::default().num_classes(e).seed(seed),
        )?;
        // open_clip's projection has no bias: timm's conversion writes a zero one
        let bias = visual.params().get("head.bias")?;
        let zero = backend.mul_scalar(bias, 0.0)?;
        visual.params_mut().replace("head.bias", zero)?;
        let text = Model::build(
            backend,
            &format!("{name}.text"),
            Arch::ClipText(config.text.clone()),
            text_cfg(&config.text),
            &ModelOptions::default().seed(seed.wrapping_add(1)),
        )?;
        Ok(Self {
            name: name.into(),
            visual,
            text,
            logit_scale: config.init_logit_scale as f32,
            logit_bias: config.init_logit_bias.map(|b| b as f32),
            config,
        })
    }
    /// Builds the CLIP `config` describes and loads open_clip's checkpoint `weights` into it,
    /// strictly: every tensor of the file placed, every parameter given (the image tower's
    /// projection bias excepted — open_clip has none), or an error naming what does not fit.
    pub fn from_open_clip(
        backend: &B,
        name: &str,
        config: ClipConfig,
        weights: &Path,
    ) -> Result<(Self, ClipLoadReport)> {
        let mut clip = Self::build(backend, name, config, 0)?;
        let report = clip.load_open_clip(weights)?;
        Ok((clip, report))
    }
    /// A directory holding open_clip's files: `open_clip_config.json` and
    /// `open_clip_model.safetensors` (or `open_clip_pytorch_model.bin`), as open_clip's
    /// `push_to_hf_hub` writes a Hub repo.
    pub fn from_dir(backend: &B, name: &str, dir: &Path) -> Result<(Self, ClipLoadReport)> {
        let config = ClipConfig::from_file(&dir.join("open_clip_config.json"))?;
        let weights = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::format(
                    dir,
                    "no open_clip_model.safetensors or open_clip_pytorch_model.bin here",
                )
            })?;
        Self::from_open_clip(backend, name, config, &weights)
    }
    fn load_open_clip(&mut self, path: &Path) -> Result<ClipLoadReport> {
        let file = WeightsFile::open(path)?;
        let keys: Vec<String> = file.index().keys().cloned().collect();
        let strip = if !keys.is_empty() && keys.iter().all(|k| k.starts_with("module.")) {
            "module."
        } else {
            ""
        };
        let mut visual = BTreeMap::new();
        let mut text = BTreeMap::new();
        let (mut scale, mut bias) = (None, None);
        for key in &keys {
            let k = &key[strip.len()..];
            if let Some(v) = k.strip_prefix("visual.") {
                let (name, how) = visual_key(v);
                visual.insert(name, convert(path, key, file.read(key)?, how)?);
            } else if k == "logit_scale" {
                scale = Some(scalar(path, key, &file.read(key)?)?);
            } else if k == "logit_bias" {
                bias = Some(scalar(path, key, &file.read(key)?)?);
            } else if k == "attn_mask" {
                // open_clip's causal mask, a buffer some files carry
            } else if self.config.custom_text {
                match k.strip_prefix("text.") {
                    Some(t) => {
                        text.insert(t.to_string(), file.read(key)?);
                    }
                    None => {
                        return Err(Error::Weights {
                            path: path.into(),
                            msg: format!(
                                "{key}: neither the image tower (visual.*) nor the text tower (text.*)"
                            ),
                        });
                    }
                }
            } else {
                text.insert(k.to_string(), file.read(key)?);
            }
        }
        let scale = scale.ok_or_else(|| Error::Weights {
            path: path.into(),
            msg: "no logit_scale: not a CLIP checkpoint".into(),
        })?;
        match (self.config.init_logit_bias.is_some(), bias.is_some()) {
            (true, false) => {
                return Err(Error::Weights {
                    path: path.into(),
                    msg: "the configuration has init_logit_bias but the file has no logit_bias"
                        .into(),
                });
            }
            (false, true) => {
                return Err(Error::Weights {
                    path: path.into(),
                    msg: "the file has logit_bias but the configuration no init_logit_bias".into(),
                });
            }
            _ => {}
        }
        if !visual.contains_key("head.bias") {
            let n = visual.get("head.weight").map_or(0, |w| w.shape()[0]);
            visual.insert("head.bias".into(), TensorData::f32(&[n], vec![0.0; n])?);
        }
        let opts = LoadOptions {
            strip_prefixes: Vec::new(),
            ..LoadOptions::default()
        };
        // Called on freshly built towers only (`from_open_clip`): an error drops them both.
        let vreport = self.visual.load_tensors(path, &visual, &opts)?;
        let treport = self.text.load_tensors(path, &text, &opts)?;
        self.logit_scale = scale;
        self.logit_bias = bias;
        Ok(ClipLoadReport {
            file: path.into(),
            visual: vreport,
            text: treport,
        })
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }
    /// The image tower: a zoo ViT whose head is the projection into the shared space (its
    /// pooled features are the tower's own width, what a new head is fitted on).
    pub fn visual(&self) -> &Model<B> {
        &self.visual
    }
    /// The text tower ([`Model::forward_pooled`] on token ids gives the projected embedding).
    pub fn text(&self) -> &Model<B> {
        &self.text
    }
    /// The image tower alone, as a trunk for extraction or fine-tuning.
    pub fn into_visual(self) -> Model<B> {
        self.visual
    }
    /// Both towers.
    pub fn into_towers(self) -> (Model<B>, Model<B>) {
        (self.visual, self.text)
    }
    /// The width of the shared embedding space.
    pub fn embed_dim(&self) -> usize {
        self.config.embed_dim
    }
    /// The multiplier of cosine similarities in CLIP's logits: `exp(logit_scale)`.
    pub fn logit_scale(&self) -> f64 {
        f64::from(self.logit_scale).exp()
    }
    /// SigLIP-style additive logit bias, when the model has one.
    pub fn logit_bias(&self) -> Option<f64> {
        self.logit_bias.map(f64::from)
    }
    /// Image embeddings `[N, embed_dim]` (not normalised: open_clip's `encode_image`).
    pub fn encode_image(&self, images: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        self.visual.forward(images, ctx)
    }
    /// Text embeddings `[N, embed_dim]` of `[N, T]` int64 token ids (not normalised: open_clip's
    /// `encode_text`).
    pub fn encode_text(&self, ids: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor> {
        self.text.forward_pooled(ids, ctx)
    }
}
