//! CLIP against open_clip in the venv: a CLIP open_clip builds from its own configuration with
//! random weights (tests/python/clip_reference.py), written in open_clip's Hub layout, read by
//! graft (`Clip::from_dir`): the same token ids as `open_clip.tokenize` through graft's tokenizer
//! on a CLIP `tokenizer.json`, and the same image and text embeddings — cosine >= 0.9999 per row
//! on graft-tch, >= 0.999 on graft-ndarray — for OpenAI's layout (QuickGELU, class token, a bare
//! projection) and for open_clip's `CustomTextCLIP` (`text.*` keys, GELU, LayerScale, average
//! pooling, a non-square input, a projection with bias, a shorter context).

mod common;

use std::path::Path;

use graft::Backend;
use graft::backend::{Ctx, DType, TensorData};
use graft::extract::{ClipEncoder, FeatureSpec, Features, embed_with};
use graft::text::Tokenizer;
use graft::zoo::ClipConfig;

fn cosines(got: &[f32], want: &ndarray::ArrayD<f32>) -> Vec<f64> {
    let dim = want.shape()[1];
    let w: Vec<f32> = want.iter().copied().collect();
    w.chunks(dim)
        .zip(got.chunks(dim))
        .map(|(w, g)| {
            let dot: f64 = g
                .iter()
                .zip(w)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let n = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            dot / (n(g) * n(w))
        })
        .collect()
}

fn meta(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).expect("meta"))
        .expect("meta json")
}

fn texts(meta: &serde_json::Value) -> Vec<String> {
    meta["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("text").to_string())
        .collect()
}

/// graft's ids equal open_clip's (its rows padded with 0 to the context length).
fn check_tokens(dir: &Path) {
    let meta = meta(dir);
    let ctx = meta["context_length"].as_u64().expect("ctx") as usize;
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json"), ctx).expect("tokenizer");
    let want: ndarray::ArrayD<i64> = ndarray_npy::read_npy(dir.join("ids.npy")).expect("ids");
    for (i, text) in texts(&meta).iter().enumerate() {
        let got: Vec<i64> = tok
            .ids(text)
            .expect("ids")
            .into_iter()
            .map(i64::from)
            .collect();
        let row: Vec<i64> = want
            .index_axis(ndarray::Axis(0), i)
            .iter()
            .copied()
            .collect();
        let real = row.iter().rposition(|&v| v != 0).map_or(0, |p| p + 1);
        assert_eq!(got, row[..real], "text {i} ({text:?})");
        assert!(got.len() <= ctx);
    }
}

fn check<B: Backend>(backend: &B, dir: &Path, min_cos: f64) -> (f64, f64) {
    let (enc, report) =
        ClipEncoder::from_dir(backend, "fixture", dir, None).expect("load open_clip files");
    assert!(report.visual.is_clean(), "{}", report.visual);
    assert!(report.text.is_clean(), "{}", report.text);
    assert!(report.visual.missing.is_empty() && report.text.missing.is_empty());
    let meta = meta(dir);
    let scale = meta["logit_scale"].as_f64().expect("scale");
    assert!(
        (enc.logit_scale() - scale).abs() <= 1e-5 * scale,
        "{} vs {scale}",
        enc.logit_scale()
    );

    // images
    let images: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(dir.join("images.npy")).expect("images");
    let x = TensorData::f32(images.shape(), images.iter().copied().collect()).expect("data");
    let y = enc
        .visual()
        .forward(&backend.from_data(&x).expect("to backend"), &Ctx::eval())
        .expect("image tower");
    let got: Vec<f32> = backend
        .to_data(&backend.cast(&y, DType::F32).expect("cast"))
        .expect("data")
        .to_f32()
        .iter()
        .copied()
        .collect();
    let want: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("image_emb.npy")).expect("emb");
    assert_eq!(got.len(), want.len());
    let img_cos = cosines(&got, &want);
    for (i, c) in img_cos.iter().enumerate() {
        assert!(*c >= min_cos, "{}: image {i}: cosine {c}", backend.name());
    }

    // texts, in batches of 3 of length-sorted texts: padding inside every batch
    let texts = texts(&meta);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (emb, _) = embed_with(enc.text().model(), enc.text().tokenizer(), &refs, 3).expect("embed");
    let want: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("text_emb.npy")).expect("emb");
    assert_eq!(emb.len(), want.len());
    let txt_cos = cosines(&emb, &want);
    for (i, c) in txt_cos.iter().enumerate() {
        assert!(
            *c >= min_cos,
            "{}: text {i} ({:?}): cosine {c}",
            backend.name(),
            texts[i]
        );
    }
    // the same texts one call, one batch: the same embeddings
    let whole = enc.embed_texts(&refs).expect("embed");
    assert!(cosines(&whole, &want).iter().all(|c| *c >= min_cos));

    // zero-shot: open_clip's classifier from the 80 ImageNet templates, and its logits
    let classes: Vec<String> = meta["zero_shot_classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| c.as_str().expect("class").to_string())
        .collect();
    let zs = enc.zero_shot(&classes, None).expect("zero-shot classifier");
    let want: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(dir.join("zs_weights.npy")).expect("weights");
    let zs_cos = cosines(&zs.class_embeddings, &want);
    assert!(zs_cos.iter().all(|c| *c >= min_cos), "{zs_cos:?}");
    let n = got.len() / zs.dim;
    let f = Features {
        n,
        dim: zs.dim,
        data: got,
        labels: vec![0; n],
        classes: classes.clone(),
        spec: FeatureSpec::Logits,
    };
    let logits: Vec<f64> = zs
        .scores(&f)
        .expect("scores")
        .iter()
        .map(|s| f64::from(*s) * enc.logit_scale())
        .collect();
    let want: ndarray::ArrayD<f32> =
        ndarray_npy::read_npy(dir.join("zs_logits.npy")).expect("logits");
    let worst = logits
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= 1e-3,
        "{}: zero-shot logits differ by {worst}",
        backend.name()
    );
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    (min(&img_cos), min(&txt_cos))
}

