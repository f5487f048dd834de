//! `graft rank EXP.toml`: which pretrained model to start from, before any training. Every
//! candidate of `[rank] candidates` (wildcards expanded over the cached tags and the user models)
//! is checked first, as a model of its own; then each one's features of the target's train split
//! are extracted once (cached) and scored — LogME, LEEP and NCE from its source head, the kNN and
//! linear probes on val — and the table is sorted by LogME, with the time each candidate took,
//! `rank.png`, `report.md` and `report.json`. A candidate that cannot be had (an uncached tag
//! offline) is reported and the others go on.

use super::*;
use crate::exp::{CandidateEntry, ModelSection, RankFile};
use graft_extract::{Candidate, RankConfig, RankReport};

/// One candidate as the file resolves it.
struct Resolved {
    label: String,
    features: Spanned<String>,
    job: Job<NoStrategy>,
}

fn is_pattern(s: &str) -> bool {
    s.contains('*') || s.contains('?')
}

pub(super) fn run(src: Source, cli_dirs: &[PathBuf]) -> Result<()> {
    let file: RankFile = src.parse_as()?;
    let r = &file.rank;
    let entries = r.candidates.get_ref();
    if entries.is_empty() {
        return Err(src
            .error(r.candidates.span(), "no candidate to rank")
            .into());
    }
    let reg = registry(&src, cli_dirs, &r.models_dir)?;
    // (label, model section, features) per candidate, wildcards expanded
    let mut wanted: Vec<(
        String,
        ModelSection,
        Spanned<String>,
        std::ops::Range<usize>,
    )> = Vec::new();
    let mut not_cached = Vec::new();
    let section = |name: String, span: std::ops::Range<usize>| ModelSection {
        name: Spanned::new(span, name),
        pretrained: None,
        init: None,
        revision: None,
        weights: None,
        num_classes: None,
        in_chans: r.in_chans,
        models_dir: r.models_dir.clone(),
        backend: r.backend.clone(),
        dir: None,
        lenient: false,
        clip: None,
    };
    for e in entries {
        let span = e.span();
        match e.get_ref() {
            CandidateEntry::Name(p) if is_pattern(p) => {
                let (cached, uncached) = crate::pretrained::matches(&reg, p)?;
                if cached.is_empty() && uncached.is_empty() {
                    return Err(src
                        .error(
                            span,
                            format!("{p:?} matches no pretrained tag and no user model"),
                        )
                        .into());
                }
                for n in cached {
                    wanted.push((
                        n.clone(),
                        section(n, span.clone()),
                        r.features.clone(),
                        span.clone(),
                    ));
                }
                not_cached.extend(uncached);
            }
            CandidateEntry::Name(n) => wanted.push((
                n.clone(),
                section(n.clone(), span.clone()),
                r.features.clone(),
                span,
            )),
            CandidateEntry::Table(t) => {
                let mut m = section(t.name.clone(), span.clone());
                m.init = t.init.map(|i| Spanned::new(span.clone(), i));
                m.weights = t.weights.clone().map(|w| Spanned::new(span.clone(), w));
                m.revision = t.revision.clone();
                m.dir = t.dir.clone().map(|d| Spanned::new(span.clone(), d));
                let features = t
                    .features
                    .clone()
                    .map_or_else(|| r.features.clone(), |f| Spanned::new(span.clone(), f));
                let label = t.label.clone().unwrap_or_else(|| t.name.clone());
                wanted.push((label, m, features, span));
            }
        }
    }
    if wanted.is_empty() {
        return Err(src
            .error(
                r.candidates.span(),
                format!(
                    "no candidate is cached: `graft pull` one of {} first",
                    not_cached.join(", ")
                ),
            )
            .into());
    }
    let mut resolved: Vec<Resolved> = Vec::with_capacity(wanted.len());
    for (label, model, features, span) in wanted {
        if resolved.iter().any(|c| c.label == label) {
            return Err(src
                .error(
                    span,
                    format!("two candidates are called {label:?}: give one a label"),
                )
                .into());
        }
        let exp = Experiment::<NoStrategy> {
            model,
            data: file.data.clone(),
            strategy: NoStrategy::default(),
            train: file.train.clone(),
            output: file.output.clone(),
            tasks: Vec::new(),
        };
        let job_src = Source {
            path: src.path.clone(),
            text: src.text.clone(),
        };
        let job = Job::with_registry(Route::Rank, job_src, exp, reg.clone())?;
        job.need("train", "graft rank")?;
        job.check_features(&features)?;
        resolved.push(Resolved {
            label,
            features,
            job,
        });
    }
    let backend = resolved[0].job.backend;
    on_backend!(backend, rank_on(&file, &src, &resolved, &not_cached))
}

