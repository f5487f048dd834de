//! The loader's report and errors, on the pure-Rust backend: missing / unexpected / mis-shaped
//! tensors named, strict loads that fail leave the model untouched, truncated and corrupt files
//! are errors naming the file, head dropping, in_chans adaptation, prefix stripping, dtype
//! conversion, num_batches_tracked, user models.

use std::collections::BTreeMap;
use std::path::PathBuf;

use graft_backend::safetensors_io::{load, save};
use graft_backend::{Backend, Ctx, DType, TensorData};
use graft_ndarray::NdArray;
use graft_zoo::{LoadOptions, Model, ModelOptions, Registry, adapt_input_conv, create_model};

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("graft-zoo-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn small(seed: u64) -> Model<NdArray> {
    create_model(
        &NdArray,
        "resnet18_small",
        &ModelOptions::default().seed(seed),
    )
    .expect("build")
    .0
}

fn saved(tag: &str, seed: u64) -> (PathBuf, BTreeMap<String, TensorData>) {
    let d = dir(tag);
    let m = small(seed);
    let t = m.params().to_data().expect("data");
    let p = d.join("w.safetensors");
    save(&p, &t, None).expect("save");
    (p, t)
}

fn value(m: &Model<NdArray>, name: &str) -> TensorData {
    NdArray
        .to_data(m.params().get(name).expect("param"))
        .expect("data")
}

#[test]
fn round_trip_applies_every_tensor() {
    let (p, t) = saved("rt", 1);
    let mut m = small(2);
    assert_ne!(
        value(&m, "layer1.0.conv1.weight"),
        t["layer1.0.conv1.weight"]
    );
    let r = m.load_weights(&p, &LoadOptions::default()).expect("load");
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.applied.len(), m.params().len());
    assert!((r.coverage() - 1.0).abs() < 1e-12);
    for (name, want) in &t {
        assert_eq!(&value(&m, name), want, "{name}");
    }
}

#[test]
fn missing_extra_and_wrong_shape_are_each_named() {
    let (p, mut t) = saved("bad", 1);
    t.remove("layer2.1.bn1.running_var");
    t.insert(
        "layer9.conv.weight".into(),
        TensorData::f32(&[2], vec![1.0, 2.0]).expect("t"),
    );
    t.insert(
        "layer3.0.conv2.weight".into(),
        TensorData::f32(&[4, 4, 3, 3], vec![0.0; 144]).expect("t"),
    );
    save(&p, &t, None).expect("save");

    let mut m = small(2);
    let before = value(&m, "layer1.0.conv1.weight");
    let err = m
        .load_weights(&p, &LoadOptions::default())
        .expect_err("strict");
    let msg = err.to_string();
    for want in [
        "w.safetensors",
        "layer2.1.bn1.running_var",
        "layer9.conv.weight",
        "layer3.0.conv2.weight",
        "[4, 4, 3, 3]",
    ] {
        assert!(msg.contains(want), "{want} not in: {msg}");
    }
    assert_eq!(
        value(&m, "layer1.0.conv1.weight"),
        before,
        "a failed strict load changed the model"
    );

    let r = m
        .load_weights(&p, &LoadOptions::lenient())
        .expect("lenient");
    assert_eq!(r.missing, vec!["layer2.1.bn1.running_var".to_string()]);
    assert_eq!(r.unexpected, vec!["layer9.conv.weight".to_string()]);
    assert_eq!(r.mismatched.len(), 1);
    assert_eq!(r.mismatched[0].name, "layer3.0.conv2.weight");
    assert_eq!(r.mismatched[0].file, vec![4, 4, 3, 3]);
    assert_eq!(r.mismatched[0].model, vec![256, 256, 3, 3]);
    assert_eq!(r.applied.len(), m.params().len() - 2);
    assert_eq!(
        value(&m, "layer1.0.conv1.weight"),
        t["layer1.0.conv1.weight"]
    );
    let shown = r.to_string();
    assert!(
        shown.contains("missing") && shown.contains("wrong shape"),
        "{shown}"
    );
}

