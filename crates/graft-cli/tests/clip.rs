//! `graft embed --clip` and a CLIP's zero-shot head in an experiment file, against open_clip:
//! a CLIP open_clip built with random weights (the facade's tests/python/clip_reference.py),
//! PNG files in class folders, open_clip's own preprocessing and predictions.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ok, report, run_dir, tmp, write};

/// The reference (open_clip's files, images, embeddings) in a fresh directory.
fn fixture(tag: &str) -> PathBuf {
    let dir = tmp(tag);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var_os("GRAFT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    assert!(python.exists(), "{}: run `make setup`", python.display());
    let out = Command::new(python)
        .arg(root.join("tests/python/clip_reference.py"))
        .arg("openai")
        .arg(dir.join("clip"))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "clip_reference.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn npy(path: &Path) -> ndarray::ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn min_cosine(got: &ndarray::ArrayD<f32>, want: &ndarray::ArrayD<f32>) -> f64 {
    assert_eq!(got.shape(), want.shape());
    let d = want.shape()[1];
    let (g, w): (Vec<f32>, Vec<f32>) = (
        got.iter().copied().collect(),
        want.iter().copied().collect(),
    );
    g.chunks(d)
        .zip(w.chunks(d))
        .map(|(a, b)| {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            dot / (n(a) * n(b))
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn clip_embeds_images_and_texts_as_open_clip_does() {
    let dir = fixture("clip-embed");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("clip/meta.json")).expect("meta"))
            .expect("json");
    let texts: Vec<&str> = meta["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("text"))
        .collect();
    write(&dir, "texts.txt", &(texts.join("\n") + "\n"));
    ok(
        &dir,
        &[
            "embed",
            "--clip",
            "--model",
            "clip",
            "--input",
            "texts.txt",
            "--output",
            "t.npy",
        ],
    );
    let c = min_cosine(
        &npy(&dir.join("t.npy")),
        &npy(&dir.join("clip/text_emb.npy")),
    );
    assert!(c >= 0.9999, "texts: {c}");

    // the PNG files: decoded, resized, cropped and normalised by graft vs open_clip's
    // preprocessing; one directory, rows in file-name order
    std::fs::create_dir_all(dir.join("imgs")).expect("imgs");
    let files: Vec<&str> = meta["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("file"))
        .collect();
    for (i, f) in files.iter().enumerate() {
        std::fs::copy(
            dir.join("clip").join(f),
            dir.join(format!("imgs/{i:02}.png")),
        )
        .expect("copy");
    }
    ok(
        &dir,
        &[
            "embed",
            "--clip",
            "--model",
            "clip",
            "--input",
            "imgs",
            "--output",
            "i.npy",
            "--batch-size",
            "5",
        ],
    );
    let c = min_cosine(
        &npy(&dir.join("i.npy")),
        &npy(&dir.join("clip/file_emb.npy")),
    );
    assert!(c >= 0.999, "images: {c}");
    // one image alone
    ok(
        &dir,
        &[
            "embed",
            "--clip",
            "--model",
            "clip",
            "--input",
            "imgs/03.png",
            "--output",
            "one.npy",
        ],
    );
    assert_eq!(npy(&dir.join("one.npy")).shape(), &[1, 48]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_clip_zero_shot_experiment_predicts_what_open_clip_predicts() {
    let dir = fixture("clip-zero-shot");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("clip/meta.json")).expect("meta"))
            .expect("json");
    write(
        &dir,
        "zs.toml",
        r#"
[model]
name = "clip"
clip = true

[data]
test = "clip/folder"

[strategy]
head = "zero_shot"
"#,
    );
    let r = report(&dir.join(run_dir(&ok(&dir, &["extract", "zs.toml"]))));
    // open_clip's predictions, in its class order, as the data's (sorted folder) classes
    let ref_classes: Vec<&str> = meta["zero_shot_classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| c.as_str().expect("class"))
        .collect();
    let mut sorted = ref_classes.clone();
    sorted.sort();
    let pred: ndarray::ArrayD<i64> =
        ndarray_npy::read_npy(dir.join("clip/file_pred.npy")).expect("pred");
    let files: Vec<&str> = meta["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("f"))
        .collect();
    let mut want = vec![vec![0u64; 4]; 4];
    for (f, p) in files.iter().zip(pred.iter()) {
        let truth = f.split('/').nth(1).expect("class folder");
        let t = sorted.iter().position(|c| *c == truth).expect("class");
        let q = sorted
            .iter()
            .position(|c| *c == ref_classes[*p as usize])
            .expect("class");
        want[t][q] += 1;
    }
    let got: Vec<Vec<u64>> = r["metrics"]["test"]["confusion"]
        .as_array()
        .expect("confusion")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|v| v.as_u64().expect("count"))
                .collect()
        })
        .collect();
    assert_eq!(got, want, "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn clip_prompt_mistakes_are_located() {
    let dir = tmp("clip-prompts");
    for c in ["cat", "dog"] {
        std::fs::create_dir_all(dir.join("folder").join(c)).expect("dirs");
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([120, 30, 200]));
        img.save(dir.join("folder").join(c).join("a.png"))
            .expect("png");
    }
    let cases = [
        (
            "no_slot.toml",
            "[model]\nname = \"somewhere\"\nclip = true\n[data]\ntest = \"folder\"\n[strategy]\nhead = \"zero_shot\"\ntemplates = [\"a photo\"]\n",
            "no_slot.toml:8:13: ",
        ),
        (
            "bad_name.toml",
            "[model]\nname = \"somewhere\"\nclip = true\n[data]\ntest = \"folder\"\n[strategy]\nhead = \"zero_shot\"\nclass_names = { cow = \"a cow\" }\n",
            "bad_name.toml:8:15: class_names: \"cow\" is not a class of the data",
        ),
        (
            "not_clip.toml",
            "[model]\nname = \"resnet18\"\n[data]\ntest = \"folder\"\n[strategy]\nhead = \"zero_shot\"\ntemplates = \"imagenet\"\n",
            "not_clip.toml:7:13: templates / class_names are a CLIP's prompts",
        ),
        (
            "features.toml",
            "[model]\nname = \"somewhere\"\nclip = true\n[data]\ntest = \"folder\"\n[strategy]\nhead = \"zero_shot\"\nfeatures = \"blocks.1\"\n",
            "features.toml:8:12: a CLIP's zero-shot head reads the image embedding",
        ),
        (
            "stray.toml",
            "[model]\nname = \"somewhere\"\nclip = true\n[data]\ntest = \"folder\"\n[strategy]\nhead = \"logistic\"\ntemplates = \"imagenet\"\n",
            "stray.toml:8:13: templates applies to head = \"zero_shot\"",
        ),
        (
            "weights.toml",
            "[model]\nname = \"somewhere\"\nclip = true\nweights = \"w.safetensors\"\n[data]\ntest = \"folder\"\n",
            "weights.toml:4:11: model.weights does not apply to a CLIP",
        ),
    ];
    for (name, text, want) in cases {
        write(&dir, name, text);
        let err = common::fails(&dir, &["extract", name]);
        assert!(err.starts_with(&format!("error: {want}")), "{name}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CLIP's image tower as the trunk of the other routes: a logistic head on its pooled
/// features, and fine-tuning with a new head.
#[test]
fn a_clip_image_tower_is_a_trunk() {
    let dir = fixture("clip-trunk");
    write(
        &dir,
        "lin.toml",
        "[model]\nname = \"clip\"\nclip = true\n[data]\ntrain = \"clip/folder\"\ntest = \"clip/folder\"\n[strategy]\nhead = \"logistic\"\n",
    );
    let r = report(&dir.join(run_dir(&ok(&dir, &["extract", "lin.toml"]))));
    assert_eq!(
        r["extraction"]["train"]["dim"], 64,
        "the tower's own width: {r}"
    );
    let acc = r["metrics"]["test"]["accuracy"].as_f64().expect("acc");
    assert!(
        acc > 0.5,
        "a logistic head on the images it was fitted on: {acc}"
    );
    write(
        &dir,
        "ft.toml",
        "[model]\nname = \"clip\"\nclip = true\n[data]\ntrain = \"clip/folder\"\nval = \"clip/folder\"\ntest = \"clip/folder\"\nbatch_size = 4\n[train]\nepochs = 1\nprogress = false\n",
    );
    let r = report(&dir.join(run_dir(&ok(&dir, &["finetune", "ft.toml"]))));
    assert_eq!(r["test"]["samples"], 12, "{r}");
    assert!(r["test"]["top1"].as_f64().is_some(), "{r}");
    // the fine-tuned tower with its new 4-class head, exported as a user model
    let exported = dir.join(r["exported"].as_str().expect("exported"));
    assert!(exported.join("model.safetensors").is_file() && exported.join("config.json").is_file());
    let _ = std::fs::remove_dir_all(&dir);
}
