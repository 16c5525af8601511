//! Where the client is: a MaxMind-format (`.mmdb`) database when configured, a fixed
//! location for `kpages dev --geo=mock`, or nothing. The result reaches functions as the
//! `x-kpages-geo` header and rules as the `Country` condition.

use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use serde::Serialize;

/// A client location, in the shape the function host reads from `x-kpages-geo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Geo {
    /// Country.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<Named>,
    /// City name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// First-level subdivision (state, province).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdivision: Option<Named>,
    /// Latitude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    /// IANA time zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
}

/// A code and an English name.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Named {
    /// ISO code.
    pub code: String,
    /// English name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Geo {
    /// The `x-kpages-geo` header value: base64 of the JSON.
    pub fn header_value(&self) -> String {
        base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// The country code, for rule conditions.
    pub fn country_code(&self) -> Option<&str> {
        self.country.as_ref().map(|c| c.code.as_str())
    }
}

/// Why a geo database cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the MaxMind database {path}: {source}")]
pub struct GeoError {
    path: String,
    #[source]
    source: maxminddb::MaxMindDbError,
}

/// How the router finds a client's location.
#[derive(Default)]
pub enum GeoLookup {
    /// No geo information.
    #[default]
    Off,
    /// Every client is here (`kpages dev --geo=mock --country=DE`).
    Mock(Geo),
    /// A MaxMind GeoIP2/GeoLite2 City (or Country) database.
    MaxMind(maxminddb::Reader<Vec<u8>>),
}

impl std::fmt::Debug for GeoLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Off => f.write_str("GeoLookup::Off"),
            Self::Mock(g) => write!(f, "GeoLookup::Mock({g:?})"),
            Self::MaxMind(_) => f.write_str("GeoLookup::MaxMind"),
        }
    }
}

impl GeoLookup {
    /// Opens a `.mmdb` file.
    pub fn maxmind(path: &Path) -> Result<Self, GeoError> {
        maxminddb::Reader::open_readfile(path)
            .map(Self::MaxMind)
            .map_err(|source| GeoError {
                path: path.display().to_string(),
                source,
            })
    }

    /// A fixed country for every client.
    pub fn mock_country(code: &str) -> Self {
        Self::Mock(Geo {
            country: Some(Named {
                code: code.to_ascii_uppercase(),
                name: None,
            }),
            ..Geo::default()
        })
    }

    /// The location of `ip`, if known.
    pub fn lookup(&self, ip: IpAddr) -> Option<Geo> {
        match self {
            Self::Off => None,
            Self::Mock(g) => Some(g.clone()),
            Self::MaxMind(reader) => {
                let city: maxminddb::geoip2::City = reader.lookup(ip).ok().flatten()?;
                let en = |names: &Option<std::collections::BTreeMap<&str, &str>>| {
                    names
                        .as_ref()
                        .and_then(|n| n.get("en"))
                        .map(|s| s.to_string())
                };
                Some(Geo {
                    country: city.country.as_ref().and_then(|c| {
                        Some(Named {
                            code: c.iso_code?.to_string(),
                            name: en(&c.names),
                        })
                    }),
                    city: city.city.as_ref().and_then(|c| en(&c.names)),
                    subdivision: city
                        .subdivisions
                        .as_ref()
                        .and_then(|s| s.first())
                        .and_then(|s| {
                            Some(Named {
                                code: s.iso_code?.to_string(),
                                name: en(&s.names),
                            })
                        }),
                    latitude: city.location.as_ref().and_then(|l| l.latitude),
                    longitude: city.location.as_ref().and_then(|l| l.longitude),
                    timezone: city
                        .location
                        .as_ref()
                        .and_then(|l| l.time_zone)
                        .map(str::to_string),
                    postal_code: city
                        .postal
                        .as_ref()
                        .and_then(|p| p.code)
                        .map(str::to_string),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_geo_header_round_trips() {
        let g = GeoLookup::mock_country("de")
            .lookup("127.0.0.1".parse().unwrap())
            .unwrap();
        assert_eq!(g.country_code(), Some("DE"));
        let json = base64::engine::general_purpose::STANDARD
            .decode(g.header_value())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json).unwrap(),
            serde_json::json!({"country": {"code": "DE"}})
        );
        assert_eq!(GeoLookup::Off.lookup("127.0.0.1".parse().unwrap()), None);
    }

    #[test]
    fn a_missing_database_is_a_clear_error() {
        let e = GeoLookup::maxmind(Path::new("/nonexistent/GeoLite2-City.mmdb")).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/GeoLite2-City.mmdb"),
            "{e}"
        );
    }
}
