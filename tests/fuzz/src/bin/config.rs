//! The `config` fuzz target (see the crate's opening).

fn main() {
    cardwire_fuzz::main(cardwire_fuzz::targets::config);
}