impl Job<NoStrategy> {
    /// `features` is `pooled` or one of the candidate's trunk stages (checked from the registry
    /// before any model is built; an `hf-hub:` repo is checked once it is).
    fn check_features(&self, features: &Spanned<String>) -> Result<()> {
        let name = self.exp.model.name.get_ref();
        if crate::pretrained::is_hub(&self.reg, name) {
            return Ok(());
        }
        let (entry, _) = self.reg.entry_of(name)?;
        let stages: Vec<String> = entry
            .arch
            .stage_specs()
            .into_iter()
            .map(|s| s.name)
            .collect();
        self.feature_spec(features, name, &stages)?;
        Ok(())
    }

    /// The candidate, built: its weights (the file's own head kept — LEEP and NCE read it), its
    /// loaders through its own eval transform.
    fn candidate<B: Backend>(&self, b: &B, features: &Spanned<String>) -> Result<Candidate<B>> {
        let (mut model, report) = self.registry_model_loaded(b, true)?;
        self.input_cfg(&mut model);
        let source_head = report.as_ref().is_some_and(|r| {
            r.head_dropped.is_empty() && r.applied.iter().any(|n| model.is_classifier(n))
        });
        let features = self.feature_spec(features, model.name(), &model.stage_names())?;
        let train = self
            .loader(&model, "train", false)?
            .context("train split")?;
        let val = self.loader(&model, "val", false)?;
        Ok(Candidate {
            model,
            train,
            val,
            source_head,
            features,
        })
    }
}

fn rank_on<B: Routes>(
    b: &B,
    file: &RankFile,
    src: &Source,
    cands: &[Resolved],
    not_cached: &[String],
) -> Result<()> {
    let first = &cands[0].job;
    let run = first.run_dir()?;
    let mut text = toml::to_string_pretty(file).context("resolve the config")?;
    text.push_str(&format!(
        "\n# resolved by graft {}: rank on {}\n[resolved]\ncommand = \"rank\"\nbackend = {:?}\ncandidates = {:?}\nclasses = {:?}\n",
        env!("CARGO_PKG_VERSION"),
        src.path.display(),
        format!("{:?}", first.backend).to_lowercase(),
        cands.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(),
        first.data.classes,
    ));
    run.write("config.toml", &text)?;
    let r = &file.rank;
    let cfg = RankConfig {
        knn_k: r.knn_k,
        linear: r.linear.then_some(LogisticConfig {
            alpha: r.alpha,
            max_iterations: r.max_iterations,
            standardize: false,
        }),
    };
    let labels: Vec<String> = cands.iter().map(|c| c.label.clone()).collect();
    let report = graft_extract::rank(&labels, &run.cache, &cfg, |label| {
        let c = cands
            .iter()
            .find(|c| c.label == label)
            .ok_or_else(|| format!("no candidate {label:?}"))?;
        eprintln!("rank: {label}");
        c.job
            .candidate(b, &c.features)
            .map_err(|e| format!("{e:#}"))
    })?;
    for (name, why) in &report.failed {
        eprintln!("warning: {name} not scored: {why}");
    }
    if report.rows.is_empty() {
        bail!("no candidate could be scored (each one's error is above)");
    }
    write_report(&run, first, cands, &report, not_cached)
}

