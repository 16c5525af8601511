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

    /// A minimal MaxMind DB (format 2.0, IPv4, 24-bit records) in which every address maps
    /// to one City record: enough to check the real reader path without shipping a database.
    fn tiny_mmdb() -> Vec<u8> {
        fn ctrl(out: &mut Vec<u8>, ty: u8, size: usize) {
            if ty <= 7 {
                out.push((ty << 5) | size as u8);
            } else {
                out.push(size as u8);
                out.push(ty - 7);
            }
        }
        fn string(out: &mut Vec<u8>, v: &str) {
            ctrl(out, 2, v.len());
            out.extend_from_slice(v.as_bytes());
        }
        fn double(out: &mut Vec<u8>, v: f64) {
            ctrl(out, 3, 8);
            out.extend_from_slice(&v.to_be_bytes());
        }
        fn uint(out: &mut Vec<u8>, ty: u8, v: u64) {
            let bytes = v.to_be_bytes();
            let first = bytes.iter().position(|b| *b != 0).unwrap_or(8);
            ctrl(out, ty, 8 - first);
            out.extend_from_slice(&bytes[first..]);
        }
        fn names(out: &mut Vec<u8>, en: &str) {
            string(out, "names");
            ctrl(out, 7, 1);
            string(out, "en");
            string(out, en);
        }
        let mut data = Vec::new();
        ctrl(&mut data, 7, 3);
        string(&mut data, "country");
        ctrl(&mut data, 7, 2);
        string(&mut data, "iso_code");
        string(&mut data, "NL");
        names(&mut data, "Netherlands");
        string(&mut data, "city");
        ctrl(&mut data, 7, 1);
        names(&mut data, "Amsterdam");
        string(&mut data, "location");
        ctrl(&mut data, 7, 3);
        string(&mut data, "latitude");
        double(&mut data, 52.37);
        string(&mut data, "longitude");
        double(&mut data, 4.89);
        string(&mut data, "time_zone");
        string(&mut data, "Europe/Amsterdam");

        let node_count = 1u32;
        // Both branches of the only node point at the record at data offset 0.
        let record = node_count + 16;
        let mut db = Vec::new();
        for _ in 0..2 {
            db.extend_from_slice(&record.to_be_bytes()[1..]);
        }
        db.extend_from_slice(&[0u8; 16]);
        db.extend_from_slice(&data);
        db.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
        let mut meta = Vec::new();
        ctrl(&mut meta, 7, 9);
        string(&mut meta, "node_count");
        uint(&mut meta, 6, node_count.into());
        string(&mut meta, "record_size");
        uint(&mut meta, 5, 24);
        string(&mut meta, "ip_version");
        uint(&mut meta, 5, 4);
        string(&mut meta, "database_type");
        string(&mut meta, "GeoLite2-City");
        string(&mut meta, "languages");
        ctrl(&mut meta, 11, 1);
        string(&mut meta, "en");
        string(&mut meta, "binary_format_major_version");
        uint(&mut meta, 5, 2);
        string(&mut meta, "binary_format_minor_version");
        uint(&mut meta, 5, 0);
        string(&mut meta, "build_epoch");
        uint(&mut meta, 9, 1_700_000_000);
        string(&mut meta, "description");
        ctrl(&mut meta, 7, 1);
        string(&mut meta, "en");
        string(&mut meta, "kpages test database");
        db.extend_from_slice(&meta);
        db
    }

    #[test]
    fn maxmind_databases_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.mmdb");
        std::fs::write(&path, tiny_mmdb()).unwrap();
        let geo = GeoLookup::maxmind(&path).unwrap();
        let g = geo.lookup("203.0.113.7".parse().unwrap()).unwrap();
        assert_eq!(g.country_code(), Some("NL"));
        assert_eq!(
            g.country.as_ref().unwrap().name.as_deref(),
            Some("Netherlands")
        );
        assert_eq!(g.city.as_deref(), Some("Amsterdam"));
        assert_eq!(g.timezone.as_deref(), Some("Europe/Amsterdam"));
        assert_eq!(g.latitude, Some(52.37));
    }
}
