//! The run directory: `config.json`, `metrics.jsonl` appended line by line, the checkpoint
//! written after every epoch (and every N steps), and resuming from it exactly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use graft_backend::AutodiffBackend;
use graft_core::{Error, Result};
use graft_optim::Optimizer;
use graft_zoo::Model;
use serde::Serialize;

use super::{LoopState, Trainer, Work, assign_from_host};
use crate::checkpoint::Checkpoint;
use crate::trainer::History;

impl<B: AutodiffBackend> Trainer<B> {
    pub(super) fn checkpoint_path(&self) -> Option<PathBuf> {
        self.cfg
            .run_dir
            .as_ref()
            .map(|d| d.join("checkpoint.safetensors"))
    }

    pub(super) fn write_metrics(
        &self,
        st: &mut LoopState,
        kind: &str,
        record: &impl Serialize,
    ) -> Result<()> {
        let Some(dir) = &self.cfg.run_dir else {
            return Ok(());
        };
        let path = dir.join("metrics.jsonl");
        let mut v = serde_json::to_value(record).map_err(|e| Error::Training(e.to_string()))?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("kind".into(), serde_json::Value::String(kind.into()));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        writeln!(f, "{v}").map_err(|e| Error::io(&path, e))?;
        st.metrics_lines += 1;
        Ok(())
    }

