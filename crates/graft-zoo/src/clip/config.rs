//! open_clip's model configuration (`model_cfg`: `embed_dim`, `quick_gelu`, `vision_cfg`,
//! `text_cfg`, ...; open_clip's `model_configs/*.json`, or the `model_cfg` of the
//! `open_clip_config.json` a Hub repo carries beside `preprocess_cfg`) read into the two towers
//! graft builds: timm's ViT for the image tower (the names `_convert_openai_clip` maps open_clip's
//! onto) and [`ClipText`] for the text tower.
//!
//! Every key is read: a key graft does not know, or a switch set to something the towers do not
//! build (attentional pooling, a Hugging Face text tower, SigLIP's text pooling, ...), is an error
//! naming the key, never a silently different model.

use std::path::{Path, PathBuf};

use graft_core::{Error, Result};
use serde_json::{Map, Value};

use crate::cfg::{CropMode, Interpolation, PretrainedCfg};
use crate::families::clip_text::{ClipAct, ClipText};
use crate::families::vit::{Vit, VitAct, VitPool};

/// OpenAI CLIP's image normalisation (open_clip's `OPENAI_DATASET_MEAN` / `_STD`).
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// A CLIP's two towers and its logit scale's initial value, as the configuration gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// The shared image-text embedding width.
    pub embed_dim: usize,
    pub vision: Vit,
    pub text: ClipText,
    /// The text tower's keys sit under `text.` (open_clip's `CustomTextCLIP`) rather than at the
    /// root (`CLIP`).
    pub custom_text: bool,
    /// `log(1/0.07)` unless the configuration says otherwise.
    pub init_logit_scale: f64,
    pub init_logit_bias: Option<f64>,
    /// The image tower's preprocessing (`preprocess_cfg`, else OpenAI's).
    pub image_cfg: PretrainedCfg,
}

/// The JSON object at `key` of `obj` — taken out, so that what is left over can be reported.
struct Section {
    what: String,
    path: PathBuf,
    map: Map<String, Value>,
}

impl Section {
    fn new(path: &Path, what: &str, v: Value) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Self {
                what: what.into(),
                path: path.into(),
                map,
            }),
            other => Err(Error::format(
                path,
                format!("{what}: expected an object, got {other}"),
            )),
        }
    }
    fn err(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::format(&self.path, format!("{}.{key}: {msg}", self.what))
    }
    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }
    fn usize(&mut self, key: &str, default: Option<usize>) -> Result<usize> {
        match self.take(key) {
            None => default.ok_or_else(|| self.err(key, "missing")),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {v}"))),
        }
    }
    fn f64(&mut self, key: &str) -> Result<Option<f64>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, format!("expected a number, got {v}"))),
        }
    }
    fn bool(&mut self, key: &str) -> Result<bool> {
        match self.take(key) {
            None => Ok(false),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(key, format!("expected true or false, got {v}"))),
        }
    }
    fn string(&mut self, key: &str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.err(key, format!("expected a string, got {v}"))),
        }
    }
    /// A switch graft does not build: absent, null or its default is fine, anything else is
    /// an error saying so.
    fn refuse_unless(&mut self, key: &str, default: &Value, why: &str) -> Result<()> {
        match self.take(key) {
            Some(v) if &v != default => Err(self.err(key, format!("{v}: {why}"))),
            _ => Ok(()),
        }
    }
    /// A LayerNorm eps from `norm_kwargs` (the only key graft reads there).
    fn norm_eps(&mut self) -> Result<f64> {
        let Some(v) = self.take("norm_kwargs") else {
            return Ok(1e-5);
        };
        let mut kw = Section::new(&self.path, &format!("{}.norm_kwargs", self.what), v)?;
        let eps = kw.f64("eps")?.unwrap_or(1e-5);
        kw.done()?;
        Ok(eps)
    }
    fn done(self) -> Result<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(Error::format(
                &self.path,
                format!(
                    "{}.{k}: graft's CLIP does not know this key (known: open_clip's CLIP with a ViT image tower and its own text transformer)",
                    self.what
                ),
            )),
        }
    }
}

const CUSTOM_BLOCK: &str = "graft builds open_clip's default residual attention block only";

fn refuse_custom_block(s: &mut Section) -> Result<()> {
    s.refuse_unless("block_type", &Value::String("default".into()), CUSTOM_BLOCK)?;
    for k in [
        "qk_norm",
        "scaled_cosine_attn",
        "scale_heads",
        "scale_attn_inner",
        "scale_attn",
        "scale_fc",
    ] {
        s.refuse_unless(k, &Value::Bool(false), CUSTOM_BLOCK)?;
    }
    s.refuse_unless(
        "act_kwargs",
        &Value::Null,
        "graft's activations take no arguments",
    )?;
    Ok(())
}

