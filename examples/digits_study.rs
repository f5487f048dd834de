//! The digits transfer study: four claims of the transfer-learning literature (Yosinski et al.
//! 2014; the CS231n notes on transfer learning), measured on
//! scikit-learn's real handwritten digits with graft.
//!
//! - source: `resnet18_small` trained from scratch on every image of digits 0–4 (saved as a user
//!   model with its cfg);
//! - target: digits 5–9 with k ∈ {1, 5, 10, 20, all} labelled images per class from the first
//!   stratified half, tested on the second half; routes: scratch, feature extraction (logistic
//!   and prototype heads), fine-tuning at every freeze depth (0 = nothing frozen … 5 = the whole
//!   trunk), fastai's LP-FT; 5 seeds each, mean ± std;
//! - domain distance: the same fine-tuning on a farther target, digits 5–9 inverted (1 − x);
//! - domain shift for direct reuse: a model trained on all ten digits (first half) on the second
//!   half under documented shifts — as it is, with BatchNorm re-estimated, fine-tuned with 10
//!   labels per class;
//! - convergence: test accuracy per epoch, fine-tune vs scratch.
//!
//! `cargo run --release --example digits_study` writes `docs/results.md` and
//! `docs/results/*.png`; `-- --quick` is `make demo`'s short version (one seed, k = 10, the three
//! routes; plots under `target/graft-examples/study/`). The process re-runs itself with
//! `MKL_CBWR=COMPATIBLE` so a second run gives the same numbers (MKL otherwise picks
//! alignment-dependent kernels).

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use graft::data::{
    ArrayDataset, Dataset, Loader, LoaderConfig, Shift, Subset, k_shot, stratified_split,
};
use graft::extract::{FeatureSpec, LogisticConfig, LogisticHead, PrototypeHead, accuracy, extract};
use graft::finetune::{FineTuneOptions, FreezeDepth, LpFt, Recipe, Strategy, fine_tune};
use graft::reuse::{LabelMap, evaluate_reuse, reestimate_batch_norm};
use graft::surgery::{FreezeConfig, LrConfig, Plan};
use graft::train::{Schedule, Series, TrainConfig, Trainer, evaluate, plot_series};
use graft::zoo::{Model, ModelOptions, create_model};
use graft::{Ctx, ModeTable, Tch, TensorData};

const TARGET: [usize; 5] = [5, 6, 7, 8, 9];
const DEPTHS: [usize; 6] = [0, 1, 2, 3, 4, 5];

struct Setup {
    digits: Arc<dyn Dataset>,
    /// First stratified half (training pool), second half (test).
    first: Vec<usize>,
    second: Vec<usize>,
    quick: bool,
    seeds: Vec<u64>,
    cache: PathBuf,
}

type Snapshot = BTreeMap<String, TensorData>;

/// Epochs for `n` training images: about 1000 image-passes, 6 to 60 epochs.
fn epochs_for(n: usize) -> usize {
    (1000 / n.max(1)).clamp(6, 60)
}

fn model_from(snapshot: &Snapshot, classes: usize, seed: u64) -> Result<Model<Tch>> {
    let opts = ModelOptions::default()
        .num_classes(classes)
        .in_chans(1)
        .seed(seed);
    let (mut m, _) = create_model(&Tch::cpu(), "resnet18_small", &opts)?;
    m.load_tensors(
        Path::new("source"),
        snapshot,
        &graft::zoo::LoadOptions::default(),
    )?;
    Ok(m)
}

fn loader(
    s: &Setup,
    idx: &[usize],
    classes: &[usize],
    shift: Option<Shift>,
    train_seed: Option<u64>,
) -> Result<Loader> {
    let ds = Arc::new(Subset::with_classes(
        s.digits.clone(),
        idx.to_vec(),
        classes,
    )?);
    let n = ds.len();
    let cfg = match train_seed {
        Some(seed) => LoaderConfig::train(n.clamp(1, 32)).seed(seed),
        None => LoaderConfig::eval(256),
    };
    let mut l = Loader::new(ds, cfg)?;
    if let Some(sh) = shift {
        l = l.with_transform(Arc::new(sh));
    }
    Ok(l)
}