    pub(super) fn save_checkpoint(&self, model: &Model<B>, st: &LoopState) -> Result<()> {
        let Some(path) = self.checkpoint_path() else {
            return Ok(());
        };
        let b = model.backend();
        let ema = match &self.ema {
            Some(e) => Some(
                e.iter()
                    .map(|(k, t)| Ok((k.clone(), b.to_data(t)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?,
            ),
            None => None,
        };
        let tensors = model.params().to_data()?;
        if let Some((name, _)) = tensors
            .iter()
            .find(|(_, t)| t.dtype().is_float() && t.to_f64().iter().any(|v| !v.is_finite()))
        {
            return Err(Error::Training(format!(
                "{name} holds non-finite values at step {} (the loss was still finite): stopping; the last good checkpoint {} is kept untouched. Lower the learning rate or clip gradients",
                st.step,
                path.display()
            )));
        }
        let mut extra = BTreeMap::new();
        if let Some(best) = st.best {
            extra.insert("best".into(), format!("{best:e}"));
        }
        extra.insert("bad_epochs".into(), st.bad_epochs.to_string());
        extra.insert("epoch_loss_sum".into(), format!("{:e}", st.epoch_loss_sum));
        extra.insert("epoch_loss_n".into(), st.epoch_loss_n.to_string());
        for (task, (sum, n)) in &st.task_loss {
            extra.insert(format!("task_loss.{task}"), format!("{sum:e} {n}"));
        }
        Checkpoint {
            step: st.step,
            epoch: st.epoch,
            batch: st.batch,
            seed: self.cfg.seed,
            threads: b.num_threads(),
            metrics_lines: st.metrics_lines,
            model: tensors,
            optimizer: self.opt.export_state(model.params())?,
            ema,
            extra,
        }
        .save(&path)
    }

    fn resume(&mut self, model: &mut Model<B>, path: &Path) -> Result<LoopState> {
        let ck = Checkpoint::load(path)?;
        let b = model.backend().clone();
        if ck.threads != b.num_threads() {
            return Err(Error::Training(format!(
                "{} was written with {} threads and this process computes with {}: results depend on the thread count, so set it to {} to resume exactly",
                path.display(),
                ck.threads,
                b.num_threads(),
                ck.threads
            )));
        }
        if ck.seed != self.cfg.seed {
            return Err(Error::Training(format!(
                "{} is from a run with seed {}, this run has seed {}",
                path.display(),
                ck.seed,
                self.cfg.seed
            )));
        }
        assign_from_host(model, &ck.model, |name| {
            Error::format(path, format!("checkpoint lacks {name:?}"))
        })?;
        self.opt = Optimizer::import_state(&ck.optimizer, model.params())?;
        self.ema = match ck.ema {
            Some(e) => Some(
                e.iter()
                    .map(|(k, v)| Ok((k.clone(), b.from_data(v)?)))
                    .collect::<Result<BTreeMap<_, _>>>()?,
            ),
            None => None,
        };
        if let Some(dir) = &self.cfg.run_dir {
            let mpath = dir.join("metrics.jsonl");
            if let Ok(text) = std::fs::read_to_string(&mpath) {
                let kept: Vec<&str> = text.lines().take(ck.metrics_lines).collect();
                let mut out = kept.join("\n");
                if !kept.is_empty() {
                    out.push('\n');
                }
                graft_backend::safetensors_io::write_atomic(&mpath, out.as_bytes())?;
            }
        }
        let parse = |k: &str| ck.extra.get(k).and_then(|v| v.parse::<f64>().ok());
        let mut task_loss = BTreeMap::new();
        for (k, v) in &ck.extra {
            let Some(task) = k.strip_prefix("task_loss.") else {
                continue;
            };
            let parsed = v
                .split_once(' ')
                .and_then(|(s, n)| Some((s.parse::<f64>().ok()?, n.parse::<usize>().ok()?)));
            let Some(sn) = parsed else {
                return Err(Error::format(
                    path,
                    format!("{k}: {v:?} is not \"SUM COUNT\""),
                ));
            };
            task_loss.insert(task.to_string(), sn);
        }
        Ok(LoopState {
            step: ck.step,
            epoch: ck.epoch,
            batch: ck.batch,
            metrics_lines: ck.metrics_lines,
            best: parse("best"),
            bad_epochs: parse("bad_epochs").unwrap_or(0.0) as usize,
            epoch_loss_sum: parse("epoch_loss_sum").unwrap_or(0.0),
            epoch_loss_n: parse("epoch_loss_n").unwrap_or(0.0) as usize,
            task_loss,
        })
    }

    /// Writes the resolved run settings to `run_dir/config.json` (when there is a run dir).
    pub(super) fn write_config(&self, model: &Model<B>, work: Work<'_>) -> Result<()> {
        let Some(dir) = &self.cfg.run_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let groups: Vec<serde_json::Value> = self
            .opt
            .groups()
            .iter()
            .map(|g| {
                serde_json::json!({
                    "name": g.name,
                    "params": g.params.len(),
                    "base_lr": self.base_lrs.get(&g.name),
                    "weight_decay": g.hyper.weight_decay,
                })
            })
            .collect();
        let mut resolved = serde_json::json!({
            "model": model.name(),
            "architecture": model.architecture(),
            "num_classes": model.num_classes(),
            "train": &self.cfg,
            "optimizer": format!("{:?}", self.opt.kind()),
            "groups": groups,
            "threads": model.backend().num_threads(),
        });
        let data = match work {
            Work::One { train, .. } => serde_json::json!({
                "train_samples": train.dataset().len(),
                "batch_size": train.config().batch_size,
                "loader_seed": train.config().seed,
                "semi_supervised": self.unlabeled.as_ref().map(|u| serde_json::json!({
                    "config": u.cfg,
                    "unlabeled_samples": u.samples(),
                    "unlabeled_batch_size": u.batch_size(),
                })),
            }),
            Work::Tasks(set) => serde_json::json!({
                "sampling": set.sampling(),
                "steps_per_epoch": set.steps_per_epoch(),
                "tasks": set.tasks().iter().map(|t| serde_json::json!({
                    "name": t.name(),
                    "kind": t.kind(),
                    "outputs": t.outputs(),
                    "loss": t.loss(),
                    "weight": t.weight(),
                    "metric": t.metric(),
                    "train_samples": t.train().dataset().len(),
                    "val_samples": t.val().map(|v| v.dataset().len()),
                    "batch_size": t.train().config().batch_size,
                    "loader_seed": t.train().config().seed,
                })).collect::<Vec<_>>(),
            }),
        };
        if let (serde_json::Value::Object(r), serde_json::Value::Object(d)) = (&mut resolved, data)
        {
            r.extend(d);
        }
        let text =
            serde_json::to_string_pretty(&resolved).map_err(|e| Error::Training(e.to_string()))?;
        graft_backend::safetensors_io::write_atomic(&dir.join("config.json"), text.as_bytes())
    }

    /// Where the loop starts: the checkpoint's state when resuming from one (`true`), else a
    /// fresh state with any old `metrics.jsonl` removed.
    pub(super) fn start(&mut self, model: &mut Model<B>) -> Result<(LoopState, bool)> {
        if let Some(p) = self.checkpoint_path()
            && self.cfg.resume
            && p.exists()
        {
            return Ok((self.resume(model, &p)?, true));
        }
        if let Some(dir) = &self.cfg.run_dir {
            let m = dir.join("metrics.jsonl");
            if m.exists() {
                std::fs::remove_file(&m).map_err(|e| Error::io(&m, e))?;
            }
        }
        Ok((LoopState::default(), false))
    }

    /// The run's end: the learning curves of the whole run (resumed parts included, from
    /// `metrics.jsonl`) plotted into the run dir — a multi-task run's per-task curves too
    /// (`task_losses.png`: each task's training and validation loss; `task_metrics.png`: each
    /// task's headline metric); a resumed run reports the whole run, as one never interrupted
    /// would.
    pub(super) fn finish(
        &self,
        history: History,
        resumed: bool,
        work: Work<'_>,
    ) -> Result<History> {
        let Some(dir) = &self.cfg.run_dir else {
            return Ok(history);
        };
        let whole = History::from_metrics(&dir.join("metrics.jsonl"));
        crate::plot::plot_history(whole.as_ref().unwrap_or(&history), &dir.join("curves.png"))?;
        if let Work::Tasks(set) = work {
            plot_tasks(set, whole.as_ref().unwrap_or(&history), dir)?;
        }
        if resumed {
            let mut full = whole?;
            full.stopped_early = history.stopped_early;
            return Ok(full);
        }
        Ok(history)
    }
}

/// A multi-task run's per-task curves, by epoch.
fn plot_tasks(set: &crate::TaskSet, h: &History, dir: &Path) -> Result<()> {
    use crate::plot::{Series, plot_series};
    let series = |name: String, f: &dyn Fn(&crate::TaskRecord) -> Option<f64>, task: &str| Series {
        name,
        points: h
            .epochs
            .iter()
            .filter_map(|e| {
                e.tasks
                    .get(task)
                    .and_then(f)
                    .map(|v| ((e.epoch + 1) as f64, v))
            })
            .collect(),
        err: None,
    };
    let mut losses = Vec::new();
    let mut metrics = Vec::new();
    for t in set.tasks() {
        let name = t.name();
        losses.push(series(format!("{name} train"), &|r| r.train_loss, name));
        losses.push(series(
            format!("{name} val"),
            &|r| r.val.as_ref().map(|m| m.loss()),
            name,
        ));
        let metric = t.metric();
        metrics.push(series(
            format!("{name} {metric:?}").to_lowercase(),
            &|r| r.val.as_ref().and_then(|m| metric.value(m)),
            name,
        ));
    }
    losses.retain(|s| !s.points.is_empty());
    metrics.retain(|s| !s.points.is_empty());
    if !losses.is_empty() {
        plot_series(
            &dir.join("task_losses.png"),
            "loss by task",
            ("epoch", "loss"),
            &losses,
            false,
        )?;
    }
    if !metrics.is_empty() {
        plot_series(
            &dir.join("task_metrics.png"),
            "validation metric by task",
            ("epoch", ""),
            &metrics,
            false,
        )?;
    }
    Ok(())
}
