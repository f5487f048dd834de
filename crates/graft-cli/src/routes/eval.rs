//! `graft eval`: a model's accuracy, per-class accuracy and confusion on the data, scored by
//! its class names.

use super::*;

impl Dispatch for Job<NoStrategy> {
    fn dispatch(self) -> Result<()> {
        on_backend!(self.backend, self.eval_on())
    }
}

impl Job<NoStrategy> {
    fn eval_on<B: Routes>(&self, b: &B) -> Result<()> {
        let model = self.model(b, true)?;
        let which = self.held_out();
        let data = self.need(which, "graft eval")?;
        // score by class name: the model's label names, in its order, are the data's classes
        // (a model without names is scored by index, and the report says so)
        let (ds, classes, by_index): (Arc<dyn Dataset>, Vec<String>, bool) = match &model
            .cfg()
            .labels
        {
            Some(names) if names.len() == model.num_classes() => {
                let unknown: Vec<&str> = self
                    .data
                    .classes
                    .iter()
                    .filter(|c| !names.contains(c))
                    .map(String::as_str)
                    .collect();
                if !unknown.is_empty() {
                    return Err(self
                            .src
                            .table_error(
                                "data",
                                format!(
                                    "{} is not a class of {} ({}): graft eval scores a model on its own classes; graft reuse maps others",
                                    unknown.join(", "),
                                    model.name(),
                                    names.join(", ")
                                ),
                            )
                            .into());
                }
                if names.len() != self.data.classes.len() {
                    return Err(self.eval_count_error(&model).into());
                }
                let ds = graft_data::Subset::in_class_order(data, names)?;
                (Arc::new(ds), names.clone(), false)
            }
            _ => {
                if model.num_classes() != self.data.classes.len() {
                    return Err(self.eval_count_error(&model).into());
                }
                (data, self.data.classes.clone(), true)
            }
        };
        let run = self.start()?;
        let l = self.loader_over(&model, ds, which, false)?;
        let m = graft_train::evaluate(&model, &l, &graft_backend::Ctx::eval())?;
        let mut rep = Report::new(&format!("graft eval: {} on {which}", model.name()));
        if by_index {
            rep.para(&format!(
                "{} carries no class names: class i of the data is scored as its output i.\n",
                model.name()
            ));
        }
        rep.md.push_str(&metrics_md(
            which,
            &classes,
            m.top1,
            &m.per_class,
            &m.confusion,
        ));
        rep.para(&format!(
            "\ntop-5 {:.2} %, loss {:.4}",
            100.0 * m.top5,
            m.loss
        ));
        rep.set(which, class_metrics_json(&m));
        rep.set("classes", json!(classes));
        rep.set("scored_by", json!(if by_index { "index" } else { "name" }));
        rep.finish(&run)
    }

    fn eval_count_error(&self, model: &Model<impl Backend>) -> ConfigError {
        self.src.table_error(
            "model",
            format!(
                "{} has {} classes, the data {} ({}): use graft reuse with a label map",
                model.name(),
                model.num_classes(),
                self.data.classes.len(),
                self.data.classes.join(", ")
            ),
        )
    }
}
