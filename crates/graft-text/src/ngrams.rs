//! Character n-gram TF-IDF features: the no-transfer baseline for text tasks (scikit-learn's
//! `TfidfVectorizer(analyzer="char_wb", ngram_range=(lo, hi), max_features=…)` with its
//! defaults: smooth idf, raw counts, L2-normalised rows). Learnt from the training texts only,
//! so it knows nothing a pretrained encoder would bring.

use std::collections::HashMap;

use graft_core::{Error, Result};

/// A fitted character n-gram vocabulary with its idf weights.
#[derive(Debug, Clone, PartialEq)]
pub struct CharNgrams {
    lo: usize,
    hi: usize,
    /// n-gram → column.
    vocab: HashMap<String, usize>,
    idf: Vec<f32>,
}

/// `char_wb` n-grams of `text`: each whitespace-separated word padded with one space on each
/// side, n-grams taken inside the padded word (lower-cased first, as scikit-learn's default).
fn for_each_ngram(text: &str, lo: usize, hi: usize, mut f: impl FnMut(&str)) {
    let lower = text.to_lowercase();
    let mut buf = String::new();
    for word in lower.split_whitespace() {
        let padded: Vec<char> = std::iter::once(' ')
            .chain(word.chars())
            .chain(std::iter::once(' '))
            .collect();
        for n in lo..=hi {
            if n >= padded.len() {
                // A word no longer than n gives itself once, and no longer n-grams.
                buf.clear();
                buf.extend(&padded);
                f(&buf);
                break;
            }
            for start in 0..=padded.len() - n {
                buf.clear();
                buf.extend(&padded[start..start + n]);
                f(&buf);
            }
        }
    }
}

impl CharNgrams {
    /// Learns the vocabulary from `texts`: n-grams of `lo..=hi` characters, the `max_features`
    /// most frequent across the corpus (ties broken alphabetically), idf = ln((1 + n) / (1 + df)) + 1.
    pub fn fit(texts: &[&str], lo: usize, hi: usize, max_features: usize) -> Result<Self> {
        if lo == 0 || hi < lo {
            return Err(Error::invalid(
                "CharNgrams",
                format!("n-gram range {lo}..={hi}"),
            ));
        }
        if texts.is_empty() || max_features == 0 {
            return Err(Error::invalid("CharNgrams", "no texts or max_features = 0"));
        }
        let mut tf: HashMap<String, (u64, u64)> = HashMap::new(); // total count, doc freq
        for t in texts {
            let mut seen: HashMap<String, u64> = HashMap::new();
            for_each_ngram(t, lo, hi, |g| *seen.entry(g.to_string()).or_default() += 1);
            for (g, c) in seen {
                let e = tf.entry(g).or_default();
                e.0 += c;
                e.1 += 1;
            }
        }
        let mut all: Vec<(String, u64, u64)> =
            tf.into_iter().map(|(g, (c, d))| (g, c, d)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(max_features);
        // Columns in alphabetical order (scikit-learn's vocabulary order).
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let n = texts.len() as f64;
        let idf = all
            .iter()
            .map(|(_, _, df)| (((1.0 + n) / (1.0 + *df as f64)).ln() + 1.0) as f32)
            .collect();
        let vocab = all
            .into_iter()
            .enumerate()
            .map(|(i, (g, _, _))| (g, i))
            .collect();
        Ok(Self { lo, hi, vocab, idf })
    }
    /// Columns of the features.
    pub fn dim(&self) -> usize {
        self.idf.len()
    }
    /// Dense `[texts, dim]` row-major TF-IDF rows, L2-normalised (a text with no known n-gram
    /// is all zeros).
    pub fn transform(&self, texts: &[&str]) -> Vec<f32> {
        let d = self.dim();
        let mut out = vec![0f32; texts.len() * d];
        for (i, t) in texts.iter().enumerate() {
            let row = &mut out[i * d..(i + 1) * d];
            for_each_ngram(t, self.lo, self.hi, |g| {
                if let Some(&j) = self.vocab.get(g) {
                    row[j] += 1.0;
                }
            });
            let mut norm = 0f64;
            for (v, w) in row.iter_mut().zip(&self.idf) {
                *v *= w;
                norm += f64::from(*v) * f64::from(*v);
            }
            if norm > 0.0 {
                let s = (1.0 / norm.sqrt()) as f32;
                row.iter_mut().for_each(|v| *v *= s);
            }
        }
        out
    }
}