fn vision(mut s: Section, quick_gelu: bool) -> Result<Vit> {
    if s.take("timm_model_name").is_some() {
        return Err(s.err(
            "timm_model_name",
            "a timm image tower inside an open_clip file (visual.trunk.*) is not read yet; its timm tag loads as an image model",
        ));
    }
    for k in [
        "timm_model_pretrained",
        "timm_pool",
        "timm_proj",
        "timm_proj_bias",
        "timm_drop",
        "timm_drop_path",
    ] {
        s.take(k);
    }
    let layers = s.usize("layers", Some(12))?;
    let width = s.usize("width", Some(768))?;
    let head_width = s.usize("head_width", Some(64))?;
    let mlp_ratio = s.f64("mlp_ratio")?.unwrap_or(4.0);
    let patch = s.usize("patch_size", Some(16))?;
    let img = match s.take("image_size") {
        None => [224, 224],
        Some(Value::Array(a)) if a.len() == 2 => {
            let side = |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
            match (side(&a[0]), side(&a[1])) {
                (Some(h), Some(w)) => [h, w],
                _ => return Err(s.err("image_size", "expected [height, width]")),
            }
        }
        Some(v) => {
            let n = v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| s.err("image_size", format!("expected a size, got {v}")))?;
            [n, n]
        }
    };
    let layer_scale = s.f64("ls_init_value")?;
    if s.f64("patch_dropout")?.is_some_and(|p| p != 0.0) {
        return Err(s.err("patch_dropout", "graft does not drop patches in training"));
    }
    s.refuse_unless(
        "attentional_pool",
        &Value::Bool(false),
        "attentional pooling is not built",
    )?;
    s.take("attn_pooler_queries");
    s.take("attn_pooler_heads");
    s.refuse_unless(
        "no_ln_pre",
        &Value::Bool(false),
        "the tower always has ln_pre",
    )?;
    s.refuse_unless(
        "pos_embed_type",
        &Value::String("learnable".into()),
        "only learned position embeddings are built",
    )?;
    s.refuse_unless(
        "final_ln_after_pool",
        &Value::Bool(false),
        "ln_post is applied before pooling",
    )?;
    s.bool("output_tokens")?;
    let pool = match s.string("pool_type")?.as_deref() {
        None | Some("tok") => VitPool::Token,
        Some("avg") => VitPool::Avg,
        Some(other) => {
            return Err(s.err(
                "pool_type",
                format!("{other:?}: graft pools by \"tok\" or \"avg\""),
            ));
        }
    };
    let norm_eps = s.norm_eps()?;
    refuse_custom_block(&mut s)?;
    s.done()?;
    if head_width == 0 || !width.is_multiple_of(head_width) {
        return Err(Error::invalid(
            "clip vision_cfg",
            format!("width {width} is not a multiple of head_width {head_width}"),
        ));
    }
    let mut v = Vit::new(width, layers, width / head_width);
    v.patch = patch;
    v.img_size = img;
    v.mlp_hidden = (width as f64 * mlp_ratio) as usize;
    v.pool = pool;
    v.pre_norm = true;
    v.layer_scale = layer_scale;
    v.act = if quick_gelu {
        VitAct::QuickGelu
    } else {
        VitAct::Gelu
    };
    v.norm_eps = norm_eps;
    Ok(v)
}

fn text(mut s: Section, embed_dim: usize, quick_gelu: bool) -> Result<ClipText> {
    if s.take("hf_model_name").is_some() {
        return Err(s.err(
            "hf_model_name",
            "a Hugging Face text tower is not built (graft's own: open_clip's text transformer)",
        ));
    }
    for k in [
        "hf_model_pretrained",
        "hf_proj_type",
        "hf_pooler_type",
        "hf_tokenizer_name",
        "tokenizer_mode",
        "tokenizer_kwargs",
    ] {
        // the tokenizer is the repo's tokenizer.json, whatever open_clip would pick
        s.take(k);
    }
    let context_length = s.usize("context_length", Some(77))?;
    let vocab_size = s.usize("vocab_size", Some(49408))?;
    let width = s.usize("width", Some(512))?;
    let heads = s.usize("heads", Some(8))?;
    let layers = s.usize("layers", Some(12))?;
    let mlp_ratio = s.f64("mlp_ratio")?.unwrap_or(4.0);
    let layer_scale = s.f64("ls_init_value")?;
    s.refuse_unless(
        "embed_cls",
        &Value::Bool(false),
        "CoCa's appended class token is not built",
    )?;
    let pad_id = s.usize("pad_id", Some(0))? as i64;
    s.take("eos_id");
    s.refuse_unless(
        "no_causal_mask",
        &Value::Bool(false),
        "the text tower is causal",
    )?;
    s.refuse_unless(
        "final_ln_after_pool",
        &Value::Bool(false),
        "ln_final is applied before pooling",
    )?;
    match s.string("pool_type")?.as_deref() {
        None | Some("argmax") => {}
        Some(other) => {
            return Err(s.err(
                "pool_type",
                format!("{other:?}: graft pools at the end-of-text token (\"argmax\")"),
            ));
        }
    }
    let proj_bias = s.bool("proj_bias")?;
    let embed = match s.string("proj_type")?.as_deref() {
        None | Some("linear") => embed_dim,
        Some("none") => 0,
        Some(other) => return Err(s.err("proj_type", format!("{other:?}: \"linear\" or \"none\""))),
    };
    s.bool("output_tokens")?;
    let norm_eps = s.norm_eps()?;
    refuse_custom_block(&mut s)?;
    s.done()?;
    let t = ClipText {
        context_length,
        vocab_size,
        width,
        heads,
        layers,
        mlp_hidden: (width as f64 * mlp_ratio) as usize,
        embed_dim: embed,
        proj_bias,
        act: if quick_gelu {
            ClipAct::QuickGelu
        } else {
            ClipAct::Gelu
        },
        norm_eps,
        layer_scale,
        pad_id,
    };
    Ok(t)
}

