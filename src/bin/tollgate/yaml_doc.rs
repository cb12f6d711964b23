//! YAML documents as LiteLLM reads them, with the line and column of every value kept.
//!
//! LiteLLM loads its `config.yaml` with PyYAML (YAML 1.1): `20_000` is a number and `yes` a
//! boolean there. `serde-saphyr` resolves plain scalars the same way, refuses duplicated keys
//! (PyYAML silently keeps the last one, so the operator could not tell which value counts) and
//! reports syntax errors with their line and column. Every node's position is recorded under the
//! JSON path the compiler reports errors with (`model_list[0].litellm_params.model`), so an error
//! in the compiled policy names the YAML line it came from.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

/// A parsed YAML document: its value and where each of its nodes was written.
pub struct YamlDoc {
    /// The document as JSON.
    pub value: Value,
    /// Where each node was written.
    pub positions: Positions,
}

/// Line and column (1-based) of every node, by the JSON path the compiler reports.
#[derive(Default)]
pub struct Positions(HashMap<String, (u64, u64)>);

impl YamlDoc {
    /// Parses `text` (read from `path`, named in errors).
    pub fn parse(text: &str, path: &str) -> Result<YamlDoc, String> {
        let root: Spanned<Node> =
            serde_saphyr::from_str(text).map_err(|e| format!("{path}: not valid YAML: {e}"))?;
        let mut positions = HashMap::new();
        let value = flatten(root, String::new(), &mut positions);
        Ok(YamlDoc {
            value,
            positions: Positions(positions),
        })
    }
}

impl Positions {
    /// The line and column (1-based) of the node at `json_path`, or of its nearest enclosing
    /// node that the document has (an unknown field is reported at the mapping holding it).
    pub fn of(&self, json_path: &str) -> Option<(u64, u64)> {
        let mut path = json_path;
        loop {
            if let Some(&at) = self.0.get(path) {
                return Some(at);
            }
            if path.is_empty() {
                return None;
            }
            let cut = path.rfind(['.', '[']).unwrap_or(0);
            path = &path[..cut];
        }
    }
}

/// `path` with `key` appended as the compiler writes paths.
fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn flatten(node: Spanned<Node>, path: String, out: &mut HashMap<String, (u64, u64)>) -> Value {
    let at = node.referenced;
    out.insert(path.clone(), (at.line(), at.column()));
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Number(n) => Value::Number(n),
        Node::String(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| flatten(item, format!("{path}[{i}]"), out))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, item) in entries {
                let value = flatten(item, child_path(&path, &key), out);
                map.insert(key, value);
            }
            Value::Object(map)
        }
    }
}

/// One YAML node, its children spanned.
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(String, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Node, E> {
        Number::from_f64(n)
            .map(Node::Number)
            .ok_or_else(|| E::custom(format!("{n} is not a number JSON can hold")))
    }
    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::String(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            entries.push((key.0, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key: a string, or a number or boolean written as one (JSON keys are strings).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key (a string, number or boolean)")
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key(s.to_string()))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Key, E> {
                Ok(Key(b.to_string()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Key, E> {
                Ok(Key(n.to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_read_as_pyyaml_reads_them_and_every_node_keeps_its_line() {
        let doc = YamlDoc::parse(
            "model_list:\n  - model_name: gpt-4o\n    tpm: 20_000\n    litellm_params:\n      \
             model: openai/gpt-4o\n      stream: yes\nbase: &b {rpm: 3}\nother:\n  <<: *b\n  x: ~\n",
            "c.yaml",
        )
        .unwrap();
        let v = &doc.value;
        assert_eq!(v["model_list"][0]["tpm"], 20_000);
        assert_eq!(v["model_list"][0]["litellm_params"]["stream"], true);
        assert_eq!(v["other"]["rpm"], 3, "merge keys");
        assert!(v["other"]["x"].is_null());
        assert_eq!(
            doc.positions.of("model_list[0].litellm_params.model"),
            Some((5, 14))
        );
        assert_eq!(doc.positions.of("model_list[0].tpm").map(|p| p.0), Some(3));
        // An unknown field is placed at its enclosing mapping.
        assert_eq!(
            doc.positions
                .of("model_list[0].litellm_params.nope")
                .map(|p| p.0),
            doc.positions
                .of("model_list[0].litellm_params")
                .map(|p| p.0)
        );
    }

    #[test]
    fn bad_yaml_and_duplicated_keys_are_refused_with_their_line() {
        let bad = YamlDoc::parse("a: 1\nb: [1, 2\nc: 3\n", "c.yaml")
            .err()
            .unwrap();
        assert!(
            bad.starts_with("c.yaml: not valid YAML") && bad.contains("line 3"),
            "{bad}"
        );
        let twice = YamlDoc::parse("a: 1\na: 2\n", "c.yaml").err().unwrap();
        assert!(
            twice.contains("duplicate") && twice.contains("line 2"),
            "{twice}"
        );
    }
}
