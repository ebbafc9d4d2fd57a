//! JSONL and inline rows as template values: JSON types kept, `null` missing.
//!
//! SPEC section 2: a JSON `null` is a missing value. The engine would print
//! it as "None" (and the row would be sent with that text); here a null
//! member reads as undefined, so a strict template that uses it fails and
//! the recipient is invalid. The object remembers which members were null,
//! so the reason can say so rather than "no such field".

use std::sync::Arc;

use indexmap::IndexMap;
use minijinja::value::{Enumerator, Object, Value};

/// A JSON object. Null members are kept as undefined values: absent to
/// templates, present to [`JsonObject::is_null`].
#[derive(Debug)]
pub(crate) struct JsonObject {
    members: IndexMap<String, Value>,
}

impl JsonObject {
    /// Whether `key` is a member whose value was `null`.
    pub(crate) fn is_null(&self, key: &str) -> bool {
        self.members.get(key).is_some_and(Value::is_undefined)
    }
}

impl Object for JsonObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.get_value_by_str(key.as_str()?)
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.members.get(key).filter(|v| !v.is_undefined()).cloned()
    }

    // Null members are not listed either: `{% for k, v in row|items %}`
    // sees the same row as `{{ row.k }}` does.
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(
            self.members
                .iter()
                .filter(|(_, v)| !v.is_undefined())
                .map(|(k, _)| Value::from(k.as_str()))
                .collect(),
        )
    }
}

/// A row's fields as a template value.
pub(crate) fn row_value(fields: &serde_json::Map<String, serde_json::Value>) -> Value {
    Value::from_object(object(fields))
}

fn object(fields: &serde_json::Map<String, serde_json::Value>) -> JsonObject {
    JsonObject {
        members: fields.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
    }
}

fn value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        // In a list too: `{{ tags[0] }}` fails rather than printing "None".
        J::Null => Value::UNDEFINED,
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(value).collect::<Vec<_>>()),
        J::Object(map) => Value::from_object(object(map)),
    }
}

/// Whether the dotted `path` (`first_name`, `address.city`) leads to a JSON
/// `null` in `row`.
pub(crate) fn is_null_at(row: &Value, path: &str) -> bool {
    let mut segments = path.split('.').peekable();
    let mut current = row.clone();
    while let Some(segment) = segments.next() {
        let Some(object) = current.downcast_object_ref::<JsonObject>() else {
            return false;
        };
        if segments.peek().is_none() {
            return object.is_null(segment);
        }
        match current.get_attr(segment) {
            Ok(next) if !next.is_undefined() => current = next,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(json: &str) -> Value {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(map)) => row_value(&map),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn null_members_read_as_undefined_and_are_known_as_null() {
        let r = row(r#"{"a": null, "b": "x", "c": {"d": null, "e": 1}, "f": [null, 2]}"#);
        assert!(r.get_attr("a").expect("lookup").is_undefined());
        assert_eq!(r.get_attr("b").expect("lookup").as_str(), Some("x"));
        assert!(is_null_at(&r, "a"));
        assert!(!is_null_at(&r, "b"));
        assert!(!is_null_at(&r, "missing"));
        assert!(is_null_at(&r, "c.d"));
        assert!(!is_null_at(&r, "c.e"));
        assert!(!is_null_at(&r, "a.d"));
        let keys: Vec<String> = r
            .try_iter()
            .expect("a map")
            .map(|k| k.to_string())
            .collect();
        assert_eq!(keys, ["b", "c", "f"]);
    }

    #[test]
    fn nothing_renders_none() {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        let ctx = row(
            r#"{"a": null, "c": {"d": null}, "f": [null], "n": 5, "big": 18446744073709551615, "x": 1.5}"#,
        );
        for source in [
            "{{ a }}",
            "{{ c.d }}",
            "{{ f[0] }}",
            "{% if a %}y{% endif %}",
        ] {
            let out = env.render_str(source, &ctx);
            assert!(out.is_err(), "{source}: {out:?}");
        }
        assert_eq!(
            env.render_str(
                "{{ a is defined }} {{ a|default('-') }} {{ n + 1 }} {{ big }} {{ x }}",
                &ctx
            )
            .expect("renders"),
            "False - 6 18446744073709551615 1.5"
        );
    }
}
