//! Static int8 quantisation (graft-onnx's `quant`, calibrated through graft-ort): the QDQ graph
//! passes onnx's checker, ONNX Runtime turns its convolutions into integer kernels
//! (`QLinearConv`), and its error against fp32 is no worse than ONNX Runtime's own static
//! quantiser (`onnxruntime.quantization.quantize_static`, MinMax, per-channel, QDQ) calibrated
//! on the same input. Then int8 extraction: one calibration serves every split (its own cache
//! entries), the linear-probe accuracy stays near fp32's, and a calibration of another model
//! or a graph it does not fit is refused by name.

mod common;

use std::path::Path;
use std::sync::Arc;

use graft::data::{ArrayDataset, Dataset, Loader, LoaderConfig, Subset};
use graft::extract::{
    CalibrationRun, ExtractOptions, FeatureSpec, LogisticConfig, LogisticHead, accuracy,
    calibrate_int8, extract_many_with,
};
use graft::onnx::{Output, export, quant};
use graft::ort::{OnnxRuntime, OrtSession, SessionOptions};
use graft::zoo::{InferenceOptions, ModelOptions, create_model};
use graft::{Tch, TensorData};
use ndarray_npy::write_npy;

fn runtime() -> OnnxRuntime {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let lib = OnnxRuntime::in_python_env(&venv).expect("the venv's onnxruntime");
    OnnxRuntime::load(&lib).expect("load libonnxruntime")
}

/// Inputs shaped like normalised images: smooth, signed, a few large values.
fn input(shape: &[usize]) -> TensorData {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| 1.5 * ((i % 977) as f32 * 0.37).sin() + 0.3 * ((i % 31) as f32 * 0.9).cos())
        .collect();
    TensorData::f32(shape, v).expect("input")
}

