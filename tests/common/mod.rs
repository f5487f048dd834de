//! Helpers shared by the facade's integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// The venv's Python (GRAFT_PYTHON overrides). Missing is a test failure that says what to run:
/// parity tests never pass silently.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("GRAFT_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} not found: run `make setup` (scripts/setup.sh) first",
        p.display()
    );
    p
}

/// Runs a script from tests/python with the venv's Python; panics with its stderr on failure.
pub fn run_python(script: &str, args: &[&str]) {
    run_python_script(&format!("tests/python/{script}"), args);
}

/// Runs a Python script of the repository (path relative to its root) in the venv.
pub fn run_python_script(script: &str, args: &[&str]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "graft-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The zoo parity fixture `id` (tests/python/zoo_fixtures.py), generated on first use and cached
/// under the target dir keyed by the script's content; fixtures of older script versions are
/// removed.
pub fn zoo_fixture(id: &str) -> PathBuf {
    python_fixture("zoo_fixtures.py", id)
}

/// The fixture `id` that `tests/python/SCRIPT ID DIR` writes (its last file: `meta.json`),
/// generated on first use and cached under the target dir keyed by the script's content;
/// fixtures of older script versions are removed.
pub fn python_fixture(script: &str, id: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/python/{script}"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("read {script}: {e}"));
    let key = format!("{:016x}", graft::backend::init::stable_hash(&text));
    let stem = script.trim_end_matches(".py").replace('_', "-");
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(stem);
    std::fs::create_dir_all(&root).expect("fixture root");
    let dir = root.join(format!("{id}-{key}"));
    if !dir.join("meta.json").exists()
        && let Ok(entries) = std::fs::read_dir(&root)
    {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name
                .strip_prefix(&format!("{id}-"))
                .is_some_and(|h| h.len() == 16 && h != key);
            if stale {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    build_once(&dir, "meta.json", |tmp| {
        run_python(script, &[id, tmp.to_str().expect("utf-8 path")]);
    });
    dir
}

/// Makes the directory `dir` once, for every test process at once: unless `dir` is there whole
/// (holding `marker`), `make` fills a directory of this process's own, which then becomes `dir`
/// in one rename. Two processes racing both make one; the first rename wins and the other copy is
/// dropped, so no test ever reads a fixture another is still writing (or one it removed).
pub fn build_once(dir: &std::path::Path, marker: &str, make: impl FnOnce(&std::path::Path)) {
    if dir.join(marker).exists() {
        return;
    }
    let parent = dir.parent().expect("a fixture directory has a parent");
    std::fs::create_dir_all(parent).expect("fixture parent");
    let name = dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let unique = format!("{}-{:?}", std::process::id(), std::thread::current().id())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    if dir.exists() && !dir.join(marker).exists() {
        // left half-written by an older run (a whole one always has its marker): set aside
        let aside = parent.join(format!(".{name}.stale-{unique}"));
        if std::fs::rename(dir, &aside).is_ok() {
            let _ = std::fs::remove_dir_all(&aside);
        }
    }
    let tmp = parent.join(format!(".{name}.tmp-{unique}"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("fixture temp dir");
    make(&tmp);
    assert!(
        tmp.join(marker).exists(),
        "{}: no {marker} written",
        tmp.display()
    );
    if std::fs::rename(&tmp, dir).is_err() {
        // another process got there first: keep its copy
        assert!(
            dir.join(marker).exists(),
            "{}: could not place the fixture",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// graft's eval transform (without normalisation) of `photo` against a reference's pixels in
/// `npy` (`[3, H, W]` float32, 0-255 units): (mean, max) absolute difference in 0-255 units.
pub fn eval_transform_diff(
    photo: &std::path::Path,
    cfg: &graft::data::transform::TransformCfg,
    npy: &std::path::Path,
) -> (f64, f64) {
    use rand::SeedableRng;
    // the loader's path: the transform reads the decoded 8-bit pixels
    let raw = graft::data::decode_raw(photo, None).expect("decode");
    let t = graft::data::transform::eval_transform(cfg, false);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let got = graft::data::Transform::apply_raw(&t, raw.clone(), &mut rng).expect("transform");
    // the same values as the float path, bit for bit
    let float = graft::data::Transform::apply(&t, raw.to_image(), &mut rng).expect("transform");
    assert!(
        got == float,
        "{}: 8-bit and float paths differ",
        photo.display()
    );
    let want: ndarray::ArrayD<f32> = ndarray_npy::read_npy(npy).expect("npy");
    assert_eq!(
        got.shape.to_vec(),
        want.shape().to_vec(),
        "{}",
        npy.display()
    );
    let (mut sum, mut max) = (0f64, 0f64);
    for (g, w) in got.data.iter().zip(want.iter()) {
        let d = (f64::from(*g) * 255.0 - f64::from(*w)).abs();
        sum += d;
        max = max.max(d);
    }
    (sum / want.len() as f64, max)
}

/// The cosine of each row of `got` (row-major, `want`'s row width) with the same row of `want`
/// (`[rows, width]`, any ndarray dimension type).
pub fn cosines<D: ndarray::Dimension>(got: &[f32], want: &ndarray::Array<f32, D>) -> Vec<f64> {
    let dim = *want.shape().last().expect("rows of a width");
    assert_eq!(
        got.len(),
        want.len(),
        "{} values against {:?}",
        got.len(),
        want.shape()
    );
    let w: Vec<f32> = want.iter().copied().collect();
    w.chunks(dim)
        .zip(got.chunks(dim))
        .map(|(w, g)| {
            let dot: f64 = g
                .iter()
                .zip(w)
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            let n = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
            dot / (n(g) * n(w))
        })
        .collect()
}

/// A training callback that stops the run after epoch `n` (1-based): the run's checkpoint is
/// then where a resumed run continues.
pub struct StopAfter(pub usize);

impl graft::train::Callback for StopAfter {
    fn on_epoch(&mut self, r: &graft::train::EpochRecord) -> graft::train::Control {
        if r.epoch + 1 == self.0 {
            graft::train::Control::Stop
        } else {
            graft::train::Control::Continue
        }
    }
}

/// Replaces every BatchNorm's running statistics with varied values (fresh models have mean 0,
/// variance 1, which would hide a mis-wired normalisation).
pub fn vary_batch_norms(m: &mut graft::zoo::Model<graft::Tch>) {
    use graft::Backend;
    let b = *m.backend();
    let names: Vec<String> = m
        .params()
        .names()
        .filter(|n| n.ends_with("running_mean") || n.ends_with("running_var"))
        .map(str::to_string)
        .collect();
    for (k, name) in names.iter().enumerate() {
        let t = m.params().get(name).expect("param");
        let shape = b.shape(t);
        let n: usize = shape.iter().product();
        let var = name.ends_with("running_var");
        let v: Vec<f32> = (0..n)
            .map(|i| {
                let s = ((i * 7 + k * 13) % 17) as f32 / 17.0;
                if var { 0.5 + s } else { s - 0.5 }
            })
            .collect();
        let t = b
            .from_data(&graft::TensorData::f32(&shape, v).expect("data"))
            .expect("upload");
        m.params_mut().replace(name, t).expect("replace");
    }
}
