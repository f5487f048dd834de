//! The `config.json` timm writes beside a model's weights on the Hub (`save_for_hf`):
//! `architecture`, `num_classes`, `num_features`, `global_pool`, `model_args` and the
//! `pretrained_cfg` the weights were trained with. Read into graft's [`UserModelConfig`]; what
//! graft cannot honour (another pooling, model arguments it does not build) is an error naming
//! the key, never a silently different model. The pooling it states is checked against the
//! architecture's when the model is registered ([`crate::Registry::register_files`]).

use std::path::Path;

use graft_core::{Error, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cfg::{CropMode, Interpolation, PretrainedCfg, UserModelConfig};

#[derive(Debug, Deserialize)]
struct TimmConfig {
    architecture: String,
    num_classes: usize,
    #[allow(dead_code)]
    num_features: usize,
    #[serde(default)]
    global_pool: Option<String>,
    #[serde(default)]
    model_args: Map<String, Value>,
    #[serde(default)]
    pretrained_cfg: Map<String, Value>,
    #[serde(default)]
    label_names: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    label_descriptions: Option<Value>,
}

/// Limits that catch a corrupt or hostile file before anything is allocated.
use graft_core::limits::{MAX_CLASSES, MAX_IN_CHANS as MAX_CHANS, MAX_INPUT_SIDE as MAX_SIDE};

pub(crate) fn read(path: &Path, text: &str) -> Result<UserModelConfig> {
    let bad = |key: &str, msg: String| Error::format(path, format!("{key}: {msg}"));
    let c: TimmConfig = serde_json::from_str(text).map_err(|e| {
        Error::format(
            path,
            format!("line {} column {}: {e}", e.line(), e.column()),
        )
    })?;
    if c.num_classes > MAX_CLASSES {
        return Err(bad(
            "num_classes",
            format!("{} is past graft's limit {MAX_CLASSES}", c.num_classes),
        ));
    }
    let pool = c.global_pool.clone().or_else(|| {
        c.model_args
            .get("global_pool")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let mut in_chans = None;
    let mut img_size = None;
    for (k, v) in &c.model_args {
        match k.as_str() {
            "in_chans" => {
                in_chans =
                    Some(as_size(v).ok_or_else(|| bad("model_args.in_chans", format!("{v}")))?)
            }
            "img_size" => {
                img_size = Some(match v {
                    Value::Array(a) if a.len() == 2 => [
                        as_size(&a[0]).ok_or_else(|| bad("model_args.img_size", format!("{v}")))?,
                        as_size(&a[1]).ok_or_else(|| bad("model_args.img_size", format!("{v}")))?,
                    ],
                    v => {
                        let s =
                            as_size(v).ok_or_else(|| bad("model_args.img_size", format!("{v}")))?;
                        [s, s]
                    }
                })
            }
            "num_classes" => {
                if as_size(v) != Some(c.num_classes) {
                    return Err(bad(
                        "model_args.num_classes",
                        format!("{v} differs from num_classes = {}", c.num_classes),
                    ));
                }
            }
            // train-time rates: no effect on the network's parameters or its eval forward
            "global_pool" | "drop_rate" | "drop_path_rate" | "pretrained_cfg_overlay" => {}
            other => {
                return Err(bad(
                    &format!("model_args.{other}"),
                    format!(
                        "{v}: graft builds {} from its registered shape and cannot apply this argument",
                        c.architecture
                    ),
                ));
            }
        }
    }
    let pc = &c.pretrained_cfg;
    let input_size = match pc.get("input_size") {
        Some(v) => triple(v).ok_or_else(|| bad("pretrained_cfg.input_size", format!("{v}")))?,
        None => [in_chans.unwrap_or(3), 224, 224],
    };
    let in_chans = in_chans.unwrap_or(input_size[0]);
    if !(1..=MAX_CHANS).contains(&in_chans) {
        return Err(bad("in_chans", format!("{in_chans} (1 to {MAX_CHANS})")));
    }
    if input_size[1..].iter().any(|&s| s == 0 || s > MAX_SIDE) {
        return Err(bad(
            "pretrained_cfg.input_size",
            format!("{input_size:?} (sides 1 to {MAX_SIDE})"),
        ));
    }
    if let Some([h, w]) = img_size
        && (h == 0 || w == 0 || h > MAX_SIDE || w > MAX_SIDE)
    {
        return Err(bad(
            "model_args.img_size",
            format!("{h}x{w} (sides 1 to {MAX_SIDE})"),
        ));
    }
    let test_input_size = match pc.get("test_input_size") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(triple(v).ok_or_else(|| bad("pretrained_cfg.test_input_size", format!("{v}")))?)
        }
    };
    let crop_pct = fraction(pc, "crop_pct", &bad)?.unwrap_or(0.875);
    let test_crop_pct = fraction(pc, "test_crop_pct", &bad)?;
    let interpolation = match pc.get("interpolation").and_then(Value::as_str) {
        None | Some("bilinear") => Interpolation::Bilinear,
        Some("bicubic") => Interpolation::Bicubic,
        Some("nearest") => Interpolation::Nearest,
        Some(o) => {
            return Err(bad(
                "pretrained_cfg.interpolation",
                format!("{o:?}: graft resamples bilinear, bicubic or nearest"),
            ));
        }
    };
    let crop_mode = match pc.get("crop_mode") {
        None | Some(Value::Null) => CropMode::Center,
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            bad(
                "pretrained_cfg.crop_mode",
                format!("{v}: expected center, squash or border"),
            )
        })?,
    };
    let mean = rgb(pc, "mean", crate::cfg::IMAGENET_MEAN, &bad)?;
    let std = rgb(pc, "std", crate::cfg::IMAGENET_STD, &bad)?;
    if std.iter().any(|&s| !(s.is_finite() && s > 0.0)) {
        return Err(bad(
            "pretrained_cfg.std",
            format!("{std:?}: every value must be finite and > 0"),
        ));
    }
    let labels = match &c.label_names {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => {
            let names: Option<Vec<String>> =
                a.iter().map(|v| v.as_str().map(str::to_string)).collect();
            let names = names.ok_or_else(|| bad("label_names", "expected strings".into()))?;
            if names.len() != c.num_classes {
                return Err(bad(
                    "label_names",
                    format!("{} names for num_classes = {}", names.len(), c.num_classes),
                ));
            }
            Some(names)
        }
        Some(Value::Object(m)) => {
            let mut names = vec![None; c.num_classes];
            for (k, v) in m {
                let i: usize = k
                    .parse()
                    .map_err(|_| bad("label_names", format!("key {k:?} is not a class index")))?;
                let slot = names
                    .get_mut(i)
                    .ok_or_else(|| bad("label_names", format!("index {i} >= num_classes")))?;
                *slot = v.as_str().map(str::to_string);
            }
            names.into_iter().collect::<Option<Vec<String>>>()
        }
        Some(v) => {
            return Err(bad(
                "label_names",
                format!("{v}: expected a list or an index map"),
            ));
        }
    };
    let tag = pc
        .get("tag")
        .and_then(Value::as_str)
        .map(|t| format!("{}.{t}", c.architecture));
    Ok(UserModelConfig {
        architecture: c.architecture.clone(),
        num_classes: c.num_classes,
        in_chans,
        img_size,
        head: crate::model::HeadSpec::Linear,
        tasks: Vec::new(),
        written_by_timm: Some(crate::cfg::TimmSays { global_pool: pool }),
        pretrained_cfg: PretrainedCfg {
            num_classes: c.num_classes,
            input_size: [in_chans, input_size[1], input_size[2]],
            mean,
            std,
            crop_pct,
            interpolation,
            // graft's names come from the registered architecture
            first_conv: String::new(),
            classifier: String::new(),
            source: "timm".into(),
            labels: labels.clone(),
            text: None,
            test_input_size: test_input_size.map(|t| [in_chans, t[1], t[2]]),
            test_crop_pct,
            crop_mode,
            tag,
            license: pc
                .get("license")
                .and_then(Value::as_str)
                .map(str::to_string),
        },
        label_names: labels,
    })
}