#[test]
fn truncated_and_corrupt_files_are_errors_naming_the_file() {
    let (p, _) = saved("trunc", 1);
    let bytes = std::fs::read(&p).expect("read");
    let cut = p.with_file_name("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).expect("write");
    let garbage = p.with_file_name("garbage.safetensors");
    std::fs::write(&garbage, b"\x08\x00\x00\x00\x00\x00\x00\x00{oops}!!").expect("write");
    let empty = p.with_file_name("empty.safetensors");
    std::fs::write(&empty, b"").expect("write");
    let mut m = small(2);
    for f in [
        &cut,
        &garbage,
        &empty,
        &p.with_file_name("absent.safetensors"),
    ] {
        let err = m
            .load_weights(f, &LoadOptions::default())
            .expect_err("bad file");
        let name = f.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn other_num_classes_drops_the_head_and_says_so() {
    let (p, t) = saved("head", 1);
    let opts = ModelOptions::default().num_classes(3).weights(&p);
    let (m, r) = create_model(&NdArray, "resnet18_small", &opts).expect("load");
    let r = r.expect("report");
    assert!(r.is_clean(), "{r}");
    assert_eq!(
        r.head_dropped,
        vec!["fc.bias".to_string(), "fc.weight".to_string()]
    );
    assert_eq!(
        NdArray.shape(m.params().get("fc.weight").expect("fc")),
        vec![3, 512]
    );
    assert_eq!(value(&m, "conv1.weight"), t["conv1.weight"]);
    // no head at all: the file's head is dropped, forward gives pooled features
    let opts = ModelOptions::default().num_classes(0).weights(&p);
    let (m, r) = create_model(&NdArray, "resnet18_small", &opts).expect("load");
    assert_eq!(r.expect("report").head_dropped.len(), 2);
    let x = NdArray
        .from_data(&TensorData::f32(&[1, 3, 8, 8], vec![0.5; 192]).expect("x"))
        .expect("x");
    assert_eq!(
        NdArray.shape(&m.forward(&x, &Ctx::eval()).expect("fwd")),
        vec![1, 512]
    );
}

#[test]
fn first_conv_adapts_to_other_input_channels_as_timm() {
    let (p, t) = saved("inch", 1);
    let w = t["conv1.weight"].to_f32();
    for in_chans in [1usize, 2, 5] {
        let opts = ModelOptions::default().in_chans(in_chans).weights(&p);
        let (m, r) = create_model(&NdArray, "resnet18_small", &opts).expect("load");
        let r = r.expect("report");
        assert_eq!(r.adapted.len(), 1, "{r}");
        let got = value(&m, "conv1.weight").to_f32();
        assert_eq!(got.shape(), &[64, in_chans, 3, 3]);
        for (o, c, i, j) in [
            (0, 0, 0, 0),
            (5, in_chans - 1, 2, 1),
            (63, in_chans / 2, 1, 2),
        ] {
            let want = if in_chans == 1 {
                (0..3).map(|k| w[[o, k, i, j]]).sum::<f32>()
            } else {
                w[[o, c % 3, i, j]] * 3.0 / in_chans as f32
            };
            assert!(
                (got[[o, c, i, j]] - want).abs() < 1e-6,
                "in_chans {in_chans}"
            );
        }
    }
    assert!(adapt_input_conv(&TensorData::f32(&[3], vec![0.0; 3]).expect("t"), 1).is_err());
}

#[test]
fn wrapper_prefixes_are_stripped_and_dtypes_converted() {
    let (p, t) = saved("prefix", 1);
    let wrapped: BTreeMap<String, TensorData> = t
        .iter()
        .map(|(k, v)| {
            let v = if v.dtype() == DType::F32 {
                v.cast(DType::BF16)
            } else {
                v.clone()
            };
            (format!("module.{k}"), v)
        })
        .collect();
    let q = p.with_file_name("wrapped.safetensors");
    save(&q, &wrapped, None).expect("save");
    let mut m = small(2);
    let r = m.load_weights(&q, &LoadOptions::default()).expect("load");
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.stripped_prefix.as_deref(), Some("module."));
    let floats = t.values().filter(|v| v.dtype() == DType::F32).count();
    assert_eq!(
        r.converted,
        vec![("bfloat16".to_string(), "float32".to_string(), floats)]
    );
    assert_eq!(
        m.params()
            .get("conv1.weight")
            .map(|x| NdArray.dtype(x))
            .ok(),
        Some(DType::F32)
    );
    let want = t["conv1.weight"].cast(DType::BF16).cast(DType::F32);
    assert_eq!(value(&m, "conv1.weight"), want);
}

#[test]
fn num_batches_tracked_absent_from_a_file_is_reported_not_an_error() {
    let (p, mut t) = saved("nbt", 1);
    t.retain(|k, _| !k.ends_with("num_batches_tracked"));
    save(&p, &t, None).expect("save");
    let mut m = small(2);
    let r = m.load_weights(&p, &LoadOptions::default()).expect("load");
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.defaulted.len(), 20);
    assert!(r.to_string().contains("num_batches_tracked"));
}

#[test]
fn user_model_registers_lists_and_infers_like_a_builtin() {
    let d = dir("user");
    let mut m = create_model(
        &NdArray,
        "resnet18_small",
        &ModelOptions::default().num_classes(4).seed(9),
    )
    .expect("build")
    .0;
    m.cfg_mut().labels = Some(vec!["a".into(), "b".into(), "c".into(), "d".into()]);
    let target = d.join("digits_net");
    m.save_user_model(&target).expect("save");
    let mut reg = Registry::builtin();
    let name = reg.register_dir(&target, None).expect("register");
    assert_eq!(name, "digits_net");
    assert_eq!(reg.list(Some("digits*")).len(), 1);
    let (back, r) = reg
        .create(&NdArray, &name, &ModelOptions::default())
        .expect("create");
    let r = r.expect("report");
    assert!(r.is_clean() && r.head_dropped.is_empty(), "{r}");
    assert_eq!(back.num_classes(), 4);
    assert_eq!(back.cfg().labels.as_ref().map(Vec::len), Some(4));
    let x = NdArray
        .from_data(
            &TensorData::f32(
                &[2, 3, 12, 12],
                (0..864).map(|v| (v as f32 * 0.37).sin()).collect(),
            )
            .expect("x"),
        )
        .expect("x");
    let a = NdArray
        .to_data(&m.forward(&x, &Ctx::eval()).expect("fwd"))
        .expect("a");
    let b = NdArray
        .to_data(&back.forward(&x, &Ctx::eval()).expect("fwd"))
        .expect("b");
    assert_eq!(a, b);
    // a user model saved again keeps the built-in architecture it is built on
    assert_eq!(back.architecture(), "resnet18_small");
    back.save_user_model(&d.join("again")).expect("save again");
    let name2 = reg
        .register_dir(&d.join("again"), None)
        .expect("register again");
    let (third, _) = reg
        .create(&NdArray, &name2, &ModelOptions::default())
        .expect("create");
    assert_eq!(
        NdArray
            .to_data(&third.forward(&x, &Ctx::eval()).expect("fwd"))
            .expect("c"),
        a
    );
    // a broken config names the file and the line
    std::fs::write(
        target.join("config.json"),
        "{\n  \"architecture\": \"resnet18_small\",\n  \"num_classes\": oops\n}",
    )
    .expect("w");
    let err = Registry::builtin()
        .register_dir(&target, Some("x"))
        .expect_err("bad json");
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("line 3"),
        "{msg}"
    );
    let _ = load(&target.join("model.safetensors")).expect("weights still there");
}

