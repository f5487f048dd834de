//! `graft extract`: a frozen trunk's features, cached, and a head fitted on them (logistic,
//! linear, MLP, prototype, kNN, zero-shot); trunk + head exported.

use super::*;

impl Dispatch for Job<ExtractStrategy> {
    fn dispatch(self) -> Result<()> {
        if matches!(
            self.exp.strategy.head,
            ExtractHead::Linear | ExtractHead::Mlp
        ) && self.backend != BackendName::Tch
        {
            return Err(self.needs_tch("head = \"linear\" / \"mlp\"").into());
        }
        if self.exp.strategy.head == ExtractHead::ZeroShot {
            self.zero_shot_descriptions()?;
        }
        on_backend!(self.backend, self.extract_on())
    }
}

impl Job<ExtractStrategy> {
    fn extract_on<B: Routes>(&self, b: &B) -> Result<()> {
        let st = &self.exp.strategy;
        let mut model = self.model(b, false)?;
        let spec = match st.features.get_ref().as_str() {
            "pooled" => FeatureSpec::Pooled,
            s => {
                let names = model.stage_names();
                if !names.iter().any(|n| n == s) {
                    return Err(self
                        .src
                        .error(
                            st.features.span(),
                            format!(
                                "{} has no stage {s:?}: pooled or one of {names:?}",
                                model.name()
                            ),
                        )
                        .into());
                }
                FeatureSpec::Stage(s.to_string())
            }
        };
        if st.head != ExtractHead::ZeroShot {
            self.need("train", "graft extract")?;
        }
        let noun = if self.data.text.is_some() {
            "texts"
        } else {
            "images"
        };
        let run = self.start()?;
        let mut rep = Report::new(&format!(
            "graft extract: {} features of {}",
            spec,
            model.name()
        ));
        let mut feats: Vec<(&str, Features)> = Vec::new();
        let mut forwards = serde_json::Map::new();
        for which in ["train", "val", "test"] {
            let Some(l) = self.loader(&model, which, false)? else {
                continue;
            };
            let opts = graft_extract::ExtractOptions::default();
            let (mut fs, r) =
                extract_many_with(&model, &l, std::slice::from_ref(&spec), &run.cache, &opts)?;
            let f = fs.pop().context("features")?;
            for why in &r.recomputed {
                eprintln!("warning: feature cache not used, computed again: {why}");
                rep.para(&format!(
                    "warning: feature cache not used, computed again: {why}"
                ));
            }
            rep.para(&format!(
                "{which}: {} {noun} → {}-d features, {} ({} trunk forwards)",
                f.n,
                f.dim,
                if r.cached {
                    "from the cache"
                } else {
                    "extracted and cached"
                },
                r.forwards
            ));
            forwards.insert(which.into(), json!({(noun): f.n, "dim": f.dim, "cached": r.cached, "trunk_forwards": r.forwards, "cache_file": r.paths, "recomputed": r.recomputed}));
            feats.push((which, f));
        }
        let total: usize = forwards
            .values()
            .filter_map(|v| v["trunk_forwards"].as_u64())
            .sum::<u64>() as usize;
        rep.set("extraction", serde_json::Value::Object(forwards));
        rep.set("trunk_forwards", json!(total));
        let n = self.num_classes();
        let train = &feats[0].1;
        let lcfg = LogisticConfig {
            alpha: st.alpha,
            max_iterations: st.max_iterations,
            standardize: st.standardize,
        };
        let t0 = std::time::Instant::now();
        let mut exported = false;
        let predict: Predictor<'_> = match st.head {
            ExtractHead::Logistic => {
                let h = LogisticHead::fit(train, n, &lcfg)?;
                if self.exp.output.export && spec == FeatureSpec::Pooled {
                    h.install(&mut model, &self.data.classes)?;
                    exported = true;
                }
                Box::new(move |f| Ok(h.predict(f)?))
            }
            ExtractHead::Prototype => {
                let h = PrototypeHead::fit(train, n)?;
                Box::new(move |f| Ok(h.predict(f)))
            }
            ExtractHead::Knn => {
                let h = KnnHead::fit(train, n, st.k)?;
                Box::new(move |f| Ok(h.predict(f)))
            }
            ExtractHead::ZeroShot => {
                let z = self.zero_shot(&model)?;
                Box::new(move |f| Ok(z.predict(f)?))
            }
            ExtractHead::Linear | ExtractHead::Mlp => {
                if spec != FeatureSpec::Pooled {
                    return Err(self
                        .src
                        .error(
                            st.features.span(),
                            "a linear / MLP head trains on the pooled features",
                        )
                        .into());
                }
                let head = if st.head == ExtractHead::Mlp {
                    HeadSpec::mlp(&st.hidden, st.dropout)
                } else {
                    HeadSpec::Linear
                };
                let val = feats.iter().find(|(w, _)| *w == "val").map(|(_, f)| f);
                let d = HeadTraining::linear(self.exp.train.epochs.unwrap_or(50));
                let mut cfg = self.train_cfg(Some(&run.path));
                cfg.epochs = d.train.epochs;
                cfg.schedule = d.train.schedule.clone();
                let how = HeadTraining {
                    head,
                    lr: LrConfig::adamw(self.exp.train.lr.unwrap_or(d.lr.base.lr)).weight_decay(
                        self.exp
                            .train
                            .weight_decay
                            .unwrap_or(d.lr.base.weight_decay),
                    ),
                    train: cfg,
                    ..d
                };
                let h = B::train_head(&mut model, train, val, &how)?;
                write_history(&run, &h)?;
                exported = self.exp.output.export;
                let m = &model;
                let b = b.clone();
                Box::new(move |f: &Features| {
                    let x = graft_backend::InputBatch::features(graft_backend::TensorData::f32(
                        &[f.n, f.dim],
                        f.data.clone(),
                    )?)?;
                    let y = m.forward_batch(&x, &graft_backend::Ctx::eval())?;
                    let y = b.to_data(&y)?.to_f32();
                    let c = y.shape()[1];
                    Ok((0..f.n)
                        .map(|i| {
                            (0..c)
                                .max_by(|&p, &q| y[[i, p]].total_cmp(&y[[i, q]]))
                                .unwrap_or(0)
                        })
                        .collect())
                })
            }
        };
        let fit_s = t0.elapsed().as_secs_f64();
        rep.para(&format!("head: {:?}, fitted in {fit_s:.2} s", st.head));
        let mut accs = serde_json::Map::new();
        for (which, f) in &feats {
            let pred = predict(f)?;
            let (acc, per, conf) = host_metrics(&pred, &f.labels, n);
            rep.md
                .push_str(&metrics_md(which, &self.data.classes, acc, &per, &conf));
            rep.md.push('\n');
            accs.insert(
                (*which).into(),
                json!({"accuracy": acc, "per_class": per, "confusion": conf}),
            );
        }
        drop(predict);
        rep.set("head", json!(format!("{:?}", st.head).to_lowercase()));
        rep.set("head_fit_seconds", json!(fit_s));
        rep.set("metrics", serde_json::Value::Object(accs));
        if exported {
            let dir = run.path.join("model");
            model.save_user_model(&dir)?;
            rep.para(&format!("exported trunk + head as a user model: {} (`graft --models-dir {} infer --model model ...`)", dir.display(), run.path.display()));
            rep.set("exported", json!(dir));
        } else if self.exp.output.export {
            rep.para("no model exported: prototype / kNN / zero-shot heads and stage features do not make a classifier on the trunk");
        }
        rep.finish(&run)
    }
}

