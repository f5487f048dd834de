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
    /// the directory's `tokenizer.json`).
    pub fn from_dir(
        backend: &B,
        name: &str,
        dir: &Path,
        tokenizer: Option<&Path>,
    ) -> Result<(Self, ClipLoadReport)> {
        let (clip, report) = Clip::from_dir(backend, name, dir)?;
        let tok_path = tokenizer.map_or_else(|| dir.join("tokenizer.json"), Path::to_path_buf);
        if !tok_path.is_file() {
            return Err(Error::format(
                &tok_path,
                "no tokenizer here: CLIP's text tower reads a Hugging Face tokenizer.json of CLIP's BPE (give its path)",
            ));
        }
        let tok = Tokenizer::from_file(&tok_path, clip.config().text.context_length)?;
        Ok((Self::new(clip, tok)?, report))
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
