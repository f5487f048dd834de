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

/// graft's ids equal open_clip's (its rows padded with 0 to the context length), through the
/// fixture's tokenizer.json and through the CLIP tokenizer graft ships.
fn check_tokens(dir: &Path) {
    let meta = meta(dir);
    let ctx = meta["context_length"].as_u64().expect("ctx") as usize;
    let file = Tokenizer::from_file(&dir.join("tokenizer.json"), ctx).expect("tokenizer");
    let shipped = Tokenizer::clip(ctx).expect("CLIP tokenizer");
    assert_eq!(shipped.pad_id(), 0);
    assert_eq!(shipped.vocab_size(), 49408);
    for tok in [file, shipped] {
        check_ids(&tok, &meta, dir, ctx);
    }
}

fn check_ids(tok: &Tokenizer, meta: &serde_json::Value, dir: &Path, ctx: usize) {
    let want: ndarray::ArrayD<i64> = ndarray_npy::read_npy(dir.join("ids.npy")).expect("ids");
    for (i, text) in texts(meta).iter().enumerate() {
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
    let img_cos = common::cosines(&got, &want);
    for (i, c) in img_cos.iter().enumerate() {
        assert!(*c >= min_cos, "{}: image {i}: cosine {c}", backend.name());
    }

    // texts, in batches of 3 of length-sorted texts: padding inside every batch
    let texts = texts(&meta);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let (emb, _) = embed_with(enc.text().model(), enc.text().tokenizer(), &refs, 3).expect("embed");
    let want: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("text_emb.npy")).expect("emb");
    assert_eq!(emb.len(), want.len());
    let txt_cos = common::cosines(&emb, &want);
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
    assert!(common::cosines(&whole, &want).iter().all(|c| *c >= min_cos));

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
    let zs_cos = common::cosines(&zs.class_embeddings, &want);
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

/// Solves `(AᵀA + λI) X = AᵀY` for X (`a`: rows × d, `y`: rows × e), by Gauss–Jordan in f64.
fn ridge(a: &[f64], y: &[f64], rows: usize, d: usize, e: usize, lambda: f64) -> Vec<f64> {
    let mut m = vec![0f64; d * (d + e)];
    for r in 0..rows {
        for i in 0..d {
            for j in 0..d {
                m[i * (d + e) + j] += a[r * d + i] * a[r * d + j];
            }
            for j in 0..e {
                m[i * (d + e) + d + j] += a[r * d + i] * y[r * e + j];
            }
        }
    }
    for i in 0..d {
        m[i * (d + e) + i] += lambda;
    }
    for c in 0..d {
        let p = (c..d)
            .max_by(|&x, &y| {
                m[x * (d + e) + c]
                    .abs()
                    .total_cmp(&m[y * (d + e) + c].abs())
            })
            .expect("rows");
        for j in 0..d + e {
            m.swap(c * (d + e) + j, p * (d + e) + j);
        }
        let piv = m[c * (d + e) + c];
        for j in 0..d + e {
            m[c * (d + e) + j] /= piv;
        }
        for r in 0..d {
            if r != c {
                let f = m[r * (d + e) + c];
                for j in 0..d + e {
                    m[r * (d + e) + j] -= f * m[c * (d + e) + j];
                }
            }
        }
    }
    (0..d)
        .flat_map(|i| (0..e).map(move |j| (i, j)))
        .map(|(i, j)| m[i * (d + e) + d + j])
        .collect()
}

fn unit(v: &mut [f64]) {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= n.max(1e-12));
}

