//! graft-optim on graft-tch: parity with torch.optim, exact resume across processes, and frozen
//! parameters that stay exact under AdamW with large weight decay.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use graft::backend::conformance::rnd;
use graft::backend::safetensors_io;
use graft::backend::{ParamKind, Params};
use graft::optim::{Hyper, Optimizer, OptimizerKind, OptimizerState};
use graft::{AutodiffBackend, Backend, DType, Tch, TensorData};

fn problem() -> BTreeMap<String, TensorData> {
    let mut m = BTreeMap::new();
    m.insert("x".into(), rnd(&[8, 3], 1, -1.0, 1.0));
    m.insert("y".into(), rnd(&[8, 2], 2, -1.0, 1.0));
    m.insert("w1".into(), rnd(&[4, 3], 3, -0.8, 0.8));
    m.insert("b1".into(), rnd(&[4], 4, -0.5, 0.5));
    m.insert("w2".into(), rnd(&[2, 4], 5, -0.8, 0.8));
    m.insert("f".into(), rnd(&[2], 6, 0.5, 1.5));
    m
}

fn model(b: &Tch, init: &BTreeMap<String, TensorData>) -> Params<Tch> {
    let mut p = Params::new(*b);
    for name in ["w1", "b1", "w2", "f"] {
        let t = b.from_data(&init[name]).expect("upload");
        if name != "f" {
            b.set_requires_grad(&t, true).expect("grad");
        }
        p.insert(name, t, ParamKind::Parameter).expect("insert");
    }
    p
}

fn optimizer(kind: OptimizerKind) -> Optimizer<Tch> {
    let mut o = Optimizer::new(kind);
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match kind {
        OptimizerKind::Sgd => {
            let a = Hyper::sgd(0.1)
                .momentum(0.9)
                .nesterov(true)
                .weight_decay(0.1);
            let mut bh = Hyper::sgd(0.03).momentum(0.5).weight_decay(0.05);
            bh.dampening = 0.1;
            o.add_group("a", names(&["w1", "b1", "f"]), a)
                .expect("group a");
            o.add_group("b", names(&["w2"]), bh).expect("group b");
        }
        OptimizerKind::AdamW => {
            o.add_group(
                "a",
                names(&["w1", "b1", "f"]),
                Hyper::adamw(0.01).weight_decay(0.5),
            )
            .expect("a");
            o.add_group(
                "b",
                names(&["w2"]),
                Hyper::adamw(0.003).betas(0.8, 0.99).weight_decay(0.05),
            )
            .expect("b");
        }
    }
    o
}

fn train_steps(
    b: &Tch,
    p: &Params<Tch>,
    opt: &mut Optimizer<Tch>,
    data: &BTreeMap<String, TensorData>,
    n: usize,
) {
    let x = b.from_data(&data["x"]).expect("x");
    let y = b.from_data(&data["y"]).expect("y");
    for _ in 0..n {
        let h = b
            .tanh(
                &b.linear(&x, p.get("w1").expect("w1"), Some(p.get("b1").expect("b1")))
                    .expect("l1"),
            )
            .expect("tanh");
        let out = b
            .mul(
                &b.linear(&h, p.get("w2").expect("w2"), None).expect("l2"),
                p.get("f").expect("f"),
            )
            .expect("mul");
        let d = b.sub(&out, &y).expect("sub");
        let loss = b
            .mean(&b.mul(&d, &d).expect("sq"), &[], false)
            .expect("mean");
        let grads = p.gradients(&loss).expect("grads");
        assert!(grads.get("f").is_none(), "frozen f must have no gradient");
        opt.step(p, &grads).expect("step");
    }
}

fn final_params(b: &Tch, p: &Params<Tch>) -> BTreeMap<String, TensorData> {
    ["w1", "b1", "w2", "f"]
        .iter()
        .map(|n| {
            (
                n.to_string(),
                b.to_data(p.get(n).expect("p")).expect("data"),
            )
        })
        .collect()
}

fn parity(kind: OptimizerKind, tag: &str) {
    // AdamW on graft-tch: the in-place form (default) and the composed one; SGD has one form
    let forms: &[bool] = match kind {
        OptimizerKind::AdamW => &[true, false],
        _ => &[true],
    };
    for &in_place in forms {
        parity_with(kind, tag, in_place);
    }
}

