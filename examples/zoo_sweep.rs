//! The zoo sweep: every built-in architecture timm also builds, with random weights, in timm and
//! in graft (graft-tch and graft-ndarray) at a small input size; logits and pooled features
//! compared. Writes the table into docs/zoo.md between its sweep markers.
//!
//!     cargo run --release --example zoo_sweep -- [--filter PATTERN] [--max-params N] [--no-write]
//!
//! Each architecture's reference comes from `tests/python/zoo_sweep_fixture.py` in the venv
//! (parameters and buffers re-randomised as the parity fixtures are). Architectures over
//! `--max-params` (default 400M) are listed as not run. Not part of `make test`: it builds every
//! architecture (minutes to an hour).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use graft::backend::safetensors_io;
use graft::zoo::{ModelOptions, Registry, create_model, pretrained, wildcard_match};
use graft::{Backend, Ctx, NdArray, Tch, TensorData};

const TOL_TCH: f64 = 1e-4;
const TOL_NDARRAY: f64 = 1e-3;
const BEGIN: &str = "<!-- sweep:begin -->";
const END: &str = "<!-- sweep:end -->";

struct Row {
    arch: String,
    tags: usize,
    params: usize,
    size: usize,
    tch: Option<f64>,
    ndarray: Option<f64>,
    note: String,
}

fn rel_diff(got: &TensorData, want: &TensorData) -> Result<f64> {
    if got.shape() != want.shape() {
        bail!("shape {:?}, reference {:?}", got.shape(), want.shape());
    }
    let max_ref = want.to_f64().iter().fold(0f64, |m, v| m.max(v.abs()));
    Ok(got.max_abs_diff(want)? / max_ref.max(1e-12))
}

fn worst<B: Backend>(b: &B, dir: &Path, arch: &str, img: Option<[usize; 2]>) -> Result<f64> {
    let mut opts = ModelOptions::default().weights(dir.join("weights.safetensors"));
    opts.img_size = img;
    let (model, report) = create_model(b, arch, &opts)?;
    let report = report.context("no load report")?;
    if !report.is_clean() || report.applied.len() != model.params().len() {
        bail!("load not clean: {report}");
    }
    let (io, _) = safetensors_io::load(&dir.join("io.safetensors"))?;
    let x = b.from_data(&io["input"])?;
    let ctx = Ctx::eval();
    let logits = b.to_data(&model.forward(&x, &ctx)?)?;
    let pooled = b.to_data(&model.forward_pooled(&x, &ctx)?)?;
    Ok(rel_diff(&logits, &io["logits"])?.max(rel_diff(&pooled, &io["features"])?))
}

fn python() -> PathBuf {
    std::env::var_os("GRAFT_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

fn fixture(arch: &str, size: usize, dir: &Path) -> Result<()> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/zoo_sweep_fixture.py");
    let out = Command::new(python())
        .arg(&script)
        .args([arch, &size.to_string()])
        .arg(dir)
        .output()
        .context("spawn python")?;
    if !out.status.success() {
        bail!(
            "{}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("failed")
        );
    }
    Ok(())
}

fn sweep_one(reg: &Registry, arch: &str, tmp: &Path, tags: usize, max_params: usize) -> Row {
    let entry = reg.get(arch).expect("registered");
    let params = reg.param_count(&NdArray, arch).unwrap_or(0);
    let (size, img) = match entry.arch.img_size() {
        // a ViT is built for a few patches: the smallest multiple of its patch of at least 32
        Some(_) => {
            let patch = match &entry.arch {
                graft::zoo::Arch::Vit(v) => v.patch,
                _ => 16,
            };
            let s = patch * 32_usize.div_ceil(patch).max(2);
            (s, Some([s, s]))
        }
        None => (64, None),
    };
    let mut row = Row {
        arch: arch.to_string(),
        tags,
        params,
        size,
        tch: None,
        ndarray: None,
        note: String::new(),
    };
    if params > max_params {
        row.note = format!("not run (over --max-params {})", max_params);
        return row;
    }
    let dir = tmp.join(arch);
    let _ = std::fs::remove_dir_all(&dir);
    let result = fixture(arch, size, &dir).and_then(|()| {
        let t = worst(&Tch::cpu(), &dir, arch, img)?;
        let n = worst(&NdArray, &dir, arch, img)?;
        Ok((t, n))
    });
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok((t, n)) => {
            row.tch = Some(t);
            row.ndarray = Some(n);
            row.note = if t <= TOL_TCH && n <= TOL_NDARRAY {
                "pass"
            } else {
                "FAIL"
            }
            .into();
        }
        Err(e) => row.note = format!("FAIL: {e}"),
    }
    row
}

