//! Inference copies of a model: the same function, computed faster.
//!
//! [`Model::for_inference`] returns a new model whose parameters are copies (the original stays
//! trainable and unchanged) with:
//! - every BatchNorm that directly follows a conv folded into it (`w' = w·γ/√(σ²+ε)`,
//!   `b' = β + (b − μ)·γ/√(σ²+ε)`, computed in f64 on the host) — the BatchNorm pass disappears;
//! - input activations in channels-last layout (NHWC strides, NCHW shape) for the convolutional
//!   families where oneDNN's convolutions run faster on it ([`Layout::Auto`]: bf16 always, fp32
//!   from 112×112 up — measured in docs/benchmarks.md; every later activation keeps the layout);
//! - optionally every float parameter cast to bf16 (explicit casts: libtorch's CPU autocast does
//!   nothing through tch), inputs cast on entry.
//!
//! The copy computes the eval-mode function only: a folded BatchNorm refuses training and
//! re-estimation, and loading, head replacement and saving are refused on the copy.

use graft_backend::{Backend, DType, MemoryFormat, ParamKind, Params, TensorData};
use graft_core::name::{join, split_last};
use graft_core::{Error, Result};

use crate::model::Model;

/// Memory layout of the activations of an inference copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Channels-last where it measured faster here: always in bf16, in fp32 when both spatial
    /// dims are at least [`Layout::AUTO_MIN_SIDE`] (below that the NCHW kernels win).
    #[default]
    Auto,
    /// NCHW contiguous (PyTorch's default).
    Contiguous,
    /// NHWC strides (PyTorch's `channels_last`).
    ChannelsLast,
}

impl Layout {
    /// The smallest fp32 input side [`Layout::Auto`] runs channels-last at.
    pub const AUTO_MIN_SIDE: usize = 112;
    /// Whether an input of `shape` (`[N, C, H, W]`) in `dtype` runs channels-last.
    pub fn channels_last(self, shape: &[usize], dtype: DType) -> bool {
        match self {
            Layout::Contiguous => false,
            Layout::ChannelsLast => true,
            Layout::Auto => {
                dtype == DType::BF16
                    || (shape.len() == 4 && shape[2].min(shape[3]) >= Self::AUTO_MIN_SIDE)
            }
        }
    }
}

/// How to build an inference copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InferenceOptions {
    /// Fold each BatchNorm into the conv before it.
    pub fold_batch_norm: bool,
    /// Activation layout (convolutional families; ViT ignores it).
    pub layout: Layout,
    /// Float dtype of the copy's parameters and activations (F32 or BF16).
    pub dtype: DType,
}

impl Default for InferenceOptions {
    fn default() -> Self {
        Self {
            fold_batch_norm: true,
            layout: Layout::Auto,
            dtype: DType::F32,
        }
    }
}

impl InferenceOptions {
    /// The default with bf16 parameters and activations.
    pub fn bf16() -> Self {
        Self {
            dtype: DType::BF16,
            ..Self::default()
        }
    }
    /// No transformation at all: a plain copy (a baseline for benchmarks).
    pub fn plain() -> Self {
        Self {
            fold_batch_norm: false,
            layout: Layout::Contiguous,
            dtype: DType::F32,
        }
    }
    /// A short label: `fp32` / `bf16`, then `+fold`, then `+cl` / `+auto` (the layout).
    pub fn label(&self) -> String {
        let mut s = match self.dtype {
            DType::BF16 => "bf16".to_string(),
            _ => "fp32".to_string(),
        };
        if self.fold_batch_norm {
            s.push_str("+fold");
        }
        match self.layout {
            Layout::Auto => s.push_str("+auto"),
            Layout::ChannelsLast => s.push_str("+cl"),
            Layout::Contiguous => {}
        }
        s
    }
}

/// The conv whose output the BatchNorm at `bn` normalises, by the references' naming: `X.bnK`
/// follows `X.convK` (ResNet), `X.n` follows `X.(n-1)` (torchvision's `Conv2dNormActivation`,
/// ResNet's `downsample`). Checked against the shapes: a 4-d weight with as many filters as the
/// BatchNorm has channels.
/// A family whose names break the rule names the conv itself (`Family::conv_before_norm`).
fn conv_before(
    data: &std::collections::BTreeMap<String, TensorData>,
    bn: &str,
    named: Option<String>,
) -> Option<String> {
    let conv = match named {
        Some(conv) => conv,
        None => {
            let (parent, last) = split_last(bn);
            let conv_last = if let Some(k) = last.strip_prefix("bn") {
                format!("conv{k}")
            } else {
                let n: usize = last.parse().ok()?;
                n.checked_sub(1)?.to_string()
            };
            if parent.is_empty() {
                conv_last
            } else {
                join(parent, &conv_last)
            }
        }
    };
    let w = data.get(&join(&conv, "weight"))?;
    let c = data
        .get(&join(bn, "running_mean"))?
        .shape()
        .first()
        .copied()?;
    (w.shape().len() == 4 && w.shape()[0] == c).then_some(conv)
}

