//! Labelled texts: read from CSV / TSV / JSON Lines (a text column and a label column), built
//! from the VADER lexicon, split with stratification and cut to k examples a class with
//! graft-data's splitters (the image datasets' rules).

use std::collections::BTreeSet;
use std::path::Path;

use graft_core::{Error, Result};
use graft_data::{k_shot, stratified_split};

/// Texts with class labels (and, when the source has one, the continuous target the labels
/// came from: VADER's mean valence).
#[derive(Debug, Clone, PartialEq)]
pub struct TextDataset {
    pub texts: Vec<String>,
    /// Index into `classes`.
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
    /// A regression target per text, when known.
    pub targets: Option<Vec<f64>>,
}

/// The layout of a text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// Comma-separated with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// One text per line, no labels (`.txt`).
    Lines,
}

impl TextFormat {
    /// From the file's extension (`.csv`, `.tsv` / `.tab`, `.jsonl` / `.ndjson`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(Self::Csv),
            "tsv" | "tab" => Ok(Self::Tsv),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            "txt" => Ok(Self::Lines),
            _ => Err(Error::format(
                path,
                "unknown text file kind: name it .csv, .tsv, .jsonl or .txt, or give its format (csv, tsv, jsonl, txt)",
            )),
        }
    }
}

impl std::str::FromStr for TextFormat {
    type Err = Error;
    /// `csv`, `tsv`, `jsonl` or `txt` (the extensions [`TextFormat::from_path`] knows).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "tsv" | "tab" => Ok(Self::Tsv),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            "txt" => Ok(Self::Lines),
            _ => Err(Error::invalid(
                "TextFormat",
                format!("unknown text format {s:?}: csv, tsv, jsonl or txt"),
            )),
        }
    }
}

/// Which columns (CSV / TSV header names, JSONL keys) hold the text and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextColumns {
    pub text: String,
    pub label: String,
}

impl Default for TextColumns {
    fn default() -> Self {
        Self {
            text: "text".into(),
            label: "label".into(),
        }
    }
}

fn at(path: &Path, line: u64) -> String {
    format!("{}:{line}", path.display())
}

impl TextDataset {
    /// From parts; every label must index `classes`, `targets` (if any) one per text.
    pub fn new(
        texts: Vec<String>,
        labels: Vec<usize>,
        classes: Vec<String>,
        targets: Option<Vec<f64>>,
    ) -> Result<Self> {
        if texts.len() != labels.len() {
            return Err(Error::invalid(
                "TextDataset",
                format!("{} texts but {} labels", texts.len(), labels.len()),
            ));
        }
        if let Some(t) = &targets
            && t.len() != texts.len()
        {
            return Err(Error::invalid(
                "TextDataset",
                format!("{} texts but {} targets", texts.len(), t.len()),
            ));
        }
        if let Some(&l) = labels.iter().find(|&&l| l >= classes.len()) {
            return Err(Error::invalid(
                "TextDataset",
                format!("label {l} but {} classes", classes.len()),
            ));
        }
        Ok(Self {
            texts,
            labels,
            classes,
            targets,
        })
    }
    /// Reads a labelled text file. Classes are the distinct labels sorted (numerically when every
    /// label is an integer, else as strings), unless `classes` fixes them (a test file read with
    /// its training file's classes; a label outside them is an error). Errors name `file:line`.
    pub fn read(
        path: &Path,
        format: Option<TextFormat>,
        cols: &TextColumns,
        classes: Option<&[String]>,
    ) -> Result<Self> {
        let format = match format {
            Some(f) => f,
            None => TextFormat::from_path(path)?,
        };
        let rows = match format {
            TextFormat::Csv => read_delimited(path, b',', cols)?,
            TextFormat::Tsv => read_delimited(path, b'\t', cols)?,
            TextFormat::Jsonl => read_jsonl(path, cols)?,
            TextFormat::Lines => {
                return Err(Error::format(
                    path,
                    "a text-per-line file has no labels: use .csv, .tsv or .jsonl with a label column",
                ));
            }
        };
        if rows.is_empty() {
            return Err(Error::format(path, "no rows"));
        }
        let classes: Vec<String> = match classes {
            Some(c) => c.to_vec(),
            None => {
                let set: BTreeSet<&str> = rows.iter().map(|r| r.2.as_str()).collect();
                let mut v: Vec<String> = set.into_iter().map(str::to_string).collect();
                if v.iter().all(|s| s.parse::<i64>().is_ok()) {
                    v.sort_by_key(|s| s.parse::<i64>().unwrap_or(0));
                }
                v
            }
        };
        let mut texts = Vec::with_capacity(rows.len());
        let mut labels = Vec::with_capacity(rows.len());
        for (line, text, label) in rows {
            let Some(l) = classes.iter().position(|c| *c == label) else {
                return Err(Error::format(
                    at(path, line),
                    format!("label {label:?} is not one of the classes {classes:?}"),
                ));
            };
            texts.push(text);
            labels.push(l);
        }
        Self::new(texts, labels, classes, None)
    }
    /// The VADER lexicon at `path` as a polarity task (repeats dropped; see
    /// [`crate::VaderLexicon::polarity`]).
    pub fn vader(path: &Path, threshold: f64) -> Result<Self> {
        let mut lex = crate::VaderLexicon::load(path)?;
        lex.dedup();
        Ok(lex.polarity(threshold))
    }
    pub fn len(&self) -> usize {
        self.texts.len()
    }
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
    /// Texts per class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }
    /// The texts at `indices`, in that order (same classes).
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(
                "TextDataset::subset",
                format!("index {i} of {} texts", self.len()),
            ));
        }
        Ok(Self {
            texts: indices.iter().map(|&i| self.texts[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
            targets: self
                .targets
                .as_ref()
                .map(|t| indices.iter().map(|&i| t[i]).collect()),
        })
    }
    /// Stratified split by `fractions` (each class split in these proportions; seeded).
    pub fn split(&self, fractions: &[f64], seed: u64) -> Result<Vec<Self>> {
        stratified_split(&self.labels, fractions, seed)?
            .iter()
            .map(|idx| self.subset(idx))
            .collect()
    }
    /// `k` texts of each class (seeded; a class with fewer than `k` is an error).
    pub fn k_shot(&self, k: usize, seed: u64) -> Result<Self> {
        let all: Vec<usize> = (0..self.len()).collect();
        self.subset(&k_shot(&self.labels, &all, k, seed)?)
    }
}

