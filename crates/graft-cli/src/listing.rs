//! `graft models` and `graft inspect`: the registry's models as a table, a weights file's
//! tensors and the registered models it fits.

use std::path::Path;

use anyhow::{Result, bail};
use graft_ndarray::NdArray;
use graft_zoo::{Registry, WeightsFile};

/// Left-aligned text table.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    out.push_str(&line(w.iter().map(|n| "-".repeat(*n)).collect()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

pub(crate) fn millions(n: usize) -> String {
    format!("{:.2}M", n as f64 / 1e6)
}

pub(crate) fn models(reg: &Registry, pattern: Option<&str>) -> Result<()> {
    let entries = reg.list(pattern);
    if entries.is_empty() {
        bail!("no model matches {:?}", pattern.unwrap_or("*"));
    }
    let mut rows = Vec::new();
    for e in entries {
        let params = reg.param_count(&NdArray, &e.name)?;
        let s = e.cfg.input_size;
        rows.push(vec![
            e.name.clone(),
            e.arch.family().to_string(),
            millions(params),
            match &e.cfg.text {
                Some(t) => format!("<={} tokens", t.max_length),
                None => format!("{}x{}x{}", s[0], s[1], s[2]),
            },
            e.cfg.num_classes.to_string(),
            e.reference.clone(),
        ]);
    }
    out!(
        "{}",
        table(
            &["model", "family", "params", "input", "classes", "reference"],
            &rows
        )
    );
    Ok(())
}

pub(crate) fn inspect(reg: &Registry, path: &Path, all: bool) -> Result<()> {
    let file = WeightsFile::open(path)?;
    let idx = file.index();
    let mut dtypes: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in idx.values() {
        *dtypes.entry(t.dtype.as_str()).or_default() += 1;
    }
    let dt: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    outln!(
        "{}: {} tensors, {} parameters ({})",
        path.display(),
        idx.len(),
        millions(file.num_float_elements()),
        dt.join(", ")
    );
    let limit = if all { usize::MAX } else { 40 };
    let rows: Vec<Vec<String>> = idx
        .iter()
        .take(limit)
        .map(|(n, t)| vec![n.clone(), t.dtype.clone(), format!("{:?}", t.shape)])
        .collect();
    out!("{}", table(&["tensor", "dtype", "shape"], &rows));
    if idx.len() > limit {
        outln!("... {} more (--all shows every tensor)", idx.len() - limit);
    }
    let mut fits = Vec::new();
    for e in reg.list(None) {
        let r = reg.fit(&NdArray, &e.name, &file)?;
        let matched = r.applied.len();
        let total = matched
            + r.missing.len()
            + r.mismatched.len()
            + r.head_dropped.len()
            + r.defaulted.len();
        if total == 0 || matched * 2 < total {
            continue;
        }
        let note = if r.is_clean() && r.head_dropped.is_empty() {
            "loads as is".to_string()
        } else if r.is_clean() {
            let head = idx
                .iter()
                .find(|(k, _)| k.ends_with(&format!("{}.weight", e.cfg.classifier)))
                .map(|(_, t)| format!("with --num-classes {}", t.shape[0]))
                .unwrap_or_else(|| "with another head".into());
            format!("fits {head}")
        } else {
            format!(
                "{} missing, {} unexpected, {} wrong shape",
                r.missing.len(),
                r.unexpected.len(),
                r.mismatched.len()
            )
        };
        fits.push((
            r.is_clean(),
            matched as f64 / total as f64,
            vec![
                e.name.clone(),
                format!("{:.1} %", 100.0 * matched as f64 / total as f64),
                note,
            ],
        ));
    }
    fits.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    if fits.is_empty() {
        outln!(
            "fits no registered model (under half of any model's tensors match by name and shape)"
        );
    } else {
        let rows: Vec<Vec<String>> = fits.into_iter().take(8).map(|f| f.2).collect();
        out!(
            "{}",
            table(&["fits model", "tensors matched", "how"], &rows)
        );
    }
    Ok(())
}
