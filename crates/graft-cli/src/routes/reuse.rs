//! `graft reuse`: the model as it is on the target data through a label map, then with
//! BatchNorm statistics re-estimated on the unlabelled target images.

use super::*;

impl Dispatch for Job<ReuseStrategy> {
    fn dispatch(self) -> Result<()> {
        self.images_only("graft reuse")?;
        if self.exp.strategy.reestimate_bn && self.backend != BackendName::Tch {
            return Err(self.needs_tch("reestimate_bn = true").into());
        }
        on_backend!(self.backend, self.reuse_on())
    }
}

impl Job<ReuseStrategy> {
    fn label_map<B: Backend>(&self, model: &Model<B>) -> Result<graft_reuse::LabelMap> {
        let source: Vec<String> = model
            .cfg()
            .labels
            .clone()
            .unwrap_or_else(|| (0..model.num_classes()).map(|i| i.to_string()).collect());
        let targets = &self.data.classes;
        let Some(m) = &self.exp.strategy.label_map else {
            return graft_reuse::LabelMap::by_names(targets, &source).map_err(|e| {
                self.src
                    .table_error("strategy", format!("{e}; give strategy.label_map"))
                    .into()
            });
        };
        let span = m.span();
        let map = m.get_ref();
        if let Some(extra) = map.keys().find(|k| !targets.contains(k)) {
            return Err(self
                .src
                .error(
                    span,
                    format!(
                        "label_map: {extra:?} is not a target class ({})",
                        targets.join(", ")
                    ),
                )
                .into());
        }
        let mut sources = Vec::new();
        for t in targets {
            let refs = map.get(t).ok_or_else(|| {
                self.src.error(
                    span.clone(),
                    format!("label_map: target class {t:?} is not mapped"),
                )
            })?;
            let mut v = Vec::new();
            for r in refs {
                v.push(match r {
                    ClassRef::Index(i) => *i,
                    ClassRef::Name(n) => source.iter().position(|s| s == n).ok_or_else(|| {
                        self.src.error(
                            span.clone(),
                            format!("label_map: {n:?} is not a class of {}", model.name()),
                        )
                    })?,
                });
            }
            sources.push(v);
        }
        graft_reuse::LabelMap::new(targets.clone(), sources, model.num_classes())
            .map_err(|e| self.src.error(span, e.to_string()).into())
    }

    fn reuse_on<B: Routes>(&self, b: &B) -> Result<()> {
        let model = self.model(b, true)?;
        let which = self.held_out();
        let map = self.label_map(&model)?;
        let run = self.start()?;
        let target = self.loader(&model, which, false)?.context("target split")?;
        let none = graft_backend::ModeTable::new();
        let before = graft_reuse::evaluate_reuse(&model, &target, &map, &none)?;
        let shift = self
            .data
            .shift
            .map_or("none".to_string(), |s| s.to_string());
        let mut rep = Report::new(&format!(
            "graft reuse: {} on {which} (shift: {shift})",
            model.name()
        ));
        rep.md.push_str(&metrics_md(
            "as it is",
            &self.data.classes,
            before.accuracy,
            &before.per_class,
            &before.confusion,
        ));
        rep.md.push('\n');
        rep.set("shift", json!(shift));
        rep.set("before", json!({"accuracy": before.accuracy, "per_class": before.per_class, "confusion": before.confusion}));
        if self.exp.strategy.reestimate_bn {
            let used = B::reestimate(&model, &target, self.exp.strategy.bn_batches)?;
            let after = graft_reuse::evaluate_reuse(&model, &target, &map, &none)?;
            rep.md.push_str(&metrics_md(
                &format!("after BatchNorm re-estimation on {used} unlabelled {which} batches"),
                &self.data.classes,
                after.accuracy,
                &after.per_class,
                &after.confusion,
            ));
            rep.md.push('\n');
            rep.para(&format!("accuracy {:.2} % → {:.2} % with re-estimated BatchNorm statistics (no parameter changed)", 100.0 * before.accuracy, 100.0 * after.accuracy));
            rep.set("after", json!({"accuracy": after.accuracy, "per_class": after.per_class, "confusion": after.confusion, "bn_batches": used}));
            if self.exp.output.export {
                let dir = run.path.join("model");
                model.save_user_model(&dir)?;
                rep.para(&format!(
                    "exported the re-estimated model: {}",
                    dir.display()
                ));
            }
        }
        rep.finish(&run)
    }
}
