//! The multi-task study: does training one trunk for two related tasks help each of them?
//!
//! ```text
//! cargo run --example multitask_study            (writes the multitask section of docs/results.md)
//! cargo run --example multitask_study -- --quick (one seed, into target/graft-examples)
//! ```
//!
//! (a) **Two digit collections on one trunk.** scikit-learn's digits with k labels a class (the
//! target, short of data) beside 4,000 real MNIST digits (a second task with its own head), a
//! `resnet18_small` trained from scratch, against the digits alone with the same number of
//! digit steps; and MNIST alone against MNIST in the pair. MNIST is brought to the digits' form
//! the way the UCI digits were made from their NIST bitmaps (Alpaydin & Kaynak 1998): each
//! 28×28 image binarised at half intensity, padded to 32×32, and the "on" pixels counted in 4×4
//! blocks, giving 8×8 values 0–16 (scaled to 0–1 as graft's digits are).
//!
//! (b) **VADER polarity and mean valence on MiniLM.** The same training texts labelled two ways —
//! the sign of the human valence ratings' mean (classification) and the mean itself (regression)
//! — on `minilm_l6` with its top two layers and the heads trained, against each task alone.
//!
//! Every run goes through `Trainer::fit_tasks` (a task alone is a set of one), so the heads, the
//! loop and the schedule are the same in both arms. Test metrics, mean ± standard deviation over
//! the seeds; nothing is selected on the test data.

mod common;
use common::mean_std;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use graft::Tch;
use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset, k_shot, stratified_split};
use graft::extract::TextEncoder;
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::text::{TextDataset, TokenDataset};
use graft::train::{Sampling, Schedule, Task, TaskMetrics, TaskSet, TrainConfig, Trainer};
use graft::zoo::{HeadSpec, Model, ModelOptions, Registry, TaskHead, create_model};

fn pm(v: &[f64], scale: f64, digits: usize) -> String {
    let (m, s) = mean_std(v);
    format!("{:.*} ± {:.*}", digits, m * scale, digits, s * scale)
}

fn head(name: &str, outputs: usize) -> TaskHead {
    TaskHead {
        name: name.into(),
        outputs,
        head: HeadSpec::Linear,
        labels: None,
    }
}

/// Trains `model` on `set` for `epochs` under `plan`'s freeze and `lr`: AdamW, one-cycle.
fn fit(
    model: &mut Model<Tch>,
    set: &TaskSet,
    freeze: &FreezeConfig,
    lr: &LrConfig,
    epochs: usize,
    seed: u64,
) -> Result<f64> {
    let t = Instant::now();
    let plan = Plan::new(model, freeze, lr)?;
    let opt = plan.apply(model)?;
    let mut cfg = TrainConfig::new(epochs);
    cfg.seed = seed;
    cfg.progress = false;
    cfg.schedule = Schedule::one_cycle();
    Trainer::new(cfg, opt, plan.modes().clone()).fit_tasks(model, set)?;
    Ok(t.elapsed().as_secs_f64())
}

/// A task's test metrics: `task` evaluated on `test` (its validation loader is the test set:
/// nothing selects on it during training — no early stopping, no choice of epoch).
fn test_of(model: &Model<Tch>, task: &Task) -> Result<TaskMetrics> {
    task.evaluate(model)?.context("a test loader")
}

struct Digits {
    digits: Arc<dyn Dataset>,
    first: Vec<usize>,
    test: Loader,
    mnist_train: Loader,
    mnist_test: Loader,
}

fn digits_data() -> Result<Digits> {
    let h = common::digits_halves()?;
    let test = Loader::new(
        Arc::new(Subset::new(h.digits.clone(), h.second.clone())?),
        LoaderConfig::eval(256),
    )?;
    let mnist: Arc<dyn Dataset> = Arc::new(ArrayDataset::mnist_8x8()?);
    let parts = stratified_split(&mnist.labels(), &[0.4, 0.2, 0.4], 0)?;
    let mnist_train = Loader::new(
        Arc::new(Subset::new(mnist.clone(), parts[0].clone())?),
        LoaderConfig::train(10).seed(2),
    )?;
    let mnist_test = Loader::new(
        Arc::new(Subset::new(mnist, parts[1].clone())?),
        LoaderConfig::eval(256),
    )?;
    Ok(Digits {
        digits: h.digits,
        first: h.first,
        test,
        mnist_train,
        mnist_test,
    })
}

/// One (k, seed) of study (a): digits alone, MNIST alone, both; test top-1 of each.
struct PairRun {
    digits_alone: f64,
    digits_pair: f64,
    mnist_alone: f64,
    mnist_pair: f64,
    secs: f64,
}

