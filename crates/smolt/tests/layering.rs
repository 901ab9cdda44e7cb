//! The layering the design promises, checked on the sources so that it cannot drift: lower
//! crates never depend on higher ones, only the CLI reaches the trainer (and its inference
//! commands not even that), and no two modules of a crate import each other, directly or
//! round a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Each member crate's folder name and the smolt crates it depends on (normal dependencies,
/// not dev-dependencies: tests may reach up).
fn crate_deps() -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).unwrap();
        let toml: toml::Table = text.parse().unwrap();
        let name = toml["package"]["name"].as_str().unwrap().to_string();
        let deps = toml
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|d| {
                d.keys()
                    .filter(|k| k.starts_with("smolt-"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name, deps);
    }
    out
}

#[test]
fn only_the_cli_depends_on_the_trainer_and_the_task_layer_stays_low() {
    let deps = crate_deps();
    assert!(deps.len() >= 14, "{deps:?}");
    for (name, d) in &deps {
        if name != "smolt" {
            assert!(
                !d.contains("smolt-train"),
                "{name} depends on smolt-train: only the CLI may"
            );
        }
    }
    // The task layer sits below training, decoding, evaluation and the CLI.
    for higher in [
        "smolt-train",
        "smolt-lora",
        "smolt-decode",
        "smolt-eval",
        "smolt",
    ] {
        assert!(
            !deps["smolt-task"].contains(higher),
            "smolt-task depends on {higher}"
        );
    }
    assert!(deps["smolt-train"].contains("smolt-task"));
    // The model knows nothing of adapters' training.
    assert!(!deps["smolt-model"].contains("smolt-lora"));
    // The C library is a leaf beside the CLI, and links no HTTP stack: it builds on the same
    // layers as the server, not on the server.
    for (name, d) in &deps {
        assert!(!d.contains("smolt-capi"), "{name} depends on smolt-capi");
    }
    for lower in ["smolt-decode", "smolt-lora", "smolt-task"] {
        assert!(
            deps["smolt-capi"].contains(lower),
            "smolt-capi lacks {lower}"
        );
    }
    for not_below in [
        "smolt-serve",
        "smolt",
        "smolt-eval",
        "smolt-data",
        "smolt-hub",
    ] {
        assert!(
            !deps["smolt-capi"].contains(not_below),
            "smolt-capi depends on {not_below}"
        );
    }
}

/// The CLI's inference paths (generate, eval, data check, init, and the evaluation loop they
/// share) take their task from smolt-task and their adapters from smolt-lora: none names the
/// trainer.
#[test]
fn inference_commands_do_not_call_into_the_trainer() {
    let src = workspace().join("crates/smolt/src");
    for file in [
        "commands/generate.rs",
        "commands/eval.rs",
        "commands/data.rs",
        "commands/init.rs",
        "commands/serve.rs",
        "commands/mod.rs",
        "evaluate.rs",
    ] {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        assert!(!text.contains("smolt_train"), "{file} names smolt_train");
        // `train::` as a path of its own (not the end of `constrain::`).
        let reaches_train = text.match_indices("train::").any(|(i, _)| {
            !text[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        });
        assert!(!reaches_train, "{file} names the train module");
    }
}

/// Top-level modules of a crate and the modules each names through `crate::`, test modules
/// left out.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut text_of: BTreeMap<String, String> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let code: String = code
                .lines()
                .map(|l| l.split("//").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n");
            text_of.entry(top).or_default().push_str(&code);
        }
    }
    let names: BTreeSet<String> = text_of.keys().cloned().collect();
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    text_of
        .iter()
        .map(|(m, code)| {
            let mut uses = BTreeSet::new();
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let targets: Vec<String> = match rest.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap()
                        .split(',')
                        .map(ident)
                        .collect(),
                    None => vec![ident(rest)],
                };
                uses.extend(targets.into_iter().filter(|t| t != m && names.contains(t)));
            }
            (m.clone(), uses)
        })
        .collect()
}

/// A loop in `graph`, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == v) {
            let mut cycle = path[i..].to_vec();
            cycle.push(v.to_string());
            return Some(cycle);
        }
        if done.contains(v) {
            return None;
        }
        path.push(v.to_string());
        for w in &graph[v] {
            if let Some(c) = visit(w, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(v.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|v| visit(v, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_modules_that_import_each_other() {
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace().join("crates")).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = module_graph(&src);
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "{}: modules import each other: {}",
                src.display(),
                cycle.join(" -> ")
            );
        }
        checked += 1;
    }
    assert!(checked >= 14);
}

/// The checker itself finds a loop, including one through a `crate::{a, b}` group.
#[test]
fn the_cycle_check_sees_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod a; mod b; mod c;").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::X;").unwrap();
    std::fs::write(dir.path().join("b.rs"), "use crate::{c::Y, a};").unwrap();
    std::fs::write(
        dir.path().join("c.rs"),
        "// crate::a in a comment\n#[cfg(test)]\nmod t { use crate::a; }",
    )
    .unwrap();
    let g = module_graph(dir.path());
    assert_eq!(g["b"], BTreeSet::from(["a".to_string(), "c".to_string()]));
    assert!(g["c"].is_empty(), "comments and tests do not count");
    let cycle = find_cycle(&g).unwrap();
    assert_eq!(cycle, ["a", "b", "a"]);
    std::fs::write(dir.path().join("b.rs"), "use crate::c::Y;").unwrap();
    assert_eq!(find_cycle(&module_graph(dir.path())), None);
}