#[test]
fn replace_head_and_stage_outputs() {
    let mut m = small(3);
    let head = m.head().clone();
    let removed = m.replace_head(7, head, 11).expect("reset");
    assert_eq!(
        removed,
        vec!["fc.weight".to_string(), "fc.bias".to_string()]
    );
    assert_eq!(m.num_classes(), 7);
    let x = NdArray
        .from_data(&TensorData::f32(&[2, 3, 16, 16], vec![0.1; 1536]).expect("x"))
        .expect("x");
    assert_eq!(
        NdArray.shape(&m.forward(&x, &Ctx::eval()).expect("fwd")),
        vec![2, 7]
    );
    let outs = m
        .forward_stages(&x, &["layer2", "stem"], &Ctx::eval())
        .expect("stages");
    assert_eq!(NdArray.shape(&outs[0]), vec![2, 128, 8, 8]);
    assert_eq!(NdArray.shape(&outs[1]), vec![2, 64, 16, 16]);
    let err = m
        .forward_stages(&x, &["layer9"], &Ctx::eval())
        .expect_err("unknown stage");
    assert!(err.to_string().contains("layer4"), "{err}");
    let names: Vec<String> = m.stages().stages().iter().map(|s| s.name.clone()).collect();
    assert_eq!(
        names,
        ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    );
    let err = m.forward(
        &NdArray
            .from_data(&TensorData::f32(&[1, 1, 8, 8], vec![0.0; 64]).expect("x"))
            .expect("x"),
        &Ctx::eval(),
    );
    assert!(err.is_err());
}

