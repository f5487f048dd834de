//! The architecture: [`Arch`], one variant per family with its hyper-parameters (plain data, a
//! user model's `config.json` names it), the `Family` trait every family implements, the
//! dispatch from one to the other, stages and `feature_info`, and dry builds (parameter shapes
//! and counts without allocating).

use graft_backend::{Backend, Ctx, DType, ParamBuilder, ParamPath, Params, TensorData};
use graft_core::Result;
use graft_core::selector::{Stage, StageTable};
use serde::{Deserialize, Serialize};

use crate::families::{bert, convnext, efficientnet, mobilenetv3, resnet, vit};

use super::head::{ClassifierSpec, HeadSpec, init_classifier};

/// One trunk stage: its name (a [`StageTable`] entry), the parameter prefixes it owns, and what
/// its output is (timm's `feature_info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageSpec {
    pub name: String,
    pub prefixes: Vec<String>,
    /// Channels of the stage's output.
    pub channels: usize,
    /// Input size / output size (the stage's cumulative stride).
    pub reduction: usize,
}

/// timm's `feature_info` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeatureInfo {
    pub stage: String,
    pub channels: usize,
    pub reduction: usize,
}

/// What a forward pass carries beside the activations, computed once from the model's input:
/// a text encoder's padding (`keep`: `[N, T]`, 1 for a real token; `bias`: the additive
/// attention mask `[N, 1, 1, T]`). Empty for image families.
#[derive(Debug)]
pub(crate) struct Side<B: Backend> {
    pub keep: Option<B::Tensor>,
    pub bias: Option<B::Tensor>,
}

impl<B: Backend> Default for Side<B> {
    fn default() -> Self {
        Self {
            keep: None,
            bias: None,
        }
    }
}

/// What a family implements. Methods are generic over the backend, so dispatch goes through the
/// [`Arch`] enum rather than a trait object.
pub(crate) trait Family {
    /// Creates every trunk parameter and buffer under `root` (the reference's names and init).
    fn init_trunk<B: Backend>(&self, root: &ParamPath<'_, B>, in_chans: usize) -> Result<()>;
    /// Trunk stages, bottom to top.
    fn stage_specs(&self) -> Vec<StageSpec>;
    /// Prefixes of the head stage (for freezing: the final norm of ViT / ConvNeXt sits here).
    fn head_stage_prefixes(&self) -> Vec<String>;
    /// Where the classifier lives, how the reference initialises it, the dropout before it.
    fn classifier(&self) -> ClassifierSpec;
    /// Width of the pre-logits features.
    fn num_features(&self) -> usize;
    /// Runs trunk stage `i` on the previous stage's output (the image for stage 0).
    fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor>;
    /// What the stages need beside the activations, from the model input `x` (BERT's padding
    /// mask, in the float `dtype` of the parameters).
    fn side<B: Backend>(&self, _p: &Params<B>, _x: &B::Tensor, _dtype: DType) -> Result<Side<B>> {
        Ok(Side::default())
    }
    /// [`Family::forward_stage`] with the side inputs (families that need them override this).
    fn forward_stage_with<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        _side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        self.forward_stage(p, i, x, ctx)
    }
    /// [`Family::pool`] with the side inputs.
    fn pool_with<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        _side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        self.pool(p, x, ctx)
    }
    /// File keys the reference skips on load (non-persistent buffers older files still carry).
    fn ignored_keys(&self) -> Vec<&'static str> {
        Vec::new()
    }
    /// Applied after the last stage inside `forward_features` (ViT's final norm).
    fn finish_features<B: Backend>(&self, _p: &Params<B>, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(x.clone())
    }
    /// A stage's output as a multi-level feature (ViT: tokens → NCHW map).
    fn stage_output<B: Backend>(&self, _b: &B, _i: usize, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(x.clone())
    }
    /// [`Family::stage_output`] with the side inputs (BERT pools its tokens with the mask).
    fn stage_output_with<B: Backend>(
        &self,
        b: &B,
        i: usize,
        x: &B::Tensor,
        _side: &Side<B>,
    ) -> Result<B::Tensor> {
        self.stage_output(b, i, x)
    }
    /// Pooling to the pre-logits features the classifier sees.
    fn pool<B: Backend>(&self, p: &Params<B>, x: &B::Tensor, ctx: &Ctx<'_>) -> Result<B::Tensor>;
    /// Turns a tensor from a checkpoint whose shape differs from the model's into the model's
    /// shape when the family knows how (ViT position embeddings); `None` when it does not.
    fn adapt_tensor(
        &self,
        _name: &str,
        _data: &TensorData,
        _want: &[usize],
    ) -> Option<Result<TensorData>> {
        None
    }
    /// Key remaps from other layouts of the same network (timm ConvNeXt → torchvision).
    fn remaps(&self) -> Vec<crate::load::Remap> {
        Vec::new()
    }
}

