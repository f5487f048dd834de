//! PNG plots (plotters, bitmap backend): learning curves at the end of a run and the LR finder's
//! sweep. Text uses DejaVu Sans shipped in `assets/` (its licence beside it), so plots render the
//! same on every machine.

use std::path::Path;
use std::sync::Once;

use graft_core::{Error, Result};
use plotters::prelude::*;

use crate::lr_find::LrFinderResult;
use crate::trainer::History;

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn font() {
    REGISTER.call_once(|| {
        // The font is shipped with the crate and valid; a failure would only lose the text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::format(path, format!("cannot draw the plot: {e}"))
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A captioned chart over `x` × `y` with the axis descriptions drawn.
fn chart<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    x: (f64, f64),
    y: (f64, f64),
    desc: (&str, &str),
    path: &Path,
) -> Result<Chart<'a, 'b>> {
    let mut c = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(|e| err(path, e))?;
    c.configure_mesh()
        .x_desc(desc.0)
        .y_desc(desc.1)
        .draw()
        .map_err(|e| err(path, e))?;
    Ok(c)
}

fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    }
}

/// Training loss per step and validation loss / top-1 per epoch, as a PNG.
pub fn plot_history(history: &History, path: &Path) -> Result<()> {
    font();
    let root = BitMapBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let (left, right) = root.split_horizontally(480);
    let steps: Vec<(f64, f64)> = history
        .steps
        .iter()
        .map(|r| (r.step as f64, r.loss))
        .collect();
    let val_loss: Vec<(f64, f64)> = history
        .epochs
        .iter()
        .filter_map(|e| e.val.as_ref().map(|m| (e.step as f64, m.loss)))
        .collect();
    let (x0, x1) = range(steps.iter().map(|p| p.0).chain([0.0]));
    let (y0, y1) = range(steps.iter().chain(&val_loss).map(|p| p.1));
    let mut c = chart(
        &left,
        "loss",
        (x0, x1),
        (y0, y1),
        ("optimizer step", ""),
        path,
    )?;
    c.draw_series(LineSeries::new(steps, &BLUE))
        .map_err(|e| err(path, e))?
        .label("train (step)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new(val_loss.clone(), &RED))
        .map_err(|e| err(path, e))?
        .label("val (epoch)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    c.draw_series(val_loss.iter().map(|p| Circle::new(*p, 3, RED.filled())))
        .map_err(|e| err(path, e))?;
    c.configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(path, e))?;
    let acc: Vec<(f64, f64)> = history
        .epochs
        .iter()
        .filter_map(|e| {
            e.val
                .as_ref()
                .map(|m| (e.epoch as f64 + 1.0, 100.0 * m.top1))
        })
        .collect();
    let (a0, a1) = range(acc.iter().map(|p| p.1));
    let mut c = chart(
        &right,
        "validation top-1 (%)",
        (0.5, (history.epochs.len() as f64 + 0.5)),
        (a0, a1),
        ("epoch", ""),
        path,
    )?;
    c.draw_series(LineSeries::new(acc.clone(), &GREEN))
        .map_err(|e| err(path, e))?;
    c.draw_series(acc.iter().map(|p| Circle::new(*p, 3, GREEN.filled())))
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// The LR finder's smoothed loss against log10(LR), with the suggestions marked.
pub fn plot_lr_find(r: &LrFinderResult, path: &Path) -> Result<()> {
    font();
    let root = BitMapBackend::new(path, (640, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let pts: Vec<(f64, f64)> = r
        .lrs
        .iter()
        .zip(&r.losses)
        .map(|(l, v)| (l.log10(), *v))
        .collect();
    let (x0, x1) = range(pts.iter().map(|p| p.0));
    let (y0, y1) = range(pts.iter().map(|p| p.1));
    let mut c = chart(
        &root,
        "LR finder",
        (x0, x1),
        (y0, y1),
        ("log10(learning rate)", "smoothed loss"),
        path,
    )?;
    c.draw_series(LineSeries::new(pts, &BLUE))
        .map_err(|e| err(path, e))?;
    for (lr, color, name) in [
        (r.steepest, RED, "steepest"),
        (r.min_div_10, GREEN, "min / 10"),
    ] {
        if let Some(lr) = lr {
            let x = lr.log10();
            c.draw_series(LineSeries::new([(x, y0), (x, y1)], color))
                .map_err(|e| err(path, e))?
                .label(format!("{name}: {lr:.2e}"))
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color));
        }
    }
    c.configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// One line of a [`plot_series`] chart: points, and optionally a ± band half-width per point.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub err: Option<Vec<f64>>,
}

/// Lines with markers (and error bars when a series has them) on one chart, as a PNG; `log_x`
/// spaces x logarithmically (x must be > 0).
pub fn plot_series(
    path: &Path,
    caption: &str,
    desc: (&str, &str),
    series: &[Series],
    log_x: bool,
) -> Result<()> {
    font();
    let root = BitMapBackend::new(path, (800, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let tx = |x: f64| if log_x { x.max(1e-12).log10() } else { x };
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| tx(p.0)));
    let ys = series.iter().flat_map(|s| {
        s.points.iter().enumerate().flat_map(move |(i, p)| {
            let e = s
                .err
                .as_ref()
                .and_then(|e| e.get(i))
                .copied()
                .unwrap_or(0.0);
            [p.1 - e, p.1 + e]
        })
    });
    let (x0, x1) = range(xs);
    let (y0, y1) = range(ys);
    let x_desc = if log_x {
        format!("{} (log10)", desc.0)
    } else {
        desc.0.to_string()
    };
    let mut c = chart(&root, caption, (x0, x1), (y0, y1), (&x_desc, desc.1), path)?;
    for (k, s) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0), p.1)).collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(path, e))?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(|e| err(path, e))?;
        if let Some(e) = &s.err {
            c.draw_series(pts.iter().zip(e).map(|(p, e)| {
                PathElement::new([(p.0, p.1 - e), (p.0, p.1 + e)], color.stroke_width(1))
            }))
            .map_err(|e| err(path, e))?;
        }
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// Horizontal bars, one a named value, top to bottom in the order given, each labelled with its
/// name and value, as a PNG (`graft rank`'s candidates by score).
pub fn plot_bars(path: &Path, caption: &str, x_desc: &str, bars: &[(String, f64)]) -> Result<()> {
    font();
    let n = bars.len().max(1);
    let height = (120 + 28 * n).min(4000) as u32;
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let (lo, hi) = range(bars.iter().map(|b| b.1).chain([0.0]));
    let mut c = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(10)
        .build_cartesian_2d(lo..hi, 0.0..n as f64)
        .map_err(|e| err(path, e))?;
    c.configure_mesh()
        .x_desc(x_desc)
        .disable_y_mesh()
        .disable_y_axis()
        .draw()
        .map_err(|e| err(path, e))?;
    for (i, (name, v)) in bars.iter().enumerate() {
        // the first bar on top
        let y = (n - 1 - i) as f64;
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y + 0.15), (*v, y + 0.85)],
            color.mix(0.6).filled(),
        )))
        .map_err(|e| err(path, e))?;
        let at = if *v >= 0.0 { lo } else { 0.0 };
        c.draw_series(std::iter::once(Text::new(
            format!("{name}  {v:.3}"),
            (at + 0.01 * (hi - lo), y + 0.65),
            ("sans-serif", 14).into_font(),
        )))
        .map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))
}
