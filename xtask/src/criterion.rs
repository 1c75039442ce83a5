//! Reading criterion's results: every `new/estimates.json` written during this run.

use std::fs;
use std::path::Path;
use std::time::SystemTime;

use crate::rows::Row;

/// Finds every `new/estimates.json` criterion wrote under `dir` since `since`.
pub fn collect(dir: &Path, since: SystemTime, rows: &mut Vec<Row>) -> Result<(), String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let estimates = path.join("new").join("estimates.json");
        let fresh = fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if fresh {
            rows.push(read_row(&path)?);
        } else {
            collect(&path, since, rows)?;
        }
    }
    Ok(())
}

fn read_row(dir: &Path) -> Result<Row, String> {
    let read = |name: &str| -> Result<serde_json::Value, String> {
        let path = dir.join("new").join(name);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let bench = read("benchmark.json")?;
    let est = read("estimates.json")?;
    let median = &est["median"];
    let num = |v: &serde_json::Value| {
        v.as_f64()
            .ok_or_else(|| format!("{}: malformed estimates", dir.display()))
    };
    let mut row = Row::new(bench["full_id"].as_str().unwrap_or("?"));
    row.median = Some(num(&median["point_estimate"])?);
    row.spread = Some((
        num(&median["confidence_interval"]["lower_bound"])?,
        num(&median["confidence_interval"]["upper_bound"])?,
    ));
    Ok(row)
}
