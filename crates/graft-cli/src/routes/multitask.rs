//! `graft multitask`: one trunk, a head per `[[task]]`, trained together
//! ([`graft_train::Trainer::fit_tasks`]). Each task's `[task.data]` is resolved as a `[data]`
//! table is (a job per task on the same file); the trunk comes from `[model]`, its own classifier
//! dropped, and `[strategy]` says how the tasks share the steps and how the trunk is frozen.

use graft_train::{Sampling, Task, TaskLoss, TaskSet};

use super::*;
use crate::exp::{MultitaskStrategy, SamplingName, TaskKindName, TaskLossName, TaskSection};

/// The resolved tasks: each one's section, where it stands in the file, and its data (a job on
/// the experiment with `[data]` = the task's).
struct MultiJob {
    src: Source,
    exp: Experiment<MultitaskStrategy>,
    tasks: Vec<(TaskSection, std::ops::Range<usize>, Job<MultitaskStrategy>)>,
}

pub(super) fn run(src: Source, cli_dirs: &[PathBuf]) -> Result<()> {
    let exp: Experiment<MultitaskStrategy> = src.parse()?;
    if exp.tasks.is_empty() {
        return Err(src
            .error(
                0..0,
                "graft multitask needs [[task]] tables (one a task: name, [task.data])",
            )
            .into());
    }
    let d = &exp.data;
    let data_given = d.digits.is_some()
        || d.text.is_some()
        || d.vader.is_some()
        || d.train.is_some()
        || d.val.is_some()
        || d.test.is_some()
        || d.unlabeled.is_some();
    if data_given {
        return Err(src
            .table_error(
                "data",
                "graft multitask reads each task's data from its [task.data]: leave [data] out",
            )
            .into());
    }
    if let Some(s) = &exp.train.semi {
        return Err(src
            .error(s.span(), "train.semi is single-task: graft finetune")
            .into());
    }
    let mut tasks = Vec::new();
    for t in &exp.tasks {
        let (span, section) = (t.span(), t.get_ref().clone());
        let mut e = exp.clone();
        e.data = section.data.clone();
        e.tasks = Vec::new();
        let job_src = Source {
            path: src.path.clone(),
            text: src.text.clone(),
        };
        let job = Job::with_exp(Route::Multitask, job_src, e, cli_dirs)?;
        tasks.push((section, span, job));
    }
    let job = MultiJob { src, exp, tasks };
    job.check()?;
    let backend = job.tasks[0].2.backend;
    if backend != BackendName::Tch {
        return Err(job.tasks[0].2.needs_tch("graft multitask").into());
    }
    on_backend!(backend, train_on(&job))
}

