//! The report: one table (Markdown) and one chart (SVG) of every figure of the run.

use std::fmt::Write as _;

use crate::rows::Row;

/// A line under the table.
#[derive(Debug)]
pub enum Note {
    Plain(String),
    /// A step that failed; the task fails after writing the report.
    Failure(String),
}

#[derive(Debug)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<Note>,
    pub quick: bool,
}

impl Report {
    pub fn new(quick: bool) -> Report {
        Report {
            rows: Vec::new(),
            notes: Vec::new(),
            quick,
        }
    }

    /// Puts the rows in the report's order (see `rows::DESCRIPTIONS`), unknown ids last by id.
    pub fn sort(&mut self) {
        self.rows
            .sort_by(|a, b| (a.rank(), &a.id).cmp(&(b.rank(), &b.id)));
    }

    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "| benchmark | what | median | 95% CI of the median | instructions/call | target |\n\
             |---|---|---:|---|---:|---|\n",
        );
        for row in &self.rows {
            let median = row.median.map_or("-".into(), ns);
            let spread = row.spread.map_or("-".into(), |(lo, hi)| {
                format!("{} to {}{}", ns(lo), ns(hi), row.spread_note)
            });
            let instructions = row.instructions.map_or("-".into(), |i| format!("{i:.1}"));
            let target = match (row.target(), row.median) {
                (None, _) => String::new(),
                (Some(t), Some(median)) if t.limit_ns.is_some() => {
                    let limit = t.limit_ns.unwrap_or(f64::INFINITY);
                    if median <= limit {
                        format!("{}: met", t.text)
                    } else {
                        format!("{}: **missed** ({:.1}x)", t.text, median / limit)
                    }
                }
                (Some(t), _) => t.text.to_string(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {median} | {spread} | {instructions} | {target} |",
                row.label, row.what
            );
        }
        if self.quick {
            md.push_str(
                "\n(--quick run: short measurement, for smoke-testing only; the medians are noisy)\n",
            );
        }
        for note in &self.notes {
            match note {
                Note::Plain(text) => {
                    let _ = write!(md, "\n{text}\n");
                }
                Note::Failure(text) => {
                    let _ = write!(md, "\n**{}**\n", text.replace('\n', " "));
                }
            }
        }
        md
    }

    /// A horizontal bar chart of the medians: every row on a log scale, then the foreign calls
    /// under a microsecond again on a linear scale (where a few ns show); targets as red ticks.
    pub fn svg(&self) -> String {
        let all: Vec<&Row> = self.rows.iter().collect();
        let fast_ffi: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.id.starts_with("ffi/") || r.id.starts_with("go/"))
            .filter(|r| r.median.is_some_and(|m| m > 0.0 && m < 1000.0))
            .collect();
        let label_chars = all
            .iter()
            .map(|r| r.plain_label().chars().count())
            .max()
            .unwrap_or(10);
        let chart = Chart {
            x0: label_chars as f64 * CHAR_W + 20.0,
        };

        let mut body = String::new();
        let mut y = 74.0;
        y = chart.panel(
            &mut body,
            y,
            "every benchmark, log scale",
            &all,
            Scale::log(&all),
        );
        if fast_ffi.len() >= 2 {
            y = chart.panel(
                &mut body,
                y + 16.0,
                "foreign calls under 1 µs, linear scale",
                &fast_ffi,
                Scale::linear(&fast_ffi),
            );
        }
        y += 12.0;
        for (failed, line) in self.svg_notes() {
            let fill = if failed { "#b00" } else { "#333" };
            let _ = writeln!(
                body,
                r#"<text x="10" y="{y:.1}" fill="{fill}">{}</text>"#,
                esc(&line)
            );
            y += 16.0;
        }
        let height = y + 4.0;

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
        );
        let title = if self.quick {
            "pagurus benchmarks: median time per iteration (--quick run: noisy)"
        } else {
            "pagurus benchmarks: median time per iteration"
        };
        let _ = writeln!(
            s,
            r#"<text x="10" y="22" font-size="16" font-weight="bold">{}</text>"#,
            esc(title)
        );
        // Legend: one colour per group, and the target tick.
        let mut lx = 10.0;
        let present = |group: &str| {
            self.rows
                .iter()
                .any(|r| r.median.is_some() && r.id.split('/').next() == Some(group))
        };
        for (group, colour) in GROUPS.iter().filter(|(g, _)| present(g)) {
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="34" width="12" height="12" fill="{colour}"/><text x="{}" y="44">{group}</text>"#,
                lx + 16.0
            );
            lx += 16.0 + group.len() as f64 * 7.0 + 18.0;
        }
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="33" x2="{lx}" y2="47" stroke="red" stroke-width="2"/><text x="{}" y="44">target (a median must be left of it)</text>"#,
            lx + 6.0
        );
        s.push_str(&body);
        s.push_str("</svg>\n");
        s
    }

    /// The notes as plain-text lines for the chart (long ones wrapped), failures flagged.
    fn svg_notes(&self) -> Vec<(bool, String)> {
        let mut lines = Vec::new();
        for note in &self.notes {
            let (failed, text) = match note {
                Note::Plain(t) => (false, t),
                Note::Failure(t) => (true, t),
            };
            // A failure's first lines say what failed; the rest is in the Markdown.
            for paragraph in text.lines().take(if failed { 3 } else { usize::MAX }) {
                let mut line = String::new();
                for word in paragraph.replace(['`', '*'], "").split_whitespace() {
                    if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > 150 {
                        lines.push((failed, std::mem::take(&mut line)));
                    }
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(word);
                }
                if !line.is_empty() {
                    lines.push((failed, line));
                }
            }
        }
        lines
    }
}

