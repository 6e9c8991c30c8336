//! A credential that cannot leak through `Debug`, `Display` or a derived log line.

use std::fmt;

/// An API key. Its `Debug` prints `***`; the value is only reachable through [`ApiKey::expose`], which
/// the crate calls solely to build an `Authorization` header (marked sensitive, so it is not logged either).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The raw key. Named loudly so every use stands out in review.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Keys may be written inline in a configuration file (prefer `api_key_env`); they are wrapped at once.
impl<'de> serde::Deserialize<'de> for ApiKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(ApiKey)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::ApiKey;

    #[test]
    fn debug_redacts_the_key() {
        let key = ApiKey::new("sk-very-secret");
        assert_eq!(format!("{key:?}"), "***");
        assert_eq!(format!("{:?}", Some(&key)), "Some(***)");
        assert_eq!(key.expose(), "sk-very-secret");
    }
}
