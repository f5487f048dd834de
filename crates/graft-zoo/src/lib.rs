//! graft-zoo: the model zoo. Families written once over [`graft_backend::Backend`] with the
//! reference's `state_dict` names (torchvision ResNet / MobileNetV3 / EfficientNet / ConvNeXt,
//! timm's ResNet, RegNet, EfficientNet / MobileNet, ConvNeXt, ViT / EVA and Swin builders, HF
//! BERT for text encoders such as sentence-transformers' MiniLM, open_clip's CLIP text tower), a
//! registry with wildcard listing, pretrained cfgs and user models, CLIPs read from open_clip's
//! configuration and checkpoint ([`Clip`]), and graft's own weight loader with a report of
//! everything it applied, skipped, adapted or could not fit.
//!
//! Owns: architectures as plain data ([`Arch`]; one file per family plus one line in the
//! families list), what each model takes (the typed batch contract: `Model::input_kind`,
//! `Model::forward_batch`), parameter names and initialisation as the
//! references do them, the per-family stage tables and feature info, key remap tables between
//! layouts, position-embedding resampling, the safetensors loader and its [`LoadReport`], and
//! inference copies ([`Model::for_inference`]: BatchNorm folded, channels-last, bf16), a
//! multi-task model's named heads ([`TaskHead`], `tasks.<name>.*`, saved and rebuilt with it), and
//! where a text model's files are ([`TextModelFiles`]: a given directory or an installed package's).
//!
//! Also which pretrained weights exist and what they were trained with
//! ([`pretrained`]: timm's tags and torchvision's weights, generated from them), the names a
//! user types for them, timm's `config.json`, and `torch.save` files read without running them
//! ([`torch_file`]); fetching files is graft-hub's.
//!
//! Must not know: concrete backends (tch, ndarray), optimizers, training, TOML, the CLI, HTTP,
//! tokenisation (a text model takes ids; graft-text makes them). Freezing
//! and learning-rate policy belong to graft-surgery; the zoo only says which parameters form
//! which stage.

pub mod arch_table;
pub mod cfg;
pub mod clip;
#[macro_use]
mod families;
mod fetch;
pub mod inference;
mod layers;
pub mod load;
pub mod model;
pub mod pretrained;
pub mod registry;
mod resample;
pub mod text;
mod timm_config;
pub mod torch_file;
mod weights_file;

pub use cfg::{CropMode, Interpolation, PretrainedCfg, TextCfg, UserModelConfig};
pub use clip::{Clip, ClipConfig, ClipLoadReport};
pub use families::bert::{Bert, HiddenAct, TextPooling};
pub use families::clip_text::{ClipAct, ClipText};
pub use families::convnext::ConvNeXt;
pub use families::efficientnet::{EfficientNet, MbStage};
pub use families::mbconv::{
    MbAct, MbBlock, MbConvNet, MbGate, MbHead, MbHeadKind, MbKind, MbSe, MbStem,
};
pub use families::mobilenetv3::{IrBlock, MobileNetV3};
pub use families::regnet::{RegNet, RegStage};
pub use families::resnet::{Block, ResNet};
pub use families::swin::Swin;
pub use families::vit::{PosResample, RopeGrid, Vit, VitAct, VitMlp, VitPool, VitQkv, VitRope};
pub use fetch::{pull_tag, pull_tv};
pub use graft_hub::{Hub, HubConfig};
pub use inference::{InferenceOptions, Layout};
pub use load::{LoadOptions, LoadReport, Remap, ShapeMismatch, WeightsFile, adapt_input_conv};
pub use model::{
    Arch, FeatureInfo, HeadSpec, Model, ModelOptions, StageSpec, TASKS_PREFIX, TaskHead,
    count_parameters, is_task_param, param_shapes_with_head,
};
pub use pretrained::{ModelRef, TimmTag, TvWeights, list_pretrained};
pub use registry::{Registry, RegistryEntry, create_model, list_models, wildcard_match};
pub use text::TextModelFiles;
