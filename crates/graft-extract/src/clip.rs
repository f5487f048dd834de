//! CLIP on the feature-extraction route: image embeddings (the image tower's output, through the
//! same cache as every extraction), text embeddings (the text tower through graft's tokenizer on
//! the repo's `tokenizer.json`), and zero-shot image classification — classes named, no example
//! seen — by cosine similarity between an image and each class's prompts, the prompts
//! ensembled as CLIP does (Radford et al. 2021, §3.1.4: 80 templates for ImageNet by default).

use std::path::Path;

use graft_backend::Backend;
use graft_core::{Error, Result};
use graft_data::Loader;
use graft_text::Tokenizer;
use graft_zoo::{Clip, ClipLoadReport, Model};

use crate::{ExtractOptions, ExtractReport, FeatureSpec, Features, TextEncoder, ZeroShot};

const IMAGENET_TEMPLATES: &str = include_str!("../data/clip_imagenet_templates.txt");

/// CLIP's 80 ImageNet prompt templates (`{}` is the class name): OpenAI's prompt-engineering
/// notebook for the CLIP paper, as open_clip ships them (`data/README.md`).
pub fn imagenet_templates() -> Vec<String> {
    IMAGENET_TEMPLATES
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Each class's prompts: every template with `{}` replaced by the class name. A template must
/// hold `{}` exactly once.
pub fn prompts(classes: &[String], templates: &[String]) -> Result<Vec<Vec<String>>> {
    if templates.is_empty() {
        return Err(Error::invalid("zero-shot prompts", "no templates"));
    }
    if let Some(t) = templates.iter().find(|t| t.matches("{}").count() != 1) {
        return Err(Error::invalid(
            "zero-shot prompts",
            format!("template {t:?} must hold {{}} (where the class name goes) exactly once"),
        ));
    }
    Ok(classes
        .iter()
        .map(|c| templates.iter().map(|t| t.replacen("{}", c, 1)).collect())
        .collect())
}

/// A CLIP ready to embed: its image tower, and its text tower with the tokenizer it reads.
#[derive(Debug)]
pub struct ClipEncoder<B: Backend> {
    visual: Model<B>,
    text: TextEncoder<B>,
    logit_scale: f64,
}

impl<B: Backend> ClipEncoder<B> {
    /// Pairs a CLIP with its tokenizer (read with the text tower's context length).
    pub fn new(clip: Clip<B>, tokenizer: Tokenizer) -> Result<Self> {
        let logit_scale = clip.logit_scale();
        let (visual, text) = clip.into_towers();
        Ok(Self {
            visual,
            text: TextEncoder::new(text, tokenizer)?,
            logit_scale,
        })
    }
    /// open_clip's files in `dir` (`Clip::from_dir`) with the tokenizer `tokenizer` (default:
    /// the directory's `tokenizer.json`, else CLIP's own BPE, as open_clip falls back to it).
    pub fn from_dir(
        backend: &B,
        name: &str,
        dir: &Path,
        tokenizer: Option<&Path>,
    ) -> Result<(Self, ClipLoadReport)> {
        let (clip, report) = Clip::from_dir(backend, name, dir)?;
        let own = dir.join("tokenizer.json");
        let tok = tokenizer.or_else(|| own.is_file().then_some(own.as_path()));
        Ok((Self::with_tokenizer(clip, tok)?, report))
    }
    /// A CLIP from a Hub repo holding open_clip's files: `hf-hub:org/name[@revision]`, or a timm
    /// tag whose repo carries them beside timm's image tower (`vit_base_patch16_clip_224.openai`:
    /// timm publishes the full open_clip model there), or a local directory. Files are fetched
    /// into (or read from) the cache huggingface_hub shares; `tokenizer.json` when the repo has
    /// one, else CLIP's own BPE.
    pub fn pretrained(
        backend: &B,
        reference: &str,
        hub: &graft_zoo::Hub,
    ) -> Result<(Self, ClipLoadReport)> {
        let dir = Path::new(reference);
        if dir.is_dir() {
            return Self::from_dir(backend, reference, dir, None);
        }
        let (repo, revision) = match graft_zoo::ModelRef::parse(reference)? {
            graft_zoo::ModelRef::HfHub { repo, revision } => {
                (repo, revision.unwrap_or_else(|| "main".into()))
            }
            graft_zoo::ModelRef::Tag(tag) => {
                let t = graft_zoo::pretrained::timm_tag(&tag)?;
                (t.hf_hub_id.clone(), "main".to_string())
            }
            _ => {
                return Err(Error::invalid(
                    "CLIP",
                    format!(
                        "{reference:?}: a CLIP is a directory of open_clip's files, hf-hub:org/name[@revision] or a timm CLIP tag (vit_base_patch16_clip_224.openai)"
                    ),
                ));
            }
        };
        let config = hub
            .file_if_present(&repo, &revision, "open_clip_config.json")?
            .ok_or_else(|| {
                Error::invalid(
                    "CLIP",
                    format!(
                        "{repo}@{revision} holds no open_clip_config.json: not an open_clip (image-text) model"
                    ),
                )
            })?;
        let (_, weights) = hub.first_file(
            &repo,
            &revision,
            &["open_clip_model.safetensors", "open_clip_pytorch_model.bin"],
        )?;
        let tok = hub.file_if_present(&repo, &revision, "tokenizer.json")?;
        let config = graft_zoo::ClipConfig::from_file(&config)?;
        let (clip, report) = Clip::from_open_clip(backend, reference, config, &weights)?;
        Ok((Self::with_tokenizer(clip, tok.as_deref())?, report))
    }
    /// `path`'s tokenizer.json, or CLIP's own BPE when `None`, read with the text tower's
    /// context length.
    fn with_tokenizer(clip: Clip<B>, path: Option<&Path>) -> Result<Self> {
        let ctx = clip.config().text.context_length;
        let tok = match path {
            Some(p) => Tokenizer::from_file(p, ctx)?,
            None => {
                if clip.config().text.vocab_size != 49408 {
                    return Err(Error::invalid(
                        "CLIP",
                        format!(
                            "{}: no tokenizer.json, and a text tower of {} ids is not CLIP's BPE (49408): give the tokenizer",
                            clip.name(),
                            clip.config().text.vocab_size
                        ),
                    ));
                }
                Tokenizer::clip(ctx)?
            }
        };
        Self::new(clip, tok)
    }
    /// The image tower: a ViT whose head projects into the image-text space (its pooled
    /// features are what a new head is fitted on).
    pub fn visual(&self) -> &Model<B> {
        &self.visual
    }
    /// The image tower, to change.
    pub fn visual_mut(&mut self) -> &mut Model<B> {
        &mut self.visual
    }
    /// The text tower and its tokenizer.
    pub fn text(&self) -> &TextEncoder<B> {
        &self.text
    }
    /// The text tower, to change (fit its projection, fine-tune it).
    pub fn text_mut(&mut self) -> &mut TextEncoder<B> {
        &mut self.text
    }
    /// The image tower alone (a trunk for the other routes).
    pub fn into_visual(self) -> Model<B> {
        self.visual
    }
    /// The image tower and the text tower with its tokenizer, apart.
    pub fn into_parts(self) -> (Model<B>, TextEncoder<B>) {
        (self.visual, self.text)
    }
    /// `exp(logit_scale)`: CLIP's multiplier of cosine similarities.
    pub fn logit_scale(&self) -> f64 {
        self.logit_scale
    }
    /// Text embeddings, `[n, embed_dim]` row-major, not normalised.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.text.embed(texts)
    }
    /// Image embeddings of a loader's images (the image tower's output, `FeatureSpec::Logits`),
    /// cached in `cache_dir` like every extraction.
    pub fn embed_images(
        &self,
        loader: &Loader,
        cache_dir: &Path,
        opts: &ExtractOptions,
    ) -> Result<(Features, ExtractReport)> {
        let (mut f, report) = crate::extract_many_with(
            &self.visual,
            loader,
            &[FeatureSpec::Logits],
            cache_dir,
            opts,
        )?;
        let f = f
            .pop()
            .ok_or_else(|| Error::invalid("embed_images", "no features"))?;
        Ok((f, report))
    }
    /// The zero-shot classifier for `classes`: each class the ensemble of its prompts
    /// (`templates`, [`imagenet_templates`] by default).
    pub fn zero_shot(&self, classes: &[String], templates: Option<&[String]>) -> Result<ZeroShot> {
        let default;
        let templates = match templates {
            Some(t) => t,
            None => {
                default = imagenet_templates();
                &default
            }
        };
        ZeroShot::new(&self.text, classes, &prompts(classes, templates)?)
    }
}
