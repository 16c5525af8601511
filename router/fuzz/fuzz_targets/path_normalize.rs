//! Path normalisation never panics, never yields a path that climbs out of the site, and is
//! idempotent once re-encoded.
#![no_main]

use kpages_router::path::{encode, normalize};
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
        assert_eq!(normalize(&encode(&p)).as_deref(), Ok(p.as_str()), "not idempotent: {raw:?}");
    }
});
