//! `graft finetune` and `graft plan`: a fine-tuning strategy from the file, run (resumable)
//! or only planned.

use super::*;

impl Job<FinetuneStrategy> {
    fn strategy(&self) -> Result<Strategy> {
        let s = &self.exp.strategy;
        if let Some((key, span, kind)) = s.misplaced().into_iter().next() {
            return Err(self
                .src
                .error(
                    span,
                    format!(
                        "{key} applies to kind = \"{kind}\", not {:?}",
                        format!("{:?}", s.kind).to_lowercase()
                    ),
                )
                .into());
        }
        self.check_strategy_values()?;
        let head = match s.head {
            HeadName::Linear => HeadSpec::Linear,
            HeadName::Mlp => HeadSpec::mlp(&s.hidden, s.dropout),
        };
        let t = &self.exp.train;
        Ok(match s.kind {
            FinetuneKind::Recipe => {
                let d = Recipe::default();
                let freeze = match s.freeze.as_ref().map(Spanned::get_ref) {
                    None => d.freeze.clone(),
                    Some(FreezeValue::Stages(k)) => FreezeDepth::Stages(*k),
                    Some(FreezeValue::Word(w)) if w == "auto" => FreezeDepth::Auto(ProbeConfig {
                        tolerance: s.tolerance.as_ref().map_or(0.01, |t| *t.get_ref()),
                        ..ProbeConfig::default()
                    }),
                    Some(FreezeValue::Word(w)) => {
                        let span = s.freeze.as_ref().map_or(0..0, Spanned::span);
                        return Err(self
                            .src
                            .error(
                                span,
                                format!("freeze = {w:?}: a number of stages or \"auto\""),
                            )
                            .into());
                    }
                };
                Strategy::Recipe(Recipe {
                    freeze,
                    head,
                    lr: t.lr.unwrap_or(d.lr),
                    lr_mult: s.lr_mult.unwrap_or(d.lr_mult),
                    weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
                    epochs: t.epochs.unwrap_or(d.epochs),
                    patience: s
                        .patience
                        .as_ref()
                        .map_or(d.patience, |p| Some(*p.get_ref())),
                    bn: match s.bn.as_ref().map(|b| *b.get_ref()) {
                        None | Some(BnName::Frozen) => BnPolicy::Frozen,
                        Some(BnName::TrainAffineOnly) => BnPolicy::TrainAffineOnly,
                        Some(BnName::Train) => BnPolicy::Train,
                    },
                })
            }
            FinetuneKind::Lpft => {
                let d = LpFt::default();
                Strategy::LpFt(LpFt {
                    epochs: t.epochs.unwrap_or(d.epochs),
                    base_lr: t.lr.unwrap_or(d.base_lr),
                    freeze_epochs: s
                        .freeze_epochs
                        .as_ref()
                        .map_or(d.freeze_epochs, |v| *v.get_ref()),
                    lr_mult: s.lr_mult.unwrap_or(d.lr_mult),
                    pct_start: s.pct_start.as_ref().map_or(d.pct_start, |v| *v.get_ref()),
                    div: s.div.as_ref().map_or(d.div, |v| *v.get_ref()),
                    weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
                    head,
                })
            }
            FinetuneKind::Gradual => {
                let d = Gradual::default();
                Strategy::Gradual(Gradual {
                    epochs: t.epochs.unwrap_or(d.epochs),
                    lr: t.lr.unwrap_or(d.lr),
                    lr_mult: s.lr_mult.unwrap_or(d.lr_mult),
                    weight_decay: t.weight_decay.unwrap_or(d.weight_decay),
                    min_frozen: s.min_frozen.as_ref().map_or(d.min_frozen, |v| *v.get_ref()),
                    head,
                })
            }
        })
    }

