//! Reading a JSON object field by field, with errors that name the field by its path in
//! the file (`devices[1].mac`), and refusing fields the schema does not know.

use serde_json::{Map, Value};

/// A problem with one field of a static configuration file. Nothing has been changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field's path in the file: `version`, `devices[1].mac`, `routes[0]`.
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

pub type Checked<T> = Result<T, ConfigError>;

/// The JSON type of a value, for messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One JSON object of the file, at `path`.
pub struct Obj<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    /// `value` must be an object.
    pub fn new(path: impl Into<String>, value: &'a Value) -> Checked<Obj<'a>> {
        let path = path.into();
        match value {
            Value::Object(map) => Ok(Obj { path, map }),
            other => Err(ConfigError::new(
                if path.is_empty() {
                    "(top level)"
                } else {
                    &path
                },
                format!("expected an object, found {}", type_name(other)),
            )),
        }
    }

    /// The path of field `key` of this object.
    pub fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The path of this object itself.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Refuse any field not in `known`; `what` describes the object for the message.
    pub fn only(&self, known: &[&str], what: &str) -> Checked<()> {
        for key in self.map.keys() {
            if !known.contains(&key.as_str()) {
                return Err(ConfigError::new(
                    self.field(key),
                    format!(
                        "unknown field (the fields of {what} are: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Checked<&'a Value> {
        self.get(key)
            .ok_or_else(|| ConfigError::new(self.field(key), "missing (required)"))
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> ConfigError {
        ConfigError::new(
            self.field(key),
            format!("expected {expected}, found {}", type_name(found)),
        )
    }

    pub fn opt_str(&self, key: &str) -> Checked<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong(key, "a string", other)),
        }
    }

    pub fn str(&self, key: &str) -> Checked<&'a str> {
        self.required(key)?;
        self.opt_str(key)?
            .ok_or_else(|| ConfigError::new(self.field(key), "missing (required)"))
    }

    pub fn opt_u32(&self, key: &str) -> Checked<Option<u32>> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    ConfigError::new(
                        self.field(key),
                        format!("{v} is not a whole number between 0 and {}", u32::MAX),
                    )
                }),
            Some(other) => Err(self.wrong(key, "a number", other)),
        }
    }

    pub fn u32(&self, key: &str) -> Checked<u32> {
        self.required(key)?;
        self.opt_u32(key)?
            .ok_or_else(|| ConfigError::new(self.field(key), "missing (required)"))
    }

    pub fn opt_bool(&self, key: &str) -> Checked<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong(key, "true or false", other)),
        }
    }

    /// An optional array; absent is empty.
    pub fn array(&self, key: &str) -> Checked<&'a [Value]> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(self.wrong(key, "an array", other)),
        }
    }

    /// The raw value of an optional field.
    pub fn value(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_by_path() {
        let v: Value = serde_json::json!({"a": "x", "n": -1, "b": 3, "t": true, "z": null});
        let o = Obj::new("devices[2]", &v).unwrap();
        assert_eq!(o.str("a").unwrap(), "x");
        assert_eq!(o.opt_u32("b").unwrap(), Some(3));
        assert_eq!(o.opt_bool("t").unwrap(), Some(true));
        assert_eq!(o.opt_str("z").unwrap(), None);
        let e = o.str("missing").unwrap_err();
        assert_eq!(e.to_string(), "devices[2].missing: missing (required)");
        let e = o.opt_u32("n").unwrap_err();
        assert_eq!(e.field, "devices[2].n");
        let e = o.opt_str("b").unwrap_err();
        assert_eq!(e.reason, "expected a string, found a number");
        let e = o.only(&["a", "b"], "a thing").unwrap_err();
        assert!(e.reason.starts_with("unknown field"), "{e}");
        let top = Obj::new("", &v).unwrap();
        assert_eq!(top.field("version"), "version");
        assert!(Obj::new("", &Value::Bool(true)).is_err());
    }
}
