//! The `retry_after` fuzz target (see the crate's opening).

fn main() {
    cardwire_fuzz::main(cardwire_fuzz::targets::retry_after);
}
