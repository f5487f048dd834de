//! Learning-rate (and momentum) schedules, evaluated per optimizer step. A schedule gives a factor
//! that multiplies every group's base LR, so the groups keep their ratios (a slice spread stays a
//! slice).

/// A schedule over `total` optimizer steps.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Factor 1 throughout.
    Constant,
    /// × `gamma` every `every` steps.
    Step { every: usize, gamma: f64 },
    /// Linear warm-up from 0 over `warmup` steps, then cosine from 1 down to `min_factor`.
    Cosine { warmup: usize, min_factor: f64 },
    /// fastai's / PyTorch's one-cycle: cosine warm-up from 1/`div` to 1 over `pct_start` of the
    /// run, then cosine annealing to 1/(`div` × `final_div`); momentum (SGD's, or AdamW's β₁)
    /// moves inversely between `momentum.1` and `momentum.0` when given.
    OneCycle {
        pct_start: f64,
        div: f64,
        final_div: f64,
        momentum: Option<(f64, f64)>,
    },
}

fn cos_interp(from: f64, to: f64, t: f64) -> f64 {
    to + (from - to) * (1.0 + (std::f64::consts::PI * t.clamp(0.0, 1.0)).cos()) / 2.0
}

impl Schedule {
    /// fastai's `fit_one_cycle` defaults: 25 % warm-up, div 25, final div 1e4, momentum
    /// 0.95 → 0.85 → 0.95.
    pub fn one_cycle() -> Self {
        Schedule::OneCycle {
            pct_start: 0.25,
            div: 25.0,
            final_div: 1e4,
            momentum: Some((0.85, 0.95)),
        }
    }
    /// The LR factor at `step` (0-based) of `total` steps.
    pub fn factor(&self, step: usize, total: usize) -> f64 {
        let total = total.max(1);
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => gamma.powi((step / every.max(1)) as i32),
            Schedule::Cosine { warmup, min_factor } => {
                if step < warmup {
                    (step + 1) as f64 / warmup as f64
                } else {
                    let span = (total - warmup.min(total)).max(1);
                    cos_interp(1.0, min_factor, (step - warmup) as f64 / span as f64)
                }
            }
            Schedule::OneCycle {
                pct_start,
                div,
                final_div,
                ..
            } => {
                let up = ((pct_start * total as f64).round() as usize).max(1);
                if step < up {
                    cos_interp(1.0 / div, 1.0, step as f64 / up as f64)
                } else {
                    let down = (total - up).max(1);
                    cos_interp(
                        1.0,
                        1.0 / (div * final_div),
                        (step - up) as f64 / down as f64,
                    )
                }
            }
        }
    }
    /// The momentum at `step`, for schedules that move it.
    pub fn momentum(&self, step: usize, total: usize) -> Option<f64> {
        let Schedule::OneCycle {
            pct_start,
            momentum: Some((lo, hi)),
            ..
        } = *self
        else {
            return None;
        };
        let total = total.max(1);
        let up = ((pct_start * total as f64).round() as usize).max(1);
        Some(if step < up {
            cos_interp(hi, lo, step as f64 / up as f64)
        } else {
            cos_interp(lo, hi, (step - up) as f64 / (total - up).max(1) as f64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_of_the_schedules() {
        assert_eq!(
            Schedule::Step {
                every: 10,
                gamma: 0.1
            }
            .factor(25, 100),
            0.1f64.powi(2)
        );
        let c = Schedule::Cosine {
            warmup: 10,
            min_factor: 0.0,
        };
        assert!((c.factor(0, 110) - 0.1).abs() < 1e-12);
        assert!((c.factor(9, 110) - 1.0).abs() < 1e-12);
        assert!((c.factor(10, 110) - 1.0).abs() < 1e-12);
        assert!((c.factor(60, 110) - 0.5).abs() < 1e-12);
        assert!(c.factor(109, 110) < 0.001);
        let o = Schedule::one_cycle();
        assert!((o.factor(0, 100) - 0.04).abs() < 1e-12);
        assert!((o.factor(25, 100) - 1.0).abs() < 1e-12);
        assert!(o.factor(99, 100) < 1e-3);
        assert_eq!(o.momentum(0, 100), Some(0.95));
        assert!((o.momentum(25, 100).unwrap_or(0.0) - 0.85).abs() < 1e-12);
    }
}
