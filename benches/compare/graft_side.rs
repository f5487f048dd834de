//! The graft side of the comparison: each case's variants as a timed step, run in a worker
//! process (`compare --worker CASE`) that sets up, warms up, then answers the driver's requests
//! for one timed iteration each.

use super::*;

fn peak_rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1)
}

// ---- graft worker -----------------------------------------------------------------------------

fn input(shape: &[usize]) -> Result<TensorData> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|i| ((i % 9973) as f32 * 0.001).sin()).collect();
    Ok(TensorData::f32(shape, v)?)
}

/// One timed iteration: named seconds.
type Step = Box<dyn FnMut() -> Result<BTreeMap<String, f64>>>;

fn timed(mut f: impl FnMut() -> Result<()> + 'static) -> Step {
    Box::new(move || {
        let t = Instant::now();
        f()?;
        Ok(BTreeMap::from([(
            "total".to_string(),
            t.elapsed().as_secs_f64(),
        )]))
    })
}

fn forward_step<B: Backend>(b: B, model: Model<B>, x: B::Tensor) -> Step {
    timed(move || {
        let y = model.forward(&x, &Ctx::eval())?;
        b.to_data(&b.cast(&y, DType::F32)?)?;
        Ok(())
    })
}

fn graft_extract(c: &Value) -> Result<Step> {
    let name = c["model"].as_str().context("model")?;
    let (size, batch) = (num(c, "size")?, num(c, "batch")?);
    let variant = c["variant"].as_str().context("variant")?;
    let mut opts = ModelOptions::default().seed(0);
    if name.starts_with("vit") {
        opts.img_size = Some([size, size]);
    }
    let x = input(&[batch, 3, size, size])?;
    if variant == "ndarray" {
        let (m, _) = create_model(&NdArray, name, &opts)?;
        let m = m.for_inference(&InferenceOptions::default())?;
        let x = NdArray.from_data(&x)?;
        return Ok(forward_step(NdArray, m, x));
    }
    let b = Tch::cpu();
    let (m, _) = create_model(&b, name, &opts)?;
    if variant == "onnx" || variant == "onnx_int8" {
        // graft's own export (BatchNorm folded) run by ONNX Runtime through graft-ort
        let m = m.for_inference(&InferenceOptions::default())?;
        let mut e = graft::onnx::export(&m, &[batch, 3, size, size], graft::onnx::Output::Logits)?;
        let lib = graft::ort::OnnxRuntime::find(Some(&Path::new(REPO).join(".venv")))?;
        let rt = graft::ort::OnnxRuntime::load(&lib)?;
        let opts = graft::ort::SessionOptions {
            threads: Tch::num_threads(),
        };
        if variant == "onnx_int8" {
            // static int8: ranges from the fp32 graph on the timed batch (speed does not
            // depend on which images calibrate; accuracy is the probe's business)
            let mut ranges = graft::onnx::quant::Ranges::default();
            graft::extract::CalibrationRun::new(&rt, &e, opts.threads)?.observe(&x, &mut ranges)?;
            e = graft::onnx::quant::quantize(
                &e,
                &ranges,
                graft::onnx::quant::WeightRange::for_host(),
            )?;
        }
        let s = graft::ort::OrtSession::new(&rt, &e.to_bytes(), &opts)?;
        return Ok(timed(move || {
            s.run(&x)?;
            Ok(())
        }));
    }
    let m = match variant {
        "plain" => m,
        "fp32" => m.for_inference(&InferenceOptions::default())?,
        "bf16" => m.for_inference(&InferenceOptions::bf16())?,
        other => bail!("unknown graft extract variant {other:?}"),
    };
    let x = b.from_data(&x)?;
    Ok(forward_step(b, m, x))
}

/// graft's ONNX export of an extraction case's model (seed 0, fp32 inference copy, logits) for
/// the tract worker: the same graph ONNX Runtime runs in the `onnx` variant.
pub(crate) fn export_for_peers(c: &Value) -> Result<PathBuf> {
    let name = c["model"].as_str().context("model")?;
    let (size, batch) = (num(c, "size")?, num(c, "batch")?);
    let path = Path::new(REPO).join(format!("target/peers/{name}-{size}-b{batch}.onnx"));
    let (m, _) = create_model(&Tch::cpu(), name, &ModelOptions::default().seed(0))?;
    let m = m.for_inference(&InferenceOptions::default())?;
    graft::onnx::export(&m, &[batch, 3, size, size], graft::onnx::Output::Logits)?.save(&path)?;
    Ok(path)
}