impl MultiJob {
    /// Every task's settings, before anything runs: names, kinds against losses, metrics and
    /// data, one kind of input for the one trunk.
    fn check(&self) -> Result<()> {
        let err = |span: std::ops::Range<usize>, msg: String| -> Result<()> {
            Err(self.src.error(span, msg).into())
        };
        let mut seen: Vec<&str> = Vec::new();
        for (t, span, job) in &self.tasks {
            let name = t.name.get_ref();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return err(
                    t.name.span(),
                    format!("task name {name:?}: letters, digits, '_' and '-'"),
                );
            }
            if seen.contains(&name.as_str()) {
                return err(t.name.span(), format!("a second task named {name:?}"));
            }
            seen.push(name);
            if job.data.train.is_none() {
                return err(
                    span.clone(),
                    format!("task {name:?}: its data has no training split"),
                );
            }
            let regression = t.kind == TaskKindName::Regression;
            let kind = if regression {
                "regression"
            } else {
                "classification"
            };
            if let Some(l) = &t.loss
                && (*l.get_ref() != TaskLossName::CrossEntropy) != regression
            {
                return err(
                    l.span(),
                    format!("loss {:?} does not fit a {kind} task", l.get_ref()),
                );
            }
            if let Some(m) = &t.metric
                && m.get_ref().is_regression() != regression
            {
                return err(
                    m.span(),
                    format!("metric {:?} does not measure a {kind} task", m.get_ref()),
                );
            }
            if let Some(b) = &t.beta {
                let smooth = t.loss.as_ref().map(|l| *l.get_ref()) == Some(TaskLossName::SmoothL1);
                if !smooth {
                    return err(b.span(), "beta applies to loss = \"smooth_l1\"".into());
                }
                if !(b.get_ref().is_finite() && *b.get_ref() > 0.0) {
                    return err(b.span(), format!("beta {}: finite and > 0", b.get_ref()));
                }
            }
            if regression && job.data.values[0].is_none() {
                return err(
                    span.clone(),
                    format!(
                        "task {name:?} is a regression task, and its data carries no values (VADER's mean valence is one: [task.data.vader])"
                    ),
                );
            }
            if t.head == HeadName::Linear && (!t.hidden.is_empty() || t.dropout > 0.0) {
                return err(
                    span.clone(),
                    format!("task {name:?}: hidden / dropout apply to head = \"mlp\""),
                );
            }
        }
        let first = &self.tasks[0].2.data;
        for (t, span, job) in &self.tasks[1..] {
            if job.data.text.is_some() != first.text.is_some()
                || job.data.channels != first.channels
            {
                return err(
                    span.clone(),
                    format!(
                        "task {:?} reads other inputs than task {:?} (text or images, and the number of channels, must be one for the one trunk)",
                        t.name.get_ref(),
                        self.tasks[0].0.name.get_ref()
                    ),
                );
            }
        }
        let s = &self.exp.strategy;
        if let Ok((e, _)) = self.tasks[0].2.reg.entry_of(self.exp.model.name.get_ref()) {
            let n = e.arch.stage_table().stages().len();
            if s.freeze >= n {
                return Err(self.freeze_error(n, self.exp.model.name.get_ref()).into());
            }
        }
        match (s.sampling, &s.temperature) {
            (SamplingName::Temperature, None) => {
                return Err(self
                    .src
                    .table_error(
                        "strategy",
                        "sampling = \"temperature\" needs temperature = T",
                    )
                    .into());
            }
            (SamplingName::Temperature, Some(t))
                if !(t.get_ref().is_finite() && *t.get_ref() > 0.0) =>
            {
                return err(
                    t.span(),
                    format!("temperature {}: a finite value > 0", t.get_ref()),
                );
            }
            (SamplingName::RoundRobin | SamplingName::Proportional, Some(t)) => {
                return err(
                    t.span(),
                    "temperature applies to sampling = \"temperature\"".into(),
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn freeze_error(&self, stages: usize, model: &str) -> ConfigError {
        self.src.table_error(
            "strategy",
            format!(
                "freeze = {} leaves nothing to train: {model} has {stages} stages, the heads included",
                self.exp.strategy.freeze
            ),
        )
    }

    fn sampling(&self) -> Sampling {
        let s = &self.exp.strategy;
        match s.sampling {
            SamplingName::RoundRobin => Sampling::RoundRobin,
            SamplingName::Proportional => Sampling::Proportional,
            SamplingName::Temperature => Sampling::Temperature {
                t: s.temperature.as_ref().map_or(1.0, |t| *t.get_ref()),
            },
        }
    }

    /// Task `i` over its job's loaders: `which` the held-out split it is judged on.
    fn task<B: Backend>(&self, i: usize, model: &Model<B>, which: &str) -> Result<Option<Task>> {
        let (t, _, job) = &self.tasks[i];
        let name = t.name.get_ref();
        let train = job.loader(model, "train", true)?.context("train split")?;
        // the held-out split's index into the data's values
        let k = if which == "test" { 2 } else { 1 };
        let held = job.loader(model, which, false)?;
        if held.is_none() && which == "test" {
            return Ok(None);
        }
        self.build(i, train, held.map(|l| (l, k)))
            .with_context(|| format!("task {name:?}"))
            .map(Some)
    }

    /// Task `i` on `train`, judged on `held` (a loader and its split's index: 1 val, 2 test).
    fn build(&self, i: usize, train: Loader, held: Option<(Loader, usize)>) -> Result<Task> {
        let (t, _, job) = &self.tasks[i];
        let name = t.name.get_ref();
        let mut task = match t.kind {
            TaskKindName::Classification => Task::classification(name, train, held.map(|h| h.0))?,
            TaskKindName::Regression => {
                let values = |k: usize| job.data.values[k].clone().context("regression values");
                let held = match held {
                    Some((l, k)) => Some((l, values(k)?)),
                    None => None,
                };
                Task::regression(name, 1, train, values(0)?, held)?
            }
        };
        if let Some(l) = &t.loss {
            task = task.with_loss(match l.get_ref() {
                TaskLossName::CrossEntropy => TaskLoss::CrossEntropy,
                TaskLossName::Mse => TaskLoss::Mse,
                TaskLossName::SmoothL1 => TaskLoss::SmoothL1 {
                    beta: t.beta.as_ref().map_or(1.0, |b| *b.get_ref()),
                },
            })?;
        }
        if let Some(m) = &t.metric {
            task = task.with_metric(*m.get_ref())?;
        }
        Ok(task.with_weight(t.weight)?)
    }

    fn head(&self, i: usize) -> graft_zoo::TaskHead {
        let (t, _, job) = &self.tasks[i];
        let classification = t.kind == TaskKindName::Classification;
        graft_zoo::TaskHead {
            name: t.name.get_ref().clone(),
            outputs: if classification {
                job.data.classes.len()
            } else {
                1
            },
            head: match t.head {
                HeadName::Linear => HeadSpec::Linear,
                HeadName::Mlp => HeadSpec::mlp(&t.hidden, t.dropout),
            },
            labels: classification.then(|| job.data.classes.clone()),
        }
    }

    /// The run directory, with the whole experiment resolved into `config.toml`.
    fn start(&self) -> Result<RunDir> {
        let mut text = toml::to_string_pretty(&self.exp).context("resolve the config")?;
        text.push_str(&format!(
            "\n# resolved by graft {}: multitask on {}\n[resolved]\ncommand = \"multitask\"\n",
            env!("CARGO_PKG_VERSION"),
            self.src.path.display(),
        ));
        for (t, _, job) in &self.tasks {
            text.push_str(&format!(
                "\n[[resolved.task]]\nname = {:?}\nclasses = {:?}\ntrain = {}\nval = {}\ntest = {}\n",
                t.name.get_ref(),
                job.data.classes,
                job.data.train.as_ref().map_or(0, |d| d.len()),
                job.data.val.as_ref().map_or(0, |d| d.len()),
                job.data.test.as_ref().map_or(0, |d| d.len()),
            ));
        }
        let run = self.tasks[0].2.run_dir()?;
        graft_backend::safetensors_io::write_atomic(
            &run.path.join("config.toml"),
            text.as_bytes(),
        )?;
        Ok(run)
    }
}

fn train_on<B: Routes>(b: &B, job: &MultiJob) -> Result<()> {
    let first = &job.tasks[0].2;
    let mut model = first.model(b, false)?;
    // the trunk is shared; every task brings its own head
    if model.num_classes() > 0 {
        model.replace_head(0, HeadSpec::Linear, job.exp.train.seed)?;
    }
    model.remove_task_heads()?;
    for i in 0..job.tasks.len() {
        model.add_task_head(job.head(i), job.exp.train.seed.wrapping_add(i as u64 + 1))?;
    }
    let mut tasks = Vec::new();
    for i in 0..job.tasks.len() {
        tasks.push(job.task(i, &model, "val")?.context("task")?);
    }
    let mut set = TaskSet::new(tasks, job.sampling(), job.exp.train.seed)?;
    if let Some(n) = job.exp.strategy.steps_per_epoch {
        set = set.with_steps_per_epoch(n)?;
    }
    let stages = model.stages().stages().len();
    let s = &job.exp.strategy;
    if s.freeze >= stages {
        return Err(job.freeze_error(stages, model.name()).into());
    }
    let run = job.start()?;
    let t = &job.exp.train;
    let mut lr = LrConfig::adamw(t.lr.unwrap_or(1e-3)).weight_decay(t.weight_decay.unwrap_or(0.01));
    if let Some(m) = s.lr_mult {
        lr = lr.layer_decay(m);
    }
    let freeze = graft_surgery::FreezeConfig::freeze_to(s.freeze);
    let t0 = std::time::Instant::now();
    let history = B::fit_tasks(
        &mut model,
        &set,
        &freeze,
        &lr,
        first.train_cfg(Some(&run.path)),
    )?;
    let secs = t0.elapsed().as_secs_f64();
    write_history(&run, &history)?;
    let mut rep = Report::new(&format!(
        "graft multitask: {} ({} tasks)",
        model.name(),
        set.tasks().len()
    ));
    rep.para(&format!(
        "{} epochs in {secs:.1} s, {} sampling, {} steps an epoch, bottom {} stages frozen; per-task curves in task_losses.png and task_metrics.png",
        history.epochs.len(),
        match job.sampling() {
            Sampling::RoundRobin => "round-robin".to_string(),
            Sampling::Proportional => "proportional".to_string(),
            Sampling::Temperature { t } => format!("temperature-{t}"),
        },
        set.steps_per_epoch(),
        s.freeze
    ));
    rep.md.push_str("| task | kind | loss | weight | train loss (last epoch) | val loss | val metric |\n|---|---|---|---|---|---|---|\n");
    let last = history.epochs.last();
    let mut json_tasks = Vec::new();
    let mut tests = String::new();
    for (i, task) in set.tasks().iter().enumerate() {
        let r = last.and_then(|e| e.tasks.get(task.name()));
        let val = r.and_then(|r| r.val.as_ref());
        let metric = task.metric();
        let test = match job.task(i, &model, "test")? {
            Some(t) => t.evaluate(&model)?,
            None => None,
        };
        rep.md.push_str(&format!(
            "| {} | {} | {:?} | {} | {} | {} | {} |\n",
            task.name(),
            task.kind(),
            match task.loss() {
                TaskLoss::CrossEntropy => "cross-entropy".to_string(),
                TaskLoss::Mse => "MSE".to_string(),
                TaskLoss::SmoothL1 { beta } => format!("smooth-L1 (β {beta})"),
            },
            task.weight(),
            r.and_then(|r| r.train_loss)
                .map_or("-".into(), |v| format!("{v:.4}")),
            val.map_or("-".into(), |m| format!("{:.4}", m.loss())),
            val.and_then(|m| metric.value(m))
                .map_or("-".into(), |v| format!("{metric:?} {v:.4}").to_lowercase()),
        ));
        json_tasks.push(json!({
            "name": task.name(),
            "kind": task.kind(),
            "loss": task.loss(),
            "weight": task.weight(),
            "metric": metric,
            "val": val,
            "test": test,
        }));
        if let Some(m) = &test {
            match m {
                graft_train::TaskMetrics::Classification(c) => {
                    tests.push_str(&metrics_md(
                        &format!("test, task {}", task.name()),
                        &job.tasks[i].2.data.classes,
                        c.top1,
                        &c.per_class,
                        &c.confusion,
                    ));
                }
                graft_train::TaskMetrics::Regression(r) => tests.push_str(&format!(
                    "\n**test, task {}**: MAE {:.4}, RMSE {:.4}, R² {:.4} ({} samples)\n",
                    task.name(),
                    r.mae,
                    r.rmse,
                    r.r2,
                    r.samples
                )),
            }
        }
    }
    rep.md.push('\n');
    rep.md.push_str(&tests);
    rep.md.push('\n');
    rep.set("tasks", json!(json_tasks));
    rep.set("sampling", json!(set.sampling()));
    rep.set("seconds", json!(secs));
    if job.exp.output.export {
        let dir = run.path.join("model");
        model.save_user_model(&dir)?;
        rep.para(&format!(
            "exported the trunk with every task's head: {}",
            dir.display()
        ));
        rep.set("exported", json!(dir));
    }
    rep.finish(&run)
}
