//! `kpages-operator`: see the library.

fn main() {}
