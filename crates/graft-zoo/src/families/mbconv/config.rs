//! The `mbconv` family's hyper-parameters: the stem, every block (kind, kernel, stride, widths,
//! activation, squeeze-excitation, shortcut), the head, the model-wide padding and BatchNorm eps —
//! plain serde data, as `scripts/gen_archs.py` reads them off timm's models.

use serde::{Deserialize, Serialize};

use crate::layers::Act;

/// An activation of the builder's blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MbAct {
    None,
    Relu,
    Relu6,
    Silu,
    Hardswish,
}

impl From<MbAct> for Act {
    fn from(a: MbAct) -> Act {
        match a {
            MbAct::None => Act::None,
            MbAct::Relu => Act::Relu,
            MbAct::Relu6 => Act::Relu6,
            MbAct::Silu => Act::Silu,
            MbAct::Hardswish => Act::Hardswish,
        }
    }
}

/// The gate of a squeeze-excitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MbGate {
    Sigmoid,
    Hardsigmoid,
}

/// A block's squeeze-excitation (timm's `SqueezeExcite`): `rd` squeezed channels, its activation
/// and gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbSe {
    pub rd: usize,
    pub act: MbAct,
    pub gate: MbGate,
}

/// The kind of a block (timm's block-string prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MbKind {
    /// `DepthwiseSeparableConv`.
    Ds,
    /// `InvertedResidual` (MBConv).
    Ir,
    /// `EdgeResidual` (fused MBConv).
    Er,
    /// `ConvBnAct`.
    Cn,
    /// `UniversalInvertedResidual` (MobileNetV4; Qin et al. 2024): optional depthwise convs
    /// before the expansion (`dw_start`), after it (`dw_mid`, with the activation) and after the
    /// projection (`dw_end`); the stride on the first of them.
    Uir,
}

/// One block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbBlock {
    pub kind: MbKind,
    /// The spatial conv's kernel (`conv_dw`, `conv_exp` or `conv`; none in `uir`, whose
    /// depthwise convs have their own).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kernel: usize,
    pub stride: usize,
    #[serde(rename = "in")]
    pub input: usize,
    /// The expanded width (`ir`, `er`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<usize>,
    pub out: usize,
    pub act: MbAct,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub se: Option<MbSe>,
    /// `ds`: the activation after the point-wise conv too.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pw_act: bool,
    /// The shortcut, where it is not the builder's default (stride 1 and equal widths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<bool>,
    /// `uir`: the kernels of `dw_start`, `dw_mid`, `dw_end` where the block has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_kernel: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid_kernel: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_kernel: Option<usize>,
    /// `uir`: LayerScale (`layer_scale.gamma`) on the branch.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub layer_scale: bool,
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

impl MbBlock {
    pub(super) fn has_skip(&self) -> bool {
        self.skip
            .unwrap_or(self.stride == 1 && self.input == self.out)
    }
    pub(super) fn mid(&self) -> usize {
        self.mid.unwrap_or(self.input)
    }
    /// The conv whose output the block's BatchNorm `bn` (`bn1`…) normalises.
    pub(super) fn conv_of(&self, bn: &str) -> Option<&'static str> {
        Some(match (self.kind, bn) {
            (MbKind::Ds, "bn1") => "conv_dw",
            (MbKind::Ds, "bn2") => "conv_pw",
            (MbKind::Ir, "bn1") => "conv_pw",
            (MbKind::Ir, "bn2") => "conv_dw",
            (MbKind::Ir, "bn3") => "conv_pwl",
            (MbKind::Er, "bn1") => "conv_exp",
            (MbKind::Er, "bn2") => "conv_pwl",
            (MbKind::Cn, "bn1") => "conv",
            (MbKind::Uir, "dw_start.bn") => "dw_start.conv",
            (MbKind::Uir, "pw_exp.bn") => "pw_exp.conv",
            (MbKind::Uir, "dw_mid.bn") => "dw_mid.conv",
            (MbKind::Uir, "pw_proj.bn") => "pw_proj.conv",
            (MbKind::Uir, "dw_end.bn") => "dw_end.conv",
            _ => return None,
        })
    }
    /// `uir`: the stride of `dw_start`, `dw_mid`, `dw_end` (the first present takes the block's).
    pub(super) fn uir_strides(&self) -> [usize; 3] {
        let (a, b) = (self.start_kernel.is_some(), self.mid_kernel.is_some());
        [
            if b { 1 } else { self.stride },
            self.stride,
            if a || b { 1 } else { self.stride },
        ]
    }
}

/// The stem: a 3×3 stride-2 conv to `out` channels, BatchNorm, activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbStem {
    pub out: usize,
    pub act: MbAct,
}

/// Where the head's 1×1 conv sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MbHeadKind {
    /// EfficientNet: `conv_head` → `bn2` → activation, then the pool.
    ConvBn,
    /// MobileNetV3: the pool, then `conv_head` (bias optional) → activation.
    PoolConv,
    /// MobileNetV4: the pool, then `conv_head` → `norm_head` (BatchNorm) → activation.
    PoolConvBn,
}

/// The head conv.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbHead {
    pub kind: MbHeadKind,
    pub out: usize,
    pub act: MbAct,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bias: bool,
}

/// A network of timm's EfficientNet builder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MbConvNet {
    pub stem: MbStem,
    /// timm's stacks (`blocks.{i}`), each a list of blocks.
    pub stages: Vec<Vec<MbBlock>>,
    /// The stacks whose output is a feature level (timm's `feature_info`), ascending; the last is
    /// the last stack.
    pub levels: Vec<usize>,
    /// The head conv; none in MobileNetV1 (the pool follows the blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<MbHead>,
    /// TensorFlow's "same" padding on strided convs (timm's `tf_` ports).
    pub same_pad: bool,
    pub bn_eps: f64,
    /// Dropout before the classifier.
    pub drop_rate: f64,
    /// Stochastic depth: block `i` of `n` drops its residual branch with `rate · i / n`.
    pub drop_path_rate: f64,
}
