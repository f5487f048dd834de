//! Does ranking before training rank? Each transferability score `graft rank` computes (LogME,
//! LEEP, NCE, the kNN and linear probes) against the accuracy the candidates actually reach when
//! fine-tuned, as Kendall's τ over the candidates, on two targets:
//!
//! - scikit-learn's digits (10 labelled images a class): twelve candidate sources made here from
//!   real data with different pretraining — MNIST whole, in subsets, of other classes, under
//!   shifts; a random trunk; shallower, deeper and wider trunks (`digits.rs`);
//! - VADER's polarity (50 labelled words a class): MiniLM's real pretrained weights cut after each
//!   of its six layers, and its architecture with random weights (`text.rs`).
//!
//! Three draws of the labelled set (seeds 0, 1, 2): the scores are computed on each draw's
//! labelled images before any training, every candidate is fine-tuned on the same draw with the
//! classic recipe (fixed budget, no early stopping), and τ is taken per draw and on the means.
//!
//! `cargo run --release --example rank_study` writes the `rank` section of docs/results.md;
//! `-- --quick` runs one draw with three digit sources and the text part's candidates at a
//! smaller budget, into target/graft-examples/.

#[path = "../common/mod.rs"]
mod common;
mod digits;
mod tau;
mod text;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use graft::Tch;
use graft::extract::{Candidate, FeatureSpec, RankConfig, RankReport};

const SCORES: [&str; 5] = ["LogME", "LEEP", "NCE", "kNN (val)", "linear probe (val)"];

/// One candidate over the draws: each draw's scores (in `SCORES` order) and fine-tuned accuracy.
struct Measured {
    label: String,
    what: String,
    scores: Vec<[Option<f64>; 5]>,
    acc: Vec<f64>,
}

/// `graft_extract::rank` over `items` (named by `name`) with the study's probes: kNN with k = 5,
/// the default logistic head.
fn rank_each<T>(
    items: &[T],
    name: impl Fn(&T) -> String,
    cache: &Path,
    mut prepare: impl FnMut(&T) -> Result<Candidate<Tch>>,
) -> Result<RankReport> {
    let names: Vec<String> = items.iter().map(&name).collect();
    let cfg = RankConfig {
        knn_k: 5,
        ..RankConfig::default()
    };
    Ok(graft::extract::rank(&names, cache, &cfg, |n| {
        let item = items.iter().find(|i| name(i) == n).context("a candidate")?;
        prepare(item)
    })?)
}

fn scores_of(rep: &RankReport, label: &str) -> Result<[Option<f64>; 5]> {
    if let Some((_, why)) = rep.failed.iter().find(|f| f.0 == label) {
        bail!("{label} could not be scored: {why}");
    }
    let r = rep
        .rows
        .iter()
        .find(|r| r.name == label)
        .context("a scored candidate")?;
    Ok([Some(r.logme), r.leep, r.nce, r.knn, r.linear])
}

/// Seconds spent scoring (extraction included) and fine-tuning, over a target's draws.
#[derive(Default)]
struct Times {
    rank: f64,
    /// LogME's own part of `rank`.
    logme: f64,
    tune: f64,
}

impl Times {
    fn write(&self, md: &mut String, draws: usize) {
        let _ = writeln!(
            md,
            "Time over the {draws} draws: scoring every candidate {:.1} s (building it, the trunk \
             passes over the labelled and val samples, every score and probe), of which LogME \
             {:.3} s; fine-tuning them {:.1} s — {:.0}× the whole scoring, {:.0}× LogME's part.\n",
            self.rank,
            self.logme,
            self.tune,
            self.tune / self.rank.max(1e-9),
            self.tune / self.logme.max(1e-9)
        );
    }
}