fn f64s(t: &TensorData) -> Vec<f64> {
    t.to_f64().iter().copied().collect()
}

/// The folded weight and bias of `conv` followed by the BatchNorm `bn`.
fn fold_pair(
    data: &std::collections::BTreeMap<String, TensorData>,
    conv: &str,
    bn: &str,
    eps: f64,
) -> Result<(TensorData, TensorData)> {
    let get = |n: &str| {
        data.get(n)
            .ok_or_else(|| Error::MissingParam(n.to_string()))
    };
    let w = get(&join(conv, "weight"))?;
    let shape = w.shape().to_vec();
    let c = shape[0];
    let mean = f64s(get(&join(bn, "running_mean"))?);
    let var = f64s(get(&join(bn, "running_var"))?);
    let ones = vec![1.0; c];
    let zeros = vec![0.0; c];
    let gamma = data
        .get(&join(bn, "weight"))
        .map_or_else(|| ones.clone(), f64s);
    let beta = data
        .get(&join(bn, "bias"))
        .map_or_else(|| zeros.clone(), f64s);
    let conv_b = data
        .get(&join(conv, "bias"))
        .map_or_else(|| zeros.clone(), f64s);
    if [mean.len(), var.len(), gamma.len(), beta.len(), conv_b.len()]
        .iter()
        .any(|&l| l != c)
    {
        return Err(Error::shape(
            "for_inference",
            format!("{bn}: statistics do not match the {c} filters of {conv}"),
        ));
    }
    let scale: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let per = w.len() / c.max(1);
    let wv = f64s(w);
    let folded_w: Vec<f32> = wv
        .iter()
        .enumerate()
        .map(|(i, v)| (v * scale[i / per]) as f32)
        .collect();
    let folded_b: Vec<f32> = (0..c)
        .map(|i| (beta[i] + (conv_b[i] - mean[i]) * scale[i]) as f32)
        .collect();
    Ok((
        TensorData::f32(&shape, folded_w)?,
        TensorData::f32(&[c], folded_b)?,
    ))
}

impl<B: Backend> Model<B> {
    /// An inference copy of this model (see the module docs): same outputs within float rounding
    /// (bf16: within bf16's), faster. The copy's forward casts and lays out its input itself.
    pub fn for_inference(&self, opts: &InferenceOptions) -> Result<Model<B>> {
        if self.inference().is_some() {
            return Err(Error::invalid(
                "for_inference",
                format!("{} is already an inference copy", self.name()),
            ));
        }
        if opts.dtype == DType::I64 {
            return Err(Error::dtype(
                "for_inference",
                DType::I64,
                "an inference copy is f32 or bf16",
            ));
        }
        let b = self.backend().clone();
        let mut data = self.params().to_data()?;
        let mut folded = Vec::new();
        if let (true, Some(eps)) = (opts.fold_batch_norm, self.arch().batch_norm_eps()) {
            for bn in self.batch_norm_layers() {
                let Some(conv) = conv_before(&data, &bn, self.arch().conv_before_norm(&bn)) else {
                    continue;
                };
                let (w, bias) = fold_pair(&data, &conv, &bn, eps)?;
                data.insert(join(&conv, "weight"), w);
                data.insert(join(&conv, "bias"), bias);
                folded.push((conv, bn));
            }
        }
        let weights_cl = self.arch().is_convnet()
            && (opts.dtype == DType::BF16 || opts.layout == Layout::ChannelsLast);
        let folded_convs: std::collections::HashSet<&str> =
            folded.iter().map(|(c, _)| c.as_str()).collect();
        let mut params = Params::new(b.clone());
        let mut upload = |name: &str, kind: ParamKind, t: &TensorData| -> Result<()> {
            let t = if t.dtype() == DType::I64 {
                t.clone()
            } else {
                t.cast(opts.dtype)
            };
            // fp32 conv weights stay NCHW (oneDNN takes the layout from the input, so Auto can
            // pick per call; measured no gain from channels-last fp32 weights); bf16 ones go
            // channels-last (measured 5-14 % faster: oneDNN's bf16 weight reorder is cheaper)
            let mut x = b.from_data(&t)?;
            if weights_cl && t.shape().len() == 4 {
                x = b.to_memory_format(&x, MemoryFormat::ChannelsLast)?;
            }
            params.insert(name, x, kind)
        };
        for (name, entry) in self.params().iter() {
            let t = data
                .get(name)
                .ok_or_else(|| Error::MissingParam(name.to_string()))?;
            upload(name, entry.kind, t)?;
            // a folded conv's new bias goes right after its weight
            if let Some(conv) = name
                .strip_suffix(".weight")
                .filter(|c| folded_convs.contains(c))
            {
                let bias = join(conv, "bias");
                if !self.params().contains(&bias) {
                    let t = data
                        .get(&bias)
                        .ok_or_else(|| Error::MissingParam(bias.clone()))?;
                    upload(&bias, ParamKind::Parameter, t)?;
                }
            }
        }
        for (_, bn) in &folded {
            params.fold_norm(bn);
        }
        Ok(self.inference_copy(params, *opts))
    }
}
