//! The run directory and what a route writes into it: `report.md` / `report.json`, metric
//! tables, `metrics.jsonl`.

use super::*;

/// A run directory that never overwrites an earlier run.
pub(super) struct RunDir {
    pub(super) path: PathBuf,
    pub(super) cache: PathBuf,
}

impl RunDir {
    pub(super) fn create(parent: &Path, name: &str, cache: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        let mut i = 1;
        loop {
            let n = if i == 1 {
                name.to_string()
            } else {
                format!("{name}-{i}")
            };
            let p = parent.join(n);
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(Self { path: p, cache }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => i += 1,
                Err(e) => return Err(e).with_context(|| format!("create {}", p.display())),
            }
        }
    }
    pub(super) fn write(&self, name: &str, text: &str) -> Result<()> {
        graft_backend::safetensors_io::write_atomic(&self.path.join(name), text.as_bytes())?;
        Ok(())
    }
}

/// Markdown + JSON report.
pub(super) struct Report {
    pub(super) md: String,
    pub(super) json: serde_json::Map<String, serde_json::Value>,
}

impl Report {
    pub(super) fn new(title: &str) -> Self {
        Self {
            md: format!("# {title}\n\n"),
            json: serde_json::Map::new(),
        }
    }
    pub(super) fn para(&mut self, s: &str) {
        self.md.push_str(s);
        self.md.push_str("\n\n");
    }
    pub(super) fn set(&mut self, k: &str, v: serde_json::Value) {
        self.json.insert(k.into(), v);
    }
    pub(super) fn finish(self, run: &RunDir) -> Result<()> {
        run.write("report.md", &self.md)?;
        run.write(
            "report.json",
            &serde_json::to_string_pretty(&serde_json::Value::Object(self.json))?,
        )?;
        out!("{}", self.md);
        outln!("run directory: {}", run.path.display());
        Ok(())
    }
}

/// Accuracy, per-class accuracy and the confusion matrix as markdown.
pub(super) fn metrics_md(
    title: &str,
    classes: &[String],
    acc: f64,
    per_class: &[f64],
    conf: &[Vec<usize>],
) -> String {
    let mut s = format!(
        "## {title}\n\naccuracy **{:.2} %** on {} samples\n\n",
        100.0 * acc,
        conf.iter().flatten().sum::<usize>()
    );
    s.push_str("| true \\ predicted | ");
    s.push_str(&classes.join(" | "));
    s.push_str(" | accuracy |\n|---|");
    s.push_str(&"---|".repeat(classes.len() + 1));
    s.push('\n');
    for (i, row) in conf.iter().enumerate() {
        let name = classes.get(i).cloned().unwrap_or_else(|| i.to_string());
        let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        let a = per_class.get(i).copied().unwrap_or(f64::NAN);
        s.push_str(&format!(
            "| {name} | {} | {:.1} % |\n",
            cells.join(" | "),
            100.0 * a
        ));
    }
    s
}

pub(super) fn host_metrics(
    pred: &[usize],
    labels: &[usize],
    n: usize,
) -> (f64, Vec<f64>, Vec<Vec<usize>>) {
    let c = graft_core::confusion::Confusion::from_pairs(n, labels, pred);
    (c.accuracy(), c.per_class(), c.into_matrix())
}

pub(super) fn class_metrics_json(m: &ClassMetrics) -> serde_json::Value {
    json!({"samples": m.samples, "loss": m.loss, "top1": m.top1, "top5": m.top5,
           "per_class": m.per_class, "confusion": m.confusion})
}

pub(super) fn write_history(run: &RunDir, h: &History) -> Result<()> {
    h.write_metrics(&run.path.join("metrics.jsonl"))?;
    if !h.epochs.is_empty() {
        graft_train::plot_history(h, &run.path.join("curves.png"))?;
    }
    Ok(())
}
