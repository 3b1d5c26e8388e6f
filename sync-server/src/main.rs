//! The `rapport-relay` binary.

fn main() {
    println!("rapport-relay {}", env!("CARGO_PKG_VERSION"));
}