/// Trains `resnet18_small` from scratch; returns the model and test accuracy per epoch (when
/// `curve` is given a test loader to evaluate on after each epoch).
fn scratch(
    train: &Loader,
    classes: usize,
    epochs: usize,
    seed: u64,
    curve: Option<&Loader>,
) -> Result<(Model<Tch>, Vec<f64>)> {
    let opts = ModelOptions::default()
        .num_classes(classes)
        .in_chans(1)
        .seed(seed);
    let (mut m, _) = create_model(&Tch::cpu(), "resnet18_small", &opts)?;
    let plan = Plan::new(
        &m,
        &FreezeConfig::none(),
        &LrConfig::adamw(3e-3).weight_decay(0.05),
    )?;
    let mut cfg = TrainConfig::new(epochs);
    cfg.schedule = Schedule::one_cycle();
    cfg.label_smoothing = 0.1;
    cfg.seed = seed;
    cfg.progress = false;
    let h = Trainer::new(cfg, plan.apply(&m)?, plan.modes().clone()).fit(&mut m, train, curve)?;
    Ok((
        m,
        h.epochs
            .iter()
            .filter_map(|e| e.val.as_ref().map(|v| v.top1))
            .collect(),
    ))
}

/// Fine-tunes a copy of the source with `strategy`; test accuracy per epoch when `curve` is set.
fn tune(
    src: &Snapshot,
    train: &Loader,
    strategy: &Strategy,
    seed: u64,
    curve: Option<&Loader>,
    cache: &Path,
) -> Result<(Model<Tch>, Vec<f64>)> {
    let mut m = model_from(src, 5, seed)?;
    let mut opts = FineTuneOptions::default();
    opts.base.progress = false;
    opts.seed = seed;
    opts.cache_dir = Some(cache.to_path_buf());
    let r = fine_tune(&mut m, 5, train, curve, strategy, &opts)?;
    Ok((
        m,
        r.history
            .epochs
            .iter()
            .filter_map(|e| e.val.as_ref().map(|v| v.top1))
            .collect(),
    ))
}

fn recipe(depth: usize, epochs: usize) -> Strategy {
    Strategy::Recipe(Recipe {
        freeze: FreezeDepth::Stages(depth),
        epochs,
        // no early stopping: the only held-out images are the test set, never used to select
        patience: None,
        ..Recipe::default()
    })
}

fn lpft(epochs: usize) -> Strategy {
    Strategy::LpFt(LpFt {
        epochs: epochs.saturating_sub(1).max(1),
        ..LpFt::default()
    })
}

fn top1(m: &Model<Tch>, test: &Loader) -> Result<f64> {
    Ok(evaluate(m, test, &Ctx::eval())?.top1)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (m, var.sqrt())
}

fn cell(v: &[f64]) -> String {
    let (m, s) = mean_std(v);
    if v.len() > 1 {
        format!("{:.1} ± {:.1}", 100.0 * m, 100.0 * s)
    } else {
        format!("{:.1}", 100.0 * m)
    }
}

/// Results of one target domain: route → k → accuracies over seeds.
#[derive(Default)]
struct Grid {
    acc: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
}

impl Grid {
    fn add(&mut self, route: &str, k: &str, a: f64) {
        self.acc
            .entry(route.into())
            .or_default()
            .entry(k.into())
            .or_default()
            .push(a);
    }
    fn get(&self, route: &str, k: &str) -> &[f64] {
        self.acc
            .get(route)
            .and_then(|m| m.get(k))
            .map_or(&[], |v| v.as_slice())
    }
    fn mean(&self, route: &str, k: &str) -> f64 {
        mean_std(self.get(route, k)).0
    }
}

fn ft_name(d: usize) -> String {
    format!("fine-tune, freeze {d}")
}

