//! `graft probe`: a linear probe of every trunk stage and the freeze depth it recommends.

use super::*;

impl Dispatch for Job<ProbeStrategy> {
    fn dispatch(self) -> Result<()> {
        on_backend!(self.backend, self.probe_on())
    }
}

impl Job<ProbeStrategy> {
    fn probe_on<B: Routes>(&self, b: &B) -> Result<()> {
        let st = &self.exp.strategy;
        let model = self.model(b, false)?;
        self.need("train", "graft probe")?;
        let val_name = if self.data.val.is_some() {
            "val"
        } else {
            "test"
        };
        self.need(val_name, "graft probe (a val or test split)")?;
        if let Some(s) = &st.stages {
            let names = model.stage_names();
            if let Some(bad) = s.get_ref().iter().find(|x| !names.contains(x)) {
                return Err(self
                    .src
                    .error(
                        s.span(),
                        format!("{} has no stage {bad:?} (stages: {names:?})", model.name()),
                    )
                    .into());
            }
        }
        let run = self.start()?;
        let train = self
            .loader(&model, "train", false)?
            .context("train split")?;
        let val = self.loader(&model, val_name, false)?.context("val split")?;
        let cfg = ProbeConfig {
            logistic: LogisticConfig {
                alpha: st.alpha,
                max_iterations: st.max_iterations,
                standardize: false,
            },
            tolerance: st.tolerance,
            stages: st.stages.as_ref().map(|s| s.get_ref().clone()),
        };
        let p = graft_extract::probe(&model, &train, &val, &run.cache, &cfg)?;
        let mut rep = Report::new(&format!("graft probe: {}", model.name()));
        rep.md
            .push_str("| stage | dim | train accuracy | val accuracy |\n|---|---|---|---|\n");
        for (i, r) in p.rows.iter().enumerate() {
            let mark = if i == p.chosen {
                " (chosen)"
            } else if i == p.best {
                " (best)"
            } else {
                ""
            };
            rep.md.push_str(&format!(
                "| {}{mark} | {} | {:.2} % | {:.2} % |\n",
                r.stage,
                r.dim,
                100.0 * r.train_accuracy,
                100.0 * r.val_accuracy
            ));
        }
        rep.md.push('\n');
        let rec = p.to_string();
        rep.para(rec.lines().last().unwrap_or_default());
        rep.para(&format!("rule: the deepest stage within {:.1} points of the best validation accuracy is chosen; the stages up to it stay frozen (`freeze = {}` in a finetune file).", 100.0 * st.tolerance, p.freeze_stages));
        rep.set("rows", json!(p.rows.iter().map(|r| json!({"stage": r.stage, "dim": r.dim, "train_accuracy": r.train_accuracy, "val_accuracy": r.val_accuracy})).collect::<Vec<_>>()));
        rep.set("best", json!(p.rows[p.best].stage));
        rep.set("chosen", json!(p.rows[p.chosen].stage));
        rep.set("freeze_stages", json!(p.freeze_stages));
        rep.set("trunk_forwards", json!(p.forwards));
        rep.finish(&run)
    }
}