impl Job<ExtractStrategy> {
    /// The descriptions of `[strategy.zero_shot]`, one list per class in the data's order
    /// (checked before anything runs).
    fn zero_shot_descriptions(&self) -> Result<Vec<Vec<String>>> {
        let st = &self.exp.strategy;
        if self.data.text.is_none() {
            return Err(self
                .src
                .table_error(
                    "strategy",
                    "head = \"zero_shot\" needs a text model and text data",
                )
                .into());
        }
        let Some(z) = &st.zero_shot else {
            return Err(self
                .src
                .table_error(
                    "strategy",
                    "head = \"zero_shot\" needs [strategy.zero_shot]: class = [\"a description\", ...]",
                )
                .into());
        };
        let map = z.get_ref();
        if let Some(extra) = map.keys().find(|k| !self.data.classes.contains(k)) {
            return Err(self
                .src
                .error(
                    z.span(),
                    format!(
                        "zero_shot: {extra:?} is not a class of the data ({})",
                        self.data.classes.join(", ")
                    ),
                )
                .into());
        }
        let mut desc = Vec::new();
        for c in &self.data.classes {
            match map.get(c) {
                Some(d) if !d.is_empty() => desc.push(d.clone()),
                _ => {
                    return Err(self
                        .src
                        .error(
                            z.span(),
                            format!("zero_shot: class {c:?} has no description"),
                        )
                        .into());
                }
            }
        }
        Ok(desc)
    }

    /// The zero-shot classifier of `[strategy.zero_shot]` on `model`.
    fn zero_shot<B: Backend>(&self, model: &Model<B>) -> Result<graft_extract::ZeroShot> {
        let desc = self.zero_shot_descriptions()?;
        let t = self.data.text.as_ref().context("text data")?;
        Ok(graft_extract::ZeroShot::with_model(
            model,
            &t.tokenizer,
            &self.data.classes,
            &desc,
        )?)
    }
}
