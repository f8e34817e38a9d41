//! Conversion between `google.protobuf.Struct` and `serde_json` values.
//!
//! Protobuf numbers are doubles. An integral double within the exact range of
//! an f64 (|x| < 2^53) becomes a JSON integer, so that JSON Schema
//! `"type": "integer"` holds for values that travelled through a Struct.

use prost_types::{ListValue, Struct, Value as PbValue, value::Kind};
use serde_json::{Map, Number, Value};

const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0; // 2^53

/// A JSON object as a Struct.
pub fn to_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), to_pb_value(v)))
            .collect(),
    }
}

/// A JSON value as a Struct: objects convert field by field; anything else
/// is wrapped as `{"value": ...}`.
pub fn value_to_struct(value: &Value) -> Struct {
    match value {
        Value::Object(map) => to_struct(map),
        other => {
            let mut map = Map::new();
            map.insert("value".into(), other.clone());
            to_struct(&map)
        }
    }
}

/// A Struct as a JSON object.
pub fn from_struct(st: &Struct) -> Map<String, Value> {
    st.fields
        .iter()
        .map(|(k, v)| (k.clone(), from_pb_value(v)))
        .collect()
}

/// An optional Struct as a JSON object (empty when absent).
pub fn from_opt_struct(st: Option<&Struct>) -> Map<String, Value> {
    st.map(from_struct).unwrap_or_default()
}

/// A JSON value as a protobuf Value.
pub fn to_pb_value(value: &Value) -> PbValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_pb_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    PbValue { kind: Some(kind) }
}

/// A protobuf Value as JSON. Non-finite numbers (not representable in JSON)
/// become null.
pub fn from_pb_value(value: &PbValue) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.iter().map(from_pb_value).collect())
        }
        Some(Kind::StructValue(st)) => Value::Object(from_struct(st)),
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < MAX_EXACT_INT {
        // Exact: |n| < 2^53 fits i64 without loss.
        #[allow(clippy::cast_possible_truncation)]
        return Value::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_integers_and_nesting() {
        let v = json!({"a": 1, "b": 2.5, "c": [true, null, "x"], "d": {"e": -3}});
        let Value::Object(map) = &v else {
            unreachable!()
        };
        let back = Value::Object(from_struct(&to_struct(map)));
        assert_eq!(back, v);
        assert!(back["a"].is_i64());
    }

    #[test]
    fn non_finite_becomes_null() {
        let pb = PbValue {
            kind: Some(Kind::NumberValue(f64::INFINITY)),
        };
        assert_eq!(from_pb_value(&pb), Value::Null);
    }

    #[test]
    fn scalars_are_wrapped() {
        let st = value_to_struct(&json!(5));
        assert_eq!(Value::Object(from_struct(&st)), json!({"value": 5}));
    }
}