/// The architecture of a model: a family and its hyper-parameters. Plain data (serialisable), so
/// a user model's `config.json` can name it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum Arch {
    ResNet(resnet::ResNet),
    MobileNetV3(mobilenetv3::MobileNetV3),
    EfficientNet(efficientnet::EfficientNet),
    ConvNeXt(convnext::ConvNeXt),
    Vit(vit::Vit),
    Bert(bert::Bert),
}

macro_rules! dispatch {
    ($self:expr, $f:ident ( $($arg:expr),* )) => {
        match $self {
            Arch::ResNet(a) => a.$f($($arg),*),
            Arch::MobileNetV3(a) => a.$f($($arg),*),
            Arch::EfficientNet(a) => a.$f($($arg),*),
            Arch::ConvNeXt(a) => a.$f($($arg),*),
            Arch::Vit(a) => a.$f($($arg),*),
            Arch::Bert(a) => a.$f($($arg),*),
        }
    };
}

impl Arch {
    /// The family's name (`resnet`, `mobilenetv3`, ...).
    pub fn family(&self) -> &'static str {
        match self {
            Arch::ResNet(_) => "resnet",
            Arch::MobileNetV3(_) => "mobilenetv3",
            Arch::EfficientNet(_) => "efficientnet",
            Arch::ConvNeXt(_) => "convnext",
            Arch::Vit(_) => "vit",
            Arch::Bert(_) => "bert",
        }
    }
    /// True for text encoders (input: `[N, T]` int64 token ids, not images).
    pub fn is_text(&self) -> bool {
        matches!(self, Arch::Bert(_))
    }
    pub(crate) fn init_trunk<B: Backend>(
        &self,
        root: &ParamPath<'_, B>,
        in_chans: usize,
    ) -> Result<()> {
        dispatch!(self, init_trunk(root, in_chans))
    }
    /// Trunk stages, bottom to top.
    pub fn stage_specs(&self) -> Vec<StageSpec> {
        dispatch!(self, stage_specs())
    }
    pub(crate) fn head_stage_prefixes(&self) -> Vec<String> {
        dispatch!(self, head_stage_prefixes())
    }
    /// The classifier's prefix (`fc`, `classifier.3`, `head`, ...), which `replace_head` replaces.
    pub fn classifier_prefix(&self) -> &'static str {
        self.classifier().prefix
    }
    pub(crate) fn classifier(&self) -> ClassifierSpec {
        dispatch!(self, classifier())
    }
    /// Width of the pre-logits features.
    pub fn num_features(&self) -> usize {
        dispatch!(self, num_features())
    }
    pub(crate) fn side<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        dtype: DType,
    ) -> Result<Side<B>> {
        dispatch!(self, side(p, x, dtype))
    }
    pub(crate) fn forward_stage<B: Backend>(
        &self,
        p: &Params<B>,
        i: usize,
        x: &B::Tensor,
        side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        dispatch!(self, forward_stage_with(p, i, x, side, ctx))
    }
    pub(crate) fn ignored_keys(&self) -> Vec<&'static str> {
        dispatch!(self, ignored_keys())
    }
    pub(crate) fn finish_features<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
    ) -> Result<B::Tensor> {
        dispatch!(self, finish_features(p, x))
    }
    pub(crate) fn stage_output<B: Backend>(
        &self,
        b: &B,
        i: usize,
        x: &B::Tensor,
        side: &Side<B>,
    ) -> Result<B::Tensor> {
        dispatch!(self, stage_output_with(b, i, x, side))
    }
    /// The token id a text encoder's padding holds (None for image models).
    pub fn pad_token_id(&self) -> Option<i64> {
        match self {
            Arch::Bert(b) => Some(b.pad_token_id),
            _ => None,
        }
    }
    pub(crate) fn pool<B: Backend>(
        &self,
        p: &Params<B>,
        x: &B::Tensor,
        side: &Side<B>,
        ctx: &Ctx<'_>,
    ) -> Result<B::Tensor> {
        dispatch!(self, pool_with(p, x, side, ctx))
    }
    pub(crate) fn adapt_tensor(
        &self,
        name: &str,
        data: &TensorData,
        want: &[usize],
    ) -> Option<Result<TensorData>> {
        dispatch!(self, adapt_tensor(name, data, want))
    }
    pub(crate) fn remaps(&self) -> Vec<crate::load::Remap> {
        dispatch!(self, remaps())
    }
    /// The stage table (trunk stages, then `head`).
    pub fn stage_table(&self) -> StageTable {
        let mut stages: Vec<Stage> = self
            .stage_specs()
            .into_iter()
            .map(|s| Stage {
                name: s.name,
                prefixes: s.prefixes,
            })
            .collect();
        stages.push(Stage {
            name: "head".into(),
            prefixes: self.head_stage_prefixes(),
        });
        // Stage names come from the family code and are unique by construction.
        StageTable::new(stages).unwrap_or_default()
    }
}