/// Test accuracy per epoch over seeds, scratch and fine-tune (freeze 0), for one k.
type Curves = (String, Vec<Vec<f64>>, Vec<Vec<f64>>);

/// Runs every route for the target (`shift`: the farther domain) at every k; returns the grid
/// and, for the k in `curve_ks`, the per-epoch test accuracy of scratch and fine-tune (freeze 0).
fn target_grid(
    s: &Setup,
    src: &Snapshot,
    ks: &[Option<usize>],
    shift: Option<Shift>,
    routes_all: bool,
    curve_ks: &[&str],
    log: &mut String,
) -> Result<(Grid, Vec<Curves>)> {
    let labels = s.digits.labels();
    let test = loader(s, &s.second, &TARGET, shift, None)?;
    let pool: Vec<usize> = s
        .first
        .iter()
        .copied()
        .filter(|&i| labels[i] >= 5)
        .collect();
    let src_model = model_from(src, 5, 0)?;
    let mut g = Grid::default();
    let mut curves = Vec::new();
    for &k in ks {
        let kname = k.map_or("all".to_string(), |k| k.to_string());
        let want = curve_ks.contains(&kname.as_str());
        let (mut cs, mut cf) = (Vec::new(), Vec::new());
        for &seed in &s.seeds {
            let t0 = Instant::now();
            let idx = match k {
                Some(k) => k_shot(&labels, &pool, k, seed)?,
                None => pool.clone(),
            };
            let epochs = epochs_for(idx.len());
            let train = loader(s, &idx, &TARGET, shift, Some(seed))?;
            if routes_all {
                let (m, c) = scratch(&train, 5, epochs, seed, want.then_some(&test))?;
                g.add("scratch", &kname, top1(&m, &test)?);
                if want {
                    cs.push(c);
                }
                // feature extraction on the frozen source trunk
                let feats_train = loader(s, &idx, &TARGET, shift, None)?;
                let (tr, _) = extract(&src_model, &feats_train, &FeatureSpec::Pooled, &s.cache)?;
                let (te, _) = extract(&src_model, &test, &FeatureSpec::Pooled, &s.cache)?;
                let lh = LogisticHead::fit(&tr, 5, &LogisticConfig::default())?;
                g.add(
                    "extract, logistic",
                    &kname,
                    accuracy(&lh.predict(&te)?, &te),
                );
                let ph = PrototypeHead::fit(&tr, 5)?;
                g.add(
                    "extract, prototype",
                    &kname,
                    accuracy(&ph.predict(&te), &te),
                );
                let (m, _) = tune(src, &train, &lpft(epochs), seed, None, &s.cache)?;
                g.add("LP-FT (fastai fine_tune)", &kname, top1(&m, &test)?);
            }
            let depths: &[usize] = if s.quick { &[0, 3] } else { &DEPTHS };
            for &d in depths {
                let curve = (want && d == 0).then_some(&test);
                let (m, c) = tune(src, &train, &recipe(d, epochs), seed, curve, &s.cache)?;
                g.add(&ft_name(d), &kname, top1(&m, &test)?);
                if curve.is_some() {
                    cf.push(c);
                }
            }
            let _ = writeln!(
                log,
                "  target{} k={kname} seed={seed}: {} images, {epochs} epochs, {:.1} s",
                shift.map_or(String::new(), |s| format!(" ({s})")),
                idx.len(),
                t0.elapsed().as_secs_f64()
            );
            eprint!(
                "{}",
                log.lines()
                    .last()
                    .map_or(String::new(), |l| format!("{l}\n"))
            );
        }
        if want && routes_all {
            curves.push((kname, cs, cf));
        }
    }
    Ok((g, curves))
}

fn grid_table(g: &Grid, ks: &[String], routes: &[String]) -> String {
    let mut t = String::from("| route |");
    for k in ks {
        let _ = write!(t, " k = {k} |");
    }
    t.push_str("\n|---|");
    t.push_str(&"---|".repeat(ks.len()));
    t.push('\n');
    for r in routes {
        let _ = write!(t, "| {r} |");
        for k in ks {
            let _ = write!(t, " {} |", cell(g.get(r, k)));
        }
        t.push('\n');
    }
    t
}

