//! Path normalisation never panics, never yields a path that climbs out of the site, and is
//! idempotent once re-encoded.
#![no_main]

#[path = "../../src/path.rs"]
#[allow(dead_code)]
mod path;

use libfuzzer_sys::fuzz_target;
use path::{encode, normalize};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = normalize(raw) {
        assert!(p.starts_with('/'), "{p:?}");
        assert!(!p.contains('\\') && !p.contains('\0'), "{p:?}");
        assert!(
            p.split('/').all(|s| s != ".." && s != "."),
            "dot segment survived in {p:?} from {raw:?}"
        );
        assert!(!p.contains("//"), "{p:?}");
        assert_eq!(
            normalize(&encode(&p)).as_deref(),
            Ok(p.as_str()),
            "not idempotent: {raw:?}"
        );
    }
});