    /// The strategy's located values in range, and `freeze` within the model's stages.
    fn check_strategy_values(&self) -> Result<()> {
        let s = &self.exp.strategy;
        let err = |span: std::ops::Range<usize>, msg: String| -> Result<()> {
            Err(self.src.error(span, msg).into())
        };
        if let Some(t) = &s.tolerance
            && !(t.get_ref().is_finite() && *t.get_ref() >= 0.0)
        {
            return err(
                t.span(),
                format!("tolerance {}: must be finite and >= 0", t.get_ref()),
            );
        }
        if let Some(p) = &s.pct_start
            && !(*p.get_ref() > 0.0 && *p.get_ref() < 1.0)
        {
            return err(
                p.span(),
                format!("pct_start {}: must be in (0, 1)", p.get_ref()),
            );
        }
        if let Some(d) = &s.div
            && !(d.get_ref().is_finite() && *d.get_ref() > 0.0)
        {
            return err(
                d.span(),
                format!("div {}: must be finite and > 0", d.get_ref()),
            );
        }
        if let Some(p) = &s.patience
            && *p.get_ref() == 0
        {
            return err(p.span(), "patience 0: must be at least 1 epoch".into());
        }
        if let Some(f) = &s.freeze
            && let FreezeValue::Stages(k) = f.get_ref()
            && let Ok((e, _)) = self.reg.entry_of(self.exp.model.name.get_ref())
        {
            let stages = e.arch.stage_table();
            let names: Vec<&str> = stages.stages().iter().map(|s| s.name.as_str()).collect();
            if *k >= names.len() {
                return err(
                    f.span(),
                    format!(
                        "freeze = {k} leaves nothing to train: {} has {} stages ({}), the head included",
                        self.exp.model.name.get_ref(),
                        names.len(),
                        names.join(", ")
                    ),
                );
            }
        }
        Ok(())
    }

    fn finetune_on<B: Routes>(&self, b: &B) -> Result<()> {
        let strategy = self.strategy()?;
        let mut model = self.model(b, false)?;
        self.need("train", "graft finetune")?;
        let run = self.start()?;
        let train = self.loader(&model, "train", true)?.context("train split")?;
        let val = self.loader(&model, "val", false)?;
        let test = self.loader(&model, "test", false)?;
        let mut opts = self.finetune_options(&run);
        opts.unlabeled = self.unlabeled(&model)?;
        let n = self.num_classes();
        let t0 = std::time::Instant::now();
        let r = B::fine_tune(&mut model, n, &train, val.as_ref(), &strategy, &opts)?;
        let secs = t0.elapsed().as_secs_f64();
        run.write("plan.txt", &r.to_string())?;
        write_history(&run, &r.history)?;
        let mut rep = Report::new(&format!(
            "graft finetune: {} ({:?})",
            model.name(),
            self.exp.strategy.kind
        ));
        if let Some(p) = &r.probe {
            rep.md.push_str(&format!("```\n{p}\n```\n\n"));
        }
        rep.para(&format!(
            "{} phase(s), {} epochs{} in {secs:.1} s; bottom {} stages frozen in the first phase; plans in plan.txt, curves in curves.png",
            r.phases.len(),
            r.history.epochs.len(),
            if r.history.stopped_early && r.history.epochs.len() < planned_epochs(&strategy) { " (stopped early)" } else { "" },
            r.frozen_stages
        ));
        rep.md.push_str(
            "| epoch | phase | train loss | val loss | val top-1 |\n|---|---|---|---|---|\n",
        );
        let mut e = 0;
        for p in &r.phases {
            for ep in &p.history.epochs {
                let (vl, va) = ep
                    .val
                    .as_ref()
                    .map_or((f64::NAN, f64::NAN), |m| (m.loss, m.top1));
                rep.md.push_str(&format!(
                    "| {e} | {} | {:.4} | {vl:.4} | {:.2} % |\n",
                    p.name,
                    ep.train_loss,
                    100.0 * va
                ));
                e += 1;
            }
        }
        rep.md.push('\n');
        rep.set(
            "phases",
            json!(
                r.phases
                    .iter()
                    .map(|p| json!({"name": p.name, "epochs": p.history.epochs.len()}))
                    .collect::<Vec<_>>()
            ),
        );
        rep.set("frozen_stages", json!(r.frozen_stages));
        rep.set("seconds", json!(secs));
        rep.set("history", json!(r.history.epochs.iter().map(|e| json!({"epoch": e.epoch, "train_loss": e.train_loss, "val": e.val.as_ref().map(class_metrics_json)})).collect::<Vec<_>>()));
        if let Some(t) = &test {
            let m = graft_train::evaluate(&model, t, &graft_backend::Ctx::eval())?;
            rep.md.push_str(&metrics_md(
                "test",
                &self.data.classes,
                m.top1,
                &m.per_class,
                &m.confusion,
            ));
            rep.md.push('\n');
            rep.set("test", class_metrics_json(&m));
        }
        if self.exp.output.export {
            let dir = run.path.join("model");
            model.save_user_model(&dir)?;
            rep.para(&format!("exported the fine-tuned model: {}", dir.display()));
            rep.set("exported", json!(dir));
        }
        rep.finish(&run)
    }

