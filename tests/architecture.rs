//! The shape ARCHITECTURE.md promises, checked on the sources: no module names one above
//! it in the layer order (so there are no import cycles), every module has a layer, and
//! no function outside the network kernels runs past about 120 lines, and the window
//! paints only with the colours of `gui/palette.rs`, where their contrast is checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// ARCHITECTURE.md's layer order, lowest first. A module may name modules of lower
/// layers only (and its own submodules).
const LAYERS: &[&[&str]] = &[
    &["types"],
    &["error"],
    &["matching", "device", "imageio", "dataset", "cpu", "cue"],
    &["nn", "models", "store"],
    &["face", "signature", "camera"],
    &["kiosk", "attendance", "gallery", "enroll", "eval"],
    &["train", "perf"],
    &["workflow"],
    &["context"],
    &["gui"],
    &["cli"],
];

/// Files whose long functions are network kernels, tiled and unrolled on purpose.
const KERNEL_FILES: &[&str] = &[];
const MAX_FUNCTION_LINES: usize = 120;

fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(&src(), &mut found);
    found.sort();
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `src/face/detector.rs` -> `face`; the crate root files have no module.
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(src()).unwrap();
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The crate's top-level modules that `text` names: `crate::x` paths and the members of
/// `use crate::{x, y::z}` groups.
fn named_modules(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            let mut depth = 0;
            let mut member = String::new();
            for c in group[..end].chars().chain(std::iter::once(',')) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let head: String = member
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !head.is_empty() {
                            names.push(head);
                        }
                        member.clear();
                        continue;
                    }
                    _ => {}
                }
                member.push(c);
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !head.is_empty() {
                names.push(head);
            }
        }
    }
    names
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn no_module_names_one_above_it() {
    let mut violations = BTreeMap::new();
    for path in sources() {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` has no layer in ARCHITECTURE.md's order"));
        let text = std::fs::read_to_string(&path).unwrap();
        for named in named_modules(&text) {
            if named == module || matches!(named.as_str(), "Error" | "Result") {
                continue;
            }
            let layer = layer_of(&named).unwrap_or_else(|| {
                panic!("{} names `{named}`, which has no layer", path.display())
            });
            if layer >= own {
                violations
                    .entry(format!("{module} (layer {own})"))
                    .or_insert_with(Vec::new)
                    .push(format!("{named} (layer {layer}) in {}", path.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules naming their own layer or one above it: {violations:#?}"
    );
}

#[test]
fn the_layer_check_sees_plain_and_grouped_paths() {
    let names = named_modules(
        "use crate::store::{Store, Punch};\nuse crate::{eval, imageio::load, models};\nlet x = crate::gui::run(); // crate::cli in a comment",
    );
    assert_eq!(names, ["store", "eval", "imageio", "models", "gui"]);
}

/// (start line, length) of each `fn` whose body runs past `MAX_FUNCTION_LINES`.
fn long_functions(text: &str) -> Vec<(usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "pub(super) fn ",
            "unsafe fn ",
            "pub unsafe fn ",
        ]
        .iter()
        .any(|prefix| trimmed.starts_with(prefix));
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let closing = format!("{}}}", " ".repeat(indent));
        if let Some(end) = lines[start..].iter().position(|l| *l == closing)
            && end + 1 > MAX_FUNCTION_LINES
        {
            let name = trimmed.split('(').next().unwrap_or(trimmed).to_string();
            long.push((start + 1, end + 1, name));
        }
    }
    long
}

#[test]
fn no_function_outside_the_kernels_runs_past_120_lines() {
    let mut found = Vec::new();
    for path in sources() {
        let relative = path
            .strip_prefix(src())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if KERNEL_FILES.contains(&relative.as_str()) {
            continue;
        }
        for (line, length, name) in long_functions(&std::fs::read_to_string(&path).unwrap()) {
            found.push(format!("{relative}:{line} {name}: {length} lines"));
        }
    }
    assert!(
        found.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {found:#?}"
    );
}

#[test]
fn the_window_paints_only_with_the_palette() {
    let palette = src().join("gui").join("palette.rs");
    let mut found = Vec::new();
    for path in sources() {
        if path == palette {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            if line.contains("Color32::") || line.contains("_fg_color") {
                found.push(format!(
                    "{}:{}: {}",
                    path.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "colours chosen outside gui/palette.rs: {found:#?}"
    );
}
