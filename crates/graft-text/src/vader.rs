//! The VADER sentiment lexicon (Hutto & Gilbert 2014, MIT; `vaderSentiment/vader_lexicon.txt`
//! in the `vadersentiment` wheel): tokens and short phrases, each with the mean and standard
//! deviation of ten human valence ratings in [-4, 4] and the ratings themselves — a real labelled
//! word task for text features.

use std::path::{Path, PathBuf};

use graft_core::{Error, Result};

use crate::TextDataset;

/// One line of the lexicon.
#[derive(Debug, Clone, PartialEq)]
pub struct LexiconEntry {
    pub token: String,
    /// Mean valence of the ratings.
    pub mean: f64,
    pub std: f64,
    /// The raters' scores, -4 ..= 4.
    pub ratings: Vec<i8>,
}

/// The lexicon as read, in file order (duplicates included: see [`VaderLexicon::dedup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VaderLexicon {
    pub entries: Vec<LexiconEntry>,
    pub path: PathBuf,
}

fn parse_line(line: &str) -> std::result::Result<LexiconEntry, String> {
    let f: Vec<&str> = line.split('\t').collect();
    let [token, mean, std, ratings] = f[..] else {
        return Err(format!(
            "expected 4 tab-separated fields (token, mean, std, [ratings]), got {}",
            f.len()
        ));
    };
    if token.is_empty() {
        return Err("empty token".into());
    }
    let num = |s: &str, what: &str| {
        s.trim()
            .parse::<f64>()
            .map_err(|_| format!("{what} {s:?} is not a number"))
    };
    let (mean, std) = (num(mean, "mean")?, num(std, "std")?);
    let inner = ratings
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| format!("ratings {ratings:?} are not a [..] list"))?;
    let ratings = inner
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<i8>()
                .ok()
                .filter(|r| (-4..=4).contains(r))
                .ok_or_else(|| format!("rating {v:?} is not an integer in -4..=4"))
        })
        .collect::<std::result::Result<Vec<i8>, String>>()?;
    Ok(LexiconEntry {
        token: token.to_string(),
        mean,
        std,
        ratings,
    })
}

impl VaderLexicon {
    /// Where the `vadersentiment` wheel installs the lexicon, inside site-packages.
    pub const PACKAGE_PATH: &'static str = "vaderSentiment/vader_lexicon.txt";
    /// Reads the lexicon (CRLF or LF lines); a bad line is an error naming `file:line`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let e = parse_line(line)
                .map_err(|msg| Error::format(format!("{}:{}", path.display(), i + 1), msg))?;
            entries.push(e);
        }
        if entries.is_empty() {
            return Err(Error::format(path, "no lexicon entries"));
        }
        Ok(Self {
            entries,
            path: path.to_path_buf(),
        })
    }
    /// Drops later repeats of a token (exact match; the file has 14), keeping the first; returns
    /// how many were dropped.
    pub fn dedup(&mut self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let before = self.entries.len();
        self.entries.retain(|e| seen.insert(e.token.clone()));
        before - self.entries.len()
    }
    /// Polarity labels: `positive` (1) when the mean valence is above `threshold`, `negative` (0)
    /// below `-threshold`; entries in between are left out. The mean is kept as the target.
    pub fn polarity(&self, threshold: f64) -> TextDataset {
        let mut targets = Vec::new();
        let mut out = TextDataset {
            texts: Vec::new(),
            labels: Vec::new(),
            classes: vec!["negative".into(), "positive".into()],
            targets: None,
        };
        for e in &self.entries {
            let label = if e.mean > threshold {
                1
            } else if e.mean < -threshold {
                0
            } else {
                continue;
            };
            out.texts.push(e.token.clone());
            out.labels.push(label);
            targets.push(e.mean);
        }
        out.targets = Some(targets);
        out
    }
}
