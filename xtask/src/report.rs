//! The report: one table (Markdown) and one chart (SVG) of every figure of the run.

use std::fmt::Write as _;

use crate::compare::{self, Met, Peer, Verdict};
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

    /// The median of a row measured in this run.
    pub fn median_of(&self, id: &str) -> Option<f64> {
        self.rows.iter().find(|r| r.id == id).and_then(|r| r.median)
    }

    /// A row against its target and its fastest peer, in this run.
    pub fn assess(&self, row: &Row) -> (Verdict, Peer) {
        let median_of = |id: &str| self.median_of(id);
        (
            compare::verdict(row.target(), row.median, &median_of),
            compare::best_peer(&row.id, row.median, &median_of),
        )
    }

    pub fn markdown(&self) -> String {
        let mut md = String::from(
            "| benchmark | what | median | spread | instructions/call | target | met | best peer (median) | ratio to it |\n\
             |---|---|---:|---|---:|---|---|---|---:|\n",
        );
        for row in &self.rows {
            let median = row.median.map_or("not measured".into(), ns);
            let spread = row.spread.map_or("-".into(), |(lo, hi)| {
                format!("{} to {}{}", ns(lo), ns(hi), row.spread_note)
            });
            let instructions = row.instructions.map_or("-".into(), |i| format!("{i:.1}"));
            let (verdict, peer) = self.assess(row);
            let mut target = row.target().map_or(String::new(), |t| t.text.to_string());
            if let (true, Some(limit)) = (verdict.relative, verdict.limit) {
                let _ = write!(target, " (here: {})", ns(limit));
            }
            let met = match &verdict.met {
                Met::NoTarget => "-".to_string(),
                Met::Yes => "yes".to_string(),
                Met::No { over } => format!("**no** ({over:.2}x the target)"),
                Met::Unknown(why) => format!("- ({why})"),
            };
            let (peer, ratio) = match peer {
                Peer::None => ("-".to_string(), "-".to_string()),
                Peer::NotMeasured(labels) => {
                    (format!("{}: not measured", labels.join(", ")), "-".into())
                }
                Peer::Best { id, median, ratio } => (
                    format!("{} ({})", Row::new(&id).label, ns(median)),
                    ratio.map_or("-".into(), |r| format!("{r:.2}x")),
                ),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {median} | {spread} | {instructions} | {target} | {met} | {peer} | {ratio} |",
                row.label, row.what
            );
        }
        md.push_str(
            "\nspread: criterion's 95% confidence interval of the median, or the fastest to \
             slowest round of a Go figure. met: whether the median is within the target, every \
             relative target evaluated from this run's figures (\"-\": no target, or not \
             measured). best peer: the fastest of the row's peers measured in this run; ratio: \
             the row's median over the peer's (below 1: pagurus is faster).\n",
        );
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
    /// under a microsecond again on a linear scale (where a few ns show); targets as red ticks
    /// (evaluated in this run), the best peer as a black diamond, the verdict and the ratio to
    /// the peer as text.
    pub fn svg(&self) -> String {
        let all: Vec<&Row> = self.rows.iter().collect();
        let fast_ffi: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| {
                r.id.starts_with("ffi/")
                    || ["go/plain_call", "go/cgo_call", "go/cgo_callback"].contains(&r.id.as_str())
            })
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
            self,
            &mut body,
            y,
            "every benchmark, log scale",
            &all,
            Scale::log(&all),
        );
        if fast_ffi.len() >= 2 {
            let limits: Vec<f64> = fast_ffi
                .iter()
                .filter_map(|r| self.assess(r).0.limit)
                .collect();
            y = chart.panel(
                self,
                &mut body,
                y + 16.0,
                "foreign calls under 1 µs, linear scale",
                &fast_ffi,
                Scale::linear(&fast_ffi, &limits),
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
        let lx = lx + 6.0 + 250.0;
        let _ = writeln!(
            s,
            r#"<path d="M{lx} 35 l4 5 l-4 5 l-4 -5 z" fill="black"/><text x="{}" y="44">best peer in this run (ratio: median over the peer's)</text>"#,
            lx + 8.0
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

const WIDTH: f64 = 1500.0;
const ROW_H: f64 = 22.0;
const BAR_H: f64 = 14.0;
/// Width of a character of the monospace labels at 12px.
const CHAR_W: f64 = 7.3;
/// Room right of the plot for the value of the longest bar.
const VALUE_ROOM: f64 = 540.0;

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

    /// From 0 to past the largest median or limit.
    fn linear(rows: &[&Row], limits: &[f64]) -> Scale {
        let max = rows
            .iter()
            .filter_map(|r| r.median)
            .chain(limits.iter().copied())
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
    fn panel(
        &self,
        report: &Report,
        s: &mut String,
        top: f64,
        title: &str,
        rows: &[&Row],
        scale: Scale,
    ) -> f64 {
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
                    esc(&format!("not measured: {}", row.what.replace('`', "")))
                );
                continue;
            };
            let (verdict, peer) = report.assess(row);
            let colour = GROUPS
                .iter()
                .find(|(g, _)| row.id.split('/').next() == Some(g))
                .map_or("#888", |(_, c)| c);
            let x = x_of(median);
            // A missed target outlines the bar in red.
            let stroke = if matches!(verdict.met, Met::No { .. }) {
                r#" stroke="red" stroke-width="1.5""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{BAR_H}" fill="{colour}"{stroke}><title>{}</title></rect>"#,
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
            match &verdict.met {
                Met::Yes => value.push_str(" · target met"),
                Met::No { over } => {
                    let _ = write!(value, " · target MISSED ({over:.2}x)");
                }
                Met::Unknown(_) | Met::NoTarget => {}
            }
            let peer_x = match &peer {
                Peer::Best { id, median, ratio } => {
                    let label = Row::new(id).plain_label();
                    match ratio {
                        Some(r) => {
                            let _ = write!(value, " · {r:.2}x {label} ({})", ns(*median));
                        }
                        None => {
                            let _ = write!(value, " · {label}: {}", ns(*median));
                        }
                    }
                    Some((x_of(*median), label, *median))
                }
                Peer::NotMeasured(_) => {
                    value.push_str(" · peer not measured");
                    None
                }
                Peer::None => None,
            };
            let limit = verdict.limit;
            // Right of the bar, and of the target tick and peer mark when they are further right.
            let text_x = [
                Some(x),
                limit.map(|l| x_of(l) + 1.0),
                peer_x.as_ref().map(|p| p.0 + 4.0),
            ]
            .into_iter()
            .flatten()
            .fold(x, f64::max)
                + 5.0;
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
            if let Some((px, label, median)) = peer_x {
                // The best peer: a black diamond at its median.
                let _ = writeln!(
                    s,
                    r#"<path d="M{px:.1} {:.1} l4 5 l-4 5 l-4 -5 z" fill="black"><title>best peer: {}</title></path>"#,
                    mid - 5.0,
                    esc(&format!("{label}, {}", ns(median)))
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
    ("channel", "#8a4fbf"),
    ("sync", "#b8860b"),
    ("time", "#c0508a"),
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
            ("sched/yield_now", Some(9.0), None),
            ("go/gosched", Some(45.0), None),
            ("sync/mutex_uncontended", Some(30.0), None),
            ("sync/std_mutex_uncontended", Some(20.0), None),
            ("channel/pingpong_1_worker", None, None),
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

    /// The cells of the Markdown row whose first cell is `label`.
    fn cells(md: &str, label: &str) -> Vec<String> {
        let line = md
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no row {label} in\n{md}"));
        line.trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_string())
            .collect()
    }

    #[test]
    fn markdown_has_every_row_target_peer_and_note() {
        let md = sample().markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].ends_with("| target | met | best peer (median) | ratio to it |"));
        // The report's order: sched, channel, sync, growth, ffi, go.
        assert!(lines[2].starts_with("| `sched/yield_now` |"), "{md}");
        assert!(
            lines[3].starts_with("| `channel/pingpong_1_worker` |"),
            "{md}"
        );
        assert!(lines[6].starts_with("| `growth/chain_16m_fault` |"), "{md}");
        assert!(lines[7].starts_with("| `ffi/direct_rust_to_c` |"), "{md}");

        // An absolute target met, with a Go peer.
        let c = cells(&md, "`sched/yield_now`");
        assert_eq!(
            c[2..],
            [
                "9.00 ns",
                "8.10 ns to 9.90 ns",
                "-",
                "≤ 20 ns",
                "yes",
                "Go: Gosched (45.00 ns)",
                "0.20x"
            ]
        );
        // Two conditions, one relative to another row of this run: the stricter one (2.1 + 2 ns
        // > 3 ns) is the limit; the cgo peer not measured.
        let c = cells(&md, "`ffi/mode_switch`");
        assert_eq!(c[5], "≤ 3 ns and ≤ the plain call + 2 ns (here: 3.00 ns)");
        assert_eq!(c[6], "**no** (3.27x the target)");
        assert_eq!(c[7], "Go cgo: call: not measured");
        assert_eq!(c[8], "-");
        // A ratio to a peer in the same run: 30 ns against 1.2 x 20 ns.
        let c = cells(&md, "`sync/mutex_uncontended`");
        assert_eq!(c[5], "≤ 1.2x `std::sync::Mutex` (here: 24.00 ns)");
        assert_eq!(c[6], "**no** (1.25x the target)");
        assert_eq!(c[7], "`sync/std_mutex_uncontended` (20.00 ns)");
        assert_eq!(c[8], "1.50x");
        // A relative target whose reference was not measured: cannot say.
        let c = cells(&md, "`growth/chain_16m_fault`");
        assert_eq!(c[6], "- (Go: growth 2 KiB -> 16 MiB not measured)");
        // A row that did not run.
        let c = cells(&md, "`channel/pingpong_1_worker`");
        assert_eq!(c[2], "not measured");
        assert_eq!(c[6], "- (not measured)");
        // Peers and reference rows have no target or peer of their own.
        let c = cells(&md, "Go: Gosched");
        assert_eq!(c[5..], ["", "-", "-", "-"]);
        assert!(
            md.contains("| Go | Go toolchain not found: Go figures not measured | not measured |"),
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
        // The background, the legend (sched, sync, growth, ffi, go), 8 bars on the log scale and
        // 2 on the linear one.
        assert_eq!(svg.matches("<rect x=\"").count(), 1 + 5 + 8 + 2);
        assert!(svg.contains(">1 ns<") && svg.contains(">100 ms<"), "{svg}");
        assert!(svg.contains("not measured: Go toolchain not found"));
        // Verdicts, peers and ratios.
        assert!(
            svg.contains("9.00 ns · target met · 0.20x Go: Gosched (45.00 ns)"),
            "{svg}"
        );
        assert!(svg.contains("target MISSED (1.25x) · 1.50x sync/std_mutex_uncontended"));
        assert!(svg.contains("<title>best peer: Go: Gosched, 45.00 ns</title>"));
        assert!(svg.contains("<title>target: 24.00 ns</title>"));
        assert!(svg.contains("peer not measured"));
    }

    #[test]
    fn linear_scale_has_round_steps() {
        let mut a = Row::new("go/cgo_callback");
        a.median = Some(92.0);
        let mut b = Row::new("ffi/mode_switch");
        b.median = Some(2.0);
        let Scale::Linear { max, step } = Scale::linear(&[&a, &b], &[]) else {
            panic!("not linear")
        };
        assert_eq!((max, step), (100.0, 20.0));
        // The target (10 ns) counts too.
        let mut c = Row::new("ffi/callback_switch");
        c.median = Some(4.0);
        let Scale::Linear { max, step } = Scale::linear(&[&c], &[10.0]) else {
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