const WIDTH: f64 = 1100.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
/// Width of a character of the monospace labels at 12px.
const CHAR_W: f64 = 7.3;
/// Room right of the plot for the value of the longest bar.
const VALUE_ROOM: f64 = 190.0;

/// The horizontal axis of a panel, in ns.
enum Scale {
    /// Decades from 10^lo to 10^hi.
    Log { lo: i32, hi: i32 },
    /// From 0 to `max`, a grid line every `step`.
    Linear { max: f64, step: f64 },
}

impl Scale {
    fn log(rows: &[&Row]) -> Scale {
        let medians = || rows.iter().filter_map(|r| r.median).filter(|m| *m > 0.0);
        let lo = medians()
            .map(|m| m.log10().floor() as i32)
            .min()
            .unwrap_or(0);
        let hi = medians()
            .map(|m| m.log10().ceil() as i32)
            .max()
            .unwrap_or(1);
        Scale::Log {
            lo,
            hi: hi.max(lo + 1),
        }
    }

    fn linear(rows: &[&Row]) -> Scale {
        let max = rows
            .iter()
            .filter_map(|r| r.median)
            .chain(rows.iter().filter_map(|r| r.target()?.limit_ns))
            .fold(1.0f64, f64::max);
        // A 1, 2 or 5 times a power of ten step, for about five grid lines.
        let raw = max / 5.0;
        let pow = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|k| k * pow)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * pow);
        Scale::Linear {
            max: (max / step).ceil() * step,
            step,
        }
    }

    /// Where `v` falls, from 0 (left) to 1 (right).
    fn position(&self, v: f64) -> f64 {
        let t = match *self {
            Scale::Log { lo, hi } => {
                (v.max(f64::MIN_POSITIVE).log10() - lo as f64) / (hi - lo) as f64
            }
            Scale::Linear { max, .. } => v / max,
        };
        t.clamp(0.0, 1.0)
    }

    /// The grid lines: `(value, label)`.
    fn grid(&self) -> Vec<(f64, String)> {
        match *self {
            Scale::Log { lo, hi } => (lo..=hi).map(|e| (10f64.powi(e), decade(e))).collect(),
            Scale::Linear { max, step } => {
                let n = (max / step).round() as usize;
                (0..=n)
                    .map(|i| {
                        let v = i as f64 * step;
                        let label = if step < 1.0 {
                            format!("{v:.1} ns")
                        } else {
                            format!("{v:.0} ns")
                        };
                        (v, label)
                    })
                    .collect()
            }
        }
    }
}

/// Layout shared by the panels.
struct Chart {
    /// Left edge of the bars (the labels end left of it).
    x0: f64,
}

impl Chart {
    /// Draws one panel of bars from `top`; returns the y below it.
    fn panel(&self, s: &mut String, top: f64, title: &str, rows: &[&Row], scale: Scale) -> f64 {
        let x0 = self.x0;
        let plot_w = WIDTH - x0 - VALUE_ROOM;
        let x_of = |v: f64| x0 + scale.position(v) * plot_w;
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-size="13" font-weight="bold">{}</text>"#,
            top + 8.0,
            esc(title)
        );
        let top = top + 20.0;
        let plot_h = rows.len() as f64 * ROW_H;

        for (v, label) in scale.grid() {
            let x = x_of(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
                top - 4.0,
                top + plot_h,
                top + plot_h + 16.0,
                esc(&label)
            );
        }

        for (i, row) in rows.iter().enumerate() {
            let mid = top + i as f64 * ROW_H + ROW_H / 2.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end" font-family="monospace">{}</text>"#,
                x0 - 8.0,
                mid + 4.0,
                esc(&row.plain_label())
            );
            let Some(median) = row.median.filter(|m| *m > 0.0) else {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{:.1}" fill="#777" font-style="italic">{}</text>"##,
                    x0 + 4.0,
                    mid + 4.0,
                    esc(&row.what.replace('`', ""))
                );
                continue;
            };
            let colour = GROUPS
                .iter()
                .find(|(g, _)| row.id.split('/').next() == Some(g))
                .map_or("#888", |(_, c)| c);
            let x = x_of(median);
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{BAR_H}" fill="{colour}"><title>{}</title></rect>"#,
                mid - BAR_H / 2.0,
                (x - x0).max(1.0),
                esc(&format!(
                    "{}: {}",
                    row.plain_label(),
                    row.what.replace('`', "")
                ))
            );
            let mut value = ns(median);
            if let Some(i) = row.instructions {
                let _ = write!(value, ", {i:.0} instructions");
            }
            let limit = row.target().and_then(|t| t.limit_ns);
            // Right of the bar, and of the target tick when that is further right.
            let text_x = x.max(limit.map_or(x, |l| x_of(l) + 1.0)) + 5.0;
            let _ = writeln!(
                s,
                r#"<text x="{text_x:.1}" y="{:.1}">{}</text>"#,
                mid + 4.0,
                esc(&value)
            );
            if let Some(limit) = limit {
                let tx = x_of(limit);
                let _ = writeln!(
                    s,
                    r#"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="red" stroke-width="2"><title>target: {}</title></line>"#,
                    mid - BAR_H / 2.0 - 3.0,
                    mid + BAR_H / 2.0 + 3.0,
                    esc(&ns(limit))
                );
            }
        }
        top + plot_h + 30.0
    }
}

