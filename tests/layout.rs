//! docs/DEVELOPMENT.md's module graph is the code's: which layer (a folder
//! or file under `src/`) imports which, read from every `crate::` path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const LAYERS: [&str; 11] = [
    "daemon", "fuse", "view", "overlay", "commit", "follow", "sync", "inodes", "model", "store",
    "error",
];

fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_module_graph_in_development_md_is_the_codes() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut graph: BTreeMap<&str, BTreeSet<&str>> =
        LAYERS.iter().map(|l| (*l, BTreeSet::new())).collect();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let layer = first.trim_end_matches(".rs");
        let Some(&layer) = LAYERS.iter().find(|l| **l == layer) else {
            continue; // lib.rs, main.rs
        };
        let text = std::fs::read_to_string(f).unwrap();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if let Some(&dep) = LAYERS.iter().find(|l| **l == name)
                && dep != layer
            {
                graph.get_mut(layer).unwrap().insert(dep);
            }
        }
    }
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/DEVELOPMENT.md"))
            .unwrap();
    let block = doc
        .split("## Module graph")
        .nth(1)
        .and_then(|s| s.split("```").nth(1))
        .expect("a fenced module graph under '## Module graph'");
    let mut documented: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for line in block.lines().filter(|l| l.contains("->")) {
        let (from, to) = line.split_once("->").unwrap();
        let deps = to
            .split_whitespace()
            .filter(|d| LAYERS.contains(d))
            .collect();
        documented.insert(
            LAYERS
                .iter()
                .find(|l| **l == from.trim())
                .copied()
                .unwrap_or("?"),
            deps,
        );
    }
    assert_eq!(
        documented, graph,
        "docs/DEVELOPMENT.md's module graph (left) differs from the code's (right)"
    );
    // Dependencies point one way: peel off, again and again, the layers that
    // import no layer left; a cycle is what cannot be peeled.
    let mut left = graph.clone();
    while !left.is_empty() {
        let leaves: Vec<&str> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(l, _)| *l)
            .collect();
        assert!(
            !leaves.is_empty(),
            "the layers {:?} import each other in a cycle",
            left.keys().collect::<Vec<_>>()
        );
        for l in leaves {
            left.remove(l);
        }
    }
}
