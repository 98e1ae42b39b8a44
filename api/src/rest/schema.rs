//! The `schema` of a REST v1 reply (spec 06 §3): for every object in the reply whose class a
//! client must know, its JSON path and the Java class ZStack writes it as. ZStack's SDK reads
//! the reply's lists and nested inventories as plain maps and turns each one named here into
//! its typed inventory (`ApiResult.getResult`), so a missing entry leaves an element untyped
//! and an entry naming an element that is not there (an empty list, a count-only reply) throws
//! inside the SDK.
//!
//! The entries follow ZStack's `JsonSchemaBuilder` walk over the reply map: each top-level
//! object (`inventory`) and each element of a top-level list (`inventories[0]`,
//! `inventories[1]`, ...), then inside each object every field holding an object of a ZStack
//! class (`inventories[0].backupStorageRefs[0]`), by path; JRE values (strings, numbers,
//! dates, maps and lists of them) get no entry. An object's entry comes after those of the
//! objects inside it during the walk and the whole list is reversed at the end, so a parent
//! always precedes its children — the SDK converts a parent first, then the children in it.
//!
//! Which class an object is comes from the families' declarations ([`JavaClass`], declared
//! with each family's calls), never from the reply itself: JSON does not carry Java types.

use serde_json::Map;
use serde_json::Value;

/// A Java class a reply object is written as, with the classes of its fields that hold
/// objects (declared by the family whose inventory it is).
#[derive(Debug)]
pub struct JavaClass {
    /// Fully qualified name, e.g. `org.zstack.header.zone.ZoneInventory`.
    pub name: &'static str,
    /// The fields holding objects or lists of objects, and what they hold.
    pub fields: &'static [(&'static str, Schema)],
}

impl JavaClass {
    /// A class with no fields holding objects.
    pub const fn leaf(name: &'static str) -> JavaClass {
        JavaClass { name, fields: &[] }
    }

    fn field(&self, name: &str) -> Option<&'static Schema> {
        self.fields.iter().find(|(f, _)| *f == name).map(|(_, s)| s)
    }
}

/// What a reply field (or a field of an object) holds, for the schema.
#[derive(Debug, Clone, Copy)]
pub enum Schema {
    /// An object of this class, or a list of them.
    Class(&'static JavaClass),
    /// Objects whose class depends on one of their fields (Gson writes the runtime class: a
    /// VLAN network read through `QueryL2Network` is an `L2VlanNetworkInventory`): the class
    /// paired with the field's value, `other` for any other value.
    ByField {
        /// The field telling the classes apart (`type`).
        field: &'static str,
        /// `(value, class)` pairs.
        classes: &'static [(&'static str, &'static JavaClass)],
        /// The class of every other value.
        other: &'static JavaClass,
    },
    /// A `java.util.Map` whose values are objects of this class (paths `field.key`).
    MapOf(&'static JavaClass),
    /// JRE values only (a `Map<String, String>`, a list of strings): no entry.
    Jre,
}

impl Schema {
    fn class_of(&self, obj: &Map<String, Value>) -> Option<&'static JavaClass> {
        match *self {
            Schema::Class(c) => Some(c),
            Schema::ByField {
                field,
                classes,
                other,
            } => {
                let v = obj.get(field).and_then(Value::as_str);
                Some(
                    classes
                        .iter()
                        .find(|(value, _)| Some(*value) == v)
                        .map(|(_, c)| *c)
                        .unwrap_or(other),
                )
            }
            Schema::MapOf(_) | Schema::Jre => None,
        }
    }
}

/// The schema of a reply map and the paths of objects no declaration names a class for
/// (which get no entry: a client then reads them untyped; the conformance tests require
/// the list to be empty for every call).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Built {
    /// `path → class`, in ZStack's order.
    pub schema: Map<String, Value>,
    /// Objects of undeclared class.
    pub undeclared: Vec<String>,
}

struct Walk {
    entries: Vec<(String, &'static str)>,
    undeclared: Vec<String>,
}

/// Build the schema of a REST reply map (`{"inventories": [...], "total": 3}`, fields as the
/// client receives them) from `decl`, the classes the call declares for its reply fields.
pub fn build(reply: &Map<String, Value>, decl: &[(&str, Schema)]) -> Built {
    let mut w = Walk {
        entries: Vec::new(),
        undeclared: Vec::new(),
    };
    for (key, value) in reply {
        let schema = decl.iter().find(|(k, _)| k == key).map(|(_, s)| s);
        match value {
            // A list declared as JRE values (`List<String>`) gets no entry: the SDK maps no
            // `java.lang` class and would throw on one.
            Value::Array(_) if matches!(schema, Some(Schema::Jre)) => {}
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("{key}[{i}]");
                    match item {
                        Value::Object(o) => w.object(o, path, schema),
                        // ZStack walks a top-level list whatever it holds, so a list of
                        // strings or booleans names their JRE class (which clients skip).
                        Value::String(_) => w.entries.push((path, "java.lang.String")),
                        Value::Bool(_) => w.entries.push((path, "java.lang.Boolean")),
                        _ => {}
                    }
                }
            }
            Value::Object(o) => match schema {
                // A top-level JRE map gets no entry.
                Some(Schema::Jre) => {}
                Some(Schema::MapOf(c)) => w.map_of(o, key, c),
                _ => w.object(o, key.clone(), schema),
            },
            _ => {}
        }
    }
    w.entries.reverse();
    Built {
        schema: w
            .entries
            .into_iter()
            .map(|(p, c)| (p, Value::String(c.to_string())))
            .collect(),
        undeclared: w.undeclared,
    }
}