impl Arch {
    /// Input size the parameters were built for, when they depend on it (ViT).
    pub fn img_size(&self) -> Option<[usize; 2]> {
        match self {
            Arch::Vit(v) => Some(v.img_size),
            _ => None,
        }
    }
    /// Sets the input size (ViT rebuilds position embeddings for it); other families ignore it.
    pub fn set_img_size(&mut self, size: [usize; 2]) -> Result<()> {
        if let Arch::Vit(v) = self {
            v.set_img_size(size)?;
        }
        Ok(())
    }
    /// Overrides the stochastic-depth and classifier dropout rates.
    pub fn set_drop_rates(&mut self, drop_path: Option<f64>, drop: Option<f64>) {
        match self {
            Arch::ResNet(_) => {}
            Arch::MobileNetV3(m) => {
                if let Some(d) = drop {
                    m.dropout = d;
                }
            }
            Arch::EfficientNet(m) => {
                if let Some(d) = drop {
                    m.dropout = d;
                }
                if let Some(d) = drop_path {
                    m.stochastic_depth = d;
                }
            }
            Arch::ConvNeXt(m) => {
                if let Some(d) = drop_path {
                    m.stochastic_depth = d;
                }
            }
            Arch::Vit(m) => {
                if let Some(d) = drop_path {
                    m.drop_path = d;
                }
                if let Some(d) = drop {
                    m.drop = d;
                }
            }
            Arch::Bert(m) => {
                if let Some(d) = drop {
                    m.hidden_dropout = d;
                }
            }
        }
    }
}

/// Every parameter's and buffer's name, shape and kind for an architecture with a `head` of
/// `num_classes`, from a dry build (nothing allocated).
pub fn param_shapes_with_head<B: Backend>(
    backend: &B,
    arch: &Arch,
    head: &HeadSpec,
    num_classes: usize,
    in_chans: usize,
) -> Result<Vec<(String, Vec<usize>, graft_backend::ParamKind)>> {
    let builder = ParamBuilder::dry(backend.clone());
    arch.init_trunk(&builder.root(), in_chans)?;
    init_classifier(&builder.root(), arch, head, num_classes)?;
    Ok(builder.shapes())
}

/// Trainable parameter count (buffers excluded) of an architecture with a `head` of
/// `num_classes`, from a dry build (nothing allocated). [`crate::Registry::param_count`] is this
/// for a registered name.
pub fn count_parameters<B: Backend>(
    backend: &B,
    arch: &Arch,
    head: &HeadSpec,
    num_classes: usize,
    in_chans: usize,
) -> Result<usize> {
    Ok(
        param_shapes_with_head(backend, arch, head, num_classes, in_chans)?
            .iter()
            .filter(|(_, _, k)| *k == graft_backend::ParamKind::Parameter)
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum(),
    )
}
