//! `graft extract`: a frozen trunk's features, cached, and a head fitted on them (logistic,
//! linear, MLP, prototype, kNN, zero-shot); trunk + head exported.

use super::*;
use crate::strategy::Templates;

impl Dispatch for Job<ExtractStrategy> {
    fn dispatch(self) -> Result<()> {
        if matches!(
            self.exp.strategy.head,
            ExtractHead::Linear | ExtractHead::Mlp
        ) && self.backend != BackendName::Tch
        {
            return Err(self.needs_tch("head = \"linear\" / \"mlp\"").into());
        }
        let st = &self.exp.strategy;
        if st.head == ExtractHead::ZeroShot {
            self.zero_shot_descriptions()?;
        } else {
            let stray = [
                ("zero_shot", st.zero_shot.as_ref().map(|z| z.span())),
                ("templates", st.templates.as_ref().map(|t| t.span())),
                ("class_names", st.class_names.as_ref().map(|c| c.span())),
            ]
            .into_iter()
            .find_map(|(k, s)| s.map(|s| (k, s)));
            if let Some((key, span)) = stray {
                return Err(self
                    .src
                    .error(span, format!("{key} applies to head = \"zero_shot\""))
                    .into());
            }
        }
        if let Some(ep) = &self.exp.strategy.episodes {
            let classes = self.data.classes.len();
            let bad = if ep.ways < 2 || ep.ways > classes {
                Some(format!(
                    "ways = {}: 2 to the data's {classes} classes",
                    ep.ways
                ))
            } else if ep.shots.is_empty() || ep.shots.contains(&0) {
                Some("shots: one or more counts, each at least 1".to_string())
            } else if ep.queries == 0 || ep.episodes == 0 {
                Some("queries and episodes must be at least 1".to_string())
            } else if !["train", "val", "test"].contains(&ep.split.get_ref().as_str()) {
                Some(format!(
                    "split = {:?}: train, val or test",
                    ep.split.get_ref()
                ))
            } else {
                None
            };
            if let Some(msg) = bad {
                return Err(self.src.table_error("strategy.episodes", msg).into());
            }
        }
        on_backend!(self.backend, self.extract_on())
    }
}