    /// `graft plan`: what `graft finetune` would run — the same [`graft_finetune::prepare`]
    /// (probe, head replacement, phases), described instead of trained.
    fn plan_on<B: Routes>(&self, b: &B) -> Result<()> {
        let strategy = self.strategy()?;
        let mut model = self.model(b, false)?;
        self.need("train", "graft plan")?;
        let run = self.start()?;
        let train = self.loader(&model, "train", true)?.context("train split")?;
        let val = self.loader(&model, "val", false)?;
        let opts = self.finetune_options(&run);
        let plan = graft_finetune::prepare(
            &mut model,
            self.num_classes(),
            &train,
            val.as_ref(),
            &strategy,
            &opts,
        )?;
        if let Some(p) = &plan.probe {
            outln!("{p}\n");
        }
        let text = plan.describe(&model)?;
        run.write("plan.txt", &text)?;
        out!("{text}");
        outln!("run directory: {}", run.path.display());
        Ok(())
    }

    /// The fine-tuning options of this experiment, run in `run`.
    fn finetune_options(&self, run: &RunDir) -> FineTuneOptions {
        FineTuneOptions {
            base: self.train_cfg(Some(&run.path)),
            cache_dir: Some(run.cache.clone()),
            seed: self.exp.train.seed,
            unlabeled: None,
        }
    }

    /// `[train.semi]`'s unlabelled loaders: `μ` × the batch size a step, the labelled training
    /// transform (the weak view) and, for FixMatch, the same followed by TrivialAugment (the
    /// strong view), in the same order (one seed).
    fn unlabeled<B: Backend>(&self, model: &Model<B>) -> Result<Option<graft_train::Unlabeled>> {
        let Some(semi) = &self.exp.train.semi else {
            return Ok(None);
        };
        let s = semi.get_ref();
        let ds = self.data.unlabeled.clone().context("unlabelled data")?;
        let bs = self.exp.data.batch_size * s.mu;
        let weak = self.loader_with(model, ds.clone(), "train", true, false, bs)?;
        let u = match s.method {
            crate::exp::SemiMethodName::PseudoLabel => graft_train::Unlabeled::pseudo_label(
                weak,
                s.threshold,
                s.weight,
                (s.class_balance > 0.0).then_some(s.class_balance),
            )?,
            crate::exp::SemiMethodName::Fixmatch => {
                let strong = self.loader_with(model, ds, "train", true, true, bs)?;
                graft_train::Unlabeled::fixmatch(weak, strong, s.threshold, s.weight)?
            }
        };
        Ok(Some(u))
    }
}

impl Dispatch for Job<FinetuneStrategy> {
    fn dispatch(self) -> Result<()> {
        if self.route == Route::Finetune && self.backend != BackendName::Tch {
            return Err(self.needs_tch("graft finetune").into());
        }
        // the strategy's errors are the file's: report them before anything runs
        self.strategy()?;
        if let Some(semi) = &self.exp.train.semi {
            if self.data.unlabeled.is_none() {
                return Err(self
                    .src
                    .error(
                        semi.span(),
                        "train.semi needs unlabelled data: [data] unlabeled = \"dir\" or [data.digits] unlabeled = true",
                    )
                    .into());
            }
            if self.data.text.is_some() {
                return Err(self
                    .src
                    .error(semi.span(), "train.semi works on images, not texts")
                    .into());
            }
        }
        if self.route == Route::Plan {
            on_backend!(self.backend, self.plan_on())
        } else {
            on_backend!(self.backend, self.finetune_on())
        }
    }
}

pub(super) fn planned_epochs(s: &Strategy) -> usize {
    match s {
        Strategy::Recipe(r) => r.epochs,
        Strategy::LpFt(l) => l.freeze_epochs + l.epochs,
        Strategy::Gradual(g) => g.epochs,
    }
}