fn table(rows: &[Row], command: &str) -> String {
    let passed = rows.iter().filter(|r| r.note == "pass").count();
    let tags: usize = rows
        .iter()
        .filter(|r| r.note == "pass")
        .map(|r| r.tags)
        .sum();
    let mut s = format!(
        "{BEGIN}\n{passed} of {} architectures pass, carrying {tags} pretrained tags (limits: graft-tch {TOL_TCH:e}, graft-ndarray {TOL_NDARRAY:e} of max |reference|; logits and pooled features). Command: `{command}`.\n\n| architecture | tags | params | input | graft-tch | graft-ndarray | verdict |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        rows.len()
    );
    let f = |v: Option<f64>| v.map_or("-".into(), |d| format!("{d:.1e}"));
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.2}M | {}² | {} | {} | {} |\n",
            r.arch,
            r.tags,
            r.params as f64 / 1e6,
            r.size,
            f(r.tch),
            f(r.ndarray),
            r.note
        ));
    }
    s.push_str(END);
    s
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filter = "*".to_string();
    let mut max_params = 400_000_000usize;
    let mut write = true;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--filter" => {
                filter = args.get(i + 1).context("--filter PATTERN")?.clone();
                i += 1;
            }
            "--max-params" => {
                max_params = args.get(i + 1).context("--max-params N")?.parse()?;
                i += 1;
            }
            "--no-write" => write = false,
            other => bail!("unknown argument {other}"),
        }
        i += 1;
    }
    let reg = Registry::builtin();
    let mut tags: BTreeMap<String, usize> = BTreeMap::new();
    for t in &pretrained::table()?.timm {
        *tags.entry(t.architecture.clone()).or_default() += 1;
    }
    // the architectures with timm tags (the torchvision-only ones are in tests/zoo_parity.rs)
    let names: Vec<String> = reg
        .list(None)
        .into_iter()
        .map(|e| e.name.clone())
        .filter(|n| wildcard_match(&filter, n) && tags.contains_key(n))
        .collect();
    let tmp = std::env::temp_dir().join(format!("graft-zoo-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut rows = Vec::new();
    for (k, arch) in names.iter().enumerate() {
        let row = sweep_one(&reg, arch, &tmp, tags[arch], max_params);
        eprintln!(
            "[{}/{}] {arch}: {} (tch {:?}, ndarray {:?})",
            k + 1,
            names.len(),
            row.note,
            row.tch,
            row.ndarray
        );
        rows.push(row);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let command = format!(
        "cargo run --release --example zoo_sweep -- {}",
        args.join(" ")
    );
    let t = table(&rows, command.trim_end());
    if write {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/zoo.md");
        let doc = std::fs::read_to_string(&path)?;
        let (a, b) = (doc.find(BEGIN), doc.find(END));
        let new = match (a, b) {
            (Some(a), Some(b)) if a < b => format!("{}{t}{}", &doc[..a], &doc[b + END.len()..]),
            _ => bail!("docs/zoo.md has no {BEGIN} … {END} markers"),
        };
        std::fs::write(&path, new)?;
        eprintln!("wrote the table into {}", path.display());
    } else {
        println!("{t}");
    }
    if rows.iter().any(|r| r.note.starts_with("FAIL")) {
        bail!("some architectures failed");
    }
    Ok(())
}
