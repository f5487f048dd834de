//! The pretrained table (`crates/graft-zoo/data/pretrained.json`) against the venv's timm and
//! torchvision (tests/python/pretrained_reference.py): every timm tag on the Hugging Face Hub of every graft
//! architecture is listed and nothing else; each tag's cfg equals `get_pretrained_cfg(tag)`;
//! timm's `state_dict` for the tag (names and shapes, its head size) loads strictly into graft's
//! model through the remap tables; and each tag's eval transform on a real photo (scikit-learn's
//! `china.jpg`) is within 0.5 / 255 mean (8 / 255 max) of timm's or torchvision's.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use graft::NdArray;
use graft::zoo::pretrained::table;
use graft::zoo::{Registry, WeightsFile};
use serde_json::Value;

fn reference() -> (std::path::PathBuf, Value) {
    let out = common::temp_dir("pretrained-table");
    let reg = Registry::builtin();
    let mut args = vec![out.to_str().expect("utf-8").to_string()];
    args.extend(reg.list(None).iter().map(|e| e.name.clone()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::run_python("pretrained_reference.py", &args);
    let text = std::fs::read_to_string(out.join("reference.json")).expect("reference.json");
    (out, serde_json::from_str(&text).expect("json"))
}

fn size3(v: &Value) -> Option<[usize; 3]> {
    let a = v.as_array()?;
    Some([
        a[0].as_u64()? as usize,
        a[1].as_u64()? as usize,
        a[2].as_u64()? as usize,
    ])
}

fn f3(v: &Value) -> [f64; 3] {
    let a = v.as_array().expect("3 numbers");
    [
        a[0].as_f64().expect("f"),
        a[1].as_f64().expect("f"),
        a[2].as_f64().expect("f"),
    ]
}

fn opt_str(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

#[test]
fn the_table_is_what_timm_and_torchvision_say() {
    let (dir, r) = reference();
    let t = table().expect("table");
    let reg = Registry::builtin();

    // every Hub-hosted tag of every architecture timm knows, and only those
    let mut want: BTreeSet<String> = BTreeSet::new();
    for (arch, tags) in r["timm"].as_object().expect("timm") {
        for tag in tags.as_array().expect("tags") {
            want.insert(tag.as_str().expect("tag").to_string());
        }
        if let Some(d) = r["default"][arch].as_str() {
            let ours = t.timm.iter().find(|x| x.architecture == *arch && x.default);
            assert_eq!(
                ours.map(|x| x.tag.as_str()),
                Some(d),
                "default tag of {arch}"
            );
        }
    }
    let have: BTreeSet<String> = t.timm.iter().map(|x| x.tag.clone()).collect();
    assert_eq!(have, want, "re-run scripts/gen_pretrained.py");
    assert!(have.len() >= 72);

    let photo = std::path::PathBuf::from(r["photo"].as_str().expect("photo"));
    let mut worst = (0f64, 0f64, String::new());
    for row in &t.timm {
        let c = &r["cfgs"][&row.tag];
        let ctx = &row.tag;
        assert_eq!(
            c["hf_hub_id"].as_str(),
            Some(row.hf_hub_id.as_str()),
            "{ctx}"
        );
        assert_eq!(
            c["architecture"].as_str(),
            Some(row.architecture.as_str()),
            "{ctx}"
        );
        assert_eq!(size3(&c["input_size"]), Some(row.input_size), "{ctx}");
        assert_eq!(size3(&c["test_input_size"]), row.test_input_size, "{ctx}");
        assert_eq!(c["crop_pct"].as_f64(), Some(row.crop_pct), "{ctx}");
        assert_eq!(c["test_crop_pct"].as_f64(), row.test_crop_pct, "{ctx}");
        assert_eq!(
            c["crop_mode"].as_str().map(str::to_string),
            Some(format!("{:?}", row.crop_mode).to_lowercase()),
            "{ctx}"
        );
        assert_eq!(
            c["interpolation"].as_str().map(str::to_string),
            Some(format!("{:?}", row.interpolation).to_lowercase()),
            "{ctx}"
        );
        assert_eq!(f3(&c["mean"]), row.mean, "{ctx}");
        assert_eq!(f3(&c["std"]), row.std, "{ctx}");
        assert_eq!(
            c["num_classes"].as_u64(),
            Some(row.num_classes as u64),
            "{ctx}"
        );
        assert_eq!(opt_str(&c["license"]), row.license, "{ctx}");
        assert_eq!(opt_str(&c["origin_url"]), row.origin_url, "{ctx}");
        assert_eq!(opt_str(&c["paper_ids"]), row.paper_ids, "{ctx}");
        assert_eq!(opt_str(&c["paper_name"]), row.paper_name, "{ctx}");
        assert_eq!(
            opt_str(&c["first_conv"]),
            Some(row.first_conv.clone()),
            "{ctx}"
        );
        // timm names every classifier (DeiT distilled: `head`, `head_dist`); the row keeps the
        // first, the architecture knows them all (graft's own names may differ for one head)
        let heads: Vec<String> = match &c["classifier"] {
            Value::Array(a) => a.iter().filter_map(opt_str).collect(),
            v => opt_str(v).into_iter().collect(),
        };
        assert_eq!(heads.first(), Some(&row.classifier), "{ctx}");
        if heads.len() > 1 {
            let arch = &reg.get(&row.architecture).expect("registered").arch;
            assert_eq!(arch.classifier_prefixes(), heads, "{ctx}");
        }

        // timm's state_dict for the tag loads strictly into graft's model
        let keys = &r["keys"][format!("{}/{}", row.architecture, row.num_classes)];
        let index: BTreeMap<String, (Vec<usize>, String)> = keys
            .as_object()
            .expect("keys")
            .iter()
            .map(|(k, s)| {
                let shape: Vec<usize> = s
                    .as_array()
                    .expect("shape")
                    .iter()
                    .map(|d| d.as_u64().expect("dim") as usize)
                    .collect();
                let dt = if k.ends_with("num_batches_tracked") {
                    "int64"
                } else {
                    "float32"
                };
                (k.clone(), (shape, dt.to_string()))
            })
            .collect();
        let file = WeightsFile::index_only(Path::new(&row.tag), index);
        let report = reg
            .fit_with(&NdArray, &row.architecture, row.num_classes, &file)
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            report.is_clean() && report.head_dropped.is_empty() && report.defaulted.is_empty(),
            "{ctx}: {report}"
        );

        // the eval transform, at train size and at test size
        let base = reg.get(&row.architecture).expect("arch").cfg.clone();
        let cfg = row.apply(&base);
        let tr = &r["transforms"][&row.tag];
        let mut forms = vec![(graft::train::data_config(&cfg), "train")];
        if row.test_input_size.is_some() {
            forms.push((graft::train::data_config_test(&cfg), "test"));
        }
        assert_eq!(
            tr.as_object().expect("transforms").len(),
            forms.len(),
            "{ctx}"
        );
        for (tc, which) in forms {
            let npy = dir.join(tr[which].as_str().expect("file"));
            let (mean, max) = common::eval_transform_diff(&photo, &tc, &npy);
            assert!(
                mean <= 0.5 && max <= 8.0,
                "{ctx} {which}: mean {mean:.3}, max {max:.1}"
            );
            if mean > worst.0 {
                worst = (mean, max, format!("{ctx} {which}"));
            }
        }
    }

    // torchvision's weights: every member of every enum of graft's torchvision-named models
    let mut tv_want: BTreeSet<String> = BTreeSet::new();
    for (k, _) in r["transforms"].as_object().expect("transforms") {
        if k.starts_with("tv:") {
            tv_want.insert(k.clone());
        }
    }
    let tv_have: BTreeSet<String> = t.torchvision.iter().map(|w| w.tag.clone()).collect();
    assert_eq!(tv_have, tv_want, "re-run scripts/gen_pretrained.py");
    for w in &t.torchvision {
        let base = reg.get(&w.architecture).expect("arch").cfg.clone();
        let cfg = w.apply(&base);
        let npy = dir.join(r["transforms"][&w.tag]["train"].as_str().expect("file"));
        let (mean, max) =
            common::eval_transform_diff(&photo, &graft::train::data_config(&cfg), &npy);
        assert!(
            mean <= 0.5 && max <= 8.0,
            "{}: mean {mean:.3}, max {max:.1}",
            w.tag
        );
    }
    eprintln!(
        "{} timm tags, {} torchvision weights; worst eval transform: {} (mean {:.3}, max {:.1} in 0-255)",
        t.timm.len(),
        t.torchvision.len(),
        worst.2,
        worst.0,
        worst.1
    );
}