fn pair_run(d: &Digits, k: usize, seed: u64) -> Result<PairRun> {
    let idx = k_shot(&d.digits.labels(), &d.first, k, seed)?;
    let n = idx.len();
    let train = Loader::new(
        Arc::new(Subset::new(d.digits.clone(), idx)?),
        LoaderConfig::train(10).seed(seed),
    )?;
    let digits_task = Task::classification("digits", train, Some(d.test.clone()))?;
    let mnist_task =
        Task::classification("mnist", d.mnist_train.clone(), Some(d.mnist_test.clone()))?;
    // the digits get ~1000 image-passes alone (the digits study's budget), and the same number
    // of their own steps in the pair, round-robin with as many MNIST steps
    let digit_steps = (1000 / 10).max(n.div_ceil(10));
    let epochs = 10;
    let per_epoch = digit_steps.div_ceil(epochs);
    let lr = LrConfig::adamw(3e-3).weight_decay(0.05);
    let freeze = FreezeConfig::none();
    let model = |names: &[(&str, usize)]| -> Result<Model<Tch>> {
        let opts = ModelOptions::default()
            .num_classes(0)
            .in_chans(1)
            .seed(seed);
        let (mut m, _) = create_model(&Tch::cpu(), "resnet18_small", &opts)?;
        for (i, (name, out)) in names.iter().enumerate() {
            m.add_task_head(head(name, *out), seed * 10 + i as u64)?;
        }
        Ok(m)
    };
    let t = Instant::now();
    let top1 = |m: &TaskMetrics| m.classification().map_or(f64::NAN, |c| c.top1);
    let mut alone = model(&[("digits", 10)])?;
    let set = TaskSet::new(vec![digits_task.clone()], Sampling::RoundRobin, seed)?
        .with_steps_per_epoch(per_epoch)?;
    fit(&mut alone, &set, &freeze, &lr, epochs, seed)?;
    let digits_alone = top1(&test_of(&alone, &digits_task)?);
    let mut m_alone = model(&[("mnist", 10)])?;
    let set = TaskSet::new(vec![mnist_task.clone()], Sampling::RoundRobin, seed)?
        .with_steps_per_epoch(per_epoch)?;
    fit(&mut m_alone, &set, &freeze, &lr, epochs, seed)?;
    let mnist_alone = top1(&test_of(&m_alone, &mnist_task)?);
    let mut pair = model(&[("digits", 10), ("mnist", 10)])?;
    let set = TaskSet::new(
        vec![digits_task.clone(), mnist_task.clone()],
        Sampling::RoundRobin,
        seed,
    )?
    .with_steps_per_epoch(2 * per_epoch)?;
    fit(&mut pair, &set, &freeze, &lr, epochs, seed)?;
    let digits_pair = top1(&test_of(&pair, &digits_task)?);
    let mnist_pair = top1(&test_of(&pair, &mnist_task)?);
    Ok(PairRun {
        digits_alone,
        digits_pair,
        mnist_alone,
        mnist_pair,
        secs: t.elapsed().as_secs_f64(),
    })
}

/// One (training size, seed) of study (b): polarity alone, valence alone, both.
struct TextRun {
    pol_alone: f64,
    pol_pair: f64,
    r2_alone: f64,
    r2_pair: f64,
    mae_alone: f64,
    mae_pair: f64,
    secs: f64,
}