/// The texts of a file, in order: every line of a `.txt` (a final newline adds no text; an
/// empty line is an empty text, so row i of an output is line i + 1), or the `column` of a CSV /
/// TSV / JSONL file.
pub fn read_texts(path: &Path, format: Option<TextFormat>, column: &str) -> Result<Vec<String>> {
    let format = match format {
        Some(f) => f,
        None => TextFormat::from_path(path)?,
    };
    let mut texts = Vec::new();
    match format {
        TextFormat::Lines => {
            let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            texts.extend(s.lines().map(|l| l.trim_end_matches('\r').to_string()));
        }
        TextFormat::Csv | TextFormat::Tsv => {
            let delimiter = if format == TextFormat::Csv {
                b','
            } else {
                b'\t'
            };
            for_each_record(path, delimiter, &[column], |_, mut v| {
                texts.push(v.pop().unwrap_or_default());
                Ok(())
            })?;
        }
        TextFormat::Jsonl => for_each_json_line(path, |n, v| {
            texts.push(json_text(path, n, v, column)?);
            Ok(())
        })?,
    }
    if texts.is_empty() {
        return Err(Error::format(path, "no texts"));
    }
    Ok(texts)
}

/// Calls `f` with each record's line and its named columns, in file order, for a CSV / TSV file
/// with a header row (quoting for CSV only; a ragged record is an error at its line).
fn for_each_record(
    path: &Path,
    delimiter: u8,
    names: &[&str],
    mut f: impl FnMut(u64, Vec<String>) -> Result<()>,
) -> Result<()> {
    let mut r = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(false)
        .quoting(delimiter == b',')
        .from_path(path)
        .map_err(|e| Error::format(path, e.to_string()))?;
    let header = r
        .headers()
        .map_err(|e| Error::format(path, e.to_string()))?
        .clone();
    let idx = names
        .iter()
        .map(|n| column_index(path, &header, n))
        .collect::<Result<Vec<_>>>()?;
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            Error::format(at(path, line), e.to_string())
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        f(
            line,
            idx.iter()
                .map(|&i| rec.get(i).unwrap_or("").to_string())
                .collect(),
        )?;
    }
    Ok(())
}

