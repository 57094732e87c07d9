//! An evaluation as a self-contained HTML page: the DET curves on normal-deviate axes and
//! the score histograms (SVG, drawn with plotters), FNMR at the reported FMRs with their
//! intervals, failure to enrol and acquire, and the error rates at the bands. Every text
//! that came from outside (paths, names) is escaped.

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::standards::{
    DET_FLOOR, REPORTED_FMRS, det_probit, fnmr_at_fmr, lowest_supported_fmr, probit,
};
use super::verification::{ScoreSet, operating_point};
use crate::error::{Error, Result};
use crate::types::Bands;

/// Text from outside, safe inside HTML.
pub fn escape(text: &str) -> String {
    html_escape::encode_text(text).into_owned()
}

const COLOURS: [RGBColor; 3] = [
    RGBColor(200, 60, 60),
    RGBColor(60, 90, 200),
    RGBColor(40, 40, 40),
];

fn plot_error(error: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("drawing the report's plot: {error}"))
}

/// The impostor scores by kind, as the workbench splits them.
fn kinds(scores: &ScoreSet) -> Vec<(&'static str, Vec<f32>)> {
    if scores.skilled.is_empty() {
        vec![("impostors", scores.random.clone())]
    } else {
        vec![
            ("skilled forgeries", scores.skilled.clone()),
            ("other writers", scores.random.clone()),
        ]
    }
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The axes, titles and labels of one plot.
struct Frame<'a> {
    title: &'a str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &'a str,
    y_desc: &'a str,
    ticks: Option<&'a dyn Fn(&f64) -> String>,
}

