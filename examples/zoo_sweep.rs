//! The zoo sweep: every built-in architecture timm also builds, with random weights, in timm and
//! in graft (graft-tch and graft-ndarray) at a small input size; logits and pooled features
//! compared. Writes the table into docs/zoo.md between its sweep markers.
//!
//!     cargo run --release --example zoo_sweep -- [--filter PATTERN] [--max-params N] [--no-write]
//!
//! Each architecture's reference comes from `tests/python/zoo_sweep_fixture.py` in the venv
//! (parameters and buffers re-randomised as the parity fixtures are). Architectures over
//! `--max-params` (default 400M) are listed as not run. Not part of `make test`: it builds every
//! architecture (minutes to an hour). A run narrowed by `--filter` or `--max-params` updates its
//! own rows and keeps the table's other rows (with the commands that produced them), so the table
//! can be built up in parts.

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
        Some(_) => {
            let s = match &entry.arch {
                // a ViT is built for a few patches: the smallest multiple of its patch of at
                // least 32
                graft::zoo::Arch::Vit(v) => v.patch * 32_usize.div_ceil(v.patch).max(2),
                // a Swin at 64² shifts and pads its windows in the first two stages
                _ => 64,
            };
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

/// The rows and commands of the table already in docs/zoo.md (between the markers).
fn parse_table(section: &str) -> (Vec<Row>, Vec<String>) {
    let mut commands = Vec::new();
    let mut rows = Vec::new();
    for line in section.lines() {
        if let Some(rest) = line.split_once("Command").map(|(_, r)| r) {
            commands.extend(rest.split('`').skip(1).step_by(2).map(str::to_string));
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 7 || cells[0] == "architecture" || cells[0].starts_with("---") {
            continue;
        }
        let num = |c: &str| c.parse::<f64>().ok();
        rows.push(Row {
            arch: cells[0].to_string(),
            tags: cells[1].parse().unwrap_or(0),
            params: num(cells[2].trim_end_matches('M')).map_or(0, |m| (m * 1e6).round() as usize),
            size: cells[3].trim_end_matches('²').parse().unwrap_or(0),
            tch: num(cells[4]),
            ndarray: num(cells[5]),
            note: cells[6].to_string(),
        });
    }
    (rows, commands)
}

fn table(rows: &[Row], commands: &[String]) -> String {
    let passed = rows.iter().filter(|r| r.note == "pass").count();
    let tags: usize = rows
        .iter()
        .filter(|r| r.note == "pass")
        .map(|r| r.tags)
        .sum();
    let mut s = format!(
        "{BEGIN}\n{passed} of {} architectures pass, carrying {tags} pretrained tags (limits: graft-tch {TOL_TCH:e}, graft-ndarray {TOL_NDARRAY:e} of max |reference|; logits and pooled features). Commands (each row from the last that covered it): {}.\n\n| architecture | tags | params | input | graft-tch | graft-ndarray | verdict |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        rows.len(),
        commands
            .iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
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
    let command = command.trim_end().to_string();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/zoo.md");
    let doc = std::fs::read_to_string(&path)?;
    let (a, b) = match (doc.find(BEGIN), doc.find(END)) {
        (Some(a), Some(b)) if a < b => (a, b),
        _ => bail!("docs/zoo.md has no {BEGIN} … {END} markers"),
    };
    // the rows this run did not cover stay, for architectures still built in with timm tags
    let (old, mut commands) = parse_table(&doc[a..b]);
    let covered: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.arch.as_str()).collect();
    let kept: Vec<Row> = old
        .into_iter()
        .filter(|r| !covered.contains(r.arch.as_str()) && tags.contains_key(&r.arch))
        .filter(|r| reg.get(&r.arch).is_ok())
        .map(|r| Row {
            tags: tags[&r.arch],
            ..r
        })
        .collect();
    let ran = rows.iter().map(|r| r.arch.clone()).collect::<Vec<_>>();
    let failed = rows.iter().any(|r| r.note.starts_with("FAIL"));
    let no_old_rows = kept.is_empty();
    let mut all: Vec<Row> = rows.into_iter().chain(kept).collect();
    all.sort_by(|x, y| x.arch.cmp(&y.arch));
    // a run that left no old row standing replaces the table, and with it the old commands
    if no_old_rows {
        commands.clear();
    }
    commands.retain(|c| *c != command);
    commands.push(command);
    let t = table(&all, &commands);
    if write {
        std::fs::write(&path, format!("{}{t}{}", &doc[..a], &doc[b + END.len()..]))?;
        eprintln!(
            "wrote {} rows ({} from this run) into {}",
            all.len(),
            ran.len(),
            path.display()
        );
    } else {
        println!("{t}");
    }
    if failed {
        bail!("some architectures failed");
    }
    Ok(())
}