fn floats3(s: &mut Section, key: &str) -> Result<Option<[f64; 3]>> {
    match s.take(key) {
        None => Ok(None),
        Some(Value::Array(a)) if a.len() == 3 && a.iter().all(Value::is_number) => {
            let f = |i: usize| a[i].as_f64().unwrap_or(f64::NAN);
            Ok(Some([f(0), f(1), f(2)]))
        }
        Some(v) => Err(s.err(key, format!("expected three numbers, got {v}"))),
    }
}

fn image_cfg(pre: Option<Section>, img: [usize; 2]) -> Result<PretrainedCfg> {
    let mut cfg = PretrainedCfg {
        num_classes: 0,
        input_size: [3, img[0], img[1]],
        mean: OPENAI_CLIP_MEAN,
        std: OPENAI_CLIP_STD,
        crop_pct: 1.0,
        interpolation: Interpolation::Bicubic,
        first_conv: "patch_embed.proj".into(),
        classifier: "head".into(),
        source: "open_clip".into(),
        labels: None,
        text: None,
        test_input_size: None,
        test_crop_pct: None,
        crop_mode: CropMode::Center,
        tag: None,
        license: None,
    };
    let Some(mut s) = pre else { return Ok(cfg) };
    if let Some(m) = floats3(&mut s, "mean")? {
        cfg.mean = m;
    }
    if let Some(m) = floats3(&mut s, "std")? {
        cfg.std = m;
    }
    cfg.interpolation = match s.string("interpolation")?.as_deref() {
        None | Some("bicubic") => Interpolation::Bicubic,
        Some("bilinear") => Interpolation::Bilinear,
        Some(other) => {
            return Err(s.err("interpolation", format!("{other:?}: bicubic or bilinear")));
        }
    };
    cfg.crop_mode = match s.string("resize_mode")?.as_deref() {
        None | Some("shortest") => CropMode::Center,
        Some("squash") => CropMode::Squash,
        Some("longest") => CropMode::Border,
        Some(other) => {
            return Err(s.err(
                "resize_mode",
                format!("{other:?}: shortest, squash or longest"),
            ));
        }
    };
    s.refuse_unless(
        "fill_color",
        &Value::from(0),
        "graft pads a `longest` resize with the mean",
    )?;
    s.take("size");
    s.done()?;
    Ok(cfg)
}

impl ClipConfig {
    /// Reads `path`: open_clip's `open_clip_config.json` (`{"model_cfg": ..., "preprocess_cfg":
    /// ...}`) or a bare model configuration (open_clip's `model_configs/NAME.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not JSON: {e}")))?;
        Self::from_json(path, v)
    }
    /// [`ClipConfig::from_file`] on a parsed value (`path` names it in errors).
    pub fn from_json(path: &Path, v: Value) -> Result<Self> {
        let mut top = Section::new(path, "config", v)?;
        let (mut m, pre) = match top.take("model_cfg") {
            Some(model) => {
                let pre = top
                    .take("preprocess_cfg")
                    .map(|p| Section::new(path, "preprocess_cfg", p))
                    .transpose()?;
                top.done()?;
                (Section::new(path, "model_cfg", model)?, pre)
            }
            None => (top, None),
        };
        let embed_dim = m.usize("embed_dim", None)?;
        let quick_gelu = m.bool("quick_gelu")?;
        let custom_text = m.bool("custom_text")?;
        let init_logit_scale = m.f64("init_logit_scale")?.unwrap_or((1.0f64 / 0.07).ln());
        let init_logit_bias = m.f64("init_logit_bias")?;
        m.refuse_unless(
            "nonscalar_logit_scale",
            &Value::Bool(false),
            "the logit scale is a scalar",
        )?;
        m.refuse_unless(
            "multimodal_cfg",
            &Value::Null,
            "CoCa's multimodal decoder is not built",
        )?;
        m.take("cast_dtype");
        let vcfg = m.take("vision_cfg").unwrap_or(Value::Object(Map::new()));
        let tcfg = m.take("text_cfg").unwrap_or(Value::Object(Map::new()));
        m.done()?;
        let vision = vision(Section::new(path, "vision_cfg", vcfg)?, quick_gelu)?;
        let text = text(Section::new(path, "text_cfg", tcfg)?, embed_dim, quick_gelu)?;
        let image_cfg = image_cfg(pre, vision.img_size)?;
        Ok(Self {
            embed_dim,
            vision,
            text,
            custom_text,
            init_logit_scale,
            init_logit_bias,
            image_cfg,
        })
    }
}
