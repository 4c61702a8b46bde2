//! How the customer portal looks for a keyspace's customers: a name, a logo and an
//! accent colour, each optional, each checked so the portal can show it safely.

use keyhaven_store::Branding;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Result, ServiceError};
use crate::validate;

/// Longest logo address accepted.
pub const MAX_LOGO_URL: usize = 2000;

/// A keyspace's look in the customer portal. Fields left out take the defaults
/// (Keyhaven's name, no logo, Keyhaven's accent colour).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BrandingBody {
    /// Company or product name shown in the portal's header, 1-200 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// `https://` address of a logo image, at most 2000 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 2000, pattern = "^https://")]
    pub logo_url: Option<String>,
    /// `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    pub accent_color: Option<String>,
}

impl BrandingBody {
    pub fn of(branding: &Branding) -> Self {
        Self {
            name: branding.name.clone(),
            logo_url: branding.logo_url.clone(),
            accent_color: branding.accent_color.clone(),
        }
    }

    /// Checks each field: a name like any other, an `https` logo address with nothing a
    /// page could misread, a six-digit hex colour (stored lower-case).
    pub fn validated(self) -> Result<Branding> {
        if let Some(name) = &self.name {
            validate::name("branding.name", name)?;
        }
        if let Some(url) = &self.logo_url {
            let plain = url.len() <= MAX_LOGO_URL
                && url.starts_with("https://")
                && url.len() > "https://".len()
                && url.bytes().all(|b| {
                    b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<' | b'>' | b'\\')
                });
            if !plain {
                return Err(ServiceError::invalid(format!(
                    "branding.logo_url must be an https:// address of at most {MAX_LOGO_URL} \
                     characters, without spaces, quotes or angle brackets"
                )));
            }
        }
        let accent_color = match self.accent_color {
            Some(color) => {
                let hex = color.strip_prefix('#').unwrap_or("");
                if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ServiceError::invalid(
                        "branding.accent_color must be a colour written #rrggbb",
                    ));
                }
                Some(color.to_ascii_lowercase())
            }
            None => None,
        };
        Ok(Branding {
            name: self.name,
            logo_url: self.logo_url,
            accent_color,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(logo: Option<&str>, color: Option<&str>) -> BrandingBody {
        BrandingBody {
            name: Some("Acme".into()),
            logo_url: logo.map(str::to_owned),
            accent_color: color.map(str::to_owned),
        }
    }

    #[test]
    fn only_safe_branding_is_accepted() {
        let ok = body(Some("https://acme.example/logo.svg"), Some("#A1B2C3"))
            .validated()
            .unwrap_or_default();
        assert_eq!(ok.accent_color.as_deref(), Some("#a1b2c3"));
        for logo in [
            "http://acme.example/logo.png",
            "javascript:alert(1)",
            "https://",
            "https://a.example/x\" onerror=\"x",
            "https://a.example/ x",
        ] {
            assert!(body(Some(logo), None).validated().is_err(), "{logo}");
        }
        for color in ["red", "#12345", "#1234567", "#12345g", "123456"] {
            assert!(body(None, Some(color)).validated().is_err(), "{color}");
        }
    }
}
