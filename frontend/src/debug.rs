//! `rbuild debug graph` renderings of a lowered build.

use crate::LoweredBuild;
use rbuild_graph::Op;
use serde_json::{json, Value};
use std::fmt::Write;

/// The graph as JSON: root, vertices in topological order with op, inputs
/// and metadata, and the image config.
pub fn graph_to_json(b: &LoweredBuild) -> Value {
    let vertices: Vec<Value> = b
        .graph
        .topo_order(&b.root)
        .iter()
        .filter_map(|d| {
            let v = b.graph.get(d)?;
            let meta = b.graph.meta.get(d).cloned().unwrap_or_default();
            Some(json!({
                "digest": d.to_string(),
                "op": serde_json::to_value(&v.op).unwrap_or(Value::Null),
                "inputs": serde_json::to_value(&v.inputs).unwrap_or(Value::Null),
                "name": meta.name,
                "stage": meta.stage,
                "location": serde_json::to_value(&meta.location).unwrap_or(Value::Null),
                "ignore_cache": meta.ignore_cache,
            }))
        })
        .collect();
    json!({
        "root": b.root.to_string(),
        "vertices": vertices,
        "config": serde_json::to_value(&b.config).unwrap_or(Value::Null),
    })
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The graph in Graphviz dot format (edges point from input to reader).
pub fn graph_to_dot(b: &LoweredBuild) -> String {
    let mut s = String::from("digraph build {\n  rankdir=TB;\n  node [shape=box];\n");
    for d in b.graph.topo_order(&b.root) {
        let Some(v) = b.graph.get(&d) else { continue };
        let name = b
            .graph
            .meta
            .get(&d)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let kind = match &v.op {
            Op::Source(src) => format!(
                "source {}",
                serde_json::to_value(src)
                    .ok()
                    .and_then(|x| x.as_object().and_then(|o| o.keys().next().cloned()))
                    .or_else(|| serde_json::to_value(src)
                        .ok()
                        .and_then(|x| x.as_str().map(str::to_string)))
                    .unwrap_or_default()
            ),
            o => o.kind().to_string(),
        };
        let label = if name.is_empty() {
            kind
        } else {
            format!("{kind}\\n{}", dot_escape(&name))
        };
        let _ = writeln!(
            s,
            "  \"{}\" [label=\"{}\\n{}\"];",
            d.short(),
            label,
            d.short()
        );
        for i in &v.inputs {
            let _ = writeln!(s, "  \"{}\" -> \"{}\";", i.vertex.short(), d.short());
        }
    }
    s.push_str("}\n");
    s
}