/// Bar colours by the first part of the id.
const GROUPS: &[(&str, &str)] = &[
    ("raw", "#6a5acd"),
    ("sched", "#4682b4"),
    ("growth", "#2e8b57"),
    ("ffi", "#e08a1e"),
    ("go", "#00add8"),
];

/// Criterion's estimates are in nanoseconds per iteration.
pub fn ns(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1000.0 {
        format!("{:.2} µs", v / 1000.0)
    } else {
        format!("{v:.2} ns")
    }
}

/// The label of the grid line at 10^e ns.
fn decade(e: i32) -> String {
    let (unit, shift) = match e {
        i32::MIN..=2 => ("ns", 0),
        3..=5 => ("µs", 3),
        6..=8 => ("ms", 6),
        _ => ("s", 9),
    };
    let v = 10f64.powi(e - shift);
    if v < 1.0 {
        format!("{v:.*} {unit}", (shift - e) as usize)
    } else {
        format!("{v:.0} {unit}")
    }
}

/// Escapes text for SVG (XML).
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::new(true);
        for (id, median, instr) in [
            ("ffi/mode_switch", Some(9.8), Some(61.0)),
            ("ffi/direct_rust_to_c", Some(2.1), Some(12.0)),
            ("ffi/mode_offload", Some(20_900.0), None),
            ("go/missing", None, None),
            ("growth/chain_16m_fault", Some(12.5e6), None),
        ] {
            let mut row = Row::new(id);
            row.median = median;
            row.spread = median.map(|m| (m * 0.9, m * 1.1));
            row.instructions = instr;
            report.rows.push(row);
        }
        report.notes.push(Note::Plain(
            "valgrind not found on PATH: <none> & so on".into(),
        ));
        report
            .notes
            .push(Note::Failure("step 2 failed:\nbad".into()));
        report.sort();
        report
    }

    #[test]
    fn markdown_has_every_row_target_and_note() {
        let md = sample().markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].ends_with("| instructions/call | target |"));
        assert!(lines[2].starts_with("| `growth/chain_16m_fault` |"), "{md}");
        assert!(lines[3].starts_with("| `ffi/direct_rust_to_c` |"), "{md}");
        assert!(md.contains("| 9.80 ns | 8.82 ns to 10.78 ns | 61.0 | ≤ 3 ns (Go cgo: ~36 ns): **missed** (3.3x) |"), "{md}");
        assert!(
            md.contains(
                "| Go cgo | Go toolchain not found on PATH: Go figures not measured | - | - | - |"
            ),
            "{md}"
        );
        assert!(md.contains("valgrind not found on PATH"));
        assert!(md.contains("**step 2 failed: bad**"));
    }

    #[test]
    fn svg_is_escaped_and_has_a_bar_per_measured_row() {
        let svg = sample().svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("&lt;none&gt; &amp; so on"));
        assert!(!svg.contains("<none>"));
        // The background, the legend (ffi and growth), 4 bars on the log scale and 2 on the
        // linear one.
        assert_eq!(svg.matches("<rect x=\"").count(), 1 + 2 + 4 + 2);
        assert!(svg.contains(">1 ns<") && svg.contains(">100 ms<"), "{svg}");
        assert!(svg.contains("Go toolchain not found on PATH"));
    }

    #[test]
    fn linear_scale_has_round_steps() {
        let mut a = Row::new("go/cgo_callback");
        a.median = Some(92.0);
        let mut b = Row::new("ffi/mode_switch");
        b.median = Some(2.0);
        let Scale::Linear { max, step } = Scale::linear(&[&a, &b]) else {
            panic!("not linear")
        };
        assert_eq!((max, step), (100.0, 20.0));
        // The target (10 ns) counts too.
        let mut c = Row::new("ffi/callback_switch");
        c.median = Some(4.0);
        let Scale::Linear { max, step } = Scale::linear(&[&c]) else {
            panic!("not linear")
        };
        assert_eq!((max, step), (10.0, 2.0));
    }

    #[test]
    fn decade_labels() {
        assert_eq!(decade(-1), "0.1 ns");
        assert_eq!(decade(0), "1 ns");
        assert_eq!(decade(2), "100 ns");
        assert_eq!(decade(3), "1 µs");
        assert_eq!(decade(7), "10 ms");
        assert_eq!(decade(9), "1 s");
    }
}