impl Job<ExtractStrategy> {
    fn extract_on<B: Routes>(&self, b: &B) -> Result<()> {
        let st = &self.exp.strategy;
        // a CLIP's zero-shot classifier reads its text tower; the image tower is the trunk
        if self.is_clip() && st.head == ExtractHead::ZeroShot && st.features.span() != (0..0) {
            return Err(self
                .src
                .error(
                    st.features.span(),
                    "a CLIP's zero-shot head reads the image embedding (the image tower's output): leave features out",
                )
                .into());
        }
        let int8 = st
            .engine
            .as_ref()
            .is_some_and(|e| *e.get_ref() == ExtractEngine::OnnxruntimeInt8);
        let calibration_images = match &st.calibration_images {
            Some(c) if !int8 => {
                return Err(self
                    .src
                    .error(
                        c.span(),
                        "calibration_images sets the int8 engine's calibration: it needs engine = \"onnxruntime_int8\"",
                    )
                    .into());
            }
            Some(c) if *c.get_ref() == 0 => {
                return Err(self
                    .src
                    .error(c.span(), "calibration_images must be at least 1")
                    .into());
            }
            Some(c) => *c.get_ref(),
            None => 256,
        };
        let mut engine = match &st.engine {
            Some(e) if *e.get_ref() != ExtractEngine::Backend => {
                let refuse = if self.data.text.is_some() {
                    Some(
                        "text encoders run on their backend: the ONNX Runtime engine runs image models",
                    )
                } else if self.is_clip() {
                    Some("a CLIP's image tower runs on the backend engine")
                } else if st.features.get_ref() != "pooled" {
                    Some(
                        "stage features run on the backend engine; ONNX Runtime computes the pooled features",
                    )
                } else {
                    None
                };
                if let Some(msg) = refuse {
                    return Err(self.src.error(e.span(), msg).into());
                }
                let threads = std::thread::available_parallelism().map_or(0, |n| n.get());
                graft_extract::ExtractOptions::onnx_runtime(threads)
            }
            _ => graft_extract::ExtractOptions::default(),
        };
        let (mut model, clip_text) = if self.is_clip() && st.head == ExtractHead::ZeroShot {
            let (mut visual, text) = self.clip_encoder(b)?.into_parts();
            self.input_cfg(&mut visual);
            (visual, Some(text))
        } else {
            (self.model(b, false)?, None)
        };
        let mut calibrated = None;
        if int8 {
            // one calibration (the first train images, in order) serves every split
            let train = self
                .loader(&model, "train", false)?
                .context("the int8 engine calibrates on the train split")?;
            let cal = graft_extract::calibrate_int8(
                &model,
                &train,
                calibration_images,
                engine.engine.threads(),
            )?;
            calibrated = Some(cal.ranges.samples);
            engine = graft_extract::ExtractOptions::onnx_runtime_int8(
                engine.engine.threads(),
                std::sync::Arc::new(cal),
            );
        }
        let spec = match st.features.get_ref().as_str() {
            // the image embedding, what a CLIP's text tower is compared with
            _ if clip_text.is_some() => FeatureSpec::Logits,
            _ => self.feature_spec(&st.features, model.name(), &model.stage_names())?,
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
        if let Some(n) = calibrated {
            rep.para(&format!(
                "engine: ONNX Runtime, int8 (static quantisation calibrated on the first {n} train {noun})"
            ));
            rep.set("int8_calibration_images", json!(n));
        }
        let mut feats: Vec<(&str, Features)> = Vec::new();
        let mut forwards = serde_json::Map::new();
        for which in ["train", "val", "test"] {
            let Some(l) = self.loader(&model, which, false)? else {
                continue;
            };
            let (mut fs, r) =
                extract_many_with(&model, &l, std::slice::from_ref(&spec), &run.cache, &engine)?;
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
                let z = match &clip_text {
                    Some(text) => graft_extract::ZeroShot::new(
                        text,
                        &self.data.classes,
                        &self.zero_shot_descriptions()?,
                    )?,
                    None => self.zero_shot(&model)?,
                };
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
        if let Some(ep) = &st.episodes {
            let rows = self.episodes(ep, &feats, &lcfg)?;
            for r in &rows {
                rep.para(&format!("few-shot: {r}"));
            }
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| json!({"ways": r.config.ways, "shots": r.config.shots, "queries": r.config.queries, "episodes": r.config.episodes, "seed": r.config.seed, "head": r.head, "mean": r.mean, "std": r.std, "ci95": r.ci95}))
                .collect();
            rep.set("episodes", json!(v));
        }
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
        if !self.is_clip() {
            let given = st
                .templates
                .as_ref()
                .map(|t| t.span())
                .or(st.class_names.as_ref().map(|c| c.span()));
            if let Some(span) = given {
                return Err(self
                    .src
                    .error(
                        span,
                        "templates / class_names are a CLIP's prompts: [model] clip = true",
                    )
                    .into());
            }
        }
        if self.is_clip() {
            if self.data.text.is_some() {
                return Err(self
                    .src
                    .table_error(
                        "data",
                        "a CLIP's zero-shot head classifies images, not texts",
                    )
                    .into());
            }
            if st.zero_shot.is_none() {
                return self.clip_prompts();
            }
        } else if self.data.text.is_none() {
            return Err(self
                .src
                .table_error(
                    "strategy",
                    "head = \"zero_shot\" needs a text model and text data, or a CLIP ([model] clip = true) and images",
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

    /// `[strategy.episodes]` on the features of its split.
    fn episodes(
        &self,
        ep: &crate::strategy::EpisodesSection,
        feats: &[(&str, Features)],
        lcfg: &LogisticConfig,
    ) -> Result<Vec<graft_extract::EpisodeReport>> {
        use crate::strategy::EpisodeHeadName;
        let split = ep.split.get_ref();
        let Some((_, f)) = feats.iter().find(|(w, _)| w == split) else {
            return Err(self
                .src
                .error(
                    ep.split.span(),
                    format!("episodes.split = {split:?}: the data has no such split (train, val or test)"),
                )
                .into());
        };
        let mut out = Vec::new();
        for &shots in &ep.shots {
            for h in &ep.heads {
                let head = match h {
                    EpisodeHeadName::Prototype => graft_extract::EpisodeHead::Prototype,
                    EpisodeHeadName::Logistic => graft_extract::EpisodeHead::Logistic(lcfg.clone()),
                };
                let cfg = graft_extract::EpisodeConfig {
                    ways: ep.ways,
                    shots,
                    queries: ep.queries,
                    episodes: ep.episodes,
                    seed: ep.seed,
                };
                let r = graft_extract::evaluate_episodes(f, &cfg, &head)
                    .map_err(|e| self.src.table_error("strategy.episodes", e.to_string()))?;
                out.push(r);
            }
        }
        Ok(out)
    }

    /// A CLIP's prompts: every template (`templates`, CLIP's 80 ImageNet ones by default) with
    /// each class's name (`class_names`, else the class itself).
    fn clip_prompts(&self) -> Result<Vec<Vec<String>>> {
        let st = &self.exp.strategy;
        let templates = match st.templates.as_ref().map(|t| (t.get_ref(), t.span())) {
            None => graft_extract::imagenet_templates(),
            Some((Templates::Set(s), _)) if s == "imagenet" => graft_extract::imagenet_templates(),
            Some((Templates::Set(s), span)) => {
                return Err(self
                    .src
                    .error(
                        span,
                        format!(
                            "templates = {s:?}: \"imagenet\" or a list of templates holding {{}}"
                        ),
                    )
                    .into());
            }
            Some((Templates::List(l), _)) => l.clone(),
        };
        let names: Vec<String> = match &st.class_names {
            None => self.data.classes.clone(),
            Some(map) => {
                if let Some(extra) = map
                    .get_ref()
                    .keys()
                    .find(|k| !self.data.classes.contains(k))
                {
                    return Err(self
                        .src
                        .error(
                            map.span(),
                            format!(
                                "class_names: {extra:?} is not a class of the data ({})",
                                self.data.classes.join(", ")
                            ),
                        )
                        .into());
                }
                self.data
                    .classes
                    .iter()
                    .map(|c| map.get_ref().get(c).cloned().unwrap_or_else(|| c.clone()))
                    .collect()
            }
        };
        graft_extract::prompts(&names, &templates).map_err(|e| {
            let at = st.templates.as_ref().map(|t| t.span());
            match at {
                Some(span) => self.src.error(span, e.to_string()).into(),
                None => anyhow::Error::from(e),
            }
        })
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