/// The texts of the embedding case: sentences of 6-30 words from the VADER lexicon's tokens
/// (a fixed, reproducible corpus of real words; the same file goes to both sides).
pub(crate) fn embed_texts(n: usize) -> Result<PathBuf> {
    let lex = graft::zoo::text::find_installed(Path::new(graft::text::VaderLexicon::PACKAGE_PATH))?;
    let words: Vec<String> = graft::text::VaderLexicon::load(&lex)?
        .entries
        .into_iter()
        .map(|e| e.token)
        .collect();
    let texts: Vec<String> = (0..n)
        .map(|i| {
            let len = 6 + (i * 7) % 25;
            (0..len)
                .map(|j| words[(i * 31 + j * 17) % words.len()].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let path = Path::new(REPO).join("target/bench-embed-texts.json");
    std::fs::write(&path, serde_json::to_string(&texts)?)?;
    Ok(path)
}

fn graft_embed(c: &Value) -> Result<Step> {
    let path = c["texts"].as_str().context("texts")?;
    let texts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let batch = num(c, "batch")?;
    let variant = c["variant"].as_str().context("variant")?;
    let reg = graft::zoo::Registry::builtin();
    fn step<B: Backend + 'static>(
        b: B,
        reg: &graft::zoo::Registry,
        form: InferenceOptions,
        batch: usize,
        texts: Vec<String>,
    ) -> Result<Step> {
        let (enc, _) =
            TextEncoder::pretrained(&b, reg, "minilm_l6", None, &ModelOptions::default())?;
        let mut enc = enc.for_inference(&form)?;
        enc.batch_size = batch;
        Ok(timed(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            enc.embed(&refs)?;
            Ok(())
        }))
    }
    match variant {
        "fp32" => step(Tch::cpu(), &reg, InferenceOptions::default(), batch, texts),
        "bf16" => step(Tch::cpu(), &reg, InferenceOptions::bf16(), batch, texts),
        "ndarray" => step(NdArray, &reg, InferenceOptions::default(), batch, texts),
        other => bail!("unknown graft embed variant {other:?}"),
    }
}

fn graft_finetune(c: &Value) -> Result<Step> {
    let name = c["model"].as_str().context("model")?;
    let (size, batch, classes, freeze) = (
        num(c, "size")?,
        num(c, "batch")?,
        num(c, "classes")?,
        num(c, "freeze")?,
    );
    let b = Tch::cpu();
    let (model, _) = create_model(&b, name, &ModelOptions::default().num_classes(classes))?;
    let plan = Plan::new(
        &model,
        &FreezeConfig::freeze_to(freeze),
        &LrConfig::adamw(1e-3),
    )?;
    let mut opt = plan.apply(&model)?;
    let x = b.from_data(&input(&[batch, 3, size, size])?)?;
    let targets = Targets::Hard((0..batch).map(|i| (i * 7 + 3) % classes).collect());
    let mut step = 0u64;
    Ok(Box::new(move || {
        step += 1;
        let t = Instant::now();
        let ctx = Ctx::train(plan.modes(), 0, step);
        let logits = model.forward(&x, &ctx)?;
        let loss = cross_entropy(&b, &logits, &targets, 0.0)?;
        let forward = t.elapsed().as_secs_f64();
        let grads = model.params().gradients(&loss)?;
        let backward = t.elapsed().as_secs_f64() - forward;
        opt.step(model.params(), &grads)?;
        b.to_data(&loss)?;
        let total = t.elapsed().as_secs_f64();
        Ok(BTreeMap::from([
            ("forward".to_string(), forward),
            ("backward".to_string(), backward),
            ("optimizer".to_string(), total - forward - backward),
            ("total".to_string(), total),
        ]))
    }))
}

fn digits_loader(batch: usize) -> Result<Loader> {
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    Ok(Loader::new(digits, LoaderConfig::eval(batch))?)
}

/// Feature extraction's promise: one trunk pass over the digits, then 50 head epochs on the
/// cached features (timed apart).
fn graft_cached_head(c: &Value) -> Result<Step> {
    let epochs = num(c, "epochs")?;
    let b = Tch::cpu();
    let opts = ModelOptions::default().num_classes(10).in_chans(1).seed(0);
    let (mut model, _) = create_model(&b, "resnet18_small", &opts)?;
    let loader = digits_loader(64)?;
    let cache = std::env::temp_dir().join(format!("graft-compare-{}", std::process::id()));
    let mut round = 0u64;
    Ok(Box::new(move || {
        // a fresh cache every round: the trunk pass really runs
        let _ = std::fs::remove_dir_all(&cache);
        let t = Instant::now();
        let (mut f, r) = extract_many_with(
            &model,
            &loader,
            &[FeatureSpec::Pooled],
            &cache,
            &ExtractOptions::default(),
        )?;
        let trunk = t.elapsed().as_secs_f64();
        if r.cached {
            bail!("the feature cache was hit");
        }
        let features = f.pop().context("features")?;
        let mut how = HeadTraining::linear(epochs);
        how.train.progress = false;
        how.seed = round;
        round += 1;
        let t = Instant::now();
        graft::extract::train_head(&mut model, &features, None, &how)?;
        let head = t.elapsed().as_secs_f64();
        let t = Instant::now();
        LogisticHead::fit(&features, 10, &LogisticConfig::default())?;
        let logistic = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&cache);
        Ok(BTreeMap::from([
            ("trunk".to_string(), trunk),
            ("head".to_string(), head),
            ("logistic".to_string(), logistic),
            ("total".to_string(), trunk + head),
        ]))
    }))
}

pub(crate) fn num(c: &Value, k: &str) -> Result<usize> {
    c[k].as_u64()
        .map(|v| v as usize)
        .with_context(|| format!("case field {k}"))
}

pub(crate) fn worker(case: &str) -> Result<()> {
    let c: Value = serde_json::from_str(case).context("case json")?;
    let mut step = match c["kind"].as_str().context("kind")? {
        "extract" => graft_extract(&c)?,
        "finetune" => graft_finetune(&c)?,
        "cached_head" => graft_cached_head(&c)?,
        "embed" => graft_embed(&c)?,
        other => bail!("unknown kind {other:?}"),
    };
    for _ in 0..c["warmup"].as_u64().unwrap_or(1) {
        step()?;
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "ready {}", json!({"threads": Tch::num_threads()}))?;
    out.flush()?;
    for line in std::io::stdin().lock().lines() {
        match line?.trim() {
            "run" => {
                let s = step()?;
                writeln!(out, "secs {}", serde_json::to_string(&s)?)?;
                out.flush()?;
            }
            "done" => {
                writeln!(out, "rss {}", peak_rss_kib())?;
                out.flush()?;
                return Ok(());
            }
            other => bail!("unknown command {other:?}"),
        }
    }
    Ok(())
}

// ---- driver -----------------------------------------------------------------------------------
