//! Pretrained weights graft can name, and the names a user types for them.
//!
//! `data/pretrained.json` (generated from the installed timm and torchvision by
//! `scripts/gen_pretrained.py`, checked against them by `tests/pretrained_table.rs`) lists every
//! timm pretrained tag whose architecture graft implements — where its file is on the Hugging
//! Face Hub and the cfg it was trained with — and torchvision's weight enums for graft's
//! torchvision-named models. Names:
//!
//! | typed | means |
//! |---|---|
//! | `resnet50.a1_in1k` | timm's tag: `timm/resnet50.a1_in1k` on the Hub |
//! | `resnet50` + pretrained | the architecture's default tag (timm's default) |
//! | `hf-hub:org/name[@revision]` | any Hub repo with a timm-style `config.json` and weights |
//! | `tv:resnet50.IMAGENET1K_V2` | torchvision's weights (`tv:resnet50.DEFAULT` is its default) |
//! | a registered name | a built-in architecture or a user model |

use std::sync::OnceLock;

use graft_core::{Error, Result};
use serde::Deserialize;

use crate::cfg::{CropMode, Interpolation, PretrainedCfg, imagenet_labels};

/// A timm pretrained tag.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimmTag {
    /// `resnet50.a1_in1k`.
    pub tag: String,
    /// timm's architecture name (a graft registry name).
    pub architecture: String,
    /// timm's default tag for the architecture.
    pub default: bool,
    /// The Hub repo holding the weights.
    pub hf_hub_id: String,
    /// The files timm tries, in order (the safetensors file before the pickle).
    pub files: Vec<String>,
    pub input_size: [usize; 3],
    pub test_input_size: Option<[usize; 3]>,
    pub crop_pct: f64,
    pub test_crop_pct: Option<f64>,
    pub crop_mode: CropMode,
    pub interpolation: Interpolation,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub num_classes: usize,
    /// `imagenet-1k`, `imagenet-21k-goog`, `imagenet-12k`, `none`, ...
    pub label_set: String,
    /// timm's names of the first conv and the classifier.
    pub first_conv: String,
    pub classifier: String,
    pub license: Option<String>,
    pub origin_url: Option<String>,
    pub paper_ids: Option<String>,
    pub paper_name: Option<String>,
}

/// A torchvision weights enum member.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TvWeights {
    /// `tv:resnet50.IMAGENET1K_V2`.
    pub tag: String,
    /// torchvision's builder name (a graft registry name).
    pub architecture: String,
    /// torchvision's `DEFAULT`.
    pub default: bool,
    /// `IMAGENET1K_V2`.
    pub weights: String,
    pub url: String,
    /// The file name, with the sha256 prefix torch checks (`resnet50-11ad3fa6.pth`).
    pub file: String,
    pub input_size: [usize; 3],
    /// The shorter side is resized to this before the center crop.
    pub resize_size: usize,
    pub interpolation: Interpolation,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub num_classes: usize,
    pub label_set: String,
    pub num_params: usize,
    pub recipe: Option<String>,
    pub acc_at_1: Option<f64>,
    pub license: String,
}

/// The whole table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainedTable {
    pub generated_by: String,
    pub timm_version: String,
    pub torchvision_version: String,
    pub timm: Vec<TimmTag>,
    pub torchvision: Vec<TvWeights>,
}

/// The table shipped in the crate.
pub fn table() -> Result<&'static PretrainedTable> {
    static TABLE: OnceLock<std::result::Result<PretrainedTable, String>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            serde_json::from_str(include_str!("../data/pretrained.json")).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::invalid("pretrained table", e.clone()))
}

/// What a model name refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A registered name (built-in architecture or user model), or an architecture whose
    /// default tag `pretrained` asks for.
    Name(String),
    /// A timm tag (`resnet50.a1_in1k`).
    Tag(String),
    /// A Hub repo with a timm-style `config.json` (`hf-hub:org/name@revision`).
    HfHub {
        repo: String,
        revision: Option<String>,
    },
    /// torchvision weights (`tv:resnet50.IMAGENET1K_V2`).
    Torchvision { arch: String, weights: String },
}

