//! Usage charts: verifications by outcome over time, as inline SVG drawn here (no
//! script, no external library). Outcomes are grouped as valid, refused (revoked,
//! expired, disabled, limited, missing scopes…) and wrong secret.

use std::fmt::Write as _;

use keyhaven_service::usage_report::Series;
use keyhaven_store::Granularity;
use maud::{Markup, html};

use super::html::trusted;

const WIDTH: u32 = 720;
const HEIGHT: u32 = 180;
const LEFT: u32 = 44;
const BOTTOM: u32 = 22;

/// The three groups of a bar, bottom to top: (css class, label).
const GROUPS: [(&str, &str); 3] = [
    ("s-valid", "Valid"),
    ("s-refused", "Refused"),
    ("s-failed", "Wrong secret"),
];

fn group_of(outcome: &str) -> usize {
    match outcome {
        "VALID" => 0,
        "WRONG_SECRET" => 2,
        _ => 1,
    }
}

fn label(start: i64, g: Granularity) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(start) else {
        return String::new();
    };
    let fmt = match g {
        Granularity::Minute | Granularity::Hour => {
            time::macros::format_description!("[month]-[day] [hour]:[minute]")
        }
        Granularity::Day => time::macros::format_description!("[year]-[month]-[day]"),
    };
    t.format(fmt).unwrap_or_default()
}

/// A chart of `series` with a caption.
pub fn usage(caption: &str, series: &Series) -> Markup {
    let per_bucket: Vec<[u64; 3]> = series
        .buckets
        .iter()
        .map(|b| {
            let mut sums = [0u64; 3];
            for (outcome, n) in &b.counts {
                if let Some(slot) = sums.get_mut(group_of(outcome)) {
                    *slot = slot.saturating_add(*n);
                }
            }
            sums
        })
        .collect();
    let mut totals = [0u64; 3];
    for sums in &per_bucket {
        for (t, n) in totals.iter_mut().zip(sums) {
            *t = t.saturating_add(*n);
        }
    }
    if totals.iter().all(|n| *n == 0) {
        return html! { p.muted { "No verifications in this period (" (caption) ")." } };
    }
    let max = per_bucket
        .iter()
        .map(|s| s.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = f64::from(WIDTH - LEFT);
    let plot_h = f64::from(HEIGHT - BOTTOM - 8);
    let n = per_bucket.len().max(1);
    let slot = plot_w / n as f64;
    let bar = (slot * 0.75).max(1.0);
    let mut svg = String::new();
    let summary = format!(
        "{caption}: {} valid, {} refused, {} wrong secret",
        totals[0], totals[1], totals[2]
    );
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        maud::html! { (summary) }.into_string()
    );
    let base = f64::from(HEIGHT - BOTTOM);
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH}" y2="{base}"/><text x="{}" y="12" text-anchor="end">{max}</text><text x="{}" y="{base}" text-anchor="end">0</text>"#,
        LEFT - 6,
        LEFT - 6
    );
    for (i, sums) in per_bucket.iter().enumerate() {
        let x = f64::from(LEFT) + slot * i as f64 + (slot - bar) / 2.0;
        let mut y = base;
        for (g, count) in sums.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            let h = plot_h * (*count as f64) / (max as f64);
            y -= h;
            let class = GROUPS.get(g).map_or("", |(c, _)| c);
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{h:.1}"><title>{count}</title></rect>"#
            );
        }
    }
    let ticks = [0, n / 2, n.saturating_sub(1)];
    for (k, i) in ticks.iter().enumerate() {
        if let Some(b) = series.buckets.get(*i) {
            let x = f64::from(LEFT) + slot * *i as f64 + slot / 2.0;
            let anchor = match k {
                0 => "start",
                1 => "middle",
                _ => "end",
            };
            let _ = write!(
                svg,
                r#"<text x="{x:.1}" y="{}" text-anchor="{anchor}">{}</text>"#,
                HEIGHT - 6,
                label(b.start, series.granularity)
            );
        }
    }
    svg.push_str("</svg>");
    html! {
        figure.chart {
            (trusted(svg))
            figcaption.legend {
                @for (i, (class, name)) in GROUPS.iter().enumerate() {
                    span { span class={"swatch " (class)} {} (name) ": " strong { (totals.get(i).copied().unwrap_or(0)) } }
                }
                span { (caption) }
            }
        }
    }
}
