//! graft-tch (libtorch) vs graft-ndarray on every conformance case: ≤ 1e-5 abs elementwise,
//! ≤ 1e-4 relative for conv / matmul / reductions, bit-exact for integer and data-movement ops,
//! two bf16 roundings for bf16 cases. Training-only cases must be refused by ndarray.

use graft::backend::conformance::{TRAIN_ONLY, case_names, run_case, tolerance};
use graft::{Error, NdArray, Tch};

#[test]
fn every_op_agrees_between_tch_and_ndarray() {
    let (t, n) = (Tch::cpu(), NdArray);
    let mut failures = Vec::new();
    let mut compared = 0;
    for &case in case_names() {
        let want = match run_case(&t, case) {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!("{case}: tch failed: {e}"));
                continue;
            }
        };
        let got = run_case(&n, case);
        if TRAIN_ONLY.contains(&case) {
            if !matches!(got, Err(Error::Unsupported { .. })) {
                failures.push(format!(
                    "{case}: ndarray should refuse a training op, got {got:?}"
                ));
            }
            continue;
        }
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                failures.push(format!("{case}: ndarray failed: {e}"));
                continue;
            }
        };
        if got.len() != want.len() {
            failures.push(format!("{case}: {} outputs vs {}", got.len(), want.len()));
            continue;
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            compared += 1;
            if let Err(msg) = tolerance(case).check(g, w) {
                failures.push(format!("{case} output {i}: {msg}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared >= 100, "only {compared} outputs compared");
}
