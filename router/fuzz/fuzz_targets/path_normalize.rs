//! Path normalisation never panics, never yields a path that climbs out of the site, and is
//! idempotent once re-encoded (within the length limit).
#![no_main]

use kpages_routing::path::{self, encode, normalize};
use libfuzzer_sys::fuzz_target;

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
        let encoded = encode(&p);
        // Percent-encoding can triple a path's length (`é` is `%C3%A9`), so the re-encoded
        // form of a long path may be refused; otherwise it must normalise back to itself.
        let expected = if encoded.len() > path::MAX_PATH_BYTES {
            Err(path::PathError::TooLong)
        } else {
            Ok(p.clone())
        };
        assert_eq!(normalize(&encoded), expected, "not idempotent: {raw:?}");
    }
});
