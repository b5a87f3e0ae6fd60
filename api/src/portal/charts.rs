//! Bar charts drawn on the server as SVG: no script, no chart library, readable without
//! colour (values are in each bar's `<title>` and `data-value`).
//!
//! A value of `None` is a suppressed cell (fewer than five customers): it is drawn as a
//! hatched stub labelled "<5", never as zero and never as a guess.

use maud::{Markup, html};

/// One series of values, one per category.
pub struct Series<'a> {
    /// Legend and `data-series`.
    pub name: &'a str,
    /// CSS class of its bars (`bar` or `bar2`).
    pub class: &'a str,
    /// Values (`None`: suppressed).
    pub values: Vec<Option<i64>>,
}

const W: f64 = 520.0;
const H: f64 = 200.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 34.0;

fn fmt(x: f64) -> String {
    format!("{x:.1}")
}

/// A bar chart of `series` over `categories` (grouped when there are several series).
pub fn bars(id: &str, label: &str, categories: &[String], series: &[Series<'_>]) -> Markup {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let n = categories.len().max(1);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let group_w = plot_w / n as f64;
    let per = series.len().max(1) as f64;
    let bar_w = (group_w * 0.8 / per).max(1.0);
    let label_every = n.div_ceil(12);
    let y = |v: i64| TOP + plot_h - plot_h * (v as f64) / (max as f64);
    html! {
        figure.chart-figure {
            svg.chart #(id) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(label) {
                title { (label) }
                defs {
                    pattern #hatch width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                        line x1="0" y1="0" x2="0" y2="6" stroke="#c5ccd8" stroke-width="3" {}
                    }
                }
                line x1=(fmt(LEFT)) y1=(fmt(TOP + plot_h)) x2=(fmt(W - RIGHT)) y2=(fmt(TOP + plot_h)) stroke="#d9dee7" {}
                text x=(fmt(LEFT - 4.0)) y=(fmt(TOP + 4.0)) text-anchor="end" { (max) }
                text x=(fmt(LEFT - 4.0)) y=(fmt(TOP + plot_h)) text-anchor="end" { "0" }
                @for (i, cat) in categories.iter().enumerate() {
                    @for (j, s) in series.iter().enumerate() {
                        @let x = LEFT + group_w * i as f64 + group_w * 0.1 + bar_w * j as f64;
                        @match s.values.get(i).copied().flatten() {
                            Some(v) => {
                                rect class=(s.class) x=(fmt(x)) y=(fmt(y(v))) width=(fmt(bar_w)) height=(fmt(TOP + plot_h - y(v)))
                                    data-series=(s.name) data-category=(cat) data-value=(v) {
                                    title { (cat) " · " (s.name) ": " (v) }
                                }
                            }
                            None => {
                                @if s.values.get(i).is_some() {
                                    rect.suppressed x=(fmt(x)) y=(fmt(TOP + plot_h * 0.8)) width=(fmt(bar_w)) height=(fmt(plot_h * 0.2))
                                        data-series=(s.name) data-category=(cat) data-value="suppressed" {
                                        title { (cat) " · " (s.name) ": fewer than 5 customers" }
                                    }
                                }
                            }
                        }
                    }
                    @if i % label_every == 0 {
                        text x=(fmt(LEFT + group_w * (i as f64 + 0.5))) y=(fmt(H - BOTTOM + 14.0)) text-anchor="middle" { (short(cat)) }
                    }
                }
                @if series.len() > 1 {
                    @for (j, s) in series.iter().enumerate() {
                        @let lx = LEFT + 110.0 * j as f64;
                        rect class=(s.class) x=(fmt(lx)) y=(fmt(H - 12.0)) width="10" height="10" {}
                        text x=(fmt(lx + 14.0)) y=(fmt(H - 3.0)) { (s.name) }
                    }
                }
            }
            figcaption { (label) }
        }
    }
}

/// `2026-11-27` → `11-27`; other labels as they are.
fn short(cat: &str) -> &str {
    if cat.len() == 10 && cat.as_bytes().get(4) == Some(&b'-') {
        &cat[5..]
    } else {
        cat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppressed_cells_are_drawn_apart_from_values() {
        let cats: Vec<String> = vec![
            "2026-11-26".into(),
            "2026-11-27".into(),
            "2026-11-28".into(),
        ];
        let svg = bars(
            "t",
            "Messages",
            &cats,
            &[Series {
                name: "in",
                class: "bar",
                values: vec![Some(7), None, Some(0)],
            }],
        )
        .into_string();
        assert!(
            svg.contains(r#"data-category="2026-11-26" data-value="7""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"data-category="2026-11-27" data-value="suppressed""#),
            "{svg}"
        );
        assert!(svg.contains(r#"data-value="0""#));
        assert!(svg.contains("fewer than 5 customers"));
        // The tallest bar reaches the top of the plot.
        assert!(svg.contains(&format!(r#"y="{}""#, fmt(TOP))), "{svg}");
    }

    #[test]
    fn labels_are_escaped() {
        let cats = vec!["<script>".to_owned()];
        let svg = bars(
            "t",
            "x",
            &cats,
            &[Series {
                name: "a",
                class: "bar",
                values: vec![Some(1)],
            }],
        )
        .into_string();
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
