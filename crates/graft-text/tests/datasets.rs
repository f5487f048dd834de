//! Text datasets from CSV / TSV / JSONL: quoting, column choice, class order, fixed classes for a
//! test file, errors that name file:line, stratified splits and k-shot.

use std::path::PathBuf;

use graft_text::{TextColumns, TextDataset, TextFormat};

fn write(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, body).expect("write");
    p
}

#[test]
fn csv_quoting_columns_and_class_order() {
    let d = tempfile::tempdir().expect("tmp");
    let p = write(
        &d,
        "reviews.csv",
        "id,review,stars\n1,\"Great, really great\",10\n2,\"said \"\"meh\"\"\nand left\",2\n3,fine,10\n4,bad,9\n",
    );
    let cols = TextColumns {
        text: "review".into(),
        label: "stars".into(),
    };
    let ds = TextDataset::read(&p, None, &cols, None).expect("read");
    assert_eq!(ds.len(), 4);
    assert_eq!(ds.texts[0], "Great, really great");
    assert_eq!(ds.texts[1], "said \"meh\"\nand left");
    // Integer labels sort numerically: 2 < 9 < 10.
    assert_eq!(ds.classes, vec!["2", "9", "10"]);
    assert_eq!(ds.labels, vec![2, 0, 2, 1]);
    assert_eq!(ds.class_counts(), vec![1, 1, 2]);
}

#[test]
fn tsv_and_jsonl_read_the_same_rows() {
    let d = tempfile::tempdir().expect("tmp");
    let tsv = write(&d, "a.tsv", "text\tlabel\nhappy day\tpos\nsad day\tneg\n");
    let jsonl = write(
        &d,
        "a.jsonl",
        "{\"text\": \"happy day\", \"label\": \"pos\"}\n\n{\"label\": \"neg\", \"text\": \"sad day\", \"x\": 1}\n",
    );
    let a = TextDataset::read(&tsv, None, &TextColumns::default(), None).expect("tsv");
    let b = TextDataset::read(&jsonl, None, &TextColumns::default(), None).expect("jsonl");
    assert_eq!(a, b);
    assert_eq!(a.classes, vec!["neg", "pos"]);
    assert_eq!(a.labels, vec![1, 0]);
    // JSON integer and bool labels become their text.
    let n = write(
        &d,
        "n.jsonl",
        "{\"text\": \"x\", \"label\": 3}\n{\"text\": \"y\", \"label\": true}\n",
    );
    let ds = TextDataset::read(&n, Some(TextFormat::Jsonl), &TextColumns::default(), None)
        .expect("numbers");
    assert_eq!(ds.classes, vec!["3", "true"]);
}

#[test]
fn errors_name_the_file_and_line() {
    let d = tempfile::tempdir().expect("tmp");
    let cols = TextColumns::default();
    let bad_json = write(
        &d,
        "b.jsonl",
        "{\"text\": \"ok\", \"label\": \"a\"}\n{\"text\": \"oops\"\n",
    );
    let e = TextDataset::read(&bad_json, None, &cols, None).expect_err("bad json");
    assert!(e.to_string().contains("b.jsonl:2"), "{e}");
    let no_key = write(&d, "k.jsonl", "{\"text\": \"ok\"}\n");
    let e = TextDataset::read(&no_key, None, &cols, None).expect_err("no label");
    assert!(
        e.to_string().contains("k.jsonl:1") && e.to_string().contains("label"),
        "{e}"
    );
    let no_col = write(&d, "c.csv", "sentence,label\nhi,a\n");
    let e = TextDataset::read(&no_col, None, &cols, None).expect_err("no column");
    assert!(e.to_string().contains("\"text\""), "{e}");
    let ragged = write(&d, "r.csv", "text,label\nhi,a\nthere,b,extra\n");
    let e = TextDataset::read(&ragged, None, &cols, None).expect_err("ragged");
    assert!(e.to_string().contains("r.csv:3"), "{e}");
    let empty = write(&d, "e.csv", "text,label\nhi,\n");
    let e = TextDataset::read(&empty, None, &cols, None).expect_err("empty label");
    assert!(e.to_string().contains("e.csv:2"), "{e}");
    // A test file read with the training classes: an unseen label is an error at its line.
    let test = write(&d, "t.csv", "text,label\nhi,a\nyo,z\n");
    let classes = vec!["a".to_string(), "b".to_string()];
    let e = TextDataset::read(&test, None, &cols, Some(&classes)).expect_err("unseen");
    assert!(
        e.to_string().contains("t.csv:3") && e.to_string().contains("\"z\""),
        "{e}"
    );
    let e = TextDataset::read(&d.path().join("x.txt"), None, &cols, None).expect_err("kind");
    assert!(e.to_string().contains(".jsonl"), "{e}");
}

#[test]
fn split_and_k_shot_are_stratified_and_seeded() {
    let texts: Vec<String> = (0..300).map(|i| format!("t{i}")).collect();
    let labels: Vec<usize> = (0..300).map(|i| usize::from(i % 3 == 0)).collect();
    let targets: Vec<f64> = (0..300).map(f64::from).collect();
    let ds = TextDataset::new(texts, labels, vec!["a".into(), "b".into()], Some(targets))
        .expect("dataset");
    let parts = ds.split(&[0.8, 0.2], 7).expect("split");
    assert_eq!(parts[0].len() + parts[1].len(), 300);
    assert_eq!(parts[1].class_counts(), vec![40, 20]);
    // Targets follow their texts.
    for p in &parts {
        for (t, y) in p.texts.iter().zip(p.targets.as_ref().expect("targets")) {
            assert_eq!(t, &format!("t{y}"));
        }
    }
    assert_eq!(parts, ds.split(&[0.8, 0.2], 7).expect("again"));
    let k = parts[0].k_shot(5, 1).expect("k-shot");
    assert_eq!(k.class_counts(), vec![5, 5]);
    assert!(parts[0].k_shot(200, 1).is_err());
}
