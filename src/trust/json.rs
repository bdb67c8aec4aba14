//! A strict JSON tree, as containers/image reads policies and signature payloads: a key that
//! appears twice in one object is an error (serde_json's own maps keep the last one silently).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value whose objects keep their keys in order and never hold a key twice.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses `bytes`, refusing duplicate keys at any depth.
    pub fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The fields of an object; anything else is an error naming `at`.
    pub fn object(&self, at: &str) -> Result<&[(String, Json)], FieldError> {
        match self {
            Json::Object(o) => Ok(o),
            other => Err(FieldError {
                at: at.to_string(),
                why: format!("expected an object, found {}", other.kind()),
            }),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        serde_json::Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out: Vec<(String, Json)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(de::Error::custom(format!("duplicate key {k:?}")));
            }
            let v = map.next_value()?;
            out.push((k, v));
        }
        Ok(Json::Object(out))
    }
}

/// Reads an object's fields by name and refuses any it was not asked about: the strictness
/// containers/image applies, so a misspelt field never silently weakens a policy.
pub struct Fields<'a> {
    at: String,
    fields: &'a [(String, Json)],
    taken: Vec<&'a str>,
}

/// A field that is missing, unknown or of the wrong kind, named by where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {why}")]
pub struct FieldError {
    pub at: String,
    pub why: String,
}

impl<'a> Fields<'a> {
    /// The fields of `v`, which must be an object; `at` names it in errors.
    pub fn of(v: &'a Json, at: &str) -> Result<Fields<'a>, FieldError> {
        Ok(Fields {
            at: at.to_string(),
            fields: v.object(at)?,
            taken: Vec::new(),
        })
    }

    pub fn at(&self) -> &str {
        &self.at
    }

    pub fn error(&self, why: impl Into<String>) -> FieldError {
        FieldError {
            at: self.at.clone(),
            why: why.into(),
        }
    }

    /// The value of `name`, if present.
    pub fn get(&mut self, name: &'a str) -> Option<&'a Json> {
        let v = self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if v.is_some() {
            self.taken.push(name);
        }
        v
    }

    pub fn required(&mut self, name: &'a str) -> Result<&'a Json, FieldError> {
        self.get(name)
            .ok_or_else(|| self.error(format!("the field {name:?} is missing")))
    }

    pub fn string(&mut self, name: &'a str) -> Result<Option<&'a str>, FieldError> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(format!(
                "the field {name:?} must be a string, found {}",
                other.kind()
            ))),
        }
    }

    pub fn required_string(&mut self, name: &'a str) -> Result<&'a str, FieldError> {
        self.string(name)?
            .ok_or_else(|| self.error(format!("the field {name:?} is missing")))
    }

    /// Ends the reading: any field not asked for is an error naming it.
    pub fn finish(self) -> Result<(), FieldError> {
        match self
            .fields
            .iter()
            .find(|(k, _)| !self.taken.contains(&k.as_str()))
        {
            Some((k, _)) => Err(FieldError {
                at: self.at,
                why: format!("unknown field {k:?}"),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(Json::parse(br#"{"a":1,"a":2}"#).is_err());
        assert!(Json::parse(br#"{"a":{"b":1,"b":1}}"#).is_err());
        assert!(Json::parse(br#"[{"x":[{"y":1,"y":null}]}]"#).is_err());
        let v = Json::parse(br#"{"a":{"b":[1,"s",null,true]}}"#).unwrap();
        assert_eq!(v.kind(), "an object");
    }

    #[test]
    fn fields_name_what_is_wrong() {
        let v = Json::parse(br#"{"type":"x","extra":1}"#).unwrap();
        let mut f = Fields::of(&v, "policy").unwrap();
        assert_eq!(f.required_string("type").unwrap(), "x");
        let e = f.finish().unwrap_err();
        assert_eq!(e.to_string(), "policy: unknown field \"extra\"");
        let mut f = Fields::of(&v, "p").unwrap();
        assert!(f.required("nope").unwrap_err().why.contains("missing"));
        assert!(f
            .string("extra")
            .unwrap_err()
            .why
            .contains("must be a string"));
        assert!(Fields::of(&Json::Null, "p").is_err());
    }
}