#[test]
fn int8_graphs_run_integer_kernels_as_well_as_onnx_runtimes_quantiser() {
    let rt = runtime();
    let dir = common::temp_dir("onnx-int8");
    // (model, size, its linear layers on token sequences: ConvNeXt-atto's 12 blocks have 2,
    // ViT-Ti's 12 blocks 4)
    let cases = [
        ("resnet18", 64, 0),
        ("resnet50", 64, 0),
        ("efficientnet_b0", 64, 0),
        ("convnext_atto", 64, 24),
        ("vit_tiny_patch16_224", 32, 48),
    ];
    // 7-bit weights on x86 without VNNI (quant::WeightRange), and the reference quantiser told
    // the same (its reduce_range)
    let weights = quant::WeightRange::for_host();
    eprintln!("weights: {weights:?}");
    for (name, size, linears) in cases {
        let opts = ModelOptions::default().seed(5).img_size(size, size);
        let (mut m, _) = create_model(&Tch::cpu(), name, &opts).expect("create");
        common::vary_batch_norms(&mut m);
        let m = m
            .for_inference(&InferenceOptions::default())
            .expect("inference copy");
        let shape = [4, 3, size, size];
        let x = input(&shape);
        let e = export(&m, &shape, Output::Pooled).expect("export");
        let opts = SessionOptions { threads: 1 };
        let cal = CalibrationRun::new(&rt, &e, opts.threads).expect("calibration session");
        assert!(!cal.targets().is_empty(), "{name}: nothing to calibrate");
        let mut ranges = quant::Ranges::default();
        cal.observe(&x, &mut ranges).expect("calibrate");
        assert_eq!(
            ranges.by_tensor.len(),
            cal.targets().len(),
            "{name}: every target observed"
        );
        assert_eq!(ranges.samples, shape[0]);
        let q = quant::quantize(&e, &ranges, weights).expect("quantize");
        // graft-ort runs it too
        let y = OrtSession::new(&rt, &q.to_bytes(), &opts)
            .expect("int8 session")
            .run(&x)
            .expect("int8 run");
        assert_eq!(y.shape(), e.output.1.as_slice());
        let (f32p, i8p, xp) = (
            dir.join(format!("{name}-fp32.onnx")),
            dir.join(format!("{name}-int8.onnx")),
            dir.join(format!("{name}-x.npy")),
        );
        e.save(&f32p).expect("save fp32");
        q.save(&i8p).expect("save int8");
        write_npy(&xp, &x.to_f32()).expect("input");
        let out = std::process::Command::new(common::python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/onnx_int8.py"))
            .args([&f32p, &i8p, &xp])
            .arg(match weights {
                quant::WeightRange::Full => "full",
                quant::WeightRange::Reduced => "reduced",
            })
            .output()
            .expect("spawn python");
        assert!(
            out.status.success(),
            "{name}: onnx_int8.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON line");
        eprintln!("{name}: {info}");
        let ops = &info["optimized_ops"];
        let count = |op: &str| ops[op].as_u64().unwrap_or(0);
        let convs = info["fp32_convs"].as_u64().expect("convs");
        assert_eq!(
            count("QLinearConv"),
            convs,
            "{name}: every Conv runs as QLinearConv ({info})"
        );
        assert_eq!(count("Conv") + count("FusedConv"), 0, "{name}: {info}");
        if name == "efficientnet_b0" {
            // SiLU and squeeze-excite on uint8 too
            for op in ["QLinearSigmoid", "QLinearMul", "QLinearGlobalAveragePool"] {
                assert!(count(op) > 0, "{name}: no {op} ({info})");
            }
        }
        assert_eq!(
            count("QLinearMatMul"),
            linears,
            "{name}: every linear layer on a sequence runs as QLinearMatMul ({info})"
        );
        let (ours, reference) = (
            info["graft_err"].as_f64().expect("err"),
            info["reference_err"].as_f64().expect("err"),
        );
        // and small in itself: saturated 16-bit products (8-bit weights on x86 without VNNI)
        // put ConvNeXt-atto and ViT-Ti at 0.26
        assert!(
            ours <= 0.1,
            "{name}: graft's int8 error {ours:.4} (max |int8 - fp32| / max |fp32|, weights {weights:?})"
        );
        assert!(
            ours <= 1.25 * reference + 0.005,
            "{name}: graft's int8 error {ours:.4} vs ONNX Runtime's quantiser {reference:.4} (max |int8 - fp32| / max |fp32|)"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn int8_extraction_keeps_the_probe_and_refuses_a_foreign_calibration() {
    runtime();
    let mk = |seed| {
        let (m, _) = create_model(
            &Tch::cpu(),
            "resnet18_small",
            &ModelOptions::default()
                .num_classes(10)
                .in_chans(1)
                .seed(seed),
        )
        .expect("create");
        m
    };
    let m = mk(0);
    let digits: Arc<dyn Dataset> = Arc::new(ArrayDataset::digits());
    let n = digits.len();
    let split = |idx: Vec<usize>| {
        Loader::new(
            Arc::new(Subset::new(digits.clone(), idx).expect("subset")),
            LoaderConfig::eval(128),
        )
        .expect("loader")
    };
    let (train, test) = (
        split((0..n).filter(|i| i % 2 == 0).collect()),
        split((0..n).filter(|i| i % 2 == 1).collect()),
    );
    let err = calibrate_int8(&m, &train, 0, 1)
        .expect_err("0 images")
        .to_string();
    assert!(err.contains("0 calibration images"), "{err}");
    let cal = Arc::new(calibrate_int8(&m, &train, 256, 1).expect("calibrate"));
    assert_eq!(cal.ranges.samples, 256, "two batches of 128");
    let dir = common::temp_dir("onnx-int8-extract");
    let spec = [FeatureSpec::Pooled];
    let mut acc = Vec::new();
    for o in [
        ExtractOptions::onnx_runtime(1),
        ExtractOptions::onnx_runtime_int8(1, cal.clone()),
    ] {
        let (mut tr, r) = extract_many_with(&m, &train, &spec, &dir, &o).expect("train");
        assert!(!r.cached, "int8 and fp32 have their own cache entries");
        let (mut te, _) = extract_many_with(&m, &test, &spec, &dir, &o).expect("test");
        let (tr, te) = (tr.pop().expect("train"), te.pop().expect("test"));
        let head = LogisticHead::fit(&tr, 10, &LogisticConfig::default()).expect("fit");
        acc.push(accuracy(&head.predict(&te).expect("predict"), &te));
    }
    eprintln!(
        "linear probe on the digits: fp32 {:.2} %, int8 {:.2} %",
        100.0 * acc[0],
        100.0 * acc[1]
    );
    assert!(acc[0] > 0.5, "the fp32 probe learns: {}", acc[0]);
    assert!(
        (acc[0] - acc[1]).abs() <= 0.02,
        "int8 probe {:.4} vs fp32 {:.4}",
        acc[1],
        acc[0]
    );
    let int8 = ExtractOptions::onnx_runtime_int8(1, cal.clone());
    let (_, r) = extract_many_with(&m, &test, &spec, &dir, &int8).expect("again");
    assert!(r.cached, "a second int8 extraction reads its cache");
    // a calibration of other weights is refused before any work
    let other = mk(1);
    let err = extract_many_with(&other, &test, &spec, &dir, &int8)
        .expect_err("foreign calibration")
        .to_string();
    assert!(err.contains("calibrate the model being extracted"), "{err}");
    // ranges that do not fit the graph are refused naming a tensor
    let e = export(
        &m.for_inference(&InferenceOptions::default()).expect("copy"),
        &[2, 1, 8, 8],
        Output::Pooled,
    )
    .expect("export");
    let err = quant::quantize(&e, &quant::Ranges::default(), quant::WeightRange::Full)
        .expect_err("empty ranges")
        .to_string();
    assert!(err.contains("no calibrated range for tensor"), "{err}");
    let mut bad = quant::Ranges::default();
    let err = bad
        .observe("v1", &[0.0, f32::NAN])
        .expect_err("NaN")
        .to_string();
    assert!(err.contains("v1") && err.contains("non-finite"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
