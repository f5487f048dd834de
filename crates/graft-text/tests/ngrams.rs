//! The character n-gram baseline against scikit-learn's `TfidfVectorizer(analyzer="char_wb")` in
//! the venv: the same vocabulary and the same TF-IDF rows, on VADER tokens and a few sentences.

mod common;

use graft_text::{CharNgrams, VaderLexicon};

fn corpus() -> Vec<String> {
    let path = common::site_package(VaderLexicon::PACKAGE_PATH);
    let lex = VaderLexicon::load(&path).expect("lexicon");
    let mut v: Vec<String> = lex
        .entries
        .iter()
        .take(400)
        .map(|e| e.token.clone())
        .collect();
    v.extend(
        [
            "Hello  World, this is   a TEST",
            "a",
            "",
            "naïve café ÜBER straße",
            "(-:",
        ]
        .map(String::from),
    );
    v
}

#[test]
fn char_wb_tfidf_matches_scikit_learn() {
    let texts = corpus();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ng = CharNgrams::fit(&refs, 2, 4, usize::MAX).expect("fit");
    let got = ng.transform(&refs);
    let script = r#"
import json, sys
from sklearn.feature_extraction.text import TfidfVectorizer
texts = json.loads(sys.stdin.read())
v = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4))
x = v.fit_transform(texts).toarray()
print(json.dumps({"dim": x.shape[1], "rows": x.tolist()}))
"#;
    let v = common::python_json(&["-c", script], &serde_json::json!(texts));
    let dim = v["dim"].as_u64().expect("dim") as usize;
    assert_eq!(ng.dim(), dim, "vocabulary size");
    let mut worst = 0f64;
    for (i, row) in v["rows"].as_array().expect("rows").iter().enumerate() {
        for (j, want) in row.as_array().expect("row").iter().enumerate() {
            let d = (f64::from(got[i * dim + j]) - want.as_f64().expect("f64")).abs();
            worst = worst.max(d);
        }
    }
    assert!(worst < 1e-6, "max |graft - sklearn| = {worst}");
}

#[test]
fn max_features_keeps_the_most_frequent_and_unknown_text_is_zero() {
    let texts = ["aaaa", "aaab", "zz"];
    let ng = CharNgrams::fit(&texts, 2, 2, 2).expect("fit");
    assert_eq!(ng.dim(), 2);
    // "aa" (5) and " a" (2) are the most frequent bigrams; "zz" has neither.
    let x = ng.transform(&["zz", "aa"]);
    assert!(x[..2].iter().all(|&v| v == 0.0));
    let norm: f32 = x[2..].iter().map(|v| v * v).sum();
    assert!((norm - 1.0).abs() < 1e-6);
    assert!(CharNgrams::fit(&texts, 3, 2, 10).is_err());
}
