//! The VADER lexicon from the `vadersentiment` wheel the setup installs: every line parsed, the
//! file's own duplicates found, the polarity split as the file has it; bad lines name file:line.

mod common;

use std::path::PathBuf;

use graft_text::VaderLexicon;

fn lexicon_path() -> PathBuf {
    common::site_package(VaderLexicon::PACKAGE_PATH)
}

#[test]
fn the_real_lexicon_reads_whole() {
    let mut lex = VaderLexicon::load(&lexicon_path()).expect("lexicon");
    assert_eq!(lex.entries.len(), 7520, "every line");
    let good = lex
        .entries
        .iter()
        .find(|e| e.token == "good")
        .expect("good");
    assert_eq!((good.mean, good.std), (1.9, 0.9434));
    assert_eq!(good.ratings, vec![2, 1, 1, 3, 2, 4, 2, 2, 1, 1]);
    // the stated mean is the raters' mean to the file's one decimal, except for one entry
    // (`lmfao`: 2.5 stated, 2.4 from its ratings)
    let mut off = Vec::new();
    for e in &lex.entries {
        assert_eq!(e.ratings.len(), 10, "{}: ten raters", e.token);
        let mean = e.ratings.iter().map(|&r| f64::from(r)).sum::<f64>() / 10.0;
        if (mean - e.mean).abs() > 0.051 {
            off.push(e.token.as_str());
        }
    }
    assert_eq!(off, vec!["lmfao"]);
    let all = lex.polarity(0.0);
    let pos = all.labels.iter().filter(|&&l| l == 1).count();
    assert_eq!((pos, all.labels.len() - pos), (3347, 4173));
    assert_eq!(lex.dedup(), 14, "the file repeats 14 tokens");
    assert_eq!(lex.entries.len(), 7506);
    let strong = lex.polarity(1.0);
    assert!(
        strong
            .targets
            .as_ref()
            .expect("targets")
            .iter()
            .all(|t| t.abs() > 1.0)
    );
    assert_eq!(strong.texts.len(), strong.labels.len());
}

#[test]
fn a_bad_line_names_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("graft-vader-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("lexicon.txt");
    std::fs::write(
        &p,
        "good\t1.9\t0.9\t[2, 1, 1, 3, 2, 4, 2, 2, 1, 1]\r\nbad\t-2.5\t0.7\t[-3, 9]\r\n",
    )
    .expect("write");
    let e = VaderLexicon::load(&p).expect_err("rating 9");
    assert!(e.to_string().contains("lexicon.txt:2"), "{e}");
    std::fs::write(&p, "only two\tfields\n").expect("write");
    let e = VaderLexicon::load(&p).expect_err("two fields");
    assert!(e.to_string().contains("lexicon.txt:1"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