fn main() -> Result<()> {
    common::rerun_with_reproducible_mkl()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(bad) = args.iter().find(|a| *a != "--quick") {
        bail!("unknown argument {bad:?} (usage: rank_study [--quick])");
    }
    let t0 = Instant::now();
    let seeds: Vec<u64> = if quick { vec![0] } else { vec![0, 1, 2] };
    let work = common::work_dir().join("rank_study");
    let cache = work.join("feature-cache");

    // the digits
    let budget = if quick { 2000 } else { 10_000 };
    let sources = digits::make_sources(&work.join("sources"), budget, quick)?;
    let source_s = t0.elapsed().as_secs_f64();
    let (k_digits, digit_epochs) = (10, 10);
    let mut dig: Vec<Measured> = sources
        .iter()
        .map(|s| Measured {
            label: s.label.to_string(),
            what: s.what.clone(),
            scores: Vec::new(),
            acc: Vec::new(),
        })
        .collect();
    let mut dig_t = Times::default();
    for &seed in &seeds {
        let t = digits::target(k_digits, seed)?;
        let now = Instant::now();
        let rep = digits::score(&sources, &t, &cache)?;
        dig_t.rank += now.elapsed().as_secs_f64();
        dig_t.logme += rep.rows.iter().map(|r| r.times.logme).sum::<f64>();
        for (s, m) in sources.iter().zip(dig.iter_mut()) {
            m.scores.push(scores_of(&rep, s.label)?);
            let now = Instant::now();
            m.acc.push(digits::fine_tune_on(s, &t, digit_epochs, seed)?);
            dig_t.tune += now.elapsed().as_secs_f64();
            eprintln!(
                "digits seed {seed}: {} fine-tuned {:.1} %",
                s.label,
                100.0 * m.acc.last().copied().unwrap_or_default()
            );
        }
    }

    // VADER
    let ts = text::setup()?;
    let (k_text, text_epochs, text_lr) = (50, 10, 2e-4);
    let layers = text::Layers::all();
    let mut txt: Vec<Measured> = layers
        .iter()
        .map(|c| Measured {
            label: c.label(),
            what: String::new(),
            scores: Vec::new(),
            acc: Vec::new(),
        })
        .collect();
    let mut txt_t = Times::default();
    for &seed in &seeds {
        let train = ts.train.k_shot(k_text, seed)?;
        let now = Instant::now();
        let rep = text::score(&ts, &train, &cache)?;
        txt_t.rank += now.elapsed().as_secs_f64();
        txt_t.logme += rep.rows.iter().map(|r| r.times.logme).sum::<f64>();
        for (c, m) in layers.iter().zip(txt.iter_mut()) {
            m.scores.push(scores_of(&rep, &c.label())?);
            let now = Instant::now();
            m.acc.push(text::fine_tune_on(
                &ts,
                *c,
                &train,
                text_lr,
                text_epochs,
                seed,
            )?);
            txt_t.tune += now.elapsed().as_secs_f64();
            eprintln!(
                "VADER seed {seed}: {} fine-tuned {:.1} %",
                m.label,
                100.0 * m.acc.last().copied().unwrap_or_default()
            );
        }
    }

    let total = t0.elapsed().as_secs_f64();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Which model to start from: do the scores rank? (`graft rank`)\n\n\
         Generated by `cargo run --release --example rank_study` ({total:.0} s on this machine, of \
         which {source_s:.0} s training the digit sources; draws {seeds:?}); every number below \
         comes from that run. For each draw of the labelled target set, every candidate is scored \
         by `graft_extract::rank` on those labelled samples before any training (LogME on the \
         pooled features; LEEP and NCE from the candidate's own trained head; kNN with k = 5 and \
         a logistic head fitted on them, scored on as many other labelled samples a class — the \
         val split), then fine-tuned on the same draw. Kendall's τ (τ-b) between a score and the \
         fine-tuned test accuracy, over the candidates: per draw (mean ± std over draws) and on \
         the means over draws; the weighted τ (Vigna's, hyperbolic weights, as \
         `scipy.stats.weightedtau` — the LogME paper's measure) on the means. 1: the score orders \
         the candidates exactly as fine-tuning does; 0: no relation; −1: reversed.\n"
    );
    let _ = writeln!(
        md,
        "### scikit-learn's digits, {k_digits} labelled images a class\n\n\
         Target: scikit-learn's 8×8 digits, a draw of {k_digits} images a class from the first \
         stratified half (seed = draw), the probes' val split {k_digits} more a class, tested on \
         the second half (896). Fine-tuning: the classic recipe (`graft_finetune::Recipe`: a new \
         head, the stem frozen, AdamW 1e-3 sliced to 1e-4, one-cycle), {digit_epochs} epochs, \
         batch 32, no early stopping. The candidates (trained here from scratch, seed 100; the \
         digits study's recipe: AdamW 3e-3, weight decay 0.05, label smoothing 0.1, one-cycle, \
         batch 32):\n"
    );
    for m in &dig {
        let _ = writeln!(md, "- **{}**: {}", m.label, m.what);
    }
    md.push('\n');
    tau::tables(&mut md, &dig);
    dig_t.write(&mut md, seeds.len());
    let _ = writeln!(
        md,
        "### VADER polarity, {k_text} labelled words a class\n\n\
         Target: the VADER lexicon's polarity (the sign of the mean valence; stratified 70 / 10 / \
         20 split, seed 0), a draw of {k_text} words a class from the training part (seed = draw), \
         the probes' val split the whole validation part, tested on the test part ({}). \
         Candidates: all-MiniLM-L6-v2's real pretrained weights cut after its first L layers \
         (L = 1 … 6: the embeddings and layers 0 … L − 1 loaded, mean pooling and normalisation as \
         sentence-transformers), and its architecture with random weights. Fine-tuning: a new \
         classifier on the pooled embedding, every encoder layer and the head trained, the \
         embeddings frozen (`Recipe`: AdamW {text_lr:e} sliced to a tenth, one-cycle, \
         {text_epochs} epochs, batch 32). No candidate has a trained head: no LEEP or NCE.\n",
        ts_test_len(&ts),
    );
    tau::tables(&mut md, &txt);
    txt_t.write(&mut md, seeds.len());
    md.push_str(&tau::verdict(&dig, &txt));
    let out = if quick {
        work.join("rank_study.md")
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/results.md")
    };
    common::write_section(&out, "rank", &md)?;
    println!("{md}");
    println!("wrote {}", out.display());
    Ok(())
}

fn ts_test_len(ts: &text::TextSetup) -> usize {
    ts.test_len()
}