#[test]
fn user_model_with_an_mlp_head_round_trips() {
    let d = dir("mlp");
    let mut m = small(4);
    m.replace_head(3, graft_zoo::HeadSpec::mlp(&[16, 8], 0.2), 5)
        .expect("mlp head");
    m.save_user_model(&d.join("mlp_net")).expect("save");
    let text = std::fs::read_to_string(d.join("mlp_net/config.json")).expect("config");
    assert!(text.contains("\"kind\": \"mlp\""), "{text}");
    let mut reg = Registry::builtin();
    let name = reg
        .register_dir(&d.join("mlp_net"), None)
        .expect("register");
    let (back, r) = reg
        .create(&NdArray, &name, &ModelOptions::default())
        .expect("create");
    assert!(r.expect("report").is_clean());
    assert_eq!(back.head(), m.head());
    let x = NdArray
        .from_data(&TensorData::f32(&[2, 3, 8, 8], vec![0.25; 384]).expect("x"))
        .expect("x");
    let a = NdArray
        .to_data(&m.forward(&x, &Ctx::eval()).expect("a"))
        .expect("a");
    let b = NdArray
        .to_data(&back.forward(&x, &Ctx::eval()).expect("b"))
        .expect("b");
    assert_eq!(a.shape(), [2, 3]);
    assert_eq!(a, b);
}

/// Issue 17.5: a `fc.weight` of the right class count but another input width was listed as
/// "head dropped" while `fc.bias` was applied. Only a consistent head for another number of
/// classes is dropped, and then whole; any other head mismatch is a strict error.
#[test]
fn a_head_is_taken_whole_or_dropped_whole() {
    let (p, t) = saved("half-head", 1);
    let n = t["fc.weight"].shape()[0];
    let with = |edit: &dyn Fn(&mut BTreeMap<String, TensorData>)| {
        let mut t = t.clone();
        edit(&mut t);
        save(&p, &t, None).expect("save");
    };
    // another input width: not a head replacement
    with(&|t| {
        t.insert(
            "fc.weight".into(),
            TensorData::f32(&[n, 256], vec![0.0; n * 256]).expect("w"),
        );
    });
    let mut m = small(2);
    let bias = value(&m, "fc.bias");
    let err = m
        .load_weights(&p, &LoadOptions::default())
        .expect_err("wrong input width");
    assert!(err.to_string().contains("fc.weight"), "{err}");
    assert_eq!(value(&m, "fc.bias"), bias, "no half of the head applied");
    let r = m
        .load_weights(&p, &LoadOptions::lenient())
        .expect("lenient");
    assert_eq!(r.mismatched.len(), 1, "{r}");
    assert!(r.head_dropped.is_empty(), "{r}");
    // an inconsistent file head: the weight for n classes, the bias for n + 2
    with(&|t| {
        t.insert(
            "fc.bias".into(),
            TensorData::f32(&[n + 2], vec![0.0; n + 2]).expect("b"),
        );
    });
    let err = small(2)
        .load_weights(&p, &LoadOptions::default())
        .expect_err("inconsistent head");
    assert!(err.to_string().contains("fc.bias"), "{err}");
    // half a head in the file: the other half is missing, not dropped
    with(&|t| {
        t.remove("fc.bias");
    });
    let err = small(2)
        .load_weights(&p, &LoadOptions::default())
        .expect_err("half a head");
    assert!(
        err.to_string().contains("fc.bias") && err.to_string().contains("missing"),
        "{err}"
    );
    // a consistent head for other classes: dropped whole (the deliberate replacement)
    with(&|_| {});
    let opts = ModelOptions::default().num_classes(n + 3).weights(&p);
    let (_, r) = create_model(&NdArray, "resnet18_small", &opts).expect("replace");
    let r = r.expect("report");
    assert!(r.is_clean(), "{r}");
    assert_eq!(r.head_dropped, vec!["fc.bias", "fc.weight"]);
}

