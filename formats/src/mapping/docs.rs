//! `docs/formats.md` checked against the code: every format's detection rule and mapping
//! table, and the generic format's section as a whole.

use super::{Field, Spec, spec};
use crate::format::Format;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/formats.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// `FirstSeen` → `first_seen`.
fn snake(field: Field) -> String {
    let name = format!("{field:?}");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The mapping table of one format as Markdown, as written in `docs/formats.md`.
fn markdown(spec: &Spec) -> String {
    let mut md = String::from("| field | header names, best first |\n|---|---|\n");
    for (field, names) in spec.columns {
        let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        md.push_str(&format!("| {} | {} |\n", snake(*field), names.join(", ")));
    }
    md
}

fn detected_by(spec: &Spec) -> String {
    format!("Detected by: {}", spec.describe())
}

#[test]
fn docs_show_the_mapping_tables_as_coded() {
    let doc = doc();
    let mut missing = Vec::new();
    for &f in Format::ALL {
        let s = spec(f);
        let (table, detect) = (markdown(s), detected_by(s));
        if !doc.contains(&table) || !doc.contains(&detect) {
            missing.push(format!("### {f}\n\n{detect}\n\n{table}"));
        }
    }
    assert!(missing.is_empty(), "docs/formats.md is out of date:\n{}", missing.join("\n"));
}

/// The generic format's columns in the order the docs present them: the required ones, then
/// the others in table order.
fn generic_columns() -> Vec<&'static str> {
    let spec = spec(Format::Generic);
    let mut columns: Vec<&str> = spec.required.to_vec();
    for (_, names) in spec.columns {
        for name in *names {
            if !columns.contains(name) {
                columns.push(name);
            }
        }
    }
    columns
}

/// The generic section is the specification users write files from, so every part of it the
/// code decides is compared whole, and nothing else may sit between its parts: the detection
/// rule, the mapping table, the header line, and the column table (names in order, and
/// "yes" exactly for the required ones), each a paragraph of its own, with one paragraph of
/// prose before the header line and one after the column table.
#[test]
fn the_generic_section_is_exactly_what_the_code_accepts() {
    let doc = doc();
    let heading = "### hexflow generic CSV\n\n";
    let start = doc.find(heading).expect("a \"### hexflow generic CSV\" section") + heading.len();
    let end = doc[start..].find("\n## ").map_or(doc.len(), |i| start + i);
    let blocks: Vec<&str> = doc[start..end].trim_end().split("\n\n").collect();
    let spec = spec(Format::Generic);
    let header = format!("```\n{}\n```", generic_columns().join(","));
    let expected_count = 6;
    assert_eq!(
        blocks.len(),
        expected_count,
        "the generic section has {} paragraphs, expected {expected_count}: detection, mapping table, intro, header line, column table, notes:\n{}",
        blocks.len(),
        blocks.join("\n\n")
    );
    assert_eq!(blocks[0], detected_by(spec), "detection rule");
    assert_eq!(blocks[1], markdown(spec).trim_end(), "mapping table");
    assert!(!blocks[2].starts_with(['|', '`', ' ']), "an intro paragraph, not {:?}", blocks[2]);
    assert_eq!(blocks[3], header, "header line");

    let rows: Vec<Vec<&str>> =
        blocks[4].lines().skip(2).map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect()).collect();
    assert_eq!(blocks[4].lines().take(2).collect::<Vec<_>>(), ["| column | required | meaning |", "|---|---|---|"]);
    let named: Vec<&str> = rows.iter().flat_map(|r| r[0].split(", ").map(|n| n.trim_matches('`'))).collect();
    assert_eq!(named, generic_columns(), "the column table names every column once, in header order");
    for row in &rows {
        let required = row[0].split(", ").any(|n| spec.required.contains(&n.trim_matches('`')));
        assert_eq!(row[1].starts_with("yes"), required, "required? {row:?}");
        assert!(row.len() == 3 && !row[2].is_empty(), "a meaning for {row:?}");
    }
    assert!(!blocks[5].starts_with(['|', '`', ' ']), "a notes paragraph, not {:?}", blocks[5]);
}
