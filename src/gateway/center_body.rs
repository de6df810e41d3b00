//! The bodies of the privacy center's writes: one JSON object, its fields checked. serde would
//! also take an array for a struct (`[true]` for `{"on": true}`); a write that changes
//! privacy settings takes only the documented shape.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

pub fn object<T: DeserializeOwned>(v: Value) -> Result<T> {
    if !v.is_object() {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
    }
    serde_json::from_value(v)
        .map_err(|e| Error::BadRequest(format!("invalid JSON body: {e}")).because(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct On {
        #[allow(dead_code)]
        on: bool,
    }

    #[test]
    fn only_objects_of_the_right_shape() {
        assert!(object::<On>(serde_json::json!({"on": true})).is_ok());
        assert!(object::<On>(serde_json::json!([true])).is_err());
        assert!(object::<On>(serde_json::json!({"on": 1})).is_err());
        assert!(object::<On>(serde_json::json!({"on": true, "x": 1})).is_err());
    }
}