fn parity(id: &str) {
    let dir = common::python_fixture("clip_reference.py", id);
    check_tokens(&dir);
    let tch = check(&graft::Tch::cpu(), &dir, 0.9999);
    let nd = check(&graft::NdArray, &dir, 0.999);
    eprintln!("{id}: min cosine image / text: tch {tch:?}, ndarray {nd:?}");
}

#[test]
fn openai_layout_matches_open_clip() {
    parity("openai");
}

#[test]
fn custom_text_layout_matches_open_clip() {
    parity("custom");
}

#[test]
fn a_config_graft_does_not_build_is_refused_naming_the_key() {
    let dir = common::temp_dir("clip-config");
    let cases = [
        (
            r#"{"embed_dim": 8, "vision_cfg": {"attentional_pool": true}}"#,
            "vision_cfg.attentional_pool",
        ),
        (
            r#"{"embed_dim": 8, "text_cfg": {"hf_model_name": "bert-base-uncased"}}"#,
            "text_cfg.hf_model_name",
        ),
        (
            r#"{"embed_dim": 8, "text_cfg": {"pool_type": "last"}}"#,
            "text_cfg.pool_type",
        ),
        (
            r#"{"embed_dim": 8, "vision_cfg": {"widht": 64}}"#,
            "vision_cfg.widht",
        ),
        (
            r#"{"model_cfg": {"embed_dim": 8}, "preprocess_cfg": {"mean": [0.5]}}"#,
            "preprocess_cfg.mean",
        ),
        (r#"{"vision_cfg": {}}"#, "config.embed_dim"),
    ];
    for (json, key) in cases {
        let path = dir.join("open_clip_config.json");
        std::fs::write(&path, json).expect("write");
        let err = ClipConfig::from_file(&path).expect_err(json).to_string();
        assert!(err.contains(key), "{json}: {err}");
        assert!(err.contains("open_clip_config.json"), "{err}");
    }
}