/// One plot as SVG: the frame, what `draw` puts in it, and the legend of its labelled series.
fn svg_plot(frame: Frame, draw: impl FnOnce(&mut Chart) -> Result<()>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (520, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(frame.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(frame.x, frame.y)
            .map_err(plot_error)?;
        let mut mesh = chart.configure_mesh();
        mesh.light_line_style(WHITE)
            .x_desc(frame.x_desc)
            .y_desc(frame.y_desc);
        if let Some(ticks) = frame.ticks {
            mesh.x_label_formatter(ticks).y_label_formatter(ticks);
        }
        mesh.draw().map_err(plot_error)?;
        draw(&mut chart)?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// DET curves, one per kind of impostor, on normal-deviate axes labelled in percent, with
/// the operating point at `bands.high`.
pub fn det_svg(scores: &ScoreSet, bands: Bands) -> Result<String> {
    // The ticks fall at round deviates: their rates, to two significant figures.
    let ticks = |v: &f64| {
        let percent = 50.0 * puruspe::erfc(-v / std::f64::consts::SQRT_2);
        let decimals = (1.0 - percent.log10().floor()).max(0.0) as usize;
        format!("{percent:.decimals$}%")
    };
    let frame = Frame {
        title: "DET (normal-deviate axes)",
        x: probit(DET_FLOOR)..probit(0.5),
        y: probit(DET_FLOOR)..probit(0.5),
        x_desc: "FMR (false accepts)",
        y_desc: "FNMR (false rejects)",
        ticks: Some(&ticks),
    };
    svg_plot(frame, |chart| {
        for ((kind, impostor), colour) in kinds(scores).iter().zip(COLOURS) {
            let curve = det_probit(&scores.genuine, impostor);
            chart
                .draw_series(LineSeries::new(curve.iter().map(|p| (p[0], p[1])), colour))
                .map_err(plot_error)?
                .label(format!("{kind} ({})", impostor.len()))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
            let point = operating_point(&scores.genuine, impostor, bands);
            chart
                .draw_series(std::iter::once(Circle::new(
                    (probit(point.far), probit(point.frr)),
                    5,
                    colour.filled(),
                )))
                .map_err(plot_error)?;
        }
        Ok(())
    })
}

/// Genuine and impostor score histograms with the accept threshold.
pub fn histogram_svg(scores: &ScoreSet, bands: Bands) -> Result<String> {
    const BINS: usize = 40;
    let shares = |values: &[f32]| {
        let mut counts = [0usize; BINS];
        for &v in values {
            counts[(v.clamp(0.0, 0.9999) * BINS as f32) as usize] += 1;
        }
        counts.map(|c| c as f64 / values.len().max(1) as f64)
    };
    let impostor = scores.impostor();
    let series = [
        ("genuine", shares(&scores.genuine)),
        ("impostor", shares(&impostor)),
    ];
    let top = 1.1
        * series
            .iter()
            .flat_map(|(_, s)| s.iter().copied())
            .fold(0.0, f64::max)
            .max(0.01);
    let frame = Frame {
        title: "Scores",
        x: 0.0..1.0,
        y: 0.0..top,
        x_desc: "score",
        y_desc: "share of comparisons",
        ticks: None,
    };
    svg_plot(frame, |chart| {
        for ((name, share), colour) in series.iter().zip([RGBColor(60, 160, 60), COLOURS[0]]) {
            let width = 1.0 / BINS as f64;
            chart
                .draw_series(share.iter().enumerate().map(|(i, &h)| {
                    let x = i as f64 * width;
                    Rectangle::new([(x, 0.0), (x + width, h)], colour.mix(0.5).filled())
                }))
                .map_err(plot_error)?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        let high = f64::from(bands.high);
        chart
            .draw_series(LineSeries::new([(high, 0.0), (high, top)], BLACK))
            .map_err(plot_error)?
            .label("accept threshold")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK));
        Ok(())
    })
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", 100.0 * rate)
}

/// The evaluation as an HTML section: plots, then the tables.
pub fn evaluation_section(scores: &ScoreSet, bands: Bands) -> Result<String> {
    let mut html = format!(
        "<h2>Evaluation: {}</h2>\n<p>{} genuine comparisons. Accept at or above {:.4}, review from {:.4}.</p>\n<div class=\"plots\">{}{}</div>\n",
        escape(&scores.source),
        scores.genuine.len(),
        bands.high,
        bands.low,
        det_svg(scores, bands)?,
        histogram_svg(scores, bands)?
    );
    html.push_str(
        "<table><tr><th>impostors</th><th>comparisons</th><th>FAR at the bands</th><th>FRR at the bands</th><th>review</th></tr>\n",
    );
    for (kind, impostor) in kinds(scores) {
        let point = operating_point(&scores.genuine, &impostor, bands);
        html.push_str(&format!(
            "<tr><td>{kind}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            impostor.len(),
            percent(point.far),
            percent(point.frr),
            percent(point.review_rate)
        ));
    }
    html.push_str("</table>\n<h3>FNMR at fixed FMR (ISO/IEC 19795-1)</h3>\n<table><tr><th>impostors</th><th>FMR ≤</th><th>threshold</th><th>false matches</th><th>FNMR</th><th>95% Wilson interval</th><th>note</th></tr>\n");
    for (kind, impostor) in kinds(scores) {
        for target in REPORTED_FMRS {
            let at = fnmr_at_fmr(&scores.genuine, &impostor, target);
            let note = if at.supported {
                String::new()
            } else {
                format!(
                    "not supported: {} impostors show an FMR down to {} only",
                    at.impostors,
                    percent(lowest_supported_fmr(at.impostors))
                )
            };
            html.push_str(&format!(
                "<tr><td>{kind}</td><td>{}%</td><td>{:.4}</td><td>{} of {}</td><td>{} ({} of {})</td><td>{} to {}</td><td>{note}</td></tr>\n",
                100.0 * target,
                at.threshold,
                at.false_matches,
                at.impostors,
                percent(at.fnmr),
                at.false_non_matches,
                at.genuine,
                percent(at.fnmr_interval.0),
                percent(at.fnmr_interval.1),
            ));
        }
    }
    html.push_str("</table>\n");
    html.push_str(&match &scores.acquisition {
        Some(a) => format!("<p>{}</p>\n", escape(&a.to_string())),
        None => {
            "<p>FTE and FTA: not measured (the scores came from references already enrolled).</p>\n"
                .into()
        }
    });
    Ok(html)
}

/// A whole page around `body`, with a title.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #bbb;padding:4px 8px;text-align:left}}.plots svg{{margin-right:1em}}</style></head>\n<body><h1>{title}</h1>\n{body}</body></html>\n",
        title = escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_draws_both_plots_and_escapes_what_came_from_outside() {
        let scores = ScoreSet {
            genuine: (0..50).map(|i| 0.6 + i as f32 / 200.0).collect(),
            skilled: (0..40).map(|i| 0.3 + i as f32 / 100.0).collect(),
            random: (0..400).map(|i| i as f32 / 1000.0).collect(),
            source: "<script>alert(1)</script>.csv".into(),
            ..ScoreSet::default()
        };
        let bands = Bands {
            low: 0.45,
            high: 0.5,
        };
        let html = page("Report", &evaluation_section(&scores, bands).unwrap());
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("skilled forgeries (40)"));
        assert!(html.contains("not supported"));
    }
}
