//! PATCH inputs: a field left out changes nothing, a field set to `null` clears it.

use serde::Deserialize;

/// Deserializes a field that distinguishes "absent" (`None`, with `#[serde(default)]`)
/// from `null` (`Some(None)`).
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}