fn parity_with(kind: OptimizerKind, tag: &str, in_place: bool) {
    let dir = common::temp_dir(tag);
    let data = problem();
    safetensors_io::save(&dir.join("init.safetensors"), &data, None).expect("save");
    let out_path = dir.join("torch.safetensors");
    common::run_python(
        "optim_reference.py",
        &[
            tag,
            dir.join("init.safetensors").to_str().expect("utf8"),
            out_path.to_str().expect("utf8"),
        ],
    );
    let (want, _) = safetensors_io::load(&out_path).expect("torch result");
    let b = Tch::cpu();
    let p = model(&b, &data);
    let mut opt = optimizer(kind);
    opt.set_in_place(in_place);
    train_steps(&b, &p, &mut opt, &data, 10);
    let got = final_params(&b, &p);
    let mut worst = 0.0f64;
    for name in ["w1", "b1", "w2", "f"] {
        let (g, w) = (got[name].to_f64(), want[name].to_f64());
        let init = data[name].to_f64();
        let moved = (&w - &init).mapv(f64::abs).fold(0.0f64, |a, &v| a.max(v));
        for (a, c) in g.iter().zip(w.iter()) {
            let rel = (a - c).abs() / c.abs().max(1e-3);
            worst = worst.max(rel);
            assert!(
                rel <= 1e-6,
                "{tag} {name}: graft {a} vs torch {c} (rel {rel:e})"
            );
        }
        if name == "f" {
            assert_eq!(got["f"], data["f"], "{tag}: frozen f moved");
        } else {
            assert!(
                moved > 1e-3,
                "{tag} {name}: torch moved it by only {moved}: the test would be vacuous"
            );
        }
    }
    eprintln!(
        "{tag} (in place: {in_place}): max relative difference to torch.optim after 10 steps: {worst:e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sgd_matches_torch_optim_sgd() {
    parity(OptimizerKind::Sgd, "sgd");
}

#[test]
fn adamw_matches_torch_optim_adamw() {
    parity(OptimizerKind::AdamW, "adamw");
}

/// Runs in a child process: loads params + optimizer state from GRAFT_RESUME_DIR, runs 5 steps,
/// saves the result. A no-op when the variable is unset (the normal test run).
#[test]
fn resume_child_entry() {
    let Some(dir) = std::env::var_os("GRAFT_RESUME_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let b = Tch::cpu();
    let data = problem();
    let (saved, _) = safetensors_io::load(&dir.join("params.safetensors")).expect("params");
    let p = model(&b, &saved);
    let (tensors, meta) = safetensors_io::load(&dir.join("optim.safetensors")).expect("optim");
    let state = OptimizerState {
        tensors,
        metadata: meta.unwrap_or_default().into_iter().collect(),
    };
    let mut opt = Optimizer::import_state(&state, &p).expect("import");
    train_steps(&b, &p, &mut opt, &data, 5);
    safetensors_io::save(
        &dir.join("resumed.safetensors"),
        &final_params(&b, &p),
        None,
    )
    .expect("save");
}

#[test]
fn state_export_new_process_import_continues_bit_identically() {
    for kind in [OptimizerKind::Sgd, OptimizerKind::AdamW] {
        let dir = common::temp_dir(&format!("resume-{kind:?}"));
        let b = Tch::cpu();
        let data = problem();
        // uninterrupted: 10 steps
        let p = model(&b, &data);
        let mut opt = optimizer(kind);
        train_steps(&b, &p, &mut opt, &data, 10);
        let straight = final_params(&b, &p);
        // interrupted: 5 steps, export, a new process imports and runs 5 more
        let p = model(&b, &data);
        let mut opt = optimizer(kind);
        train_steps(&b, &p, &mut opt, &data, 5);
        let st = opt.export_state(&p).expect("export");
        assert!(
            st.tensors.keys().any(|k| k.ends_with(".step")),
            "step counts exported"
        );
        safetensors_io::save(&dir.join("params.safetensors"), &final_params(&b, &p), None)
            .expect("save");
        safetensors_io::save(
            &dir.join("optim.safetensors"),
            &st.tensors,
            Some(st.metadata.clone().into_iter().collect()),
        )
        .expect("save optim");
        let status = Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--exact",
                "resume_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("GRAFT_RESUME_DIR", &dir)
            .status()
            .expect("spawn child");
        assert!(status.success(), "child process failed");
        let (resumed, _) = safetensors_io::load(&dir.join("resumed.safetensors")).expect("resumed");
        assert_eq!(
            resumed, straight,
            "{kind:?}: resumed run differs from the uninterrupted one"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_parameter_without_grad_is_untouched_by_adamw_with_large_weight_decay() {
    let b = Tch::cpu();
    let w = b.from_data(&rnd(&[3, 3], 9, -1.0, 1.0)).expect("w");
    let frozen = b.from_data(&rnd(&[3], 10, -1.0, 1.0)).expect("frozen");
    b.set_requires_grad(&w, true).expect("grad");
    let mut p = Params::new(b);
    p.insert("w", w, ParamKind::Parameter).expect("w");
    p.insert("frozen", frozen, ParamKind::Parameter)
        .expect("frozen");
    let before = b.to_data(p.get("frozen").expect("f")).expect("data");
    let mut opt = Optimizer::adamw();
    opt.add_group(
        "all",
        vec!["w".into(), "frozen".into()],
        Hyper::adamw(0.1).weight_decay(100.0),
    )
    .expect("group");
    for _ in 0..5 {
        let loss = b
            .sum(
                &b.mul(p.get("w").expect("w"), p.get("frozen").expect("f"))
                    .expect("mul"),
                &[],
                false,
            )
            .expect("sum");
        let grads = p.gradients(&loss).expect("grads");
        let r = opt.step(&p, &grads).expect("step");
        assert_eq!((r.updated, r.skipped), (1, 1));
    }
    assert_eq!(
        b.to_data(p.get("frozen").expect("f")).expect("data"),
        before,
        "frozen param moved"
    );
    assert_eq!(opt.param_step("frozen"), 0);
    assert_eq!(opt.param_step("w"), 5);
    // a group at LR 0 is frozen the same way: no decay either
    opt.set_lr("all", 0.0).expect("lr");
    let w_before = b.to_data(p.get("w").expect("w")).expect("data");
    let loss = b.sum(p.get("w").expect("w"), &[], false).expect("sum");
    opt.step(&p, &p.gradients(&loss).expect("grads"))
        .expect("step");
    assert_eq!(b.to_data(p.get("w").expect("w")).expect("data"), w_before);
    assert_eq!(b.dtype(p.get("w").expect("w")), DType::F32);
}

#[test]
fn groups_are_mutable_and_a_replaced_head_gets_fresh_state() {
    let b = Tch::cpu();
    let data = problem();
    let mut p = model(&b, &data);
    let mut opt = optimizer(OptimizerKind::AdamW);
    train_steps(&b, &p, &mut opt, &data, 2);
    assert_eq!(opt.param_step("w2"), 2);
    assert_eq!(opt.lr("b").expect("lr"), 0.003);
    opt.set_lr("b", 0.5).expect("set lr");
    opt.set_momentum("b", 0.7).expect("beta1");
    assert_eq!(opt.group("b").expect("b").hyper.betas.0, 0.7);
    // replace the head tensor under the same name: its moments must not carry over
    let new_head = b.from_data(&rnd(&[2, 4], 77, -0.1, 0.1)).expect("head");
    b.set_requires_grad(&new_head, true).expect("grad");
    p.replace("w2", new_head).expect("replace");
    train_steps(&b, &p, &mut opt, &data, 1);
    assert_eq!(opt.param_step("w2"), 1, "replaced head restarted its state");
    assert_eq!(opt.param_step("w1"), 3);
    // membership changes
    assert!(
        opt.add_group("dup", vec!["w1".into()], Hyper::adamw(0.1))
            .is_err(),
        "a param in two groups"
    );
    assert_eq!(opt.remove_params(&["b1".into()]), 1);
    assert_eq!(opt.group_of("b1"), None);
    opt.add_params("b", &["b1".into()]).expect("add");
    assert_eq!(opt.group_of("b1"), Some("b"));
    assert_eq!(opt.param_step("b1"), 0, "moved param starts fresh");
    assert!(opt.set_lr("nope", 0.1).is_err());
    assert!(opt.set_hyper("a", Hyper::adamw(-1.0)).is_err());
    p.remove_prefix("w2");
    let err = opt
        .step(&p, &Default::default())
        .expect_err("missing member");
    assert!(err.to_string().contains("w2"), "{err}");
}

/// Regression (issue 8): the in-place AdamW writes into the moment tensors, so a copy that shared
/// them would corrupt the original — `fresh_copy` (what `lr_find` sweeps with) must not.
#[test]
fn a_fresh_copy_leaves_the_original_moments_alone() {
    let b = Tch::cpu();
    let data = problem();
    let p = model(&b, &data);
    let mut opt = optimizer(OptimizerKind::AdamW);
    train_steps(&b, &p, &mut opt, &data, 2);
    let before = opt.export_state(&p).expect("state");
    let mut copy = opt.fresh_copy();
    assert_eq!(copy.param_step("w1"), 0, "the copy starts without state");
    train_steps(&b, &p, &mut copy, &data, 3);
    assert_eq!(copy.param_step("w1"), 3);
    let after = opt.export_state(&p).expect("state");
    assert_eq!(
        after, before,
        "the original's moments and steps are untouched"
    );
}
