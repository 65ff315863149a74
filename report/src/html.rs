//! A report as one self-contained HTML page: the same tables as the Markdown, and SVG bar
//! charts drawn with plotters (directives over the period, time to full execution,
//! confirmation clocks, availability). No script, no outside resource: it opens offline
//! and prints.
//!
//! Must not: compute figures, or load anything from elsewhere.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::render::{sections, time, title};
use crate::{RenderError, Report};

const WIDTH: u32 = 760;
const HEIGHT: u32 = 320;
/// Most bars a chart draws; availability keeps the least available nodes.
const MOST_BARS: usize = 40;

/// One series of bars: its name, colour and a value per label.
struct Bars<'a> {
    name: &'a str,
    color: RGBColor,
    values: Vec<f64>,
}

fn chart_error<E: std::fmt::Display>(e: E) -> RenderError {
    RenderError::Chart(e.to_string())
}

/// A grouped bar chart as an SVG document.
fn bar_chart(
    caption: &str,
    y_desc: &str,
    labels: &[String],
    series: &[Bars<'_>],
) -> Result<String, RenderError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let top = series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .fold(0.0_f64, f64::max);
        let n = labels.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.5..n - 0.5, 0.0..(top * 1.15).max(1.0))
            .map_err(chart_error)?;
        let label_at = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            // `i` is a whole number within the labels' range here.
            labels.get(i as usize).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len().clamp(1, 16))
            .x_label_formatter(&label_at)
            .y_desc(y_desc)
            .draw()
            .map_err(chart_error)?;
        let width = 0.8 / series.len().max(1) as f64;
        for (k, s) in series.iter().enumerate() {
            let color = s.color;
            chart
                .draw_series(s.values.iter().enumerate().map(|(i, v)| {
                    let x0 = i as f64 - 0.4 + k as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width * 0.9, *v)], color.filled())
                }))
                .map_err(chart_error)?
                .label(s.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

const BLUE_: RGBColor = RGBColor(52, 101, 164);
const ORANGE: RGBColor = RGBColor(230, 145, 56);
const GREEN_: RGBColor = RGBColor(78, 154, 6);
const RED_: RGBColor = RGBColor(204, 0, 0);
const GREY: RGBColor = RGBColor(160, 160, 160);

fn hours(ms: i64) -> f64 {
    ms as f64 / 3_600_000.0
}

/// The charts of a report, each `(id, svg)`; a chart with nothing to show is left out.
fn charts(r: &Report) -> Result<Vec<(&'static str, String)>, RenderError> {
    let mut out = Vec::new();
    if !r.series.is_empty() {
        let labels: Vec<String> = r.series.iter().map(|p| p.label.clone()).collect();
        out.push((
            "chart-directives",
            bar_chart(
                "Directives issued",
                "directives",
                &labels,
                &[
                    Bars {
                        name: "live",
                        color: BLUE_,
                        values: r.series.iter().map(|p| p.directives as f64).collect(),
                    },
                    Bars {
                        name: "drills",
                        color: ORANGE,
                        values: r.series.iter().map(|p| p.drills as f64).collect(),
                    },
                ],
            )?,
        ));
    }
    let units: Vec<_> = r
        .execution
        .iter()
        .filter(|e| e.unit != "all")
        .take(MOST_BARS)
        .collect();
    if !units.is_empty() {
        out.push((
            "chart-execution",
            bar_chart(
                &format!("Time to full execution per {}", r.unit),
                "hours",
                &units.iter().map(|e| short(&e.unit)).collect::<Vec<_>>(),
                &[
                    Bars {
                        name: "p50",
                        color: BLUE_,
                        values: units.iter().map(|e| hours(e.p50_ms)).collect(),
                    },
                    Bars {
                        name: "p95",
                        color: ORANGE,
                        values: units.iter().map(|e| hours(e.p95_ms)).collect(),
                    },
                ],
            )?,
        ));
    }
    let clocks: Vec<_> = r
        .confirmation
        .iter()
        .filter(|c| c.unit != "all")
        .take(MOST_BARS)
        .collect();
    if !clocks.is_empty() {
        out.push((
            "chart-confirmation",
            bar_chart(
                "Confirmation clocks",
                "clocks",
                &clocks.iter().map(|c| short(&c.unit)).collect::<Vec<_>>(),
                &[
                    Bars {
                        name: "met",
                        color: GREEN_,
                        values: clocks.iter().map(|c| c.met as f64).collect(),
                    },
                    Bars {
                        name: "overdue",
                        color: RED_,
                        values: clocks.iter().map(|c| c.overdue as f64).collect(),
                    },
                    Bars {
                        name: "open",
                        color: GREY,
                        values: clocks.iter().map(|c| c.open as f64).collect(),
                    },
                ],
            )?,
        ));
    }
    let mut known: Vec<_> = r.availability.iter().filter(|a| a.permille >= 0).collect();
    known.sort_by_key(|a| (a.permille, a.node.clone()));
    known.truncate(MOST_BARS);
    if !known.is_empty() {
        out.push((
            "chart-availability",
            bar_chart(
                "Availability (least available first)",
                "per cent",
                &known.iter().map(|a| short(&a.node)).collect::<Vec<_>>(),
                &[Bars {
                    name: "available",
                    color: GREEN_,
                    values: known.iter().map(|a| f64::from(a.permille) / 10.0).collect(),
                }],
            )?,
        ));
    }
    Ok(out)
}

/// `province/44` → `44`, `enterprise/e4401` → `e4401`: axis labels stay short.
fn short(node: &str) -> String {
    node.rsplit('/').next().unwrap_or(node).to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
pub fn html(r: &Report) -> Result<String, RenderError> {
    let mut h = String::new();
    let t = escape(&title(r));
    // Writing to a String cannot fail.
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:64em}}\
         table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #bbb;padding:.2em .6em}}\
         td{{text-align:right}}td:first-child{{text-align:left}}figure{{margin:1em 0}}</style>\n\
         </head><body>\n<h1>{t}</h1>\n<p>Period {} to {} (China Standard Time), generated {}.</p>\n",
        time(r.from_ms),
        time(r.until_ms),
        time(r.generated_at_ms)
    );
    for (id, svg) in charts(r)? {
        let _ = writeln!(h, "<figure id=\"{id}\" class=\"chart\">{svg}</figure>");
    }
    for s in sections(r) {
        let _ = writeln!(h, "<h2>{}</h2>", escape(&s.heading));
        if !s.note.is_empty() {
            let _ = writeln!(h, "<p>{}</p>", escape(s.note));
        }
        if s.rows.is_empty() {
            let _ = writeln!(h, "<p>None in this period.</p>");
            continue;
        }
        let _ = write!(h, "<table><tr>");
        for c in &s.head {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        let _ = writeln!(h, "</tr>");
        for row in &s.rows {
            let _ = write!(h, "<tr>");
            for c in row {
                let _ = write!(h, "<td>{}</td>", escape(c));
            }
            let _ = writeln!(h, "</tr>");
        }
        let _ = writeln!(h, "</table>");
    }
    h.push_str("</body></html>\n");
    Ok(h)
}