fn best_depth(g: &Grid, k: &str) -> (usize, f64) {
    DEPTHS
        .iter()
        .map(|&d| (d, g.mean(&ft_name(d), k)))
        .filter(|(_, a)| a.is_finite())
        .fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b })
}

fn main() -> Result<()> {
    // MKL's conditional numerical reproducibility must be set before libtorch loads: re-run self
    if std::env::var_os("MKL_CBWR").is_none() {
        let exe = std::env::current_exe().context("own path")?;
        let status = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("MKL_CBWR", "COMPATIBLE")
            .status()
            .context("re-run with MKL_CBWR=COMPATIBLE")?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(bad) = args.iter().find(|a| *a != "--quick") {
        bail!("unknown argument {bad:?} (usage: digits_study [--quick])");
    }
    let t_all = Instant::now();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (out_md, plots) = if quick {
        let d = common::work_dir().join("study");
        (d.join("results.md"), d)
    } else {
        (root.join("docs/results.md"), root.join("docs/results"))
    };
    std::fs::create_dir_all(&plots)?;
    let work = common::work_dir().join(if quick { "study-quick" } else { "study-full" });
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let mut parts = stratified_split(&digits.labels(), &[0.5, 0.5], 0)?;
    let second = parts.pop().context("two halves")?;
    let first = parts.pop().context("two halves")?;
    let s = Setup {
        digits: digits.clone(),
        first,
        second,
        quick,
        seeds: if quick { vec![0] } else { (0..5).collect() },
        cache: work.join("feature-cache"),
    };
    let labels = digits.labels();
    let mut log = String::new();

    // the source: every image of digits 0-4
    let t0 = Instant::now();
    let src_idx: Vec<usize> = (0..digits.len()).filter(|&i| labels[i] < 5).collect();
    let src_train = loader(&s, &src_idx, &[0, 1, 2, 3, 4], None, Some(100))?;
    let src_epochs = if quick { 3 } else { 8 };
    let (mut source, _) = scratch(&src_train, 5, src_epochs, 100, None)?;
    let src_check = loader(&s, &s.second, &[0, 1, 2, 3, 4], None, None)?;
    let src_train_acc = top1(&source, &src_check)?;
    {
        let c = source.cfg_mut();
        c.input_size = [1, 8, 8];
        c.mean = [0.0; 3];
        c.std = [1.0; 3];
        c.crop_pct = 1.0;
        c.labels = Some((0..5).map(|d| d.to_string()).collect());
    }
    source.save_user_model(&work.join("source-digits04"))?;
    let src: Snapshot = source.params().to_data()?;
    let _ = writeln!(
        log,
        "source: resnet18_small from scratch on {} images of digits 0-4, {src_epochs} epochs, {:.1} s ({:.1} % on its own second-half images, seen in training)",
        src_idx.len(),
        t0.elapsed().as_secs_f64(),
        100.0 * src_train_acc
    );
    eprintln!("{}", log.trim_end());

    let ks: Vec<Option<usize>> = if quick {
        vec![Some(10)]
    } else {
        vec![Some(1), Some(5), Some(10), Some(20), None]
    };
    let knames: Vec<String> = ks
        .iter()
        .map(|k| k.map_or("all".into(), |k| k.to_string()))
        .collect();
    let (near, curves) = target_grid(&s, &src, &ks, None, true, &["10", "all"], &mut log)?;
    let far_ks: Vec<Option<usize>> = if quick { vec![] } else { vec![Some(10), None] };
    let (far, _) = target_grid(
        &s,
        &src,
        &far_ks,
        Some(Shift::Invert(1.0)),
        false,
        &[],
        &mut log,
    )?;

    let test = loader(&s, &s.second, &TARGET, None, None)?;
    let pool: Vec<usize> = s
        .first
        .iter()
        .copied()
        .filter(|&i| labels[i] >= 5)
        .collect();

    // direct reuse under shifts: a model on all ten digits (first half)
    let all10: Vec<usize> = (0..10).collect();
    let ten_train = loader(&s, &s.first, &all10, None, Some(7))?;
    let (ten, _) = scratch(&ten_train, 10, if quick { 3 } else { 6 }, 7, None)?;
    let ten_snap: Snapshot = ten.params().to_data()?;
    let shifts = [
        Shift::Contrast(0.25),
        Shift::Blur(1.0),
        Shift::Noise(0.3),
        Shift::Invert(1.0),
    ];
    let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let map = LabelMap::by_names(&names, &names)?;
    let mut reuse_rows = Vec::new();
    let clean_test = loader(&s, &s.second, &all10, None, None)?;
    let clean = evaluate_reuse(&ten, &clean_test, &map, &ModeTable::new())?.accuracy;
    for sh in shifts {
        let test = loader(&s, &s.second, &all10, Some(sh), None)?;
        let m = model_from(&ten_snap, 10, 0)?;
        let before = evaluate_reuse(&m, &test, &map, &ModeTable::new())?.accuracy;
        reestimate_batch_norm(&m, &test, None)?;
        let after = evaluate_reuse(&m, &test, &map, &ModeTable::new())?.accuracy;
        let mut ft = Vec::new();
        for &seed in &s.seeds {
            let idx = k_shot(&labels, &s.first, 10, seed)?;
            let train = loader(&s, &idx, &all10, Some(sh), Some(seed))?;
            let mut mm = model_from(&ten_snap, 10, seed)?;
            let mut opts = FineTuneOptions::default();
            opts.base.progress = false;
            opts.seed = seed;
            fine_tune(
                &mut mm,
                10,
                &train,
                None,
                &recipe(0, epochs_for(idx.len())),
                &opts,
            )?;
            ft.push(top1(&mm, &test)?);
        }
        reuse_rows.push((sh, before, after, ft));
    }

    // ------------------------------------------------------------------ report
    let mut routes: Vec<String> = vec![
        "scratch".into(),
        "extract, logistic".into(),
        "extract, prototype".into(),
        "LP-FT (fastai fine_tune)".into(),
    ];
    let depths: Vec<usize> = if quick { vec![0, 3] } else { DEPTHS.to_vec() };
    routes.extend(depths.iter().map(|&d| ft_name(d)));
    let mut md = String::new();
    let cmd = if quick {
        "cargo run --release --example digits_study -- --quick"
    } else {
        "cargo run --release --example digits_study"
    };
    let _ = writeln!(md, "# The digits transfer study\n");
    let _ = writeln!(
        md,
        "Generated by `{cmd}` ({:.0} s on this machine, {} libtorch threads, seeds {:?}); every number below comes from that run. Data: scikit-learn's 1797 real 8×8 digits, split into two stratified halves (seed 0). Model: `resnet18_small` (ResNet-18 with a 3×3 stride-1 stem, no max-pool). Fine-tuning is the classic recipe (Stanford's *Practical Machine Learning*, 2021, lecture 11.1; Yosinski et al. 2014; `graft_finetune::Recipe`: a new head, the bottom `d` stages frozen — stem, layer1 … layer4, so `d = 5` trains the head only — AdamW 1e-3 with slice(lr/10, lr), one-cycle); scratch is AdamW 3e-3, weight decay 0.05, label smoothing 0.1, one-cycle. Every trained route gets about 1000 image-passes (`clamp(1000 / n, 6, 60)` epochs for n images, 6 to 60), no early stopping (the only held-out images are the test set, which nothing selects on).\n",
        t_all.elapsed().as_secs_f64(),
        Tch::num_threads(),
        s.seeds,
    );
    let _ = writeln!(md, "```\n{}```\n", log);
    let _ = writeln!(
        md,
        "## Target: digits 5–9 (near), test on {} held-out images\n",
        test.dataset().len()
    );
    let _ = writeln!(
        md,
        "Test top-1 %, mean ± std over seeds (k labelled images per class):\n"
    );
    md.push_str(&grid_table(&near, &knames, &routes));
    md.push('\n');
    if !far_ks.is_empty() {
        let fk: Vec<String> = far_ks
            .iter()
            .map(|k| k.map_or("all".into(), |k| k.to_string()))
            .collect();
        let _ = writeln!(
            md,
            "## Farther target: digits 5–9 inverted (1 − x), fine-tuning at every depth\n"
        );
        let fr: Vec<String> = DEPTHS.iter().map(|&d| ft_name(d)).collect();
        md.push_str(&grid_table(&far, &fk, &fr));
        md.push('\n');
    }
    let _ = writeln!(
        md,
        "## Direct reuse under shifts: a model trained on all ten digits (first half), tested on the second half\n"
    );
    let _ = writeln!(
        md,
        "Clean: {:.1} %. BatchNorm statistics re-estimated on the shifted test images themselves (labels unused); fine-tuned: the recipe at freeze 0 on 10 shifted labelled images per class (first half).\n",
        100.0 * clean
    );
    md.push_str(
        "| shift | as it is | BN re-estimated | fine-tuned, 10 per class |\n|---|---|---|---|\n",
    );
    for (sh, b, a, ft) in &reuse_rows {
        let _ = writeln!(
            md,
            "| {sh} | {:.1} | {:.1} | {} |",
            100.0 * b,
            100.0 * a,
            cell(ft)
        );
    }
    md.push('\n');

    // convergence table + plot
    let _ = writeln!(
        md,
        "## Convergence: test top-1 % after each epoch (mean over seeds)\n"
    );
    let mut conv_series = Vec::new();
    for (kname, cs, cf) in &curves {
        let mean_curve = |c: &Vec<Vec<f64>>| -> Vec<f64> {
            let n = c.iter().map(Vec::len).min().unwrap_or(0);
            (0..n)
                .map(|e| mean_std(&c.iter().map(|r| r[e]).collect::<Vec<_>>()).0)
                .collect()
        };
        let (ms, mf) = (mean_curve(cs), mean_curve(cf));
        let _ = writeln!(
            md,
            "k = {kname}:\n\n| epoch | scratch | fine-tune (freeze 0) |\n|---|---|---|"
        );
        for e in 0..ms.len().min(mf.len()) {
            let _ = writeln!(
                md,
                "| {} | {:.1} | {:.1} |",
                e + 1,
                100.0 * ms[e],
                100.0 * mf[e]
            );
        }
        md.push('\n');
        conv_series.push(Series {
            name: format!("scratch, k = {kname}"),
            points: ms
                .iter()
                .enumerate()
                .map(|(e, a)| ((e + 1) as f64, 100.0 * a))
                .collect(),
            err: None,
        });
        conv_series.push(Series {
            name: format!("fine-tune, k = {kname}"),
            points: mf
                .iter()
                .enumerate()
                .map(|(e, a)| ((e + 1) as f64, 100.0 * a))
                .collect(),
            err: None,
        });
    }
    plot_series(
        &plots.join("convergence.png"),
        "test top-1 per epoch: fine-tune vs scratch",
        ("epoch", "test top-1 (%)"),
        &conv_series,
        false,
    )?;

    // accuracy vs k plot
    let kx = |k: &str| -> f64 {
        if k == "all" {
            pool.len() as f64 / 5.0
        } else {
            k.parse().unwrap_or(1.0)
        }
    };
    let mut kseries = Vec::new();
    for r in ["scratch", "extract, logistic", "LP-FT (fastai fine_tune)"]
        .iter()
        .map(|s| s.to_string())
        .chain(std::iter::once(ft_name(
            best_depth(&near, knames.last().map_or("10", String::as_str)).0,
        )))
    {
        let pts: Vec<(f64, f64)> = knames
            .iter()
            .map(|k| (kx(k), 100.0 * near.mean(&r, k)))
            .collect();
        let err: Vec<f64> = knames
            .iter()
            .map(|k| 100.0 * mean_std(near.get(&r, k)).1)
            .collect();
        kseries.push(Series {
            name: r.clone(),
            points: pts,
            err: Some(err),
        });
    }
    plot_series(
        &plots.join("accuracy_vs_k.png"),
        "digits 0-4 -> 5-9: test top-1 vs labelled images per class",
        ("images per class", "test top-1 (%)"),
        &kseries,
        true,
    )?;
    if !quick {
        let mut ds = Vec::new();
        for (g, name) in [(&near, "near (5-9)"), (&far, "far (5-9 inverted)")] {
            for k in ["10", "all"] {
                let pts: Vec<(f64, f64)> = DEPTHS
                    .iter()
                    .map(|&d| (d as f64, 100.0 * g.mean(&ft_name(d), k)))
                    .collect();
                let err: Vec<f64> = DEPTHS
                    .iter()
                    .map(|&d| 100.0 * mean_std(g.get(&ft_name(d), k)).1)
                    .collect();
                ds.push(Series {
                    name: format!("{name}, k = {k}"),
                    points: pts,
                    err: Some(err),
                });
            }
        }
        plot_series(
            &plots.join("freeze_depth.png"),
            "test top-1 vs stages frozen (0 = none, 5 = whole trunk)",
            ("stages frozen", "test top-1 (%)"),
            &ds,
            false,
        )?;
    }
    let rel = |p: &str| {
        if quick {
            plots.join(p).display().to_string()
        } else {
            format!("results/{p}")
        }
    };
    let _ = writeln!(
        md,
        "Plots: ![accuracy vs k]({}) ![convergence]({}){}\n",
        rel("accuracy_vs_k.png"),
        rel("convergence.png"),
        if quick {
            String::new()
        } else {
            format!(" ![freeze depth]({})", rel("freeze_depth.png"))
        }
    );

    // verdicts
    md.push_str("## The four claims\n\n");
    md.push_str(&verdicts(&near, &far, &knames, &curves, quick));
    common::write_section(&out_md, "digits", &md)
        .with_context(|| format!("write {}", out_md.display()))?;
    println!("{md}");
    println!(
        "wrote {} and the plots in {} ({:.0} s)",
        out_md.display(),
        plots.display(),
        t_all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Each claim's verdict from the numbers, by the rule stated beside it.
fn verdicts(near: &Grid, far: &Grid, ks: &[String], curves: &[Curves], quick: bool) -> String {
    let mut v = String::new();
    // 1. convergence
    let mut lines = Vec::new();
    let mut holds1 = true;
    for (k, cs, cf) in curves {
        let first = |c: &Vec<Vec<f64>>| {
            mean_std(
                &c.iter()
                    .filter_map(|r| r.first().copied())
                    .collect::<Vec<_>>(),
            )
            .0
        };
        let final_s = mean_std(
            &cs.iter()
                .filter_map(|r| r.last().copied())
                .collect::<Vec<_>>(),
        )
        .0;
        let reach = |c: &Vec<Vec<f64>>| -> Option<usize> {
            let n = c.iter().map(Vec::len).min().unwrap_or(0);
            (0..n)
                .find(|&e| {
                    mean_std(&c.iter().map(|r| r[e]).collect::<Vec<_>>()).0 >= 0.95 * final_s
                })
                .map(|e| e + 1)
        };
        let (rs, rf) = (reach(cs), reach(cf));
        holds1 &= rf.unwrap_or(usize::MAX) < rs.unwrap_or(usize::MAX);
        lines.push(format!("k = {k}: after epoch 1 fine-tune {:.1} % vs scratch {:.1} %; 95 % of scratch's final accuracy ({:.1} %) reached at epoch {} (fine-tune) vs {} (scratch)", 100.0 * first(cf), 100.0 * first(cs), 100.0 * final_s, rf.map_or("never".into(), |e| e.to_string()), rs.map_or("never".into(), |e| e.to_string())));
    }
    let _ = writeln!(
        v,
        "1. **Fine-tuning converges faster** (rule: fine-tuning reaches 95 % of scratch's final test accuracy in fewer epochs than scratch, at every k measured) — **{}**. {}.\n",
        if holds1 { "holds" } else { "does not hold" },
        lines.join("; ")
    );
    // 2. gain vs data
    let best_transfer = |k: &str| -> f64 {
        near.acc
            .keys()
            .filter(|r| *r != "scratch")
            .map(|r| near.mean(r, k))
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let gains: Vec<(String, f64)> = ks
        .iter()
        .map(|k| (k.clone(), best_transfer(k) - near.mean("scratch", k)))
        .collect();
    let g_txt: Vec<String> = gains
        .iter()
        .map(|(k, g)| format!("k = {k}: {:+.1}", 100.0 * g))
        .collect();
    let holds2 = gains.len() > 1
        && gains.first().map(|g| g.1) > gains.last().map(|g| g.1)
        && gains.first().is_some_and(|g| g.1 > 0.0);
    let _ = writeln!(
        v,
        "2. **Transfer helps most with little target data** (rule: the best transfer route's gain over scratch is positive at the smallest k and larger there than at k = all) — **{}**. Gain in points: {}.\n",
        if quick {
            "needs the full run (one k)"
        } else if holds2 {
            "holds"
        } else {
            "does not hold"
        },
        g_txt.join(", ")
    );
    // 3. depth vs data and distance
    if quick {
        let _ = writeln!(
            v,
            "3. **Small target: train the last layer or two; more data: retrain more; farther domain: free more** — needs the full run (one depth in the quick run).\n"
        );
    } else {
        let d_near: Vec<String> = ks
            .iter()
            .map(|k| {
                let (d, a) = best_depth(near, k);
                format!("k = {k}: freeze {d} ({:.1} %)", 100.0 * a)
            })
            .collect();
        let small = best_depth(near, &ks[0]).0;
        let large = best_depth(near, ks.last().map_or("all", String::as_str)).0;
        let far_txt: Vec<String> = ["10", "all"]
            .iter()
            .map(|k| {
                let (dn, _) = best_depth(near, k);
                let (df, a) = best_depth(far, k);
                format!(
                    "k = {k}: near freeze {dn}, far freeze {df} ({:.1} %)",
                    100.0 * a
                )
            })
            .collect();
        let far_frees_more = ["10", "all"]
            .iter()
            .all(|k| best_depth(far, k).0 <= best_depth(near, k).0);
        let _ = writeln!(
            v,
            "3. **Small target: train only the last layers; more data: retrain more; farther domain: free more** (rule: the best freeze depth at the smallest k is at least that at k = all, and the inverted target's best depth is no deeper than the near one's at k = 10 and all) — data part **{}**, distance part **{}**. Best depth (stages frozen) near: {}. Far: {}.\n",
            if small >= large {
                "holds"
            } else {
                "does not hold"
            },
            if far_frees_more {
                "holds"
            } else {
                "does not hold"
            },
            d_near.join(", "),
            far_txt.join("; ")
        );
    }
    // 4. seldom lowers accuracy; no large gains with ample data
    let all = ks.last().map_or("all", String::as_str);
    let lowers: Vec<String> = ks
        .iter()
        .filter(|k| best_depth(near, k).1 < near.mean("scratch", k))
        .cloned()
        .collect();
    let gain_all = best_depth(near, all).1 - near.mean("scratch", all);
    let _ = writeln!(
        v,
        "4. **Fine-tuning seldom lowers accuracy, but gains are small with ample data** (rule: the best fine-tuning depth is not below scratch at any k, and its gain at k = {all} is under 3 points) — **{}**. Fine-tuning below scratch at k ∈ {{{}}}; gain at k = {all}: {:+.1} points.\n",
        if quick {
            "needs the full run (one k)"
        } else if lowers.is_empty() && gain_all < 0.03 {
            "holds"
        } else if lowers.is_empty() {
            "half holds: never lower, but the gain with ample data is not small"
        } else {
            "does not hold"
        },
        lowers.join(", "),
        100.0 * gain_all
    );
    v
}
