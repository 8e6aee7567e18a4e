//! Small helpers shared by the test modules: parsing kubectl tables and JSON output.

use std::path::PathBuf;

use ferrokube_conformance::manifests_dir;

/// A kubectl table split into cells by the header's column offsets (cells may be empty).
#[derive(Debug)]
pub struct Table {
    /// The header names, e.g. `["NAME", "READY", ...]`.
    pub headers: Vec<String>,
    /// One row per object.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses kubectl's human-readable output. Header names must not contain single spaces
    /// (true for the tables parsed here).
    pub fn parse(text: &str) -> Table {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else {
            panic!("expected a table, got empty output");
        };
        let mut starts = Vec::new();
        let mut headers = Vec::new();
        let mut prev_space = true;
        for (i, c) in header.char_indices() {
            if !c.is_whitespace() && prev_space {
                starts.push(i);
            }
            prev_space = c.is_whitespace();
        }
        for (n, &s) in starts.iter().enumerate() {
            let end = starts.get(n + 1).copied().unwrap_or(header.len());
            headers.push(header[s..end].trim().to_string());
        }
        let rows = lines
            .map(|line| {
                starts
                    .iter()
                    .enumerate()
                    .map(|(n, &s)| {
                        let end = starts.get(n + 1).copied().unwrap_or(line.len());
                        line.get(s.min(line.len())..end.min(line.len()))
                            .unwrap_or("")
                            .trim()
                            .to_string()
                    })
                    .collect()
            })
            .collect();
        Table { headers, rows }
    }

    /// The cell in `column` of the row whose first cell is `name`; panics with the table if absent.
    pub fn cell(&self, name: &str, column: &str) -> &str {
        let Some(col) = self.headers.iter().position(|h| h == column) else {
            panic!("no column {column} in {:?}", self.headers);
        };
        let Some(row) = self.rows.iter().find(|r| r[0] == name) else {
            panic!("no row {name} in {self:#?}");
        };
        &row[col]
    }

    /// The first column of every row.
    pub fn names(&self) -> Vec<&str> {
        self.rows.iter().map(|r| r[0].as_str()).collect()
    }
}

/// The header line of a kubectl table, whitespace-normalized.
pub fn header_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Collapses all whitespace runs to one space (for multi-line text checks).
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses JSON printed by kubectl, panicking with the text on error.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"))
}

/// The path of a manifest in `conformance/manifests`.
pub fn manifest(name: &str) -> PathBuf {
    let path = manifests_dir().join(name);
    assert!(path.is_file(), "missing manifest {}", path.display());
    path
}

/// The names printed by `kubectl get ... -o name`, without the `kind/` prefix, sorted.
pub fn names_of(output: &str) -> Vec<String> {
    let mut names: Vec<String> = output
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit('/').next().unwrap_or(l).to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn table_parse_handles_empty_cells() {
    let t = Table::parse(
        "NAME          SHORTNAMES   APIVERSION   NAMESPACED   KIND\n\
         bindings                   v1           true         Binding\n\
         configmaps    cm           v1           true         ConfigMap\n",
    );
    assert_eq!(
        t.headers,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    assert_eq!(t.cell("bindings", "SHORTNAMES"), "");
    assert_eq!(t.cell("configmaps", "SHORTNAMES"), "cm");
    assert_eq!(t.cell("configmaps", "KIND"), "ConfigMap");
    assert_eq!(t.names(), ["bindings", "configmaps"]);
}