impl ModelRef {
    /// Parses what a user typed. A name with a `.` is a tag; registered names have none.
    pub fn parse(name: &str) -> Result<Self> {
        let name = name.trim();
        if let Some(rest) = name
            .strip_prefix("hf-hub:")
            .or_else(|| name.strip_prefix("hf_hub:"))
        {
            let (repo, revision) = match rest.split_once('@') {
                Some((r, v)) => (r, Some(v.to_string())),
                None => (rest, None),
            };
            graft_hub::check_repo_id(repo)?;
            if let Some(v) = &revision {
                graft_hub::check_revision(v)?;
            }
            return Ok(ModelRef::HfHub {
                repo: repo.to_string(),
                revision,
            });
        }
        if let Some(rest) = name.strip_prefix("tv:") {
            let (arch, weights) = rest.split_once('.').unwrap_or((rest, "DEFAULT"));
            return Ok(ModelRef::Torchvision {
                arch: arch.to_string(),
                weights: weights.to_string(),
            });
        }
        if name.contains('.') {
            return Ok(ModelRef::Tag(name.to_string()));
        }
        Ok(ModelRef::Name(name.to_string()))
    }
}

/// The timm tag `tag`; an unknown one is an error suggesting the architecture's tags.
pub fn timm_tag(tag: &str) -> Result<&'static TimmTag> {
    let t = table()?;
    t.timm.iter().find(|r| r.tag == tag).ok_or_else(|| {
        let arch = tag.split('.').next().unwrap_or(tag);
        let same: Vec<&str> = t
            .timm
            .iter()
            .filter(|r| r.architecture == arch)
            .map(|r| r.tag.as_str())
            .collect();
        Error::UnknownModel {
            name: tag.into(),
            hint: if same.is_empty() {
                "no pretrained tag of that architecture; `graft models --pretrained` lists them"
                    .into()
            } else {
                format!("{arch} has {}", same.join(", "))
            },
        }
    })
}

/// timm's default tag of an architecture, if it has tags.
pub fn default_tag(arch: &str) -> Result<Option<&'static TimmTag>> {
    Ok(table()?
        .timm
        .iter()
        .find(|r| r.architecture == arch && r.default))
}

/// The pretrained name `pretrained` gives an architecture: timm's default tag, else
/// torchvision's `DEFAULT` weights (`tv:arch.WEIGHTS`), else none.
pub fn default_name(arch: &str) -> Result<Option<String>> {
    if let Some(t) = default_tag(arch)? {
        return Ok(Some(t.tag.clone()));
    }
    Ok(tv_weights(arch, "DEFAULT").ok().map(|w| w.tag.clone()))
}

/// The files a timm-style Hub repo may hold its weights in, in the order timm tries them.
pub const HUB_WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// torchvision's weights `weights` (or `DEFAULT`) of `arch`.
pub fn tv_weights(arch: &str, weights: &str) -> Result<&'static TvWeights> {
    let t = table()?;
    let of_arch: Vec<&TvWeights> = t
        .torchvision
        .iter()
        .filter(|r| r.architecture == arch)
        .collect();
    of_arch
        .iter()
        .find(|r| r.weights == weights || (weights == "DEFAULT" && r.default))
        .copied()
        .ok_or_else(|| Error::UnknownModel {
            name: format!("tv:{arch}.{weights}"),
            hint: if of_arch.is_empty() {
                "torchvision weights exist for resnet18/34/50/101, mobilenet_v3_large/small, efficientnet_b0, convnext_tiny".into()
            } else {
                format!(
                    "{arch} has {}",
                    of_arch.iter().map(|r| r.weights.as_str()).collect::<Vec<_>>().join(", ")
                )
            },
        })
}

/// Every tag, timm's then torchvision's, whose name matches a wildcard pattern.
pub fn list_pretrained(pattern: Option<&str>) -> Result<Vec<String>> {
    let t = table()?;
    let m = |n: &str| pattern.is_none_or(|p| p.is_empty() || crate::registry::wildcard_match(p, n));
    Ok(t.timm
        .iter()
        .map(|r| r.tag.clone())
        .chain(t.torchvision.iter().map(|r| r.tag.clone()))
        .filter(|n| m(n))
        .collect())
}

/// A PyTorch pickle by its extension (`.pth`, `.pt`, `.bin`, `.ckpt`).
pub fn is_pickle(path: &std::path::Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("pth" | "pt" | "bin" | "ckpt")
    )
}

fn labels_for(set: &str) -> Option<Vec<String>> {
    (set == "imagenet-1k").then(imagenet_labels)
}

impl TimmTag {
    /// The cfg a model built for this tag carries: the registry's (graft's names of the first
    /// conv and classifier) with the tag's input, crop, normalisation, classes and labels.
    pub fn apply(&self, base: &PretrainedCfg) -> PretrainedCfg {
        PretrainedCfg {
            num_classes: self.num_classes,
            input_size: self.input_size,
            mean: self.mean,
            std: self.std,
            crop_pct: self.crop_pct,
            interpolation: self.interpolation,
            first_conv: base.first_conv.clone(),
            classifier: base.classifier.clone(),
            source: "timm".into(),
            labels: labels_for(&self.label_set),
            text: None,
            test_input_size: self.test_input_size,
            test_crop_pct: self.test_crop_pct,
            crop_mode: self.crop_mode,
            tag: Some(self.tag.clone()),
            license: self.license.clone(),
        }
    }
}