/// Calls `f` with the line number and the parsed value of every non-blank line of a JSON Lines
/// file, in order.
fn for_each_json_line(
    path: &Path,
    mut f: impl FnMut(u64, &serde_json::Value) -> Result<()>,
) -> Result<()> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i as u64 + 1;
        let v = serde_json::from_str(line)
            .map_err(|e| Error::format(at(path, n), format!("column {}: {e}", e.column())))?;
        f(n, &v)?;
    }
    Ok(())
}

fn json_text(path: &Path, n: u64, v: &serde_json::Value, key: &str) -> Result<String> {
    match v.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::format(
            at(path, n),
            format!("{key:?} is {other}, not a string"),
        )),
        None => Err(Error::format(at(path, n), format!("no key {key:?}"))),
    }
}

type Row = (u64, String, String);

fn column_index(path: &Path, header: &csv::StringRecord, name: &str) -> Result<usize> {
    header.iter().position(|h| h == name).ok_or_else(|| {
        let have: Vec<&str> = header.iter().collect();
        Error::format(
            at(path, 1),
            format!("no column {name:?} in the header {have:?}"),
        )
    })
}

fn read_delimited(path: &Path, delimiter: u8, cols: &TextColumns) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for_each_record(
        path,
        delimiter,
        &[&cols.text, &cols.label],
        |line, mut v| {
            let label = v.pop().unwrap_or_default().trim().to_string();
            let text = v.pop().unwrap_or_default();
            if label.is_empty() {
                return Err(Error::format(
                    at(path, line),
                    format!("empty {:?}", cols.label),
                ));
            }
            rows.push((line, text, label));
            Ok(())
        },
    )?;
    Ok(rows)
}

fn read_jsonl(path: &Path, cols: &TextColumns) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for_each_json_line(path, |n, v| {
        let t = json_text(path, n, v, &cols.text)?;
        let label = v
            .get(&cols.label)
            .ok_or_else(|| Error::format(at(path, n), format!("no key {:?}", cols.label)))?;
        let l = match label {
            serde_json::Value::String(s) => s.trim().to_string(),
            serde_json::Value::Number(x) if x.is_i64() || x.is_u64() => x.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            other => {
                return Err(Error::format(
                    at(path, n),
                    format!(
                        "{:?} is {other}: a label is a string, an integer or a bool",
                        cols.label
                    ),
                ));
            }
        };
        if l.is_empty() {
            return Err(Error::format(
                at(path, n),
                format!("empty {:?}", cols.label),
            ));
        }
        rows.push((n, t, l));
        Ok(())
    })?;
    Ok(rows)
}

/// Labelled texts tokenised once, as a graft-data [`Dataset`](graft_data::Dataset) the loader and
/// the Trainer take: sample `i` is text `i`'s int64 ids ([`graft_data::Sample::TokenIds`], with
/// the tokenizer's pad id); the loader pads each batch to its own longest text.
#[derive(Debug, Clone)]
pub struct TokenDataset {
    ids: Vec<Vec<u32>>,
    labels: Vec<usize>,
    classes: Vec<String>,
    pad_id: i64,
    len: usize,
}

impl TokenDataset {
    /// Tokenises every text of `data` with `tokenizer` (truncation at its `max_len`).
    pub fn new(data: &TextDataset, tokenizer: &crate::Tokenizer) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::invalid("TokenDataset", "no texts"));
        }
        let texts: Vec<&str> = data.texts.iter().map(String::as_str).collect();
        let ids = tokenizer.ids_batch(&texts)?;
        let len = ids.iter().map(Vec::len).max().unwrap_or(1).max(1);
        Ok(Self {
            ids,
            labels: data.labels.clone(),
            classes: data.classes.clone(),
            pad_id: tokenizer.pad_id(),
            len,
        })
    }
    /// The id batches are padded with (the model's padding id must be the same).
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }
    /// Tokens per sample (the longest text's).
    pub fn seq_len(&self) -> usize {
        self.len
    }
}

impl graft_data::Dataset for TokenDataset {
    fn len(&self) -> usize {
        self.ids.len()
    }
    fn label(&self, i: usize) -> usize {
        self.labels[i]
    }
    fn get(&self, i: usize) -> Result<graft_data::Sample> {
        let ids = self.ids.get(i).ok_or_else(|| {
            Error::invalid(
                "TokenDataset",
                format!("index {i} of {} texts", self.ids.len()),
            )
        })?;
        Ok(graft_data::Sample::TokenIds {
            ids: ids.iter().map(|&v| i64::from(v)).collect(),
            pad_id: self.pad_id,
            label: self.labels[i],
        })
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn in_memory(&self) -> bool {
        true
    }
}