fn text_run(reg: &Registry, train: &TextDataset, test: &TextDataset, seed: u64) -> Result<TextRun> {
    let t = Instant::now();
    let encoder = |names: &[(&str, usize)]| -> Result<TextEncoder<Tch>> {
        let (mut enc, _) = TextEncoder::pretrained(
            &Tch::cpu(),
            reg,
            "minilm_l6",
            None,
            &ModelOptions::default(),
        )?;
        let m = enc.model_mut();
        if m.num_classes() > 0 {
            m.replace_head(0, HeadSpec::Linear, seed)?;
        }
        for (i, (name, out)) in names.iter().enumerate() {
            m.add_task_head(head(name, *out), seed * 10 + i as u64)?;
        }
        Ok(enc)
    };
    let values = |d: &TextDataset| -> Result<Vec<f32>> {
        Ok(d.targets
            .as_ref()
            .context("VADER's mean valence")?
            .iter()
            .map(|&v| v as f32)
            .collect())
    };
    let tok = encoder(&[])?.tokenizer().clone();
    let train_ds: Arc<dyn Dataset> = Arc::new(TokenDataset::new(train, &tok)?);
    let test_ds: Arc<dyn Dataset> = Arc::new(TokenDataset::new(test, &tok)?);
    let tl = Loader::new(train_ds, LoaderConfig::train(32).seed(seed))?;
    let el = Loader::new(test_ds, LoaderConfig::eval(256))?;
    let pol = Task::classification("polarity", tl.clone(), Some(el.clone()))?;
    let val = Task::regression("valence", 1, tl, values(train)?, Some((el, values(test)?)))?;
    let epochs = 3;
    // the top two encoder layers and the heads train (stages: embeddings, layer.0-5, head)
    let freeze = FreezeConfig::freeze_to(5);
    let lr = LrConfig::adamw(2e-3).slice(2e-4, 2e-3);
    let run = |tasks: Vec<Task>, names: &[(&str, usize)]| -> Result<Vec<TaskMetrics>> {
        let mut enc = encoder(names)?;
        let set = TaskSet::new(tasks.clone(), Sampling::RoundRobin, seed)?;
        fit(enc.model_mut(), &set, &freeze, &lr, epochs, seed)?;
        tasks.iter().map(|t| test_of(enc.model(), t)).collect()
    };
    let a = run(vec![pol.clone()], &[("polarity", 2)])?;
    let b = run(vec![val.clone()], &[("valence", 1)])?;
    let c = run(vec![pol, val], &[("polarity", 2), ("valence", 1)])?;
    let top1 = |m: &TaskMetrics| m.classification().map_or(f64::NAN, |c| c.top1);
    let reg_of = |m: &TaskMetrics| {
        m.regression()
            .map_or((f64::NAN, f64::NAN), |r| (r.r2, r.mae))
    };
    Ok(TextRun {
        pol_alone: top1(&a[0]),
        pol_pair: top1(&c[0]),
        r2_alone: reg_of(&b[0]).0,
        r2_pair: reg_of(&c[1]).0,
        mae_alone: reg_of(&b[0]).1,
        mae_pair: reg_of(&c[1]).1,
        secs: t.elapsed().as_secs_f64(),
    })
}