fn as_size(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

fn triple(v: &Value) -> Option<[usize; 3]> {
    let a = v.as_array()?;
    (a.len() == 3).then_some(())?;
    Some([as_size(&a[0])?, as_size(&a[1])?, as_size(&a[2])?])
}

fn fraction(
    pc: &Map<String, Value>,
    key: &str,
    bad: &dyn Fn(&str, String) -> Error,
) -> Result<Option<f64>> {
    match pc.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(f) if f > 0.0 && f <= 4.0 => Ok(Some(f)),
            _ => Err(bad(
                &format!("pretrained_cfg.{key}"),
                format!("{v}: expected a fraction in (0, 4]"),
            )),
        },
    }
}

fn rgb(
    pc: &Map<String, Value>,
    key: &str,
    default: [f64; 3],
    bad: &dyn Fn(&str, String) -> Error,
) -> Result<[f64; 3]> {
    let Some(v) = pc.get(key) else {
        return Ok(default);
    };
    let err = || {
        bad(
            &format!("pretrained_cfg.{key}"),
            format!("{v}: expected 1 or 3 finite numbers"),
        )
    };
    let a: Vec<f64> = v
        .as_array()
        .ok_or_else(err)?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<_>>()
        .ok_or_else(err)?;
    if a.iter().any(|x| !x.is_finite()) {
        return Err(err());
    }
    match a.as_slice() {
        [x] => Ok([*x; 3]),
        [r, g, b] => Ok([*r, *g, *b]),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(text: &str) -> Result<UserModelConfig> {
        read(Path::new("config.json"), text)
    }

    #[test]
    fn timm_configs_read_and_bad_ones_name_the_key() {
        let ok = r#"{"architecture": "resnet18", "num_classes": 1000, "num_features": 512,
            "global_pool": "avg", "model_args": {"in_chans": 3, "num_classes": 1000, "global_pool": "avg"},
            "pretrained_cfg": {"tag": "a1_in1k", "input_size": [3, 224, 224], "test_input_size": [3, 288, 288],
              "interpolation": "bicubic", "crop_pct": 0.95, "test_crop_pct": 1.0, "crop_mode": "center",
              "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 1000,
              "pool_size": [7, 7], "first_conv": "conv1", "classifier": "fc", "license": "apache-2.0"}}"#;
        let c = read_str(ok).expect("timm config");
        assert_eq!(c.architecture, "resnet18");
        assert_eq!(c.pretrained_cfg.test_input_size, Some([3, 288, 288]));
        assert_eq!(c.pretrained_cfg.tag.as_deref(), Some("resnet18.a1_in1k"));
        assert_eq!(c.pretrained_cfg.interpolation, Interpolation::Bicubic);
        let gray = r#"{"architecture": "vit_tiny_patch16_224", "num_classes": 5, "num_features": 192,
            "global_pool": "token", "model_args": {"num_classes": 5, "in_chans": 1, "global_pool": "token", "img_size": [224, 224]},
            "pretrained_cfg": {"input_size": [1, 224, 224], "mean": [0.5], "std": [0.5]}, "label_names": ["a","b","c","d","e"]}"#;
        let c = read_str(gray).expect("gray vit");
        assert_eq!((c.in_chans, c.img_size), (1, Some([224, 224])));
        assert_eq!(c.pretrained_cfg.mean, [0.5; 3]);
        assert_eq!(c.label_names.as_ref().map(Vec::len), Some(5));
        for (bad, key) in [
            (
                ok.replace(r#""in_chans": 3"#, r#""in_chans": 3, "depth": 50"#),
                "model_args.depth",
            ),
            (
                ok.replace(r#""in_chans": 3"#, r#""in_chans": 1000000000"#),
                "in_chans",
            ),
            (
                ok.replace("[3, 224, 224]", "[3, 100000, 100000]"),
                "pretrained_cfg.input_size",
            ),
            (
                ok.replace(r#""crop_pct": 0.95"#, r#""crop_pct": 0"#),
                "pretrained_cfg.crop_pct",
            ),
            (
                ok.replace("[0.229, 0.224, 0.225]", "[0, 0.224, 0.225]"),
                "pretrained_cfg.std",
            ),
            (
                ok.replace(r#""crop_mode": "center""#, r#""crop_mode": "zoom""#),
                "pretrained_cfg.crop_mode",
            ),
        ] {
            let e = read_str(&bad).expect_err(key);
            assert!(
                e.to_string().contains(key) && e.to_string().contains("config.json"),
                "{key}: {e}"
            );
        }
    }
}
