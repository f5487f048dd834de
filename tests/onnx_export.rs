//! ONNX export (graft-onnx): a model traced on the `Trace` backend, written as `.onnx`, checked by
//! onnx's own checker with full shape inference and run in ONNX Runtime (the venv's
//! onnxruntime, CPU provider, every graph optimisation on) must compute what graft computes on
//! libtorch: logits, pooled features and trunk features, one architecture of each convolutional
//! and transformer family, trainable models and inference copies (BatchNorm folded). Bound:
//! max abs diff ≤ 1e-4 × max |graft| (float32 kernels of two libraries). And the refusals: what
//! a graph cannot express is an error naming it, not a wrong file.

mod common;

use std::path::Path;

use graft::onnx::{Output, Trace, export};
use graft::zoo::{InferenceOptions, Model, ModelOptions, create_model};
use graft::{Backend, Ctx, Tch, TensorData};
use ndarray_npy::{read_npy, write_npy};

fn input(shape: &[usize]) -> TensorData {
    let n: usize = shape.iter().product();
    let v = (0..n).map(|i| ((i % 977) as f32 * 0.37).sin()).collect();
    TensorData::f32(shape, v).expect("input")
}

/// Exports `model` at `shape`, runs the file in ONNX Runtime, compares with graft's forward.
fn check(model: &Model<Tch>, shape: &[usize], what: Output, dir: &Path) {
    let b = model.backend();
    let x = input(shape);
    let xt = b.from_data(&x).expect("upload");
    let ctx = Ctx::eval();
    let want = match what {
        Output::Logits => model.forward(&xt, &ctx),
        Output::Pooled => model.forward_pooled(&xt, &ctx),
        Output::Features => model.forward_features(&xt, &ctx),
    }
    .expect("forward");
    let want = b.to_data(&want).expect("download").to_f32();
    let e = export(model, shape, what).expect("export");
    assert_eq!(
        e.output.1,
        want.shape(),
        "{}: traced output shape",
        model.name()
    );
    let tag = format!("{}-{what:?}", model.name());
    let (onnx, xin, yout) = (
        dir.join(format!("{tag}.onnx")),
        dir.join(format!("{tag}-x.npy")),
        dir.join(format!("{tag}-y.npy")),
    );
    e.save(&onnx).expect("save");
    write_npy(&xin, &x.to_f32()).expect("write input");
    let out = std::process::Command::new(common::python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/onnx_run.py"))
        .args([&onnx, &xin, &yout])
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "{tag}: onnx checker / ONNX Runtime refused the file:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("onnx_run.py's JSON line");
    let inferred: Vec<usize> = info["inferred_output_shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    assert_eq!(inferred, want.shape(), "{tag}: onnx shape inference");
    let got: ndarray::ArrayD<f32> = read_npy(&yout).expect("read output");
    assert_eq!(
        got.shape(),
        want.shape(),
        "{tag}: ONNX Runtime's output shape"
    );
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = got
        .iter()
        .zip(want.iter())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "{tag}: ONNX Runtime vs graft max |diff| {diff:e} > 1e-4 x {scale:e} ({info})"
    );
    eprintln!("{tag}: max |ORT - graft| = {diff:.2e} (scale {scale:.2e}), {info}");
}

fn model(name: &str, opts: ModelOptions) -> Model<Tch> {
    let (mut m, _) = create_model(&Tch::cpu(), name, &opts.seed(3)).expect("create");
    common::vary_batch_norms(&mut m);
    m
}

#[test]
fn convnets_export_and_run_in_onnx_runtime() {
    let dir = common::temp_dir("onnx-cnn");
    for (name, side) in [
        ("resnet18", 64),
        ("resnet50", 64),
        ("convnext_atto", 64),
        ("efficientnet_b0", 64),
        ("mobilenet_v3_large", 64),
        ("regnetx_002", 64),
    ] {
        let m = model(name, ModelOptions::default().num_classes(7));
        let shape = [2, 3, side, side];
        check(&m, &shape, Output::Logits, &dir);
        check(&m, &shape, Output::Pooled, &dir);
        // the inference copy: BatchNorm folded into the convs, channels-last in libtorch
        let fast = m.for_inference(&InferenceOptions::default()).expect("copy");
        check(&fast, &shape, Output::Features, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn transformers_export_and_run_in_onnx_runtime() {
    let dir = common::temp_dir("onnx-vit");
    let m = model(
        "vit_tiny_patch16_224",
        ModelOptions::default().num_classes(5).img_size(32, 32),
    );
    check(&m, &[2, 3, 32, 32], Output::Logits, &dir);
    check(&m, &[2, 3, 32, 32], Output::Pooled, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn what_a_graph_cannot_express_is_refused_by_name() {
    // a forward that reads a value mid-way has no graph
    let t = Trace::new();
    let x = t.input("x", &[2, 3], graft::DType::F32);
    let err = t
        .to_data(&x)
        .expect_err("to_data while tracing")
        .to_string();
    assert!(err.contains("reading a tensor's values"), "{err}");
    // randomness (train-mode dropout)
    let err = t.rand_uniform(&[2], 0).expect_err("random").to_string();
    assert!(err.contains("random numbers"), "{err}");
    // uneven adaptive pooling bins
    let y = t.input("y", &[1, 4, 7, 7], graft::DType::F32);
    let err = t
        .adaptive_avg_pool2d(&y, (3, 3))
        .expect_err("uneven bins")
        .to_string();
    assert!(err.contains("adaptive_avg_pool2d from 7x7 to 3x3"), "{err}");
    // shapes are checked as the ops are recorded
    let err = t.add(&x, &y).expect_err("broadcast").to_string();
    assert!(err.contains("do not broadcast"), "{err}");
    // input shapes a graph cannot have are refused before tracing
    let m0 = model("resnet18", ModelOptions::default().num_classes(3));
    for bad in [&[1, 3, 0, 32][..], &[1, 3, 32], &[1, 3, 1 << 20, 32]] {
        let err = export(&m0, bad, Output::Logits)
            .expect_err("bad shape")
            .to_string();
        assert!(err.contains("[N, C, H, W]"), "{bad:?}: {err}");
    }
    let err = export(&m0, &[1, 4, 32, 32], Output::Logits)
        .expect_err("channels the model does not take")
        .to_string();
    assert!(
        err.contains("input must be [N, 3, H, W], got [1, 4, 32, 32]"),
        "{err}"
    );
    // an unwritable path is an error naming it, and an existing file survives a failed save
    let m = model("resnet18", ModelOptions::default().num_classes(3));
    let e = export(&m, &[1, 3, 32, 32], Output::Logits).expect("export");
    let dir = common::temp_dir("onnx-save");
    let blocker = dir.join("file");
    std::fs::write(&blocker, b"keep").expect("write");
    let err = e
        .save(&blocker.join("model.onnx"))
        .expect_err("a file as a directory")
        .to_string();
    assert!(err.contains("file"), "{err}");
    assert_eq!(std::fs::read(&blocker).expect("read"), b"keep");
    let _ = std::fs::remove_dir_all(&dir);
}

/// graft-ort: the exported graph run from Rust in the venv's ONNX Runtime library (loaded at run
/// time) computes what graft computes, and a second session in the same process reuses the
/// loaded library.
#[test]
fn graft_runs_its_export_in_onnx_runtime_from_rust() {
    use graft::ort::{OnnxRuntime, OrtSession, SessionOptions};
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let lib = OnnxRuntime::in_python_env(&venv)
        .expect("the venv's onnxruntime wheel (make setup installs it)");
    // a failed load names the file and changes nothing: the process stays free to load the
    // right one (or keeps the one another test in this process loaded)
    let before = OnnxRuntime::loaded().map(|r| r.path().to_path_buf());
    let missing = venv.join("no-libonnxruntime.so");
    let err = OnnxRuntime::load(&missing).expect_err("no such file");
    assert!(err.to_string().contains("no-libonnxruntime.so"), "{err}");
    assert_eq!(
        OnnxRuntime::loaded().map(|r| r.path().to_path_buf()),
        before
    );
    let rt = OnnxRuntime::load(&lib).expect("load libonnxruntime");
    assert_eq!(rt.path(), lib);
    for (name, shape) in [
        ("resnet18", [3, 3, 48, 48]),
        ("convnext_atto", [2, 3, 64, 64]),
    ] {
        let m = model(name, ModelOptions::default().num_classes(4));
        let fast = m.for_inference(&InferenceOptions::default()).expect("copy");
        let x = input(&shape);
        let b = fast.backend();
        let want = b
            .to_data(
                &fast
                    .forward_pooled(&b.from_data(&x).expect("up"), &Ctx::eval())
                    .expect("forward"),
            )
            .expect("down");
        let e = export(&fast, &shape, Output::Pooled).expect("export");
        let s =
            OrtSession::new(&rt, &e.to_bytes(), &SessionOptions { threads: 1 }).expect("session");
        let got = s.run(&x).expect("run");
        assert_eq!(got.shape(), want.shape(), "{name}");
        let scale = want.to_f32().iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = got.max_abs_diff(&want).expect("same shape");
        assert!(
            diff <= 1e-4 * scale as f64,
            "{name}: ONNX Runtime (graft-ort) vs graft {diff:e}, scale {scale:e}"
        );
        // the session checks what it is given
        let wrong = input(&[1, 3, 8, 8]);
        let err = s
            .run(&wrong)
            .expect_err("a shape the graph was not traced for");
        assert!(err.to_string().contains("ONNX Runtime run"), "{err}");
    }
    // one library per process: naming another file is refused, naming the same one is not
    assert!(OnnxRuntime::load(&lib).is_ok());
    let err = OnnxRuntime::load(&venv.join("nothing.so")).expect_err("a second library");
    assert!(err.to_string().contains("already loaded"), "{err}");
}

/// Extraction on the ONNX Runtime engine: the same features as on libtorch (the loader's short
/// last batch included: a second traced shape), its own cache entry, and the refusals.
#[test]
fn extraction_runs_on_onnx_runtime() {
    use std::sync::Arc;

    use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig};
    use graft::extract::{ExtractOptions, FeatureSpec, extract_many_with};
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let lib = graft::ort::OnnxRuntime::in_python_env(&venv).expect("the venv's onnxruntime");
    graft::ort::OnnxRuntime::load(&lib).expect("load");
    let m = model(
        "resnet18_small",
        ModelOptions::default().num_classes(10).in_chans(1),
    );
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let loader = Loader::new(digits, LoaderConfig::eval(256)).expect("loader");
    let dir = common::temp_dir("onnx-extract");
    let specs = [FeatureSpec::Pooled, FeatureSpec::Logits];
    let (want, r0) =
        extract_many_with(&m, &loader, &specs, &dir, &ExtractOptions::default()).expect("tch");
    assert!(!r0.cached);
    let ort = ExtractOptions::onnx_runtime(1);
    let (got, r1) = extract_many_with(&m, &loader, &specs, &dir, &ort).expect("onnx runtime");
    assert!(
        !r1.cached,
        "the backend's cache entry must not answer for ONNX Runtime"
    );
    for (w, g) in want.iter().zip(&got) {
        assert_eq!((w.n, w.dim, &w.labels), (g.n, g.dim, &g.labels));
        let scale = w.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = w
            .data
            .iter()
            .zip(&g.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "{:?}: ONNX Runtime vs libtorch features differ by {diff:e} (scale {scale:e})",
            w.spec
        );
    }
    let (_, r2) = extract_many_with(&m, &loader, &specs, &dir, &ort).expect("again");
    assert!(
        r2.cached,
        "a second ONNX Runtime extraction reads its cache"
    );
    // what the engine cannot run is refused before any work, by name
    let mut bf16 = ExtractOptions::bf16();
    bf16.engine = ort.engine.clone();
    let err = extract_many_with(&m, &loader, &[FeatureSpec::Pooled], &dir, &bf16)
        .expect_err("bf16 on ONNX Runtime")
        .to_string();
    assert!(err.contains("fp32 graphs"), "{err}");
    let stage = [FeatureSpec::Stage("layer3".into())];
    let err = extract_many_with(&m, &loader, &stage, &dir, &ort)
        .expect_err("stage features on ONNX Runtime")
        .to_string();
    assert!(
        err.contains("stage features run on the backend engine"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
