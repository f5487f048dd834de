//! The `graft` binary end to end: tables, user models, inference on both backends agreeing with
//! the library, clear errors on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use graft_backend::{Backend, Ctx, TensorData};
use graft_ndarray::NdArray;
use graft_zoo::{ModelOptions, create_model};

fn graft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .output()
        .expect("run graft")
}

fn ok(args: &[&str]) -> String {
    let out = graft(args);
    assert!(
        out.status.success(),
        "graft {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str]) -> String {
    let out = graft(args);
    assert!(!out.status.success(), "graft {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("graft-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp");
    d
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn models_table_lists_with_wildcards() {
    let out = ok(&["models", "resnet18*"]);
    let rows: Vec<&str> = out.lines().skip(2).collect();
    assert_eq!(rows.len(), 3, "resnet18, resnet18_small, resnet18d\n{out}");
    let r18 = rows
        .iter()
        .find(|l| l.starts_with("resnet18 "))
        .expect("resnet18 row");
    assert!(
        r18.contains("11.69M") && r18.contains("3x224x224") && r18.contains("resnet"),
        "{r18}"
    );
    assert!(ok(&["models"]).contains("vit_base_patch16_224"));
    assert!(fails(&["models", "nothing*"]).contains("nothing*"));
}

#[test]
fn user_model_lists_inspects_and_infers_on_both_backends() {
    let d = tmp("user");
    let models = d.join("models");
    let (mut m, _) = create_model(
        &NdArray,
        "resnet18_small",
        &ModelOptions::default().num_classes(4).seed(3),
    )
    .expect("build");
    m.cfg_mut().labels = Some(["w", "x", "y", "z"].iter().map(|s| s.to_string()).collect());
    m.save_user_model(&models.join("digits_net")).expect("save");

    let listed = ok(&["models", "--models-dir", s(&models), "digits*"]);
    assert!(
        listed.contains("digits_net") && listed.contains("user model on resnet18_small"),
        "{listed}"
    );
    let inspected = ok(&["inspect", s(&models.join("digits_net/model.safetensors"))]);
    assert!(
        inspected.contains("resnet18_small") && inspected.contains("--num-classes 4"),
        "{inspected}"
    );

    let x = ndarray::Array4::from_shape_fn((3, 3, 16, 16), |(n, c, h, w)| {
        ((n * 7 + c * 5 + h * 3 + w) as f32 * 0.1).sin()
    });
    let input = d.join("x.npy");
    ndarray_npy::write_npy(&input, &x).expect("npy");
    let want = {
        let xt = NdArray
            .from_data(&TensorData::F32(x.clone().into_dyn()))
            .expect("x");
        NdArray
            .to_data(&m.forward(&xt, &Ctx::eval()).expect("fwd"))
            .expect("data")
            .to_f32()
    };
    for backend in ["ndarray", "tch"] {
        let out = d.join(format!("y-{backend}.npy"));
        ok(&[
            "infer",
            "--models-dir",
            s(&models),
            "--model",
            "digits_net",
            "--input",
            s(&input),
            "--output",
            s(&out),
            "--backend",
            backend,
            "--batch-size",
            "2",
        ]);
        let y: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&out).expect("read");
        assert_eq!(y.shape(), &[3, 4]);
        let max_ref = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        let diff = y
            .iter()
            .zip(want.iter())
            .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
        assert!(diff <= 1e-4 * max_ref, "{backend}: {diff} vs max {max_ref}");
    }
    let feats = d.join("f.npy");
    ok(&[
        "infer",
        "--models-dir",
        s(&models),
        "--model",
        "digits_net",
        "--input",
        s(&input),
        "--output",
        s(&feats),
        "--features",
        "--backend",
        "ndarray",
    ]);
    let f: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&feats).expect("read");
    assert_eq!(f.shape(), &[3, 512]);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let d = tmp("bad");
    let junk = d.join("junk.npy");
    std::fs::write(&junk, b"not an npy").expect("write");
    let out = d.join("y.npy");
    let err = fails(&[
        "infer",
        "--model",
        "resnet18_small",
        "--input",
        s(&junk),
        "--output",
        s(&out),
        "--backend",
        "ndarray",
    ]);
    assert!(err.contains("junk.npy"), "{err}");
    assert!(!out.exists());
    let err = fails(&[
        "infer",
        "--model",
        "resnet19",
        "--input",
        s(&junk),
        "--output",
        s(&out),
    ]);
    assert!(err.contains("resnet18"), "{err}");
    // weights that do not fit: the report names what is wrong, and an existing output survives
    std::fs::write(&out, b"keep me").expect("write");
    let (m, _) = create_model(&NdArray, "resnet18_small", &ModelOptions::default()).expect("build");
    let w = d.join("w.safetensors");
    m.save_user_model(&d.join("u")).expect("save");
    std::fs::copy(d.join("u/model.safetensors"), &w).expect("copy");
    let x = ndarray::Array4::<f32>::zeros((1, 3, 8, 8));
    let input = d.join("x.npy");
    ndarray_npy::write_npy(&input, &x).expect("npy");
    let err = fails(&[
        "infer",
        "--model",
        "resnet18",
        "--weights",
        s(&w),
        "--input",
        s(&input),
        "--output",
        s(&out),
        "--backend",
        "ndarray",
    ]);
    assert!(
        err.contains("conv1.weight") && err.contains("w.safetensors"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).expect("read"), b"keep me");
    let err = fails(&["inspect", s(&junk)]);
    assert!(err.contains("junk.npy"), "{err}");
}

/// `graft embed`: MiniLM found from its installed package (the binary under target/ finds the
/// repository's venv), a .txt of lines and a .jsonl column give the same rows on both backends,
/// unit-norm, row i for text i; a missing column is an error naming the file and line.
#[test]
fn embed_texts_to_npy_on_both_backends() {
    let d = tmp("embed");
    let txt = d.join("texts.txt");
    std::fs::write(&txt, "a happy day\n\nthe worst film I have ever seen\n").expect("write");
    let jsonl = d.join("texts.jsonl");
    std::fs::write(
        &jsonl,
        "{\"sentence\": \"a happy day\"}\n{\"sentence\": \"\"}\n{\"sentence\": \"the worst film I have ever seen\"}\n",
    )
    .expect("write");
    let mut got = Vec::new();
    for (backend, input, extra) in [
        ("ndarray", &txt, vec![]),
        (
            "tch",
            &jsonl,
            vec!["--column", "sentence", "--batch-size", "2"],
        ),
    ] {
        let out = d.join(format!("{backend}.npy"));
        let mut args = vec![
            "embed",
            "--model",
            "minilm_l6",
            "--backend",
            backend,
            "--input",
            input.to_str().expect("utf-8"),
            "--output",
            out.to_str().expect("utf-8"),
        ];
        args.extend(extra);
        ok(&args);
        let a: ndarray::Array2<f32> = ndarray_npy::read_npy(&out).expect("npy");
        assert_eq!(a.dim(), (3, 384));
        for r in a.rows() {
            let n: f32 = r.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-4, "unit rows: {n}");
        }
        got.push(a);
    }
    for i in 0..3 {
        let cos: f32 = got[0].row(i).dot(&got[1].row(i));
        assert!(cos > 0.9999, "row {i}: ndarray vs tch cosine {cos}");
    }
    // the two sentiments are not the same point
    assert!(got[0].row(0).dot(&got[0].row(2)) < 0.9);
    let bad = d.join("bad.jsonl");
    std::fs::write(&bad, "{\"text\": \"x\"}\n{\"other\": 1}\n").expect("write");
    let err = fails(&[
        "embed",
        "--model",
        "minilm_l6",
        "--input",
        bad.to_str().expect("utf-8"),
        "--output",
        d.join("x.npy").to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("bad.jsonl:2") && err.contains("\"text\""),
        "{err}"
    );
    assert!(!d.join("x.npy").exists());
}

/// `graft export`: a user model written as ONNX, checked by onnx's checker and run in the venv's
/// ONNX Runtime, computes what `graft infer` computes; bad sizes and an output over an input are
/// refused before anything is written.
#[test]
fn export_writes_a_graph_onnx_runtime_runs() {
    let d = tmp("export");
    let models = d.join("models");
    let (m, _) = create_model(
        &NdArray,
        "resnet18_small",
        &ModelOptions::default().num_classes(4).seed(5),
    )
    .expect("build");
    m.save_user_model(&models.join("net")).expect("save");
    let x = ndarray::Array4::from_shape_fn((2, 3, 16, 16), |(n, c, h, w)| {
        ((n * 5 + c * 3 + h * 2 + w) as f32 * 0.13).cos()
    });
    let input = d.join("x.npy");
    ndarray_npy::write_npy(&input, &x).expect("npy");
    let (want, onnx) = (d.join("want.npy"), d.join("net.onnx"));
    let base = ["--models-dir", s(&models), "--model", "net"];
    ok(&[
        &["infer"],
        &base[..],
        &["--input", s(&input), "--output", s(&want)],
    ]
    .concat());
    let said = String::from_utf8_lossy(
        &graft(
            &[
                &["export"],
                &base[..],
                &[
                    "--output",
                    s(&onnx),
                    "--input-size",
                    "3,16,16",
                    "--batch-size",
                    "2",
                ],
            ]
            .concat(),
        )
        .stderr,
    )
    .into_owned();
    assert!(onnx.exists(), "{said}");
    assert!(
        said.contains("ONNX opset 18") && said.contains("[2, 4]"),
        "{said}"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let got = d.join("got.npy");
    let run = Command::new(repo.join(".venv/bin/python"))
        .arg(repo.join("tests/python/onnx_run.py"))
        .args([&onnx, &input, &got])
        .output()
        .expect("python");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (a, b): (ndarray::ArrayD<f32>, ndarray::ArrayD<f32>) = (
        ndarray_npy::read_npy(&want).expect("want"),
        ndarray_npy::read_npy(&got).expect("got"),
    );
    assert_eq!(a.shape(), b.shape());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0f32, |m, (p, q)| m.max((p - q).abs()));
    assert!(diff <= 1e-4 * scale, "ONNX Runtime vs graft infer: {diff}");
    // refusals: a zero size, and the output over the model's own weights
    let err = fails(
        &[
            &["export"],
            &base[..],
            &["--output", s(&d.join("z.onnx")), "--input-size", "3,0,16"],
        ]
        .concat(),
    );
    assert!(err.contains("--input-size"), "{err}");
    let weights = models.join("net/model.safetensors");
    let before = std::fs::read(&weights).expect("weights");
    let err = fails(&[&["export"], &base[..], &["--output", s(&weights)]].concat());
    assert!(err.contains("model.safetensors"), "{err}");
    assert_eq!(std::fs::read(&weights).expect("weights"), before);
}