fn opt(v: Option<f64>, pct: bool) -> String {
    match v {
        Some(x) if pct => format!("{:.2} %", 100.0 * x),
        Some(x) => format!("{x:.4}"),
        None => "-".into(),
    }
}

fn write_report(
    run: &RunDir,
    job: &Job<NoStrategy>,
    cands: &[Resolved],
    report: &RankReport,
    not_cached: &[String],
) -> Result<()> {
    let d = &job.data;
    let mut rep = Report::new("graft rank: which model to start from");
    let probes = match &d.val {
        Some(v) => format!(
            "probes fitted on train, scored on val ({} samples)",
            v.len()
        ),
        None => "no val split: no kNN or linear probe".to_string(),
    };
    rep.para(&format!(
        "{} candidates on the target's train split ({} samples, {} classes), sorted by LogME (higher is better for every score); {probes}.",
        report.rows.len(),
        d.train.as_ref().map_or(0, |t| t.len()),
        d.classes.len(),
    ));
    rep.md.push_str("| # | candidate | features | dim | LogME | LEEP | NCE | kNN val | linear val | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let features_of = |label: &str| {
        cands
            .iter()
            .find(|c| c.label == label)
            .map_or("pooled".to_string(), |c| c.features.get_ref().clone())
    };
    for (i, row) in report.rows.iter().enumerate() {
        rep.md.push_str(&format!(
            "| {} | {} | {} | {} | {:.4} | {} | {} | {} | {} | {:.2}{} |\n",
            i + 1,
            row.name,
            features_of(&row.name),
            row.dim,
            row.logme,
            opt(row.leep, false),
            opt(row.nce, false),
            opt(row.knn, true),
            opt(row.linear, true),
            row.times.total(),
            if row.cached { " (cached)" } else { "" },
        ));
    }
    rep.md.push('\n');
    if !report.failed.is_empty() {
        rep.para("Not scored:");
        for (name, why) in &report.failed {
            rep.md.push_str(&format!("- {name}: {why}\n"));
        }
        rep.md.push('\n');
    }
    if !not_cached.is_empty() {
        rep.para(&format!(
            "Matched by a wildcard but not in the local caches (left out; `graft pull NAME` adds one): {}.",
            not_cached.join(", ")
        ));
    }
    rep.para("LogME: the evidence of a Bayesian linear model on the frozen features (You et al., ICML 2021); LEEP (Nguyen et al., ICML 2020) and NCE (Tran et al., ICCV 2019): how well the candidate's own source head's predictions explain the target labels (\"-\": no trained head came with the weights). What each assumes and when it misleads: docs/ranking.md.");
    let bars: Vec<(String, f64)> = report
        .rows
        .iter()
        .map(|r| (r.name.clone(), r.logme))
        .collect();
    graft_train::plot_bars(
        &run.path.join("rank.png"),
        "candidates by LogME",
        "LogME (per sample; higher transfers better)",
        &bars,
    )?;
    rep.para("The chart: rank.png.");
    rep.set(
        "candidates",
        json!(
            report
                .rows
                .iter()
                .map(|r| json!({
                    "name": r.name,
                    "features": features_of(&r.name),
                    "dim": r.dim,
                    "n": r.n,
                    "logme": r.logme,
                    "leep": r.leep,
                    "nce": r.nce,
                    "knn_val_accuracy": r.knn,
                    "linear_val_accuracy": r.linear,
                    "cached": r.cached,
                    "seconds": {
                        "load": r.times.load,
                        "extract": r.times.extract,
                        "logme": r.times.logme,
                        "leep_nce": r.times.source,
                        "knn": r.times.knn,
                        "linear": r.times.linear,
                        "total": r.times.total(),
                    },
                }))
                .collect::<Vec<_>>()
        ),
    );
    rep.set(
        "failed",
        json!(
            report
                .failed
                .iter()
                .map(|(n, e)| json!({"name": n, "error": e}))
                .collect::<Vec<_>>()
        ),
    );
    rep.set("not_cached", json!(not_cached));
    rep.set("classes", json!(d.classes));
    rep.finish(run)
}