/// A CLIP whose towers agree classifies images by their class names. Both towers are random
/// (average-pooled image tower), then made to agree as contrastive pretraining would on real
/// pairs: the image tower's projection is fitted (ridge regression, on half of scikit-learn's
/// digits) to send an image to a code of its class, and the text tower's projection to send the
/// prompts "a bad photo of a seven." ... (40 of CLIP's templates) to the same code. The zero-shot
/// classifier, built from the class names alone through the tokenizer, the text tower and prompt
/// ensembling, then labels the held-out digits nearly as well as the codes themselves — also
/// through the 40 templates the fit never saw — and with the names shifted by one, wrongly.
#[test]
fn towers_that_agree_classify_images_by_name() {
    use graft::data::{ArrayDataset, Dataset, Sample};
    let b = graft::Tch::cpu();
    let cfg = r#"{"embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8, "pool_type": "avg"},
        "text_cfg": {"context_length": 32, "width": 32, "heads": 2, "layers": 2}}"#;
    let cfg = ClipConfig::from_json(
        Path::new("synthetic.json"),
        serde_json::from_str(cfg).expect("json"),
    )
    .expect("config");
    let clip = graft::zoo::Clip::build(&b, "synthetic", cfg, 7).expect("build");
    let tok_dir = common::python_fixture("clip_reference.py", "openai");
    let tok = Tokenizer::from_file(&tok_dir.join("tokenizer.json"), 32).expect("tokenizer");
    let mut enc = ClipEncoder::new(clip, tok).expect("encoder");

    // the digits, 8×8 → 32×32 (nearest) × 3 channels, through the image tower's trunk
    let ds = ArrayDataset::digits();
    let (e, n, d) = (32usize, ds.len(), 64usize);
    let images = |enc: &ClipEncoder<graft::Tch>, head: bool| -> Vec<f64> {
        let mut out = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(300) {
            let mut x = Vec::with_capacity(chunk.len() * 3 * 32 * 32);
            for &i in chunk {
                let Sample::Image(im) = ds.get(i).expect("digit") else {
                    panic!("image")
                };
                for _ in 0..3 {
                    for r in 0..32 {
                        for c in 0..32 {
                            x.push(im.data[(r / 4) * 8 + c / 4] * 2.0 - 1.0);
                        }
                    }
                }
            }
            let x = b
                .from_data(&TensorData::f32(&[chunk.len(), 3, 32, 32], x).expect("data"))
                .expect("x");
            let v = enc.visual();
            let y = if head {
                v.forward(&x, &Ctx::eval())
            } else {
                v.forward_pooled(&x, &Ctx::eval())
            }
            .expect("forward");
            out.extend(
                b.to_data(&y)
                    .expect("y")
                    .to_f32()
                    .iter()
                    .map(|v| f64::from(*v)),
            );
        }
        out
    };
    let labels = ds.labels();
    // The image tower's projection is fitted (ridge, on the even-indexed images) to send each
    // image to a code of its class: ten orthonormal directions of the shared space.
    let codes: Vec<f64> = (0..10 * e)
        .map(|k| if k % e == k / e { 1.0 } else { 0.0 })
        .collect();
    let pooled = images(&enc, false);
    let train: Vec<usize> = (0..n).step_by(2).collect();
    let a: Vec<f64> = train
        .iter()
        .flat_map(|&i| pooled[i * d..(i + 1) * d].iter().copied().chain([1.0]))
        .collect();
    let y: Vec<f64> = train
        .iter()
        .flat_map(|&i| codes[labels[i] * e..(labels[i] + 1) * e].to_vec())
        .collect();
    let w = ridge(&a, &y, train.len(), d + 1, e, 1e-2);
    let weight: Vec<f32> = (0..e)
        .flat_map(|j| (0..d).map(move |i| (i, j)))
        .map(|(i, j)| w[i * e + j] as f32)
        .collect();
    let bias: Vec<f32> = (0..e).map(|j| w[d * e + j] as f32).collect();
    let params = enc.visual_mut().params_mut();
    params
        .replace(
            "head.weight",
            b.from_data(&TensorData::f32(&[e, d], weight).expect("w"))
                .expect("w"),
        )
        .expect("weight");
    params
        .replace(
            "head.bias",
            b.from_data(&TensorData::f32(&[e], bias).expect("b"))
                .expect("b"),
        )
        .expect("bias");
    let img = images(&enc, true);
    let means = codes.clone();
    let held: Vec<usize> = (1..n).step_by(2).collect();
    let nearest = |rows: &[f64], i: usize| -> usize {
        let x = &img[i * e..(i + 1) * e];
        (0..rows.len() / e)
            .max_by(|&a, &c| {
                let dot = |k: usize| {
                    rows[k * e..(k + 1) * e]
                        .iter()
                        .zip(x)
                        .map(|(p, q)| p * q)
                        .sum::<f64>()
                };
                dot(a).total_cmp(&dot(c))
            })
            .expect("classes")
    };
    let acc = |pred: &dyn Fn(usize) -> usize| {
        held.iter().filter(|&&i| pred(i) == labels[i]).count() as f64 / held.len() as f64
    };
    // the upper bound: each held-out image to the nearest class code
    let ncm = acc(&|i| nearest(&means, i));

    // fit the text projection: prompts of the first 40 templates → their class's image mean
    let names: Vec<String> = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let templates = graft::extract::imagenet_templates();
    let (fit, other) = templates.split_at(40);
    let eye: Vec<f32> = (0..e * e)
        .map(|k| if k % (e + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    let set_proj = |enc: &mut ClipEncoder<graft::Tch>, p: Vec<f32>| {
        let t = b
            .from_data(&TensorData::f32(&[e, e], p).expect("p"))
            .expect("p");
        enc.text_mut()
            .model_mut()
            .params_mut()
            .replace("text_projection", t)
            .expect("replace");
    };
    set_proj(&mut enc, eye);
    let prompts = graft::extract::prompts(&names, fit).expect("prompts");
    let flat: Vec<&str> = prompts.iter().flatten().map(String::as_str).collect();
    let mut h: Vec<f64> = enc
        .embed_texts(&flat)
        .expect("embed")
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    h.chunks_mut(e).for_each(unit);
    let y: Vec<f64> = (0..flat.len())
        .flat_map(|r| means[(r / fit.len()) * e..(r / fit.len() + 1) * e].to_vec())
        .collect();
    let p = ridge(&h, &y, flat.len(), e, e, 1e-3);
    set_proj(&mut enc, p.iter().map(|v| *v as f32).collect());

    let zero_shot_acc = |enc: &ClipEncoder<graft::Tch>, names: &[String], templates: &[String]| {
        let zs = enc.zero_shot(names, Some(templates)).expect("zero-shot");
        let rows: Vec<f64> = zs.class_embeddings.iter().map(|v| f64::from(*v)).collect();
        acc(&|i| nearest(&rows, i))
    };
    let seen = zero_shot_acc(&enc, &names, fit);
    let unseen = zero_shot_acc(&enc, &names, other);
    let mut shuffled = names.clone();
    shuffled.rotate_left(1);
    let wrong = zero_shot_acc(&enc, &shuffled, other);
    eprintln!(
        "held-out digits: nearest class code {ncm:.3}, zero-shot by name {seen:.3} (fitted templates) / {unseen:.3} (the other 40), names shifted by one {wrong:.3}"
    );
    assert!(
        ncm > 0.5,
        "the fitted image tower does not separate the digits: {ncm}"
    );
    // by name: most of what the class codes themselves give (chance: 0.1), with the fitted
    // prompts and with 40 prompts the fit never saw; the names shifted by one: wrong labels
    assert!(seen >= 0.8 * ncm, "{seen} vs {ncm}");
    assert!(unseen >= 0.7 * ncm, "{unseen} vs {ncm}");
    assert!(wrong < 0.15, "{wrong}");
}

fn hub_cfg(endpoint: &str, cache: &Path) -> graft::hub::HubConfig {
    let mut c = graft::hub::HubConfig::from_vars(|_| None);
    c.endpoint = endpoint.to_string();
    c.cache_dir = cache.to_path_buf();
    c.torch_home = cache.join("torch");
    c.progress = false;
    c.retries = 1;
    c
}

/// A CLIP pulled from a Hub (the stand-in on 127.0.0.1): by `hf-hub:` with the repo's
/// tokenizer.json, from a repo without one (CLIP's own BPE takes its place), by a timm tag whose
/// repo carries open_clip's files, offline from the cache afterwards; a repo without
/// open_clip's configuration is refused by name.
#[test]
fn a_clip_comes_from_the_hub() {
    use graft::hub::stand_in::StandIn;
    let dir = common::python_fixture("clip_reference.py", "openai");
    let read = |f: &str| std::fs::read(dir.join(f)).expect(f);
    let server = StandIn::start().expect("server");
    let files = |tok: bool| {
        let mut v = vec![
            ("open_clip_config.json", read("open_clip_config.json")),
            (
                "open_clip_model.safetensors",
                read("open_clip_model.safetensors"),
            ),
        ];
        if tok {
            v.push(("tokenizer.json", read("tokenizer.json")));
        }
        v
    };
    server.publish("graft-test/clip", "main", &files(true));
    server.publish("graft-test/clip-no-tokenizer", "main", &files(false));
    server.publish(
        "timm/vit_base_patch16_clip_224.openai",
        "main",
        &files(false),
    );
    server.publish(
        "graft-test/not-clip",
        "main",
        &[("model.safetensors", read("open_clip_model.safetensors"))],
    );
    let cache = common::temp_dir("clip-hub");
    let mut cfg = hub_cfg(&server.endpoint(), &cache);
    let meta = meta(&dir);
    let texts = texts(&meta);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let want: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.join("text_emb.npy")).expect("emb");
    let b = graft::Tch::cpu();
    for offline in [false, true] {
        cfg.offline = offline;
        let hub = graft::hub::Hub::new(cfg.clone());
        for reference in [
            "hf-hub:graft-test/clip",
            "hf-hub:graft-test/clip-no-tokenizer@main",
            "vit_base_patch16_clip_224.openai",
        ] {
            let (enc, report) = ClipEncoder::pretrained(&b, reference, &hub)
                .unwrap_or_else(|e| panic!("{reference} (offline {offline}): {e}"));
            assert!(report.visual.is_clean() && report.text.is_clean());
            let got = enc.embed_texts(&refs).expect("embed");
            let cos = common::cosines(&got, &want);
            assert!(cos.iter().all(|c| *c >= 0.9999), "{reference}: {cos:?}");
        }
        let err = ClipEncoder::pretrained(&b, "hf-hub:graft-test/not-clip", &hub)
            .expect_err("not a CLIP")
            .to_string();
        if offline {
            assert!(err.contains("open_clip_config.json"), "{err}");
        } else {
            assert!(err.contains("no open_clip_config.json"), "{err}");
        }
    }
}
