//! The plan as a table (`Display`): one row per group with its parameters, LR, weight decay,
//! BatchNorm mode and dropout.

use std::fmt;

use crate::plan::Plan;

fn fmt_count(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{:.2}M", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("{:.1}K", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = [
            "group",
            "tensors",
            "params",
            "train",
            "lr",
            "wd",
            "batchnorm",
            "dropout",
        ];
        let rows: Vec<[String; 8]> = self
            .groups
            .iter()
            .map(|g| {
                [
                    g.name.clone(),
                    g.params.len().to_string(),
                    fmt_count(g.numel),
                    if g.trainable {
                        "yes".into()
                    } else {
                        "frozen".into()
                    },
                    if g.trainable {
                        format!("{:.3e}", g.lr)
                    } else {
                        "0".into()
                    },
                    if g.weight_decay > 0.0 {
                        format!("{}", g.weight_decay)
                    } else {
                        "0".into()
                    },
                    g.batch_norm.to_string(),
                    if g.dropout_on {
                        "on".into()
                    } else {
                        "off".into()
                    },
                ]
            })
            .collect();
        let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let (t, total) = self.counts();
        writeln!(
            f,
            "plan for {}: {:?}, freeze {:?} (keep {:?}), BatchNorm policy {}",
            self.model,
            self.lr.optimizer,
            self.freeze.frozen,
            self.freeze.keep_trainable,
            self.freeze.bn.name()
        )?;
        let line = |f: &mut fmt::Formatter<'_>, cells: &[String]| -> fmt::Result {
            let parts: Vec<String> = cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i == 0 {
                        format!("{c:<width$}", width = w[i])
                    } else {
                        format!("{c:>width$}", width = w[i])
                    }
                })
                .collect();
            writeln!(f, "{}", parts.join("  "))
        };
        line(f, &header.map(String::from))?;
        line(f, &w.iter().map(|n| "-".repeat(*n)).collect::<Vec<_>>())?;
        for r in &rows {
            line(f, r)?;
        }
        writeln!(
            f,
            "trainable {} of {} parameters ({:.1} %); BatchNorm layers: {} keep statistics, {} update them; dropout off under {} prefixes",
            fmt_count(t),
            fmt_count(total),
            if total > 0 {
                100.0 * t as f64 / total as f64
            } else {
                0.0
            },
            self.bn_eval.len(),
            self.bn_train.len(),
            self.dropout_off.len()
        )
    }
}
