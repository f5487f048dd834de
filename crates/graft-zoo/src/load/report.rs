//! What a load did ([`LoadReport`]) and its table (`Display`).

use std::fmt;
use std::path::PathBuf;

/// A tensor whose shape in the file differs from the model's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub file: Vec<usize>,
    pub model: Vec<usize>,
}

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub file: PathBuf,
    /// Model names that got the file's values.
    pub applied: Vec<String>,
    /// Model names the file does not have (the model keeps its values).
    pub missing: Vec<String>,
    /// File keys (as written in the file) that fit no model name.
    pub unexpected: Vec<String>,
    /// File keys the reference itself skips on load (BERT's non-persistent `position_ids`).
    pub ignored: Vec<String>,
    pub mismatched: Vec<ShapeMismatch>,
    /// Classifier tensors not taken from the file (different `num_classes`, or no head there).
    pub head_dropped: Vec<String>,
    /// Model names whose value was transformed to fit, with how.
    pub adapted: Vec<(String, String)>,
    /// `num_batches_tracked` counters the file lacks (kept at the model's value).
    pub defaulted: Vec<String>,
    /// How many file keys were renamed by a remap table.
    pub renamed: usize,
    /// The prefix stripped from every key, if any.
    pub stripped_prefix: Option<String>,
    /// Dtype conversions: (file dtype, model dtype, count).
    pub converted: Vec<(String, String, usize)>,
    /// Tensors whose values cannot be right, with what is wrong: NaN or infinite values (an
    /// f64 past f32's range becomes infinite), a negative BatchNorm running variance. A strict
    /// load refuses them; a lenient one applies them and lists them here.
    pub bad_values: Vec<(String, String)>,
}

impl LoadReport {
    /// No missing, unexpected or mis-shaped tensors.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }
    /// Fraction of the model's tensors that came from the file.
    pub fn coverage(&self) -> f64 {
        let total = self.applied.len()
            + self.missing.len()
            + self.mismatched.len()
            + self.head_dropped.len()
            + self.defaulted.len();
        if total == 0 {
            1.0
        } else {
            self.applied.len() as f64 / total as f64
        }
    }
    pub(super) fn problems(&self) -> String {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "missing {}: {}",
                self.missing.len(),
                list(&self.missing)
            ));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!(
                "unexpected {}: {}",
                self.unexpected.len(),
                list(&self.unexpected)
            ));
        }
        if !self.mismatched.is_empty() {
            let m: Vec<String> = self
                .mismatched
                .iter()
                .map(|m| format!("{} (file {:?}, model {:?})", m.name, m.file, m.model))
                .collect();
            parts.push(format!("wrong shape {}: {}", m.len(), list(&m)));
        }
        if !self.bad_values.is_empty() {
            let m: Vec<String> = self
                .bad_values
                .iter()
                .map(|(n, what)| format!("{n} ({what})"))
                .collect();
            parts.push(format!("bad values in {}: {}", m.len(), list(&m)));
        }
        parts.join("; ")
    }
}

fn list(v: &[String]) -> String {
    const SHOW: usize = 8;
    if v.len() <= SHOW {
        v.join(", ")
    } else {
        format!("{}, … and {} more", v[..SHOW].join(", "), v.len() - SHOW)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "loaded {}", self.file.display())?;
        writeln!(
            f,
            "  applied     {:>5}  ({:.1} % of the model)",
            self.applied.len(),
            100.0 * self.coverage()
        )?;
        let rows: [(&str, Vec<String>); 6] = [
            ("missing", self.missing.clone()),
            ("unexpected", self.unexpected.clone()),
            (
                "wrong shape",
                self.mismatched
                    .iter()
                    .map(|m| format!("{} file {:?} model {:?}", m.name, m.file, m.model))
                    .collect(),
            ),
            ("head dropped", self.head_dropped.clone()),
            (
                "bad values",
                self.bad_values
                    .iter()
                    .map(|(n, what)| format!("{n} ({what})"))
                    .collect(),
            ),
            (
                "adapted",
                self.adapted
                    .iter()
                    .map(|(n, how)| format!("{n} ({how})"))
                    .collect(),
            ),
        ];
        for (label, items) in rows {
            if !items.is_empty() {
                writeln!(f, "  {label:<11} {:>5}  {}", items.len(), list(&items))?;
            }
        }
        if !self.ignored.is_empty() {
            writeln!(
                f,
                "  ignored     {:>5}  {} (the reference does not load these either)",
                self.ignored.len(),
                list(&self.ignored)
            )?;
        }
        if !self.defaulted.is_empty() {
            writeln!(
                f,
                "  not in file {:>5}  num_batches_tracked counters (kept)",
                self.defaulted.len()
            )?;
        }
        if let Some(p) = &self.stripped_prefix {
            writeln!(f, "  stripped prefix {p:?} from every key")?;
        }
        if self.renamed > 0 {
            writeln!(f, "  renamed {} keys through the remap table", self.renamed)?;
        }
        for (from, to, n) in &self.converted {
            writeln!(f, "  converted {n} tensors {from} → {to}")?;
        }
        Ok(())
    }
}