fn verdict(alone: &[f64], pair: &[f64], higher_better: bool) -> &'static str {
    if alone.len() < 2 || pair.len() < 2 {
        return "n/a (one seed)";
    }
    let (a, sa) = mean_std(alone);
    let (p, sp) = mean_std(pair);
    let d = if higher_better { p - a } else { a - p };
    let noise = (sa.powi(2) / alone.len() as f64 + sp.powi(2) / pair.len() as f64).sqrt();
    if d > 2.0 * noise {
        "helps"
    } else if d < -2.0 * noise {
        "hurts"
    } else {
        "no clear difference"
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(bad) = args.iter().find(|a| *a != "--quick") {
        bail!("unknown argument {bad:?} (usage: multitask_study [--quick])");
    }
    let t0 = Instant::now();
    let seeds: Vec<u64> = if quick { vec![0] } else { vec![0, 1, 2] };
    let ks: &[usize] = if quick { &[5] } else { &[5, 10] };

    // (a)
    let d = digits_data()?;
    let mut md = String::new();
    md.push_str("# Multi-task learning: two tasks on one trunk against each alone\n\n");
    let mut rows = Vec::new();
    for &k in ks {
        let mut runs = Vec::new();
        for &s in &seeds {
            let r = pair_run(&d, k, s)?;
            println!(
                "digits k={k} seed={s}: digits alone {:.3}, with MNIST {:.3}; MNIST alone {:.3}, with digits {:.3} ({:.0} s)",
                r.digits_alone, r.digits_pair, r.mnist_alone, r.mnist_pair, r.secs
            );
            runs.push(r);
        }
        rows.push((k, runs));
    }

    // (b)
    let lexicon = graft::zoo::text::find_installed(std::path::Path::new(
        graft::text::VaderLexicon::PACKAGE_PATH,
    ))?;
    let all = TextDataset::vader(&lexicon, 0.0)?;
    let mut parts = all.split(&[0.7, 0.1, 0.2], 0)?.into_iter();
    let train_all = parts.next().context("train")?;
    parts.next().context("val")?; // unused: nothing is tuned
    let test = parts.next().context("test")?;
    let reg = Registry::builtin();
    let sizes: &[usize] = &[100];
    let mut text_rows = Vec::new();
    for &per_class in sizes {
        let mut runs = Vec::new();
        for &s in &seeds {
            let train = train_all.k_shot(per_class, s)?;
            let r = text_run(&reg, &train, &test, s)?;
            println!(
                "VADER {per_class} a class seed={s}: polarity alone {:.3}, paired {:.3}; valence R² alone {:.3}, paired {:.3} ({:.0} s)",
                r.pol_alone, r.pol_pair, r.r2_alone, r.r2_pair, r.secs
            );
            runs.push(r);
        }
        text_rows.push((per_class, runs));
    }
    let total = t0.elapsed().as_secs_f64();

    md.push_str(&format!(
        "Generated by `cargo run --example multitask_study` ({total:.0} s on this machine, 2 libtorch threads, seeds {seeds:?}); every number below comes from that run. Each run trains through `Trainer::fit_tasks`, a task alone being a set of one (the same heads, loop and schedule in both arms; AdamW, one-cycle, round-robin sampling). Test metrics, mean ± standard deviation over the seeds; a verdict says *helps* / *hurts* when the paired mean differs from the alone mean by more than twice the standard error of the difference, else *no clear difference*.\n\n"
    ));
    md.push_str("## (a) scikit-learn's digits beside MNIST, one `resnet18_small` from scratch\n\n");
    md.push_str(&format!(
        "The digits task: k labelled images a class from the first stratified half of scikit-learn's digits, tested on the other half ({} images). The MNIST task: {} of the 10,000 shipped MNIST digits for training, {} held out for its test, brought to the digits' form as the UCI digits were made from NIST bitmaps (binarised at half intensity, padded to 32×32, on-pixels counted in 4×4 blocks: 8×8 values 0–16, scaled to 0–1) — two collections of handwritten digits, each task with its own head. Alone, the digits get 100 steps of 10 images (the digits study's ~1000 image-passes); paired, the same 100 digit steps alternate with 100 MNIST steps; MNIST alone gets its 100 steps. AdamW 3e-3, weight decay 0.05, 10 epochs.\n\n",
        d.test.dataset().len(),
        d.mnist_train.dataset().len(),
        d.mnist_test.dataset().len(),
    ));
    md.push_str("| digits labels a class | digits alone | digits with MNIST | digits: verdict | MNIST alone | MNIST with digits | MNIST: verdict |\n|---|---|---|---|---|---|---|\n");
    for (k, runs) in &rows {
        let g = |f: fn(&PairRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        let (da, dp, ma, mp) = (
            g(|r| r.digits_alone),
            g(|r| r.digits_pair),
            g(|r| r.mnist_alone),
            g(|r| r.mnist_pair),
        );
        md.push_str(&format!(
            "| {k} | {} | {} | {} | {} | {} | {} |\n",
            pm(&da, 100.0, 1),
            pm(&dp, 100.0, 1),
            verdict(&da, &dp, true),
            pm(&ma, 100.0, 1),
            pm(&mp, 100.0, 1),
            verdict(&ma, &mp, true),
        ));
    }
    md.push_str("\nTest top-1 %.\n\n");
    md.push_str("## (b) VADER polarity and mean valence, one MiniLM\n\n");
    md.push_str(&format!(
        "The same training texts labelled two ways: polarity (the sign of the mean of ten human valence ratings; classification, cross-entropy) and the mean valence itself (−4 … 4; regression, MSE), drawn per seed as n texts of each polarity from the stratified 70 % training split of the {} VADER entries; tested on the 20 % test split ({} texts). `minilm_l6` with its top two encoder layers and the heads trained (the embeddings and four layers frozen), AdamW 2e-3 sliced down to 2e-4, 3 epochs of batches of 32 per task (paired: both tasks' batches, round-robin).\n\n",
        all.len(),
        test.len()
    ));
    md.push_str("| training texts a class | polarity alone | polarity with valence | verdict | valence R² alone | valence R² with polarity | verdict | valence MAE alone | MAE with polarity |\n|---|---|---|---|---|---|---|---|---|\n");
    for (n, runs) in &text_rows {
        let g = |f: fn(&TextRun) -> f64| runs.iter().map(f).collect::<Vec<_>>();
        let (pa, pp, ra, rp, ma, mp) = (
            g(|r| r.pol_alone),
            g(|r| r.pol_pair),
            g(|r| r.r2_alone),
            g(|r| r.r2_pair),
            g(|r| r.mae_alone),
            g(|r| r.mae_pair),
        );
        md.push_str(&format!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            pm(&pa, 100.0, 1),
            pm(&pp, 100.0, 1),
            verdict(&pa, &pp, true),
            pm(&ra, 1.0, 3),
            pm(&rp, 1.0, 3),
            verdict(&ra, &rp, true),
            pm(&ma, 1.0, 3),
            pm(&mp, 1.0, 3),
        ));
    }
    md.push_str(
        "\nPolarity: test top-1 %; valence: test R² and mean absolute error (valence units).\n",
    );
    let out = if quick {
        common::work_dir().join("multitask.md")
    } else {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/results.md")
    };
    common::write_section(&out, "multitask", &md)?;
    println!("{md}\nwritten to {}", out.display());
    Ok(())
}