impl TvWeights {
    /// `crop / resize` (`floor(crop / crop_pct)` gives back `resize_size`; tested for every
    /// entry).
    pub fn crop_pct(&self) -> f64 {
        self.input_size[1] as f64 / self.resize_size as f64
    }
    /// The cfg a model built with these weights carries.
    pub fn apply(&self, base: &PretrainedCfg) -> PretrainedCfg {
        PretrainedCfg {
            num_classes: self.num_classes,
            input_size: self.input_size,
            mean: self.mean,
            std: self.std,
            crop_pct: self.crop_pct(),
            interpolation: self.interpolation,
            first_conv: base.first_conv.clone(),
            classifier: base.classifier.clone(),
            source: "torchvision".into(),
            labels: labels_for(&self.label_set),
            text: None,
            test_input_size: None,
            test_crop_pct: None,
            crop_mode: CropMode::Center,
            tag: Some(self.tag.clone()),
            license: Some(self.license.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_parses_and_names_resolve() {
        let t = table().expect("table");
        assert!(t.timm.len() >= 72, "{}", t.timm.len());
        let r = timm_tag("resnet50.a1_in1k").expect("tag");
        assert_eq!(r.hf_hub_id, "timm/resnet50.a1_in1k");
        assert_eq!(r.files, ["model.safetensors", "pytorch_model.bin"]);
        assert_eq!(r.test_input_size, Some([3, 288, 288]));
        assert_eq!(
            default_tag("resnet50").expect("t").map(|t| t.tag.as_str()),
            Some("resnet50.a1_in1k")
        );
        let e = timm_tag("resnet50.nope").expect_err("unknown");
        assert!(e.to_string().contains("resnet50.a1_in1k"), "{e}");
        // `pretrained` on an architecture: timm's default tag, else torchvision's DEFAULT
        assert_eq!(
            default_name("resnet50").expect("d").as_deref(),
            Some("resnet50.a1_in1k")
        );
        assert_eq!(
            default_name("mobilenet_v3_large").expect("d").as_deref(),
            Some("tv:mobilenet_v3_large.IMAGENET1K_V2")
        );
        assert_eq!(default_name("resnet18_small").expect("d"), None);
        let tv = tv_weights("resnet50", "DEFAULT").expect("default");
        assert_eq!(tv.weights, "IMAGENET1K_V2");
        assert_eq!(tv.file, "resnet50-11ad3fa6.pth");
        for w in &t.torchvision {
            let scale = (w.input_size[1] as f64 / w.crop_pct()).floor() as usize;
            assert_eq!(scale, w.resize_size, "{}", w.tag);
        }
        assert!(tv_weights("resnet50", "IMAGENET1K_V9").is_err());
        // every architecture of the table is registered
        let reg = crate::Registry::builtin();
        for a in t
            .timm
            .iter()
            .map(|r| &r.architecture)
            .chain(t.torchvision.iter().map(|r| &r.architecture))
        {
            reg.get(a).expect(a);
        }
        // resnet18's seven tags and resnet18d's two
        let r18 = list_pretrained(Some("resnet18.*")).expect("list");
        assert_eq!(r18.len(), 7, "{r18:?}");
        assert_eq!(list_pretrained(Some("resnet18*")).expect("list").len(), 9);
        assert_eq!(
            list_pretrained(Some("tv:resnet50*")).expect("list").len(),
            2
        );
    }

    #[test]
    fn names_parse() {
        assert_eq!(
            ModelRef::parse("resnet50").expect("p"),
            ModelRef::Name("resnet50".into())
        );
        assert_eq!(
            ModelRef::parse("resnet50.a1_in1k").expect("p"),
            ModelRef::Tag("resnet50.a1_in1k".into())
        );
        assert_eq!(
            ModelRef::parse("hf-hub:timm/resnet18.a1_in1k@refs/pr/1").expect("p"),
            ModelRef::HfHub {
                repo: "timm/resnet18.a1_in1k".into(),
                revision: Some("refs/pr/1".into())
            }
        );
        assert_eq!(
            ModelRef::parse("tv:resnet50.IMAGENET1K_V2").expect("p"),
            ModelRef::Torchvision {
                arch: "resnet50".into(),
                weights: "IMAGENET1K_V2".into()
            }
        );
        assert!(ModelRef::parse("hf-hub:../x").is_err());
        assert!(ModelRef::parse("hf-hub:a/b@../../etc").is_err());
    }
}
