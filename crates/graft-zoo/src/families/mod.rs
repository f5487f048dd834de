//! The model families, one file each, and their one registration: the [`families!`] list below.
//!
//! A family is a file that defines its hyper-parameters (plain serde data), implements
//! `crate::model::Family` (parameters with the reference's names, stages, forward, pooling,
//! and what is particular to it — what its trunk takes, its input check, image size, drop rates,
//! BatchNorm eps for folding, the reference's `no_weight_decay`), and lists its built-in
//! architectures with their pretrained cfgs (`builtins()`). Adding one is that file plus one
//! line here: the line generates the [`Arch`] variant, its dispatch, its name, its built-ins'
//! registration and the reading of its entries in `data/archs.json`.

/// Declares the families: `Variant(module::Type) = "name"` per family. Generates the modules,
/// the [`Arch`] enum (its serde tag is the variant name in snake_case — what user models'
/// `config.json` files hold), `dispatch!` (a `Family` method on whichever family an `Arch` is),
/// `Arch::family` and [`builtins`]. `$d` is a `$` handed in so the generated macro can have
/// metavariables of its own.
macro_rules! families {
    ($d:tt $($variant:ident($module:ident::$ty:ident) = $name:literal),+ $(,)?) => {
        $(pub mod $module;)+

        /// The architecture of a model: a family and its hyper-parameters. Plain data
        /// (serialisable), so a user model's `config.json` can name it.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(tag = "family", rename_all = "snake_case")]
        pub enum Arch {
            $($variant($module::$ty),)+
        }

        /// Calls a `Family` method on whichever family `$self` (an `Arch`, `&` or `&mut`) is.
        macro_rules! dispatch {
            ($d self_:expr, $d f:ident ( $d ($d arg:expr),* )) => {
                match $d self_ {
                    $(Arch::$variant(a) => a.$d f($d ($d arg),*),)+
                }
            };
        }

        impl Arch {
            /// The family's name (`resnet`, `mobilenetv3`, ...).
            pub fn family(&self) -> &'static str {
                match self {
                    $(Arch::$variant(_) => $name,)+
                }
            }
        }

        /// Parses `config` as the configuration of the family named `family`; `None` when no
        /// family has that name.
        pub(crate) fn parse_config(
            family: &str,
            config: serde_json::Value,
        ) -> Option<std::result::Result<Arch, serde_json::Error>> {
            match family {
                $($name => Some(serde_json::from_value::<$module::$ty>(config).map(Arch::$variant)),)+
                _ => None,
            }
        }

        /// Every family's built-in architectures, in the list's order.
        pub(crate) fn builtins() -> Vec<crate::registry::Builtin> {
            let mut all = Vec::new();
            $(all.extend($module::builtins());)+
            all
        }
    };
}

families! { $
    ResNet(resnet::ResNet) = "resnet",
    MobileNetV3(mobilenetv3::MobileNetV3) = "mobilenetv3",
    EfficientNet(efficientnet::EfficientNet) = "efficientnet",
    MbConvNet(mbconv::MbConvNet) = "mbconv",
    ConvNeXt(convnext::ConvNeXt) = "convnext",
    RegNet(regnet::RegNet) = "regnet",
    Vit(vit::Vit) = "vit",
    Swin(swin::Swin) = "swin",
    Bert(bert::Bert) = "bert",
    ClipText(clip_text::ClipText) = "clip_text",
}