/// Issue 17.4: NaN / infinite weights and negative running variances loaded silently and gave
/// all-NaN logits. The strict load refuses them naming each tensor, the model untouched; a
/// lenient load applies them and lists them.
#[test]
fn non_finite_weights_and_negative_variances_are_named() {
    let (p, t) = saved("bad-values", 1);
    let mut t = t.clone();
    let w = &t["layer1.0.conv1.weight"];
    let mut v = w.to_f32().iter().copied().collect::<Vec<f32>>();
    v[0] = f32::NAN;
    v[1] = f32::INFINITY;
    t.insert(
        "layer1.0.conv1.weight".into(),
        TensorData::f32(w.shape(), v).expect("w"),
    );
    let var = &t["bn1.running_var"];
    let n = var.len();
    t.insert(
        "bn1.running_var".into(),
        TensorData::f32(var.shape(), vec![-1.0; n]).expect("v"),
    );
    save(&p, &t, None).expect("save");
    let mut m = small(2);
    let before = value(&m, "conv1.weight");
    let err = m
        .load_weights(&p, &LoadOptions::default())
        .expect_err("bad values")
        .to_string();
    assert!(
        err.contains("layer1.0.conv1.weight (1 NaN, 1 infinite)")
            && err.contains(&format!("bn1.running_var ({n} negative variances)")),
        "{err}"
    );
    assert_eq!(value(&m, "conv1.weight"), before, "the model is untouched");
    let r = m
        .load_weights(&p, &LoadOptions::lenient())
        .expect("lenient");
    assert_eq!(r.bad_values.len(), 2, "{r}");
    assert!(r.to_string().contains("bad values"), "{r}");
}

/// Issue 17.9: a weights file truncated while memory-mapped killed the process with SIGBUS.
/// Files up to `READ_LIMIT` are read into memory on open: truncating one afterwards cannot
/// reach the process.
#[test]
fn a_weights_file_truncated_after_open_cannot_fault() {
    let (p, t) = saved("truncated-after-open", 1);
    let file = graft_zoo::WeightsFile::open(&p).expect("open");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open for write")
        .set_len(16)
        .expect("truncate");
    let w = file.read("layer4.1.conv2.weight").expect("read");
    assert_eq!(w, t["layer4.1.conv2.weight"]);
}

/// The header-only index (what the head-size lookup reads) agrees with a full
/// open, and a file whose header points past its data is an error naming it.
#[test]
fn the_header_index_agrees_with_a_full_open() {
    let (p, _) = saved("index-only", 1);
    let full = graft_zoo::WeightsFile::open(&p).expect("open");
    let idx = graft_zoo::WeightsFile::open_index(&p).expect("index");
    let shapes = |f: &graft_zoo::WeightsFile| {
        f.index()
            .iter()
            .map(|(k, v)| (k.clone(), v.shape.clone(), v.dtype.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(shapes(&full), shapes(&idx));
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..bytes.len() - 4]).expect("cut");
    let err = graft_zoo::WeightsFile::open_index(&p)
        .expect_err("cut")
        .to_string();
    assert!(
        err.contains("w.safetensors") && err.contains("past the"),
        "{err}"
    );
}

/// Issue 17.4: f64 values past f32's range become infinite when converted; the load names them.
#[test]
fn f64_values_that_overflow_f32_are_named() {
    let (p, t) = saved("f64-overflow", 1);
    let n = t["bn1.running_mean"].len();
    let big: Vec<u8> = (0..n).flat_map(|_| 1e300f64.to_le_bytes()).collect();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, v) in &t {
        let (dtype, bytes) = match (name.as_str(), v) {
            ("bn1.running_mean", _) => (safetensors::Dtype::F64, big.clone()),
            (_, TensorData::I64(a)) => (
                safetensors::Dtype::I64,
                a.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            _ => (
                safetensors::Dtype::F32,
                v.to_f32().iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        };
        owned.push((name.clone(), dtype, v.shape().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view"),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &p).expect("write");
    let err = small(2)
        .load_weights(&p, &LoadOptions::default())
        .expect_err("overflow")
        .to_string();
    assert!(
        err.contains(&format!("bn1.running_mean ({n} infinite)")),
        "{err}"
    );
}

/// Issue 18: library users get the CLI's scan of user-model directories: complete models are
/// registered, a half-exported one is named.
#[test]
fn user_model_directories_scan_like_the_cli() {
    let d = dir("user-scan");
    let mut m = small(3);
    m.cfg_mut().labels = None;
    m.save_user_model(&d.join("good")).expect("save");
    std::fs::create_dir_all(d.join("half")).expect("dir");
    std::fs::copy(
        d.join("good/model.safetensors"),
        d.join("half/model.safetensors"),
    )
    .expect("copy");
    let (reg, skipped) = Registry::with_user_models(std::slice::from_ref(&d)).expect("scan");
    assert!(reg.get("good").is_ok());
    assert!(reg.get("half").is_err());
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(skipped[0].contains("half") && skipped[0].contains("without config.json"));
}