impl Walk {
    /// A `java.util.Map` whose values are objects of `class`, or lists of them
    /// (`Map<String, List<PrimaryStorageInventory>>`): paths `path.key` and `path.key[i]`.
    fn map_of(&mut self, m: &Map<String, Value>, path: &str, class: &'static JavaClass) {
        for (k, v) in m {
            match v {
                Value::Object(o) => {
                    self.object(o, format!("{path}.{k}"), Some(&Schema::Class(class)))
                }
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Object(o) = item {
                            self.object(o, format!("{path}.{k}[{i}]"), Some(&Schema::Class(class)));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, path: String, schema: Option<&Schema>) {
        let Some(class) = schema.and_then(|s| s.class_of(obj)) else {
            self.undeclared.push(path);
            return;
        };
        for (field, value) in obj {
            let holds_objects = match value {
                Value::Object(_) => true,
                Value::Array(items) => items.iter().any(Value::is_object),
                _ => false,
            };
            if !holds_objects {
                continue;
            }
            let inner = class.field(field);
            match (inner, value) {
                (Some(Schema::Jre), _) => {}
                (Some(Schema::MapOf(c)), Value::Object(m)) => {
                    self.map_of(m, &format!("{path}.{field}"), c);
                }
                (Some(s @ (Schema::Class(_) | Schema::ByField { .. })), Value::Object(o)) => {
                    self.object(o, format!("{path}.{field}"), Some(s));
                }
                (Some(s @ (Schema::Class(_) | Schema::ByField { .. })), Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Value::Object(o) = item {
                            self.object(o, format!("{path}.{field}[{i}]"), Some(s));
                        }
                    }
                }
                _ => self.undeclared.push(format!("{path}.{field}")),
            }
        }
        self.entries.push((path, class.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const REF: JavaClass =
        JavaClass::leaf("org.zstack.header.image.ImageBackupStorageRefInventory");
    const TAG: JavaClass = JavaClass::leaf("org.zstack.header.tag.SystemTagInventory");
    const IMAGE: JavaClass = JavaClass {
        name: "org.zstack.header.image.ImageInventory",
        fields: &[
            ("backupStorageRefs", Schema::Class(&REF)),
            ("systemTags", Schema::Class(&TAG)),
        ],
    };
    const PLAIN: JavaClass = JavaClass::leaf("org.zstack.header.network.l2.L2NetworkInventory");
    const VLAN: JavaClass = JavaClass::leaf("org.zstack.header.network.l2.L2VlanNetworkInventory");
    const L2: Schema = Schema::ByField {
        field: "type",
        classes: &[("L2VlanNetwork", &VLAN)],
        other: &PLAIN,
    };

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn every_element_and_nested_object_by_path_parents_first() {
        let reply = obj(json!({"inventories": [
            {"uuid": "a", "backupStorageRefs": [{"imageUuid": "a"}, {"imageUuid": "a"}], "systemTags": []},
            {"uuid": "b", "backupStorageRefs": [], "attachedZoneUuids": ["z"]},
        ], "total": 2}));
        let b = build(&reply, &[("inventories", Schema::Class(&IMAGE))]);
        assert!(b.undeclared.is_empty());
        let keys: Vec<&str> = b.schema.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "inventories[1]",
                "inventories[0]",
                "inventories[0].backupStorageRefs[1]",
                "inventories[0].backupStorageRefs[0]",
            ]
        );
        assert_eq!(b.schema["inventories[0].backupStorageRefs[0]"], REF.name);
    }

    #[test]
    fn nothing_for_empty_lists_counts_and_scalars() {
        for reply in [
            json!({"inventories": []}),
            json!({"total": 100}),
            json!({"valid": true}),
            json!({}),
        ] {
            let b = build(
                &obj(reply.clone()),
                &[("inventories", Schema::Class(&IMAGE))],
            );
            assert_eq!(b, Built::default(), "{reply}");
        }
    }

    #[test]
    fn runtime_class_by_field_and_undeclared_objects_reported() {
        let reply = obj(
            json!({"inventories": [{"type": "L2NoVlanNetwork"}, {"type": "L2VlanNetwork"}],
            "inventory": {"x": {"y": 1}}}),
        );
        let b = build(
            &reply,
            &[("inventories", L2), ("inventory", Schema::Class(&PLAIN))],
        );
        assert_eq!(b.schema["inventories[0]"], PLAIN.name);
        assert_eq!(b.schema["inventories[1]"], VLAN.name);
        assert_eq!(b.undeclared, vec!["inventory.x".to_string()]);
        assert_eq!(b.schema["inventory"], PLAIN.name);
        let b = build(&obj(json!({"other": {"a": 1}})), &[]);
        assert_eq!(b.undeclared, vec!["other".to_string()]);
    }
}
