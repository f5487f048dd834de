//! The classifier on top of the pooled features: [`HeadSpec`] (Linear, MLP, DeiT's distilled
//! pair), how each family's reference initialises its head, and building it.

use graft_backend::{Backend, ParamPath};
use graft_core::Result;
use serde::{Deserialize, Serialize};

use super::arch::Arch;

/// How a family's reference initialises its classifier's weight (the bias starts at zero, except
/// with PyTorch's default Linear init).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum HeadInit {
    /// `nn.Linear`'s default (torchvision ResNet's `fc`).
    TorchDefault,
    /// N(0, std) (torchvision MobileNetV3).
    Normal(f64),
    /// U(±1/√num_classes) (torchvision EfficientNet).
    UniformInvSqrtOut,
    /// trunc_normal(0.02) (torchvision ConvNeXt, timm ViT).
    TruncNormal02,
}

/// A family's classifier: where it lives and how the reference builds it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassifierSpec {
    pub prefix: &'static str,
    pub init: HeadInit,
    /// Dropout applied to the pooled features before the classifier (train mode only).
    pub dropout: f64,
    pub dropout_path: &'static str,
}

/// The classifier on top of the pooled features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HeadSpec {
    /// One Linear at the family's classifier prefix (the reference's head).
    #[default]
    Linear,
    /// Hidden Linear + ReLU + dropout layers, then the output Linear: `{prefix}.hidden{i}`,
    /// `{prefix}.out`. Hidden layers use PyTorch's default Linear init, the output layer the
    /// family's head init.
    Mlp { hidden: Vec<usize>, dropout: f64 },
    /// DeiT's distilled classifier (Touvron et al. 2021, "Training data-efficient image
    /// transformers & distillation through attention"; timm `deit.py`): a Linear `head` on the
    /// class token and a Linear `head_dist` on the distillation token, their logits averaged — as
    /// timm computes them in eval, and in training unless distillation training is switched on.
    /// Only on a trunk with a distillation token, where it is the reference's head. It reads the
    /// two tokens, not their mean (the pooled features), so a cache of pooled features trains a
    /// `Linear` head instead.
    Distilled,
}

impl HeadSpec {
    /// An MLP head.
    pub fn mlp(hidden: &[usize], dropout: f64) -> Self {
        HeadSpec::Mlp {
            hidden: hidden.to_vec(),
            dropout,
        }
    }
}

fn init_final<B: Backend>(
    p: &ParamPath<'_, B>,
    init: HeadInit,
    in_f: usize,
    out_f: usize,
) -> Result<()> {
    use graft_backend::Init;
    let (w, b) = match init {
        HeadInit::TorchDefault => (
            Init::TorchDefaultWeight,
            Init::TorchDefaultBias { fan_in: in_f },
        ),
        HeadInit::Normal(std) => (Init::Normal { mean: 0.0, std }, Init::Zeros),
        HeadInit::UniformInvSqrtOut => {
            let r = 1.0 / (out_f as f64).sqrt();
            (Init::Uniform { lo: -r, hi: r }, Init::Zeros)
        }
        HeadInit::TruncNormal02 => (crate::layers::TRUNC_02, Init::Zeros),
    };
    p.param("weight", &[out_f, in_f], w)?;
    p.param("bias", &[out_f], b)?;
    Ok(())
}

/// Creates the classifier of `arch` for `num_classes` (nothing when 0).
pub(crate) fn init_classifier<B: Backend>(
    root: &ParamPath<'_, B>,
    arch: &Arch,
    head: &HeadSpec,
    num_classes: usize,
) -> Result<()> {
    if num_classes == 0 {
        return Ok(());
    }
    if *head == HeadSpec::Distilled {
        let c = arch.classifier();
        let Some(dist) = arch.dist_head_prefix() else {
            return Err(graft_core::Error::invalid(
                "head",
                "the distilled head needs a trunk with a distillation token (DeiT distilled)",
            ));
        };
        init_final(
            &root.sub(c.prefix)?,
            c.init,
            arch.num_features(),
            num_classes,
        )?;
        return init_final(&root.sub(dist)?, c.init, arch.num_features(), num_classes);
    }
    init_head_at(root, arch.classifier().prefix, arch, head, num_classes)
}

/// Creates a Linear or MLP head at `prefix` on `arch`'s pooled features, initialised as the
/// family initialises its classifier (the model's classifier, or a task head).
pub(crate) fn init_head_at<B: Backend>(
    root: &ParamPath<'_, B>,
    prefix: &str,
    arch: &Arch,
    head: &HeadSpec,
    outputs: usize,
) -> Result<()> {
    let init = arch.classifier().init;
    let p = root.sub(prefix)?;
    match head {
        HeadSpec::Linear => init_final(&p, init, arch.num_features(), outputs),
        HeadSpec::Distilled => Err(graft_core::Error::invalid(
            "head",
            format!(
                "{prefix}: the distilled head is the classifier of a DeiT distilled trunk only"
            ),
        )),
        HeadSpec::Mlp { hidden, .. } => {
            let mut width = arch.num_features();
            for (i, &h) in hidden.iter().enumerate() {
                graft_backend::nn::init_linear(&p.sub(format!("hidden{i}"))?, width, h, true)?;
                width = h;
            }
            init_final(&p.sub("out")?, init, width, outputs)
        }
    }
}

/// A Linear or MLP head at `prefix` on (already dropped-out) pooled features `x`.
pub(crate) fn forward_head_at<B: Backend>(
    params: &graft_backend::Params<B>,
    prefix: &str,
    head: &HeadSpec,
    x: &B::Tensor,
    ctx: &graft_backend::Ctx<'_>,
) -> Result<B::Tensor> {
    match head {
        HeadSpec::Linear => graft_backend::nn::linear(params, prefix, x),
        HeadSpec::Distilled => Err(graft_core::Error::invalid(
            "head",
            format!("{prefix}: the distilled head reads a DeiT's two tokens, not pooled features"),
        )),
        HeadSpec::Mlp { hidden, dropout } => {
            let b = params.backend();
            let mut y = x.clone();
            for i in 0..hidden.len() {
                let path = format!("{prefix}.hidden{i}");
                y = b.relu(&graft_backend::nn::linear(params, &path, &y)?)?;
                y = graft_backend::nn::dropout(b, &y, *dropout, ctx, &path)?;
            }
            graft_backend::nn::linear(params, &format!("{prefix}.out"), &y)
        }
    }
}
