//! `cargo xtask layers`: checks that the runtime's modules import only from the layers below.
//!
//! The order is the diagram at the top of `crates/pagurus-runtime/src/lib.rs`, repeated in
//! [`LAYERS`]. Every `crate::` path in a module's code (comments, string literals and
//! `#[cfg(test)]` modules left out: tests may reach upward to drive what they test) must name a
//! module of a lower layer, or its own module. A path into a higher layer, into another module of
//! the same layer, or into a module the table does not know is reported as `file:line`, and the
//! task fails.

use std::fs;
use std::path::{Path, PathBuf};

/// Each top-level module of `pagurus-runtime` and its layer (0 is the bottom).
pub const LAYERS: &[(&str, u32)] = &[
    ("arch", 0),
    ("loom", 0),
    ("stats", 1),
    ("fatal", 1),
    ("env", 1),
    ("ffi_mode", 1),
    ("stack", 2),
    ("coroutine", 3),
    ("grow", 4),
    ("dump", 5),
    ("sched", 6),
    ("raw", 6),
    ("offload", 7),
    ("channel", 8),
    ("sync", 8),
    ("future", 8),
    ("time", 9),
    ("net", 9),
];

fn layer_of(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// One reference that breaks the order.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// 1-based line in the file.
    pub line: usize,
    /// The module referred to (`crate::<target>`).
    pub target: String,
    pub why: String,
}

/// Runs the check over the runtime's sources; `Err` lists every violation.
pub fn run() -> Result<(), String> {
    let src = crate::workspace_root().join("crates/pagurus-runtime/src");
    let mut files = Vec::new();
    collect(&src, &mut files).map_err(|e| format!("reading {}: {e}", src.display()))?;
    files.sort();
    let mut report = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap_or(file);
        let Some(module) = module_of(rel) else {
            continue; // lib.rs: the top, which declares and re-exports everything
        };
        let text = fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        if layer_of(&module).is_none() {
            report.push(format!(
                "{}: module `{module}` has no layer in xtask/src/layers.rs (add it there and to \
                 the diagram in lib.rs)",
                file.display()
            ));
            continue;
        }
        checked += 1;
        for v in check_source(&module, &text) {
            report.push(format!(
                "{}:{}: `{module}` references `crate::{}`: {}",
                file.display(),
                v.line,
                v.target,
                v.why
            ));
        }
    }
    if report.is_empty() {
        println!("layers: {checked} files import only from the layers below them");
        Ok(())
    } else {
        Err(format!(
            "{} reference(s) break the layer order (crates/pagurus-runtime/src/lib.rs):\n{}",
            report.len(),
            report.join("\n")
        ))
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The top-level module a source file belongs to (`grow/frames/mod.rs` -> `grow`); `None` for
/// the crate root and for test-only files (`tests.rs`).
pub fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    if rel.file_name().is_some_and(|n| n == "tests.rs") {
        return None;
    }
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(name) => Some(name.to_string()),
        None => Some(first.to_string()),
    }
}

/// The violations in the source of `module`.
pub fn check_source(module: &str, text: &str) -> Vec<Violation> {
    let own = layer_of(module);
    let mut out = Vec::new();
    for (line, target) in crate_paths(&code_only(text)) {
        let why = match (own, layer_of(&target)) {
            _ if target == module => continue,
            (_, None) => "not a module of the layer table".to_string(),
            (None, _) => format!("`{module}` has no layer"),
            (Some(a), Some(b)) if b < a => continue,
            (Some(a), Some(b)) if b == a => format!("a module of the same layer ({a})"),
            (Some(a), Some(b)) => format!("a higher layer ({b} above {a})"),
        };
        out.push(Violation { line, target, why });
    }
    out
}

/// `text` with comments, string and character literals blanked (newlines kept, so line numbers
/// hold) and `#[cfg(test)]` modules removed.
pub fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3; // 'x'
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    strip_test_modules(&out)
}

/// Blanks `#[cfg(test)] mod name { ... }` (and `#[cfg(test)] mod name;`), keeping newlines.
fn strip_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let item = after.trim_start();
        let is_mod = item.starts_with("mod ") || item.starts_with("pub(crate) mod ");
        if !is_mod {
            out.push_str("#[cfg(test)]");
            rest = after;
            continue;
        }
        // Skip to the end of the module: its `;`, or the brace matching its first `{`.
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, ch) in after.char_indices() {
            match ch {
                ';' if depth == 0 => {
                    end = k + 1;
                    break;
                }
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.extend(after[..end].chars().filter(|&c| c == '\n'));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// `(line, module)` of every `crate::module` path in `code`, including each name of a grouped
/// `crate::{a, b::c}` import.
pub fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(k) = code[from..].find("crate::") {
        let at = from + k;
        from = at + "crate::".len();
        // `pagurus_crate::` or `$crate::` are not ours.
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || matches!(bytes[at - 1], b'_' | b'$'))
        {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut start = 0;
            let mut names = Vec::new();
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        names.push(&group[start..k]);
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(&group[start..k]);
                        start = k + 1;
                    }
                    _ => {}
                }
            }
            for name in names {
                let name = first_ident(name.trim());
                if !name.is_empty() && name != "self" {
                    out.push((line, name.to_string()));
                }
            }
        } else {
            let name = first_ident(rest);
            if !name.is_empty() {
                out.push((line, name.to_string()));
            }
        }
    }
    out
}

fn first_ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upward_import_is_caught_with_its_line() {
        let src = "use std::fmt;\n\nuse crate::sched::WorkerCore;\nuse crate::stack::Stack;\n";
        let found = check_source("grow", src);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].line, found[0].target.as_str()), (3, "sched"));
        assert!(found[0].why.contains("higher layer"), "{}", found[0].why);
    }

    #[test]
    fn grouped_imports_and_inline_paths_are_seen() {
        let src =
            "use crate::{arch, coroutine::Context};\nfn f() { crate::grow::fault::install(); }\n";
        let found: Vec<_> = check_source("stack", src)
            .into_iter()
            .map(|v| (v.line, v.target))
            .collect();
        assert_eq!(
            found,
            [(1, "coroutine".to_string()), (2, "grow".to_string())]
        );
    }

    #[test]
    fn sideways_and_unknown_modules_are_violations() {
        let found = check_source("sched", "use crate::raw::Coroutine;\nuse crate::nowhere;\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].why.contains("same layer"));
        assert!(found[1].why.contains("not a module"));
    }

    #[test]
    fn comments_strings_and_test_modules_do_not_count() {
        let src = r#"
//! Docs may mention crate::sched freely.
/* and crate::offload in a block */
const S: &str = "crate::sched";
use crate::arch;
#[cfg(test)]
mod tests {
    use crate::raw::Coroutine;
    fn f() { let _ = '{'; }
}
fn g() { crate::offload::run(|| ()); }
"#;
        let found: Vec<_> = check_source("stack", src)
            .into_iter()
            .map(|v| (v.line, v.target))
            .collect();
        assert_eq!(found, [(11, "offload".to_string())]);
    }

    #[test]
    fn files_map_to_their_top_module() {
        assert_eq!(
            module_of(Path::new("grow/frames/mod.rs")).as_deref(),
            Some("grow")
        );
        assert_eq!(module_of(Path::new("fatal.rs")).as_deref(), Some("fatal"));
        assert_eq!(module_of(Path::new("lib.rs")), None);
        assert_eq!(module_of(Path::new("grow/frames/tests.rs")), None);
    }

    #[test]
    fn the_runtime_is_layered() {
        if let Err(report) = run() {
            panic!("{report}");
        }
    }
}
