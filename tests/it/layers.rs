//! The agent's modules form layers: `src/lib.rs` declares them bottom-up, and a module
//! may use only those declared before it. Every `crate::<module>` path in `src/` is checked
//! against that order, so a dependency cycle between top-level modules cannot come back
//! unnoticed (a cycle needs at least one path going up).

use std::path::Path;

/// A path from one top-level module to a module declared after it.
#[derive(Debug, PartialEq)]
struct Upward {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// The top-level modules in the order `lib.rs` declares them.
fn declared(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect()
}

/// Every `crate::<module>` path that goes up, in `files` (path relative to `src/`, text).
fn upward(order: &[String], files: &[(String, String)]) -> Vec<Upward> {
    let rank = |m: &str| order.iter().position(|x| x == m);
    let mut found = Vec::new();
    for (path, text) in files {
        let top = path
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = rank(&top) else { continue };
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                let name: String = code[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if rank(&name).is_some_and(|r| r > own) {
                    found.push(Upward {
                        file: path.clone(),
                        line: i + 1,
                        from: top.clone(),
                        to: name,
                    });
                }
            }
        }
    }
    found
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn modules_use_only_the_modules_declared_before_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let order = declared(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    assert!(order.len() >= 10, "modules read from lib.rs: {order:?}");
    let mut files = Vec::new();
    sources(&src, &src, &mut files);
    let up = upward(&order, &files);
    assert!(
        up.is_empty(),
        "paths going up the layers of src/lib.rs ({}):\n{}",
        order.join(" < "),
        up.iter()
            .map(|u| format!("  src/{}:{}: {} uses {}", u.file, u.line, u.from, u.to))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_path_going_up_is_reported_with_its_place() {
    let order = declared("pub mod low;\npub mod high;\n");
    let files = vec![
        (
            "high/mod.rs".to_string(),
            "use crate::low::Thing;\n".to_string(),
        ),
        (
            "low.rs".to_string(),
            "// crate::high in a comment is fine\nfn f() {\n    crate::high::g();\n}\n".to_string(),
        ),
    ];
    assert_eq!(
        upward(&order, &files),
        vec![Upward {
            file: "low.rs".into(),
            line: 3,
            from: "low".into(),
            to: "high".into(),
        }]
    );
}

#[test]
fn the_product_and_its_crates_have_no_unsafe_code() {
    // The workspace lint is `deny` (one test helper needs wait4); this keeps the shipped
    // code at what `forbid` promised.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("src")];
    for e in std::fs::read_dir(root.join("crates")).unwrap() {
        dirs.push(e.unwrap().path().join("src"));
    }
    let mut found = Vec::new();
    for d in dirs {
        let mut files = Vec::new();
        sources(&d, root, &mut files);
        for (file, text) in files {
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if code.contains("unsafe ") || code.contains("unsafe_code") {
                    found.push(format!("{file}:{}", i + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "unsafe code in {found:?}");
}
